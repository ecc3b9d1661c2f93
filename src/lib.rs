//! secintake: runs an open-source project's security@ mailbox.
//!
//! The pipeline, one module per stage:
//! `intake` (IMAP) → `message` (parse) → `classify` (what kind of mail) →
//! `cases` (decide, record in one SQLite transaction via `store`) →
//! `outbox` (SMTP delivery). `health` raises alerts when a connection stays
//! down; `daemon` runs the loops; `config`, `clock`, `templates`, `compose`
//! and `cli` sit around them.

pub mod auth;
pub mod cases;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod deadlines;
pub mod health;
pub mod intake;
pub mod memory;
pub mod message;
pub mod osv;
pub mod outbox;
pub mod store;
pub mod templates;
pub mod tls;
pub mod workflow;
