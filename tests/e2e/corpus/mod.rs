//! The real-world corpus (`tests/fixtures/corpus`, 396 messages from other
//! people's mail software): message by message through `parse` and the
//! robot rules ([`classify`]), and as one backlog through the running
//! daemon ([`daemon`]).

mod classify;
mod daemon;
