//! Mail to the reporter: a handler's text relayed in the reporter's own
//! thread, and the update telling them what changed for their case. Fail
//! closed: nothing goes to a missing or project address, nor anything the
//! leak guard refuses.

use super::keys;
use super::leak::leak;
use super::state::record_response;
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::mail::quote::strip_quote;
use crate::model::Direction;
use crate::model::Kind;
use crate::model::MessageKind;
use crate::outgoing::outside;
use crate::outgoing::{queue_outgoing, Letter, LetterError, Thread};
use crate::store::{self, CaseRow, StoreError};
use rusqlite::Connection;

/// What became of a handler's text meant for the reporter.
pub(super) enum Relay {
    Sent,
    /// Not sent, and why (one line for the handler).
    Refused(String),
}

/// Relays a handler's text to the reporter, in the reporter's thread;
/// `cleartext`: the handler sent `/cleartext` (see [`send_to_reporter`]).
pub(super) fn relay(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    email: &str,
    (text, cleartext): (&str, bool),
    files: &[crate::mail::message::Attachment],
    source: Option<&str>,
) -> Result<Relay, CaseError> {
    let sent = match unusable_reporter(ctx, case) {
        Some(why) => ToReporter::NotSent(why),
        None => match leak(conn, ctx.cfg, case, text, files)? {
            Some(why) => ToReporter::NotSent(why),
            None => match channel(conn, ctx, case, cleartext)? {
                Channel::Closed(why) => ToReporter::NotSent(why),
                ch => {
                    let thread = reporter_thread(conn, case)?;
                    let shown = shown_case(case, &ch);
                    let letter = outside::relay(ctx, &shown, thread, email, text, files);
                    send_to_reporter(conn, ctx, letter, ch)?
                }
            },
        },
    };
    let out = match sent {
        ToReporter::Queued(out) => out,
        ToReporter::NotSent(why) => {
            store::add_event(
                conn,
                &case.id,
                ctx.now,
                email,
                "reply not relayed",
                Some(&why),
                source,
            )?;
            return Ok(Relay::Refused(why));
        }
    };
    record_response(
        conn,
        ctx.now,
        &case.id,
        email,
        &format!("reply by {email}, relayed"),
        [
            "response relayed to the reporter",
            "reply relayed to the reporter",
        ],
        &format!("Message-ID <{}>", out.out.message_id),
        source,
    )?;
    Ok(Relay::Sent)
}

/// Why mail must not go to the case's reporter address, if it must not:
/// there is none, or it is one of the project's own (cases opened before
/// that rule existed may name one, issue 7).
pub(super) fn unusable_reporter(ctx: &Context<'_>, case: &CaseRow) -> Option<String> {
    match case.reporter.as_deref() {
        None => Some("the case has no usable reporter address".to_string()),
        Some(r) => ctx
            .project_address(r)
            .map(|what| format!("the reporter address {r} is {what}")),
    }
}

/// What became of a letter to the reporter.
enum ToReporter {
    Queued(Letter),
    /// Not sent, and why (one line for the handler and the case events).
    NotSent(String),
}

/// How a letter can reach the case's reporter.
enum Channel {
    /// In cleartext: the report was not encrypted, or a handler said
    /// `/cleartext` for this answer.
    Clear,
    /// Sealed to the reporter's key: the report was encrypted.
    Sealed(crate::openpgp::PublicKey),
    /// Not at all, and why: the report was encrypted and no key of the
    /// reporter is known.
    Closed(String),
}

/// The [`Channel`] to `case`'s reporter (issue 10): nothing about an
/// encrypted report travels to them in cleartext unless a handler said
/// `/cleartext` for it.
fn channel(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    cleartext: bool,
) -> Result<Channel, StoreError> {
    if !case.encrypted {
        return Ok(Channel::Clear);
    }
    Ok(match keys::reporter_key(conn, ctx, case)? {
        Some(key) => Channel::Sealed(key),
        None if cleartext => Channel::Clear,
        None => Channel::Closed(
            "the report was encrypted and no OpenPGP key of the reporter is known, so nothing \
             goes to them in cleartext: attach their public key to your reply (it is kept for \
             the case), put /cleartext on the first line to send this answer unencrypted, or \
             write to them encrypted yourself"
                .to_string(),
        ),
    })
}

/// The case as a letter to the reporter shows it: its real subject only
/// inside a sealed letter.
fn shown_case(case: &CaseRow, ch: &Channel) -> CaseRow {
    let mut shown = case.clone();
    if let (Channel::Sealed(_), Some(real)) = (ch, &case.protected_subject) {
        shown.subject = Some(real.clone());
    }
    shown
}

