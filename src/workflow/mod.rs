//! Handlers working a case from their mail client.
//!
//! - A new case is announced to every handler in one thread per case (its
//!   root Message-ID is `case.<id>@<our domain>`), with the report as text
//!   and the original attached.
//! - A handler's reply to that thread is relayed to the reporter from the
//!   security address ("Alice via Example security"), threaded into the
//!   reporter's own conversation; it is the response the policy promises.
//! - Mail to the comment address is an internal note: stored, copied to the
//!   other handlers, never sent to the reporter.
//! - Command lines at the top of a handler's mail drive the disclosure
//!   process ([`crate::commands`]); each command mail gets a reply saying
//!   what was done, or exactly what was wrong.
//! - A reporter's follow-up goes to the primary handler (everyone when
//!   there is none).
//!
//! Only authenticated handler mail acts ([`crate::mail::auth`]); forged mail is
//! recorded, changes nothing, and alerts the handlers once per case.
//! Everything here runs inside the caller's transaction.
//!
//! This module decides whether a letter goes, when and to whom; what it
//! says and how it is addressed is built in [`crate::outgoing`].
//!
//! The files, by job: [`route`] (what a handler's mail is), [`apply`]
//! (running a command), [`announce`], [`relay`] (mail to the reporter),
//! [`leak`] (the leak guard), [`keys`] (the reporter's OpenPGP key), [`state`] (state, people, deadlines),
//! [`notify`] (letters to the handlers). They import one another in that
//! order, downward only; this file only names what the rest of the crate
//! uses.

mod announce;
mod apply;
pub mod keys;
mod leak;
mod notify;
mod relay;
mod route;
mod state;

pub use crate::mail::quote::strip_quote;
pub use apply::apply;
pub use leak::stored_text;
pub use notify::{
    acks_held_alert, build_pending_notifications, forged, forward_follow_up, no_case_reply, note,
    notify_new_case,
};
pub use route::{handler_mail, to_comment_address};
pub use state::{acknowledged, move_state, next_primary, record_response, set_deadline, Reply};
