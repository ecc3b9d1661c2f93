//! What the handlers are told: the new-case notification (the case's
//! thread root), a reporter's follow-up, forged mail and held
//! acknowledgements, an internal note's copy, the confirmation of a
//! handler's mail and its copy to the team. Who gets a letter, and
//! queueing it; its text is built in [`crate::outgoing::handlers`].

use crate::context::{CaseError, Context};
use crate::mail::compose;
use crate::mail::message::ParsedMessage;
use crate::mail::quote::strip_quote;
use crate::model::MessageKind;
use crate::outgoing::handlers::{self, CommandResult, Original, Outcome};
use crate::outgoing::{audiences, queue_outgoing, Audience, Letter, LetterError};
use crate::store::{self, CaseRow};
use rusqlite::Connection;

pub(super) fn is_handler(ctx: &Context<'_>, email: &str) -> bool {
    ctx.cfg.handler(email).is_some()
}

pub(super) fn all_handlers(ctx: &Context<'_>) -> Vec<String> {
    ctx.cfg.handlers.iter().map(|h| h.email.clone()).collect()
}

/// Recipients for "the case's people": the primary handler, or every
/// handler when there is none.
fn primary_or_all(ctx: &Context<'_>, case: &CaseRow) -> Vec<String> {
    match &case.primary_handler {
        Some(p) => vec![p.clone()],
        None => ctx.cfg.handlers.iter().map(|h| h.email.clone()).collect(),
    }
}

/// Queues a `purpose` letter about `case` to the handlers `to`, built by
/// `letter` once per [`audiences`] group (sealed to those with a key,
/// the facts to the others, for an encrypted case). One that cannot be
/// put together (an unusable address, a key that cannot encrypt) is
/// recorded on the case instead; a broken template is an error, like any
/// configuration error.
pub(super) fn queue_for_handlers(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    purpose: MessageKind,
    to: Vec<String>,
    letter: impl Fn(Audience) -> Result<Letter, LetterError>,
) -> Result<(), CaseError> {
    if to.is_empty() {
        return Ok(());
    }
    for audience in audiences(ctx, case, purpose, to) {
        queue_one(conn, ctx, &case.id, purpose, letter(audience))?;
    }
    Ok(())
}

/// Queues one built letter (see [`queue_for_handlers`]).
fn queue_one(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    purpose: MessageKind,
    letter: Result<Letter, LetterError>,
) -> Result<(), CaseError> {
    match letter {
        Ok(letter) => {
            queue_outgoing(conn, ctx, &letter)?;
        }
        Err(LetterError::Template(e)) => return Err(e.into()),
        Err(LetterError::Compose(e)) => {
            store::add_event(
                conn,
                case_id,
                ctx.now,
                "secintake",
                &format!("{purpose} to handlers not sent"),
                Some(&e.to_string()),
                None,
            )?;
        }
    }
    Ok(())
}

/// The new-case notification to every handler: the thread root.
pub fn notify_new_case(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    p: &ParsedMessage,
    original: Original<'_>,
) -> Result<(), CaseError> {
    let to = all_handlers(ctx);
    if to.is_empty() {
        return Ok(());
    }
    let events = store::events_of_case(conn, &case.id)?;
    queue_for_handlers(conn, ctx, case, MessageKind::Notification, to, |a| {
        handlers::notification(ctx, case, a, p, &events, original)
    })
}

/// Builds and queues the notifications promised by new cases, at most
/// `limit`, each in the caller's transaction with the removal of its
/// promise. Returns how many were built.
pub fn build_pending_notifications(
    conn: &Connection,
    ctx: &Context<'_>,
    limit: u32,
) -> Result<usize, CaseError> {
    let pending = store::pending_notifications(conn, limit)?;
    for (case_id, msg) in &pending {
        // Never more than an attachable original, or the parser's window.
        let max = handlers::ATTACH_ORIGINAL_MAX.max(crate::mail::message::MAX_PARSE_BYTES);
        if let (Some(case), Some((row, raw, len))) = (
            store::case(conn, case_id)?,
            store::message_prefix(conn, *msg, max)?,
        ) {
            let p = crate::mail::decrypt::read(&raw, row.parsed_ok, ctx.cfg);
            let original = Original { bytes: &raw, len };
            notify_new_case(conn, ctx, &case, &p, original)?;
        }
        store::done_pending_notification(conn, case_id)?;
    }
    Ok(pending.len())
}

/// A reporter's (or anyone's) follow-up, forwarded to the primary handler.
pub fn forward_follow_up(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    p: &ParsedMessage,
    raw: &[u8],
) -> Result<(), CaseError> {
    let from = p
        .from
        .as_ref()
        .map(|a| a.email.as_str())
        .unwrap_or("(unknown sender)");
    // The reporter says how to be credited with a line `Credit: <name>`
    // (or `Credit: none`) in their own text, above any quote.
    if let Some(credit) = credit_line(&strip_quote(p.text_body.as_deref().unwrap_or(""))) {
        store::set_fact(conn, &case.id, "credit", &credit)?;
        store::add_event(
            conn,
            &case.id,
            ctx.now,
            from,
            "credit set",
            Some(&format!("{credit} (from the reporter's mail)")),
            p.message_id.as_deref(),
        )?;
    }
    let to = primary_or_all(ctx, case);
    queue_for_handlers(conn, ctx, case, MessageKind::Forward, to, |a| {
        handlers::follow_up(ctx, case, a, p, raw)
    })
}

