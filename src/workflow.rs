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
//! Only authenticated handler mail acts ([`crate::auth`]); forged mail is
//! recorded, changes nothing, and alerts the handlers once per case.
//! Everything here runs inside the caller's transaction.
//!
//! This module decides whether a letter goes, when and to whom; what it
//! says and how it is addressed is built in [`crate::outgoing`].

use crate::clock::fmt_ts;
use crate::commands::{self, Command};
use crate::compose;
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::mail::quote::{collapsed, inline_answer, layout, Layout};
use crate::message::ParsedMessage;
use crate::model::Kind;
use crate::model::State;
use crate::outgoing::handlers::{self, CommandResult, Original, Outcome};
use crate::outgoing::outside;
use crate::outgoing::{handler_name, queue_outgoing, Letter, LetterError, Thread};
use crate::store::{self, CaseField, CaseRow, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::Connection;

/// Where it always was for callers; it lives in the pure mail layer.
pub use crate::mail::quote::strip_quote;

fn is_handler(ctx: &Context<'_>, email: &str) -> bool {
    ctx.cfg.handlers.iter().any(|h| h.email == email)
}

/// The next primary handler, round-robin over `[[handlers]]`; None when
/// `[workflow] assign = "none"` or nobody is configured.
pub fn next_primary(conn: &Connection, ctx: &Context<'_>) -> Result<Option<String>, StoreError> {
    let hs = &ctx.cfg.handlers;
    if !ctx.cfg.workflow.round_robin || hs.is_empty() {
        return Ok(None);
    }
    let next: usize = store::setting(conn, "round_robin_next")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    store::set_setting(
        conn,
        "round_robin_next",
        &((next + 1) % hs.len()).to_string(),
    )?;
    Ok(Some(hs[next % hs.len()].email.clone()))
}

/// Recipients for "the case's people": the primary handler, or every
/// handler when there is none.
fn primary_or_all(ctx: &Context<'_>, case: &CaseRow) -> Vec<String> {
    match &case.primary_handler {
        Some(p) => vec![p.clone()],
        None => ctx.cfg.handlers.iter().map(|h| h.email.clone()).collect(),
    }
}

fn all_handlers(ctx: &Context<'_>) -> Vec<String> {
    ctx.cfg.handlers.iter().map(|h| h.email.clone()).collect()
}

/// Queues a letter to handlers about `case_id`. One that cannot be put
/// together (an unusable address) is recorded on the case instead; a
/// broken template is an error, like any configuration error.
fn queue_for_handlers(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    purpose: &str,
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
    let letter = handlers::notification(ctx, case, to, p, &events, original);
    queue_for_handlers(conn, ctx, &case.id, "notification", letter)
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
        let max = handlers::ATTACH_ORIGINAL_MAX.max(crate::message::MAX_PARSE_BYTES);
        if let (Some(case), Some((row, raw, len))) = (
            store::case(conn, case_id)?,
            store::message_prefix(conn, *msg, max)?,
        ) {
            let p = crate::message::reparse(&raw, row.parsed_ok);
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
    if to.is_empty() {
        return Ok(());
    }
    let letter = handlers::follow_up(ctx, case, to, p, raw);
    queue_for_handlers(conn, ctx, &case.id, "forward", letter)
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
        if !to.is_empty() {
            let letter = handlers::forged(ctx, case, to, email, why);
            queue_for_handlers(conn, ctx, &case.id, "alert", letter)?;
        }
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
    if to.is_empty() {
        return Ok(());
    }
    let letter = handlers::held_acks(ctx, &case, to, why);
    queue_for_handlers(conn, ctx, case_id, "alert", letter)
}

/// Whether `p` answers mail that only handlers get (notes, reminders,
/// command replies, alerts, digests).
fn replies_to_internal(conn: &Connection, p: &ParsedMessage) -> Result<bool, StoreError> {
    let Some(parent) = p.in_reply_to.first() else {
        return Ok(false);
    };
    Ok(matches!(
        store::kind_of_message_id(conn, parent)?.as_deref(),
        Some("note" | "reminder" | "command-reply" | "alert" | "digest" | "team-copy")
    ))
}

/// What a handler's mail does to a case. Fail closed: text reaches the
/// reporter only when the mail is unambiguously an answer to them, and
/// every handler mail gets a confirmation saying what happened.
///
/// The rules, in order:
/// 1. Command lines after other text (a greeting, then `/take`): nothing
///    runs, nothing is relayed; the confirmation says commands go first.
/// 2. Commands at the very top run; the text after them follows 3-6.
/// 3. Internal (a note, never relayed): mail to the comment address; a
///    reply to internal mail (note copy, reminder, confirmation, alert,
///    digest); mail whose To/Cc names another handler; mail that names the
///    security address in neither To nor Cc (it came as a Bcc: unsure).
/// 4. A direct answer to the reporter with the security address in Cc is
///    recorded as the response; nothing is relayed.
/// 5. Otherwise the new text (quote cut) is relayed, unless it repeats a
///    line of internal mail about the case (the leak guard).
pub fn handler_mail(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    p: &ParsedMessage,
    raw: &[u8],
    email: &str,
    to_comment: bool,
) -> Result<(), CaseError> {
    let mid = p.message_id.as_deref();
    // An HTML-only reply: its own words, without the client's quote.
    let body = crate::message::reply_text(raw)
        .or_else(|| p.text_body.clone())
        .unwrap_or_default();
    let parsed = commands::parse(&body);
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(());
    };
    let layout = layout(&parsed.rest);
    let interleaved = layout == Layout::Interleaved;
    let text = match &layout {
        Layout::Bottom(below) => below.clone(),
        Layout::Top => strip_quote(&parsed.rest),
        // Kept only when every quoted line is the reporter's own words.
        Layout::Interleaved => {
            inline_answer(&parsed.rest, &case_lines(conn, &case)?.reporters_all).unwrap_or_default()
        }
    };
    let misplaced: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| commands::is_command_line(l))
        .collect();
    if !misplaced.is_empty() {
        let why = format!(
            "command lines come after other text ({}). Commands go at the very top of \
             the mail, one per line, before any text; send it again that way. Nothing \
             ran and nothing was sent to the reporter.",
            misplaced.join(", ")
        );
        store::add_event(
            conn,
            case_id,
            ctx.now,
            email,
            "handler mail not acted on",
            Some(&why),
            mid,
        )?;
        return confirm(conn, ctx, &case, email, p, &[], &Outcome::NothingDone(why));
    }
    let mut results = Vec::new();
    let mut announced = false;
    for (line, c) in &parsed.commands {
        let result = match c {
            Err(e) => Err(e.clone()),
            Ok(cmd) => {
                if matches!(cmd, Command::Announce { .. }) {
                    announced = true;
                }
                apply(conn, ctx, case_id, email, cmd, &parsed.rest, mid)?
            }
        };
        results.push((line.clone(), result));
    }
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(());
    };
    let named = |addr: &str| {
        let key = crate::model::mailbox_key(addr);
        p.to.iter()
            .chain(p.cc.iter())
            .any(|a| crate::model::mailbox_key(&a.email) == key)
    };
    let direct = case.reporter.as_deref().is_some_and(named);
    let other_handler = ctx
        .cfg
        .handlers
        .iter()
        .find(|h| h.email != email && named(&h.email))
        .map(|h| h.email.clone());
    let internal_why = if to_comment {
        Some("it was sent to the comment address".to_string())
    } else if replies_to_internal(conn, p)? {
        Some("it answers internal mail (a note, reminder, confirmation or alert)".to_string())
    } else if let Some(h) = other_handler.filter(|_| !direct) {
        Some(format!("it is addressed to another handler ({h})"))
    } else if !direct && !named(&ctx.cfg.mailbox.address) {
        Some(format!(
            "{} is in neither To nor Cc (a Bcc), so it is not clearly meant for the reporter",
            ctx.cfg.mailbox.address
        ))
    } else {
        None
    };
    let outcome = if announced {
        // The text below /announce was the advisory; it went where
        // /announce sends it and nowhere else.
        Outcome::CommandsOnly
    } else if let Some(why) = internal_why {
        if text.is_empty() {
            Outcome::CommandsOnly
        } else {
            note(conn, ctx, &case, email, &text, mid)?;
            Outcome::Note { why, text }
        }
    } else if direct {
        record_response(
            conn,
            ctx.now,
            case_id,
            email,
            &format!("reply by {email}"),
            [
                "response sent to the reporter",
                "further answer sent to the reporter",
            ],
            "directly, with the mailbox in Cc; nothing relayed",
            mid,
        )?;
        Outcome::Direct
    } else if text.is_empty() {
        Outcome::CommandsOnly
    } else {
        match crate::message::attachments(raw) {
            // Never the text without the files it may refer to.
            Err(why) => Outcome::NothingDone(format!(
                "your attachments cannot go to the reporter ({why}), so nothing was sent: \
                 send fewer or smaller files, or a link"
            )),
            Ok(files) => match relay(conn, ctx, &case, email, &text, &files, mid)? {
                Relay::Sent => Outcome::Relayed {
                    text,
                    files: files
                        .iter()
                        .map(|f| {
                            format!("{} ({}, {} bytes)", f.name, f.content_type, f.bytes.len())
                        })
                        .collect(),
                },
                Relay::Refused(why) => Outcome::NothingDone(format!(
                    "your text was not sent to the reporter: {why}. Write the answer without \
                     quoting internal mail and send it again."
                )),
            },
        }
    };
    let unread = if interleaved && matches!(outcome, Outcome::CommandsOnly) {
        Some(
            "answers written between quoted lines are relayed only when every quoted line \
             is the reporter's own words, and these quote other mail: write your answer \
             above or below the quote and send it again"
                .to_string(),
        )
    } else if p.encrypted && p.text_body.is_none() {
        Some(
            "the mail is encrypted to a key secintake does not hold, so it cannot be read or \
             relayed: answer the reporter yourself with the security address in Cc"
                .to_string(),
        )
    } else {
        None
    };
    let outcome = match (outcome, unread) {
        (Outcome::CommandsOnly, Some(why)) => Outcome::NothingDone(why),
        (outcome, _) => outcome,
    };
    if results.is_empty() && matches!(outcome, Outcome::CommandsOnly) {
        let why = "the mail had no commands and no new text (only quoted text).".to_string();
        return confirm(conn, ctx, &case, email, p, &[], &Outcome::NothingDone(why));
    }
    confirm(conn, ctx, &case, email, p, &results, &outcome)?;
    team_copy(conn, ctx, &case, email, &results, &outcome)
}

