//! What a handler's mail is: commands, an internal note, a direct answer
//! to the reporter, or text to relay; and the confirmation of what it did.

use super::apply::apply;
use super::leak::case_lines;
use super::notify::{confirm, note, team_copy};
use super::relay::{relay, Relay};
use super::state::record_response;
use crate::commands::{self, Command};
use crate::context::{CaseError, Context};
use crate::mail::message::ParsedMessage;
use crate::mail::quote::{inline_answer, layout, strip_quote, Layout};
use crate::model::MessageKind;
use crate::outgoing::handlers::{CommandResult, Outcome};
use crate::store::{self, CaseRow, StoreError};
use rusqlite::Connection;

/// Whether `p` answers mail that only handlers get (notes, reminders,
/// command replies, alerts, digests).
fn replies_to_internal(conn: &Connection, p: &ParsedMessage) -> Result<bool, StoreError> {
    let Some(parent) = p.in_reply_to.first() else {
        return Ok(false);
    };
    // Not a notification: a reply to one is a handler answering the
    // reporter (relayed), the one internal letter meant to be answered so.
    Ok(store::kind_of_message_id(conn, parent)?
        .is_some_and(|k| k.is_internal() && k != MessageKind::Notification))
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
    // An encrypted reply is read from what it decrypted to.
    let raw = p.plaintext.as_deref().unwrap_or(raw);
    let body = crate::mail::message::reply_text(raw)
        .or_else(|| p.text_body.clone())
        .unwrap_or_default();
    let parsed = commands::parse(&body);
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(());
    };
    // A handler may attach the reporter's key, so that answers can go
    // encrypted.
    super::keys::adopt(conn, ctx, &case, p, email, true)?;
    let (text, interleaved) = own_text(conn, ctx.cfg, &case, &parsed.rest)?;
    if let Some(why) = misplaced_commands(&text) {
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
    let (results, announced) = run_commands(conn, ctx, case_id, email, &parsed, mid)?;
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(());
    };
    let audience = audience(conn, ctx, &case, p, email, to_comment)?;
    let outcome = match audience {
        // The text below /announce was the advisory; it went where
        // /announce sends it and nowhere else.
        _ if announced => Outcome::CommandsOnly,
        Audience::Internal(_) if text.is_empty() => Outcome::CommandsOnly,
        Audience::Internal(why) => {
            note(conn, ctx, &case, email, &text, mid)?;
            Outcome::Note { why, text }
        }
        Audience::Direct => {
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
        }
        Audience::Relay if text.is_empty() => Outcome::CommandsOnly,
        Audience::Relay => {
            let cleartext = parsed
                .commands
                .iter()
                .any(|(_, c)| matches!(c, Ok(Command::Cleartext)));
            relay_text(conn, ctx, &case, email, (text, cleartext), raw, mid)?
        }
    };
    let outcome = unread(outcome, interleaved, p);
    if results.is_empty() && matches!(outcome, Outcome::CommandsOnly) {
        let why = "the mail had no commands and no new text (only quoted text).".to_string();
        return confirm(conn, ctx, &case, email, p, &[], &Outcome::NothingDone(why));
    }
    confirm(conn, ctx, &case, email, p, &results, &outcome)?;
    team_copy(conn, ctx, &case, email, &results, &outcome)
}

/// The handler's own words in `rest` (the mail without its command
/// lines), by how they sit around the quote; and whether they were
/// written between quoted lines.
fn own_text(
    conn: &Connection,
    cfg: &crate::config::Config,
    case: &CaseRow,
    rest: &str,
) -> Result<(String, bool), StoreError> {
    let layout = layout(rest);
    let interleaved = layout == Layout::Interleaved;
    let text = match layout {
        Layout::Bottom(below) => below,
        Layout::Top => strip_quote(rest),
        // Kept only when every quoted line is the reporter's own words.
        Layout::Interleaved => {
            inline_answer(rest, &case_lines(conn, cfg, case)?.reporters_all).unwrap_or_default()
        }
    };
    Ok((text, interleaved))
}

/// Why nothing may run, if command lines come after other text (rule 1).
fn misplaced_commands(text: &str) -> Option<String> {
    let misplaced: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| commands::is_command_line(l))
        .collect();
    (!misplaced.is_empty()).then(|| {
        format!(
            "command lines come after other text ({}). Commands go at the very top of \
             the mail, one per line, before any text; send it again that way. Nothing \
             ran and nothing was sent to the reporter.",
            misplaced.join(", ")
        )
    })
}

/// Runs the commands at the top of the mail, in order; returns each
/// line's result, and whether one was `/announce` (rule 2).
fn run_commands(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    email: &str,
    parsed: &commands::Parsed,
    mid: Option<&str>,
) -> Result<(Vec<CommandResult>, bool), CaseError> {
    let mut results = Vec::new();
    let mut announced = false;
    for (line, c) in &parsed.commands {
        let result = match c {
            Err(e) => Err(e.clone()),
            Ok(cmd) => {
                if matches!(cmd, Command::Announce { .. }) {
                    announced = true;
                }
                apply(conn, ctx, case_id, email, cmd, &parsed.rest, mid)?.into_result()
            }
        };
        results.push((line.clone(), result));
    }
    Ok((results, announced))
}

/// Whom the text of a handler's mail is meant for (rules 3-5).
enum Audience {
    /// The handlers only: a note, and why.
    Internal(String),
    /// The reporter, answered directly with the security address in Cc.
    Direct,
    /// The reporter, through the relay.
    Relay,
}

/// See [`Audience`]: by the addresses of `p` and what it answers.
fn audience(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    p: &ParsedMessage,
    email: &str,
    to_comment: bool,
) -> Result<Audience, StoreError> {
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
    Ok(match internal_why {
        Some(why) => Audience::Internal(why),
        None if direct => Audience::Direct,
        None => Audience::Relay,
    })
}

/// Relays `text`, with the mail's attachments, to the reporter (rule 5).
fn relay_text(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    email: &str,
    (text, cleartext): (String, bool),
    raw: &[u8],
    mid: Option<&str>,
) -> Result<Outcome, CaseError> {
    Ok(match crate::mail::message::attachments(raw) {
        // Never the text without the files it may refer to.
        Err(why) => Outcome::NothingDone(format!(
            "your attachments cannot go to the reporter ({why}), so nothing was sent: \
             send fewer or smaller files, or a link"
        )),
        Ok(files) => match relay(conn, ctx, case, email, (&text, cleartext), &files, mid)? {
            Relay::Sent => Outcome::Relayed {
                text,
                files: files
                    .iter()
                    .map(|f| format!("{} ({}, {} bytes)", f.name, f.content_type, f.bytes.len()))
                    .collect(),
            },
            Relay::Refused(why) => Outcome::NothingDone(format!(
                "your text was not sent to the reporter: {why}. Write the answer without \
                 quoting internal mail and send it again."
            )),
        },
    })
}

/// Nothing done instead of "commands only" when the handler's words could
/// not be read: written between quotes of other mail, or encrypted.
fn unread(outcome: Outcome, interleaved: bool, p: &ParsedMessage) -> Outcome {
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
    match (outcome, unread) {
        (Outcome::CommandsOnly, Some(why)) => Outcome::NothingDone(why),
        (outcome, _) => outcome,
    }
}
