//! secintake: runs an open-source project's security@ mailbox.
//!
//! The pipeline, one module per stage:
//! `intake` (IMAP) → `message` (parse) → `classify` (what kind of mail) →
//! `cases` (decide, record in one SQLite transaction via `store`) →
//! `outbox` (SMTP delivery). `config`, `clock` and `cli` sit around it.

pub mod classify;
pub mod clock;
pub mod compose;
pub mod config;
pub mod message;
pub mod store;
pub mod templates;
