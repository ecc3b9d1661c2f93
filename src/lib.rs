//! secintake: runs an open-source project's security@ mailbox.
//!
//! # Layout
//!
//! Layers, each importing only from itself and the layers listed before
//! it (no import cycles; `farm-studio look` draws it):
//!
//! 1. **Base** (imports nothing above it; `config` reads keys through
//!    `openpgp`): `clock` (time, date forms),
//!    `config`, `templates`, `tls`, `memory`, `gate` (the backlog priority
//!    rule between the loops), `model` (the vocabulary: case ids, `State`,
//!    deadline `Kind`, the address key), `osv` (the OSV record of a case
//!    and the ecosystems `config` checks against).
//!
//!    Beneath it, the adapters over heavy external crates are crates of
//!    their own in `crates/` (their generic code is compiled once there,
//!    not twice in this crate: see Cargo.toml), re-exported here as
//!    modules: `openpgp` (`crates/openpgp`, over rPGP: keys, decrypting,
//!    encrypting, signatures), `dkim` (`crates/dkim`, over mail-auth: a
//!    handler's DKIM signature and an ARC chain checked through DNS),
//!    `crates/oauth2` (over the oauth2 crate: access tokens for IMAP and
//!    SMTP) and `crates/suffix` (over psl: is a domain a public suffix).
//! 2. **Mail, pure** (`mail/`): `mail::message` (the mail-parser
//!    adapter), `mail::compose` (building MIME), `mail::classify` (robots,
//!    reply address), `mail::auth` (is this a handler? a server verdict
//!    or the handler's OpenPGP signature), `mail::quote` (a reply's own
//!    words apart from its quote), `mail::decrypt` (reading mail as the
//!    team does: the one way the pipeline reads it), `mail::seal`
//!    (PGP/MIME encrypting and signing a built letter); and `commands`
//!    (handler command lines).
//! 3. **Storage**: `store` (the SQLite file and its queries), `context`
//!    (what a decision knows, and its error), `outgoing` (every letter:
//!    its text from `templates`, its headers, queueing it in the outbox), `deadlines` (the stage plan and deadline rows), `sla`
//!    (the SLA report).
//! 4. **Decisions**: `workflow/` (handler mail: `route`, `apply`,
//!    `announce`, `relay` to the reporter, the `leak` guard, `keys` (the
//!    reporter's OpenPGP key), `state`, `notify` the handlers), `cases/` (what one incoming message does,
//!    recorded in one transaction: `dedup`, `thread`, `open`, `acks`,
//!    `promote`), `health` (connection status and alerts).
//! 5. **Loops**: `intake` (IMAP → `cases`), `outbox` (SMTP delivery;
//!    `outbox::smtp` the session and its login), `watchdog` (systemd's
//!    WATCHDOG=1 and STATUS=),
//!    `scheduler` (reminders, escalations, digest); `daemon` runs them.
//! 6. **Binary**: `cli`.

pub mod cases;
pub mod cli;
pub(crate) mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub(crate) mod daemon;
pub(crate) mod deadlines;
pub(crate) mod gate;
pub(crate) mod health;
pub(crate) mod intake;
pub mod mail;
pub(crate) mod memory;
pub(crate) mod metrics;
pub mod model;
pub mod osv;
pub(crate) mod outbox;
pub(crate) mod outgoing;
pub(crate) mod scheduler;
pub(crate) mod sla;
pub(crate) mod store;
pub mod templates;
pub(crate) mod tls;
pub(crate) mod watchdog;
pub mod workflow;

pub use secintake_dkim as dkim;
pub use secintake_openpgp as openpgp;
