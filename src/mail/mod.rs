//! The pure mail layer (no I/O): reading the mail we receive and building
//! the mail we send.
//!
//! - [`message`]: the one adapter over mail-parser (raw bytes in, our own
//!   `ParsedMessage` out).
//! - [`classify`]: is this mail from a robot, and where may an
//!   acknowledgement go?
//! - [`auth`]: is this mail really from a handler?
//! - [`compose`]: building the MIME of the mail we send (over lettre's
//!   builder).
//! - [`quote`]: a reply's own words, apart from the text it quotes.

pub mod auth;
pub mod classify;
pub mod compose;
pub mod message;
pub mod quote;