/// Queues a letter to the case's reporter over `ch`, or says why it could
/// not be put together (or sealed); a broken template is an error (a
/// configuration problem). The caller has checked [`unusable_reporter`].
fn send_to_reporter(
    conn: &Connection,
    ctx: &Context<'_>,
    letter: Result<Letter, LetterError>,
    ch: Channel,
) -> Result<ToReporter, CaseError> {
    let letter = match (letter, ch) {
        (Ok(l), Channel::Sealed(key)) => crate::outgoing::sealed(ctx, l, &[key]),
        (Ok(_), Channel::Closed(why)) => return Ok(ToReporter::NotSent(why)),
        (other, _) => other,
    };
    match letter {
        Ok(letter) => {
            queue_outgoing(conn, ctx, &letter)?;
            Ok(ToReporter::Queued(letter))
        }
        Err(LetterError::Template(e)) => Err(e.into()),
        Err(LetterError::Compose(e)) => Ok(ToReporter::NotSent(e.to_string())),
    }
}

/// In-Reply-To and References for mail to the reporter: their latest
/// message, and the conversation so far (their messages and ours to them).
fn reporter_thread(conn: &Connection, case: &CaseRow) -> Result<Thread, StoreError> {
    let msgs = store::messages_of_case(conn, &case.id)?;
    let reporter = case.reporter.as_deref();
    let mut refs = Vec::new();
    let mut last_in = None;
    for m in &msgs {
        let Some(mid) = &m.message_id else { continue };
        let theirs = m.direction == Direction::In
            && m.kind.is_reporters()
            && (m.from.as_deref() == reporter || m.kind == MessageKind::Report);
        let ours = m.direction == Direction::Out
            && matches!(m.kind, MessageKind::Ack | MessageKind::Relay);
        if theirs {
            last_in = Some(mid.clone());
        }
        if theirs || ours {
            refs.push(mid.clone());
        }
    }
    let keep = refs.len().saturating_sub(10);
    Ok(Thread {
        in_reply_to: last_in,
        references: refs.split_off(keep),
    })
}

/// Tells the reporter, in their thread, that their case was `event`
/// (template `update.txt`); returns what happened, for the confirmation.
/// Fail closed: nothing goes out for a `/quiet` case, with `[reporter]
/// updates = false`, or without a reporter address that is not the
/// project's own. The first word to the reporter after the
/// acknowledgement counts as the response the policy promises.
#[allow(clippy::too_many_arguments)]
pub(super) fn reporter_update(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    event: &str,
    reason: &str,
    advisory: &str,
    actor: &str,
    source: Option<&str>,
) -> Result<String, CaseError> {
    let skip = if !ctx.cfg.reporter.updates {
        Some("reporter updates are off ([reporter] updates = false)".to_string())
    } else if store::is_quiet(conn, &case.id)? {
        Some("reporter updates are off for this case (/quiet)".to_string())
    } else {
        unusable_reporter(ctx, case)
    };
    let sent = match skip {
        Some(why) => ToReporter::NotSent(why),
        None => {
            let date_of = |kind: Kind| -> Result<String, StoreError> {
                Ok(deadlines::of_case(conn, &case.id)?
                    .into_iter()
                    .find(|d| d.kind == kind)
                    .map(|d| d.due_at.chars().take(10).collect::<String>())
                    .unwrap_or_default())
            };
            let (fix_date, announce_date) = (date_of(Kind::Fix)?, date_of(Kind::Embargo)?);
            let advisory = strip_quote(advisory);
            let update = outside::Update {
                event,
                reason,
                advisory: &advisory,
                fix_date: &fix_date,
                announce_date: &announce_date,
            };
            match channel(conn, ctx, case, false)? {
                Channel::Closed(why) => ToReporter::NotSent(why),
                ch => {
                    let thread = reporter_thread(conn, case)?;
                    let update = outside::update(ctx, &shown_case(case, &ch), thread, update);
                    send_to_reporter(conn, ctx, update, ch)?
                }
            }
        }
    };
    let out = match sent {
        ToReporter::Queued(out) => out,
        ToReporter::NotSent(why) => {
            store::add_event(
                conn,
                &case.id,
                ctx.now,
                "secintake",
                "reporter not told",
                Some(&format!("{event}: {why}")),
                source,
            )?;
            return Ok(format!("the reporter was not told: {why}"));
        }
    };
    record_response(
        conn,
        ctx.now,
        &case.id,
        actor,
        &format!("update ({event}) by {actor}"),
        [
            "response sent to the reporter (an update)",
            "update sent to the reporter",
        ],
        &format!("{event}, Message-ID <{}>", out.out.message_id),
        source,
    )?;
    Ok(format!("the reporter was told ({event})"))
}