/// The value of a `Credit: …` line (at the start of a line, case
/// insensitive; `none` for no credit), capped.
fn credit_line(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let (key, value) = l.split_once(':')?;
        let value = compose::clean_subject(value.trim());
        (key.trim().eq_ignore_ascii_case("credit") && !value.is_empty()).then(|| {
            if value.eq_ignore_ascii_case("none") {
                "none".to_string()
            } else {
                value.chars().take(200).collect()
            }
        })
    })
}

/// Mail claiming to be from a handler that nothing authenticates: recorded,
/// no effect, the handlers alerted once per case.
pub fn forged(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    email: &str,
    why: &str,
    mid: Option<&str>,
) -> Result<(), CaseError> {
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        "secintake",
        "unauthenticated mail from a handler address ignored",
        Some(&format!("From {email}, but {why}; nothing was changed")),
        mid,
    )?;
    tracing::warn!(case = %case.id, "unauthenticated mail from a handler address ignored");
    if store::first_forged_alert(conn, &case.id)? {
        let to = all_handlers(ctx);
        queue_for_handlers(conn, ctx, case, MessageKind::Alert, to, |a| {
            handlers::forged(ctx, case, a, email, why)
        })?;
    }
    Ok(())
}

/// Tells the handlers, at most once an hour, that acknowledgements are
/// being held (`limits`); threaded in the case that tripped the limit.
pub fn acks_held_alert(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    why: &str,
) -> Result<(), CaseError> {
    const KEY: &str = "acks_held_alerted_at";
    let recent = store::setting(conn, KEY)?
        .and_then(|t| crate::clock::parse_ts(&t))
        .is_some_and(|t| ctx.now - t < chrono::Duration::hours(1));
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(());
    };
    if recent {
        return Ok(());
    }
    store::set_setting(conn, KEY, &crate::clock::fmt_ts(ctx.now))?;
    tracing::warn!(case = %case_id, "acknowledgements held by a limit; handlers alerted");
    let to = all_handlers(ctx);
    queue_for_handlers(conn, ctx, &case, MessageKind::Alert, to, |a| {
        handlers::held_acks(ctx, &case, a, why)
    })
}

/// An internal note: stored, copied to the other handlers.
pub fn note(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    author: &str,
    text: &str,
    source: Option<&str>,
) -> Result<(), CaseError> {
    store::add_event(conn, &case.id, ctx.now, author, "note", Some(text), source)?;
    let others: Vec<String> = ctx
        .cfg
        .handlers
        .iter()
        .map(|h| h.email.clone())
        .filter(|e| e != author)
        .collect();
    queue_for_handlers(conn, ctx, case, MessageKind::Note, others, |a| {
        handlers::note(ctx, case, a, author, text)
    })
}

/// Tells the handler, in the case's thread, exactly what their mail did:
/// the text relayed (verbatim), the note recorded, each command's result,
/// or why nothing was done.
pub(super) fn confirm(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    email: &str,
    p: &ParsedMessage,
    results: &[CommandResult],
    outcome: &Outcome,
) -> Result<(), CaseError> {
    let state = store::case(conn, &case.id)?
        .map(|c| c.state.to_string())
        .unwrap_or_default();
    let answers = p.message_id.as_deref();
    let to = vec![email.to_owned()];
    queue_for_handlers(conn, ctx, case, MessageKind::CommandReply, to, |a| {
        handlers::confirmation(ctx, case, a, answers, results, outcome, &state)
    })
}

/// Copies to the other handlers what a handler's mail did for everyone
/// to see: a relay to the reporter (its text), and each command that
/// changed the case. Notes have their own copy; `/show` changes nothing.
pub(super) fn team_copy(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    email: &str,
    results: &[CommandResult],
    outcome: &Outcome,
) -> Result<(), CaseError> {
    if !ctx.cfg.workflow.team_copies {
        return Ok(());
    }
    let relayed = match outcome {
        Outcome::Relayed { text, files } => Some((text.as_str(), files.as_slice())),
        _ => None,
    };
    let done: Vec<CommandResult> = results
        .iter()
        .filter(|(line, r)| r.is_ok() && !line.to_ascii_lowercase().starts_with("/show"))
        .cloned()
        .collect();
    if relayed.is_none() && done.is_empty() {
        return Ok(());
    }
    let others: Vec<String> = all_handlers(ctx)
        .into_iter()
        .filter(|h| h != email)
        .collect();
    queue_for_handlers(conn, ctx, case, MessageKind::TeamCopy, others, |a| {
        handlers::team_copy(ctx, case, a, email, relayed, &done)
    })
}

/// A handler's commands or note that thread into no case: the reply says
/// how to name one.
pub fn no_case_reply(
    conn: &Connection,
    ctx: &Context<'_>,
    email: &str,
    p: &ParsedMessage,
) -> Result<(), CaseError> {
    match handlers::no_case(ctx, email, p) {
        Ok(letter) => {
            queue_outgoing(conn, ctx, &letter)?;
        }
        Err(LetterError::Template(e)) => return Err(e.into()),
        // No address to answer: nothing to tell.
        Err(LetterError::Compose(_)) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_lines() {
        assert_eq!(
            credit_line("Thanks!\nCredit: Jane Doe (ACME)\n").as_deref(),
            Some("Jane Doe (ACME)")
        );
        assert_eq!(credit_line("credit : NONE").as_deref(), Some("none"));
        assert_eq!(credit_line("No credit line here.\nCredit:"), None);
    }
}