/// Copies to the other handlers what a handler's mail did for everyone
/// to see: a relay to the reporter (its text), and each command that
/// changed the case. Notes have their own copy; `/show` changes nothing.
fn team_copy(
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
    if others.is_empty() {
        return Ok(());
    }
    let letter = handlers::team_copy(ctx, case, others, email, relayed, &done);
    queue_for_handlers(conn, ctx, &case.id, "team-copy", letter)
}

/// What became of a handler's text meant for the reporter.
enum Relay {
    Sent,
    /// Not sent, and why (one line for the handler).
    Refused(String),
}

/// Relays a handler's text to the reporter, in the reporter's thread.
fn relay(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    email: &str,
    text: &str,
    files: &[crate::message::Attachment],
    source: Option<&str>,
) -> Result<Relay, CaseError> {
    let sent = match unusable_reporter(ctx, case) {
        Some(why) => Err(why),
        None => match leak(conn, case, text, files)? {
            Some(why) => Err(why),
            None => {
                let thread = reporter_thread(conn, case)?;
                let letter = outside::relay(ctx, case, thread, email, text, files);
                send_to_reporter(conn, ctx, letter)?
            }
        },
    };
    let out = match sent {
        Ok(out) => out,
        Err(why) => {
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

/// The leak guard: why `text` (and its text attachments) must not go to
/// the reporter, if it must not: it repeats lines of the internal mail
/// about the case, however they were quoted (`>` lines are cut before
/// this; Outlook blocks, HTML quotes and pasted text are not always
/// recognisable).
fn leak(
    conn: &Connection,
    case: &CaseRow,
    text: &str,
    files: &[crate::message::Attachment],
) -> Result<Option<String>, StoreError> {
    let internal = internal_lines(conn, case)?;
    let mut leaked = leaked_lines(text, &internal);
    for f in files.iter().filter(|f| f.content_type.starts_with("text/")) {
        for l in leaked_lines(&String::from_utf8_lossy(&f.bytes), &internal) {
            if !leaked.contains(&l) {
                leaked.push(l);
            }
        }
    }
    Ok((!leaked.is_empty()).then(|| {
        format!(
            "it contains {} line(s) of internal mail about this case: {}",
            leaked.len(),
            leaked
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }))
}

/// Why mail must not go to the case's reporter address, if it must not:
/// there is none, or it is one of the project's own (cases opened before
/// that rule existed may name one, issue 7).
fn unusable_reporter(ctx: &Context<'_>, case: &CaseRow) -> Option<String> {
    match case.reporter.as_deref() {
        None => Some("the case has no usable reporter address".to_string()),
        Some(r) => ctx
            .project_address(r)
            .map(|what| format!("the reporter address {r} is {what}")),
    }
}

/// Queues a letter to the case's reporter. `Ok(Err(why))` when it could
/// not be put together; a broken template is an error. The caller has
/// checked [`unusable_reporter`].
fn send_to_reporter(
    conn: &Connection,
    ctx: &Context<'_>,
    letter: Result<Letter, LetterError>,
) -> Result<Result<Letter, String>, CaseError> {
    match letter {
        Ok(letter) => {
            queue_outgoing(conn, ctx, &letter)?;
            Ok(Ok(letter))
        }
        Err(LetterError::Template(e)) => Err(e.into()),
        Err(LetterError::Compose(e)) => Ok(Err(e.to_string())),
    }
}

/// Outgoing kinds that are internal: only handlers ever see them.
const INTERNAL_KINDS: &[&str] = &[
    "notification",
    "note",
    "team-copy",
    "command-reply",
    "reminder",
    "alert",
    "digest",
];

/// The normalised, non-trivial lines of the internal mail about `case`
/// (notification, notes, confirmations, reminders, alerts), without the
/// reporter's own words (which the notification quotes and which may go
/// back to them).
fn internal_lines(
    conn: &Connection,
    case: &CaseRow,
) -> Result<std::collections::HashSet<String>, StoreError> {
    Ok(case_lines(conn, case)?.internal)
}

/// The lines of a case's mail, by whose words they are.
struct CaseLines {
    /// Leak keys of internal mail, without the reporter's words.
    internal: std::collections::HashSet<String>,
    /// Every non-blank line the reporter wrote, whitespace collapsed.
    reporters_all: std::collections::HashSet<String>,
}

fn case_lines(conn: &Connection, case: &CaseRow) -> Result<CaseLines, StoreError> {
    use std::collections::HashSet;
    let mut internal = HashSet::new();
    let mut reporters_all = HashSet::new();
    for m in store::messages_of_case(conn, &case.id)? {
        let from_reporter = m.direction == "in"
            && (m.kind == "report" || m.from.is_some() && m.from == case.reporter);
        let internal_mail = m.direction == "out" && INTERNAL_KINDS.contains(&m.kind.as_str());
        if !from_reporter && !internal_mail {
            continue;
        }
        let text = stored_text(conn, &m)?;
        if from_reporter {
            reporters_all.extend(text.lines().filter_map(collapsed));
        } else {
            internal.extend(text.lines().filter_map(leak_key));
        }
    }
    internal.retain(|l| !reporters_all.contains(l));
    Ok(CaseLines {
        internal,
        reporters_all,
    })
}

/// The readable text of a stored message (read within the parser's
/// window; never re-parsed when it failed to parse on arrival).
pub fn stored_text(conn: &Connection, m: &store::MessageRow) -> Result<String, StoreError> {
    let max = crate::message::MAX_PARSE_BYTES;
    Ok(match store::message_prefix(conn, m.id, max)? {
        Some((_, raw, _)) => crate::message::reparse(&raw, m.parsed_ok)
            .text_body
            .unwrap_or_default(),
        None => String::new(),
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

/// A line as the leak guard compares it: quote markers and surrounding
/// space removed, inner whitespace collapsed; `None` for lines too short
/// to tell anything ("Thanks,", "--", a date).
fn leak_key(line: &str) -> Option<String> {
    collapsed(line).filter(|t| t.chars().count() >= 20)
}

/// The lines of `text` that internal mail said too.
fn leaked_lines(text: &str, internal: &std::collections::HashSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in text.lines().filter_map(leak_key) {
        if internal.contains(&key) && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// Records an answer to the reporter: the first one is the response the
/// policy promises (meets the deadline, stops its reminders). `what` names
/// the event for the first answer and for later ones. Returns whether this
/// was the first.
#[allow(clippy::too_many_arguments)]
pub fn record_response(
    conn: &Connection,
    now: DateTime<Utc>,
    case_id: &str,
    actor: &str,
    how: &str,
    what: [&str; 2],
    detail: &str,
    source: Option<&str>,
) -> Result<bool, StoreError> {
    let first = store::mark_responded(conn, case_id, now)?;
    deadlines::meet(conn, case_id, Kind::Respond, now, how)?;
    let what = if first { what[0] } else { what[1] };
    store::add_event(conn, case_id, now, actor, what, Some(detail), source)?;
    Ok(first)
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
        let theirs = m.direction == "in"
            && matches!(m.kind.as_str(), "report" | "follow-up")
            && (m.from.as_deref() == reporter || m.kind == "report");
        let ours = m.direction == "out" && matches!(m.kind.as_str(), "ack" | "relay");
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
    if others.is_empty() {
        return Ok(());
    }
    let letter = handlers::note(ctx, case, others, author, text);
    queue_for_handlers(conn, ctx, &case.id, "note", letter)
}

/// Tells the handler, in the case's thread, exactly what their mail did:
/// the text relayed (verbatim), the note recorded, each command's result,
/// or why nothing was done.
fn confirm(
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
    let letter = handlers::confirmation(ctx, case, email, answers, results, outcome, &state);
    queue_for_handlers(conn, ctx, &case.id, "command-reply", letter)
}

/// Moves a case to `to` if the process allows it, recording the event.
pub fn move_state(
    conn: &Connection,
    now: DateTime<Utc>,
    case_id: &str,
    to: State,
    actor: &str,
    source: Option<&str>,
) -> Result<Result<String, String>, StoreError> {
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(Err(format!("no case {case_id}")));
    };
    let from = case.state;
    if from == to {
        return Ok(Ok(format!("already {}", to.as_str())));
    }
    if !from.can_move_to(to) {
        return Ok(Err(format!(
            "cannot move from {} to {}; from {} the case can go to: {}",
            from.as_str(),
            to.as_str(),
            from.as_str(),
            crate::model::names(from.next())
        )));
    }
    store::set_case_field(conn, case_id, CaseField::State, to.as_str())?;
    store::add_event(
        conn,
        case_id,
        now,
        actor,
        "state changed",
        Some(&format!("{} → {}", from.as_str(), to.as_str())),
        source,
    )?;
    // Deadlines follow the state: a case that needs no more work stops
    // every reminder and escalation (a rejected case once sent one handler
    // 69 mails in 18 minutes); the fix deadline is met when the fix is
    // ready, not when the case is closed.
    match to {
        State::Rejected | State::Duplicate | State::Announced | State::Closed => {
            let how = format!("waived: case {}", to.as_str());
            for kind in [
                Kind::Acknowledge,
                Kind::Respond,
                Kind::Fix,
                Kind::Embargo,
                Kind::AckQueued,
            ] {
                deadlines::meet(conn, case_id, kind, now, &how)?;
            }
        }
        State::FixReady => {
            deadlines::meet(conn, case_id, Kind::Fix, now, "met: fix ready")?;
        }
        _ => {}
    }
    Ok(Ok(format!("state {} → {}", from.as_str(), to.as_str())))
}

/// After the acknowledgement went out: new → acknowledged, then triage
/// when a primary handler is already set.
pub fn acknowledged(
    conn: &Connection,
    now: DateTime<Utc>,
    case_id: &str,
) -> Result<(), StoreError> {
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(());
    };
    if case.state == State::New {
        let _ = move_state(conn, now, case_id, State::Acknowledged, "secintake", None)?;
        if case.primary_handler.is_some() {
            let _ = move_state(conn, now, case_id, State::Triage, "secintake", None)?;
        }
    }
    Ok(())
}

fn set_primary(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    email: &str,
    actor: &str,
    source: Option<&str>,
) -> Result<Result<String, String>, StoreError> {
    store::set_case_field(conn, case_id, CaseField::PrimaryHandler, email)?;
    store::add_event(
        conn,
        case_id,
        ctx.now,
        actor,
        "primary handler set",
        Some(email),
        source,
    )?;
    let state = store::case(conn, case_id)?.map(|c| c.state);
    let mut done = format!(
        "primary handler is now {} <{email}>",
        handler_name(ctx.cfg, email)
    );
    if matches!(state, Some(State::New | State::Acknowledged)) {
        if let Ok(m) = move_state(conn, ctx.now, case_id, State::Triage, actor, source)? {
            done.push_str(&format!("; {m}"));
        }
    }
    Ok(Ok(done))
}

/// Runs one command on a case. The outer error is a storage failure; the
/// inner one is the handler's mistake, to be replied.
pub fn apply(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    actor: &str,
    cmd: &Command,
    text: &str,
    source: Option<&str>,
) -> Result<Result<String, String>, CaseError> {
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(Err(format!("no case {case_id}")));
    };
    let field = |f: CaseField, v: &str, what: &str| -> Result<Result<String, String>, CaseError> {
        store::set_case_field(conn, case_id, f, v)?;
        store::add_event(conn, case_id, ctx.now, actor, what, Some(v), source)?;
        Ok(Ok(format!("{what}: {v}")))
    };
    let result = match cmd {
        Command::Take if !is_handler(ctx, actor) => Err(format!(
            "only a handler can take a case; {actor} is not one of [[handlers]]: use /assign <handler>"
        )),
        Command::Take => set_primary(conn, ctx, case_id, actor, actor, source)?,
        Command::Assign(who) => {
            let w = who.to_ascii_lowercase();
            let found = ctx
                .cfg
                .handlers
                .iter()
                .find(|h| h.email == w || h.name.to_ascii_lowercase() == w);
            match found {
                Some(h) => set_primary(conn, ctx, case_id, &h.email.clone(), actor, source)?,
                None => Err(format!(
                    "unknown handler {who:?}; handlers are: {}",
                    ctx.cfg
                        .handlers
                        .iter()
                        .map(|h| format!("{} <{}>", h.name, h.email))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        Command::State(to) => match to {
            State::Announced => {
                Err("use /announce (with the advisory text below it) to announce".into())
            }
            State::Duplicate => Err("use /duplicate <case id> to mark a duplicate".into()),
            State::Rejected => Err("use /reject <reason> to reject".into()),
            State::Triage if case.primary_handler.is_none() && is_handler(ctx, actor) => {
                set_primary(conn, ctx, case_id, actor, actor, source)?
            }
            State::Triage if case.primary_handler.is_none() => Err(
                "triage needs a primary handler: assign one first (/assign <handler>)".into(),
            ),
            to => move_state(conn, ctx.now, case_id, *to, actor, source)?,
        },
        Command::Severity(v) => field(CaseField::Severity, v, "severity set")?,
        Command::Affected(v) => field(CaseField::Affected, v, "affected versions set")?,
        Command::FixedIn(v) => field(CaseField::FixedIn, v, "fixed in")?,
        Command::Cve(v) => field(CaseField::Cve, v, "CVE assigned")?,
        Command::Audit(v) => {
            store::add_event(conn, case_id, ctx.now, actor, "audit note", Some(v), source)?;
            Ok(format!("audit note recorded: {v}"))
        }
        Command::Duplicate(other) | Command::Merge(other) => {
            if other == case_id {
                Err("a case cannot duplicate itself".into())
            } else if store::case(conn, other)?.is_none() {
                Err(format!("no case {other}; see `secintake cases list`"))
            } else {
                match move_state(conn, ctx.now, case_id, State::Duplicate, actor, source)? {
                    Ok(m) => {
                        store::set_case_field(conn, case_id, CaseField::DuplicateOf, other)?;
                        store::add_event(
                            conn,
                            case_id,
                            ctx.now,
                            actor,
                            "duplicate of",
                            Some(other),
                            source,
                        )?;
                        if matches!(cmd, Command::Merge(_)) {
                            // The case it names learns of its co-finder.
                            let finder = case.reporter.as_deref().unwrap_or("no address");
                            store::add_event(
                                conn,
                                other,
                                ctx.now,
                                actor,
                                "co-finder merged",
                                Some(&format!("{case_id}, reported by {finder}")),
                                source,
                            )?;
                        }
                        Ok(format!("{m}; duplicate of {other}"))
                    }
                    Err(e) => Err(e),
                }
            }
        }
        Command::Reject(reason) => {
            match move_state(conn, ctx.now, case_id, State::Rejected, actor, source)? {
                Ok(m) => {
                    store::add_event(
                        conn,
                        case_id,
                        ctx.now,
                        actor,
                        "rejected",
                        Some(reason),
                        source,
                    )?;
                    Ok(format!("{m}; reason recorded"))
                }
                Err(e) => Err(e),
            }
        }
        Command::Responded => {
            if record_response(
                conn,
                ctx.now,
                case_id,
                actor,
                &format!("marked by {actor}"),
                ["response recorded", "response recorded again"],
                "sent another way (/responded)",
                source,
            )? {
                Ok("response recorded; response reminders stop".into())
            } else {
                Ok("the response was already recorded".into())
            }
        }
        Command::Close => move_state(conn, ctx.now, case_id, State::Closed, actor, source)?,
        Command::Deadline { due, .. } => {
            set_deadline(conn, ctx, case_id, Kind::Fix, *due, actor, source)?
        }
        Command::Embargo(due) => {
            set_deadline(conn, ctx, case_id, Kind::Embargo, *due, actor, source)?
        }
        Command::Announce { dry_run, now } => {
            announce(conn, ctx, &case, actor, text, (*dry_run, *now), source)?
        }
        Command::Show => Ok(case_summary(conn, &case)?),
        Command::Credit(who) => {
            let who = if who.eq_ignore_ascii_case("none") {
                "none"
            } else {
                who.as_str()
            };
            store::set_fact(conn, case_id, "credit", who)?;
            store::add_event(conn, case_id, ctx.now, actor, "credit set", Some(who), source)?;
            Ok(if who == "none" {
                "credit: none (the advisory names nobody)".to_string()
            } else {
                format!("credit: {who}")
            })
        }
        Command::Summary(text) => {
            store::set_fact(conn, case_id, "summary", text)?;
            store::add_event(conn, case_id, ctx.now, actor, "summary set", Some(text), source)?;
            Ok("summary set: /announce with no text drafts the advisory from it".to_string())
        }
        Command::Quiet(on) => {
            store::set_quiet(conn, case_id, *on)?;
            let what = if *on {
                "reporter updates off"
            } else {
                "reporter updates on"
            };
            store::add_event(conn, case_id, ctx.now, actor, what, None, source)?;
            Ok(if *on {
                "the reporter gets no updates on this case (/quiet off turns them on)".into()
            } else {
                "the reporter gets updates on this case again".into()
            })
        }
    };
    // Tell the reporter what changed for them (issue 8): only on a real
    // change, so a repeated command does not mail them twice.
    let Ok(done) = result else {
        return Ok(result);
    };
    let after = store::case(conn, case_id)?;
    let update = after.as_ref().and_then(|after| {
        let moved = after.state != case.state;
        let event = match cmd {
            Command::State(State::Confirmed) if moved => "confirmed",
            Command::State(State::FixReady) if moved => "fix-ready",
            Command::State(State::Closed) | Command::Close if moved => "closed",
            Command::Reject(_) if moved => "rejected",
            Command::Duplicate(_) if moved => "duplicate",
            Command::Merge(_) if moved => "merged",
            Command::Embargo(_) => "scheduled",
            Command::Announce { dry_run: false, .. } if moved => "announced",
            Command::Cve(_) if after.cve != case.cve => "cve",
            _ => return None,
        };
        Some((after, event))
    });
    let Some((after, event)) = update else {
        return Ok(Ok(done));
    };
    let reason = match cmd {
        Command::Reject(r) => r.as_str(),
        _ => "",
    };
    // The advisory as it went to the list (drafted or written).
    let advisory = if event == "announced" {
        match store::messages_of_case(conn, case_id)?
            .iter()
            .rev()
            .find(|m| m.direction == "out" && m.kind == "announce")
        {
            Some(m) => stored_text(conn, m)?,
            None => String::new(),
        }
    } else {
        String::new()
    };
    let told = reporter_update(conn, ctx, after, event, reason, &advisory, actor, source)?;
    Ok(Ok(format!("{done}; {told}")))
}

/// The case's facts for `/show`: state, people, versions, CVE, deadlines
/// and the last events.
fn case_summary(conn: &Connection, case: &CaseRow) -> Result<String, StoreError> {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = format!(
        "the facts of {}:\n    state {}; primary {}; severity {}\n    reporter {}\n    \
         affected {}; fixed in {}; CVE {}\n",
        case.id,
        case.state,
        or(&case.primary_handler),
        or(&case.severity),
        or(&case.reporter),
        or(&case.affected),
        or(&case.fixed_in),
        or(&case.cve)
    );
    for key in ["credit", "summary"] {
        if let Some(v) = store::fact(conn, &case.id, key)? {
            out.push_str(&format!("    {key} {v}\n"));
        }
    }
    for d in deadlines::of_case(conn, &case.id)? {
        out.push_str(&format!(
            "    deadline {} {}{}\n",
            d.kind,
            d.due_at,
            d.met_how
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        ));
    }
    let events = store::events_of_case(conn, &case.id)?;
    for e in events.iter().rev().take(8).rev() {
        out.push_str(&format!("    {} {} {}\n", e.at, e.actor, e.what));
    }
    Ok(out)
}

/// Tells the reporter, in their thread, that their case was `event`
/// (template `update.txt`); returns what happened, for the confirmation.
/// Fail closed: nothing goes out for a `/quiet` case, with `[reporter]
/// updates = false`, or without a reporter address that is not the
/// project's own. The first word to the reporter after the
/// acknowledgement counts as the response the policy promises.
#[allow(clippy::too_many_arguments)]
fn reporter_update(
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
        Some(why) => Err(why),
        None => {
            let date_of = |kind: Kind| -> Result<String, StoreError> {
                Ok(deadlines::of_case(conn, &case.id)?
                    .into_iter()
                    .find(|d| d.kind == kind.as_str())
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
            let thread = reporter_thread(conn, case)?;
            send_to_reporter(conn, ctx, outside::update(ctx, case, thread, update))?
        }
    };
    let out = match sent {
        Ok(out) => out,
        Err(why) => {
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

/// Sets (or moves) a fix or embargo deadline, recording who did it.
pub fn set_deadline(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    kind: Kind,
    due: DateTime<Utc>,
    actor: &str,
    source: Option<&str>,
) -> Result<Result<String, String>, CaseError> {
    if due < ctx.now {
        return Ok(Err(format!(
            "{} is in the past (it is now {}): give a later date",
            fmt_ts(due),
            fmt_ts(ctx.now)
        )));
    }
    deadlines::set(conn, &ctx.cfg.sla, case_id, kind, due, ctx.now)?;
    store::add_event(
        conn,
        case_id,
        ctx.now,
        actor,
        &format!("{} deadline set", kind.as_str()),
        Some(&fmt_ts(due)),
        source,
    )?;
    Ok(Ok(format!(
        "{} deadline set to {}",
        kind.as_str(),
        fmt_ts(due)
    )))
}

/// `/announce [dry-run]`: the text below the command is the advisory.
fn announce(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    actor: &str,
    text: &str,
    (dry_run, now): (bool, bool),
    source: Option<&str>,
) -> Result<Result<String, String>, CaseError> {
    let text = strip_quote(text);
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    // Without text, the advisory is drafted from the case's facts and its
    // /summary; with text, the facts are appended to it.
    let summary = store::fact(conn, &case.id, "summary")?;
    let (first, summary) = match lines.next() {
        Some(first) => (
            compose::clean_subject(first.trim()),
            lines.collect::<Vec<_>>().join("\n").trim().to_owned(),
        ),
        None => match summary {
            Some(summary) => (
                compose::clean_subject(case.subject.as_deref().unwrap_or(&case.id)),
                summary,
            ),
            None => {
                return Ok(Err(
                    "no advisory: write it below the /announce line (its first line becomes \
                     the subject), or set /summary <text> first to have it drafted"
                        .into(),
                ))
            }
        },
    };
    let credit = store::fact(conn, &case.id, "credit")?.filter(|c| c != "none");
    let body = outside::advisory(ctx, case, &summary, credit.as_deref())?;
    if let Some(line) = quotes_the_report(conn, case, &body)? {
        return Ok(Err(format!(
            "the advisory repeats the unfixed report (\"{}…\"): nothing was sent; \
             write the advisory above any quoted text",
            line.chars().take(40).collect::<String>()
        )));
    }
    let state = case.state;
    let to = if dry_run {
        all_handlers(ctx)
    } else {
        if state != State::FixReady {
            return Ok(Err(format!(
                "/announce needs state fix-ready; {} is {} (use /announce dry-run to preview)",
                case.id,
                state.as_str()
            )));
        }
        // The embargo agreed with the reporter holds unless the handler
        // says otherwise: /announce once went out two weeks early.
        let embargo = deadlines::of_case(conn, &case.id)?
            .into_iter()
            .find(|d| d.kind == Kind::Embargo.as_str() && d.met_at.is_none())
            .filter(|d| crate::clock::parse_ts(&d.due_at).is_some_and(|t| t > ctx.now));
        if let (Some(e), false) = (embargo, now) {
            return Ok(Err(format!(
                "the embargo lasts until {}: announce after it, or send /announce now to \
                 publish before it; nothing was sent",
                e.due_at
            )));
        }
        match &ctx.cfg.announce.list {
            Some(l) => vec![l.clone()],
            None => {
                return Ok(Err(
                    "announce.list is not configured; nothing was sent".into()
                ))
            }
        }
    };
    let letter = match outside::announcement(ctx, case, to.clone(), dry_run, &first, body) {
        Ok(letter) => letter,
        Err(LetterError::Template(e)) => return Err(e.into()),
        Err(LetterError::Compose(e)) => {
            return Ok(Err(format!("cannot build the announcement: {e}")))
        }
    };
    queue_outgoing(conn, ctx, &letter)?;
    let subject = letter.out.subject;
    if dry_run {
        store::add_event(
            conn,
            &case.id,
            ctx.now,
            actor,
            "announcement dry run",
            Some(&subject),
            source,
        )?;
        return Ok(Ok(format!(
            "dry run: \"{subject}\" sent to the handlers only"
        )));
    }
    let moved = move_state(conn, ctx.now, &case.id, State::Announced, actor, source)?;
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        actor,
        "announced",
        Some(&format!("\"{subject}\" to {}", to.join(", "))),
        source,
    )?;
    deadlines::meet(conn, &case.id, Kind::Embargo, ctx.now, "announced")?;
    Ok(Ok(format!(
        "\"{subject}\" queued to {}; {}",
        to.join(", "),
        moved.unwrap_or_else(|e| e)
    )))
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

/// A line of the case's report (40 characters or more) that `text`
/// repeats: a last guard against publishing the report with an advisory.
fn quotes_the_report(
    conn: &Connection,
    case: &CaseRow,
    text: &str,
) -> Result<Option<String>, StoreError> {
    for m in store::messages_of_case(conn, &case.id)? {
        if m.kind != "report" {
            continue;
        }
        let report = stored_text(conn, &m)?;
        for line in report
            .lines()
            .map(str::trim)
            .filter(|l| l.chars().count() >= 40)
        {
            if text.contains(line) {
                return Ok(Some(line.to_owned()));
            }
        }
    }
    Ok(None)
}

/// Whether `p` was addressed to the comment address (plus-address or alias).
pub fn to_comment_address(ctx: &Context<'_>, p: &ParsedMessage) -> bool {
    let Some(comment) = &ctx.cfg.mailbox.comment_address else {
        return false;
    };
    p.delivered_to
        .iter()
        .chain(p.x_original_to.iter())
        .map(String::as_str)
        .chain(p.to.iter().chain(p.cc.iter()).map(|a| a.email.as_str()))
        .any(|a| a.eq_ignore_ascii_case(comment))
}

#[cfg(test)]
mod tests {

    #[test]
    fn credit_lines() {
        assert_eq!(
            credit_line("Thanks!\nCredit: Jane Doe (ACME)\n").as_deref(),
            Some("Jane Doe (ACME)")
        );
        assert_eq!(credit_line("credit : NONE").as_deref(), Some("none"));
        assert_eq!(credit_line("No credit line here.\nCredit:"), None);
    }

    #[test]
    fn the_leak_guard_matches_lines_however_they_were_quoted() {
        let internal: std::collections::HashSet<String> = [
            "Primary handler: Alice <alice@example.org>",
            "Respond by 2026-12-04T10:00:00Z (the policy promises 72 hours)",
        ]
        .iter()
        .filter_map(|l| leak_key(l))
        .collect();
        let reply = "We are looking into it.\n\
                     >   Primary handler:   Alice <alice@example.org>\n\
                     | Respond by 2026-12-04T10:00:00Z (the policy promises 72 hours)\n\
                     Thanks,\n";
        assert_eq!(
            leaked_lines(reply, &internal),
            vec![
                "Primary handler: Alice <alice@example.org>".to_string(),
                "Respond by 2026-12-04T10:00:00Z (the policy promises 72 hours)".to_string()
            ]
        );
        assert!(leaked_lines("We are looking into it.\nThanks,", &internal).is_empty());
        // Short lines tell nothing and are never compared.
        assert_eq!(leak_key("Thanks,"), None);
    }

    use super::*;
}
