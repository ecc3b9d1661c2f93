//! Letters that leave the team: to the reporter (the acknowledgement, a
//! handler's relayed answer, updates on their case) and the advisory to
//! the announce list. Whether one may go at all (a usable reporter
//! address, the leak guard, `/quiet`, the embargo) is decided before a
//! builder here is called.

use super::{build, handler_name, new_id, Letter, LetterError, Parts, Thread, Voice};
use crate::context::Context;
use crate::deadlines::thread_root;
use crate::mail::compose;
use crate::mail::message::{Attachment, ParsedMessage};
use crate::model::MessageKind;
use crate::store::CaseRow;
use crate::templates::{human_duration, TemplateError};
use chrono::{DateTime, Utc};

/// The automatic acknowledgement of a new report (`acknowledgement.txt`),
/// to `reply`, in the report's own thread.
pub fn acknowledgement(
    ctx: &Context<'_>,
    case_id: &str,
    p: &ParsedMessage,
    reply: &str,
    respond_due: DateTime<Utc>,
) -> Result<Letter, LetterError> {
    let cfg = ctx.cfg;
    let body = ctx.templates.render(
        "acknowledgement.txt",
        minijinja::context! {
            project => cfg.mailbox.project,
            address => cfg.mailbox.address,
            policy_url => cfg.mailbox.policy_url,
            case_id => case_id,
            respond_within => human_duration(cfg.sla.respond),
            acknowledge_within => human_duration(cfg.sla.acknowledge),
            respond_due_at => respond_due.format("%Y-%m-%d %H:%M UTC").to_string(),
            encrypted => p.encrypted,
        },
    )?;
    let mut references: Vec<String> = p.references.iter().rev().take(10).rev().cloned().collect();
    if let Some(mid) = &p.message_id {
        if !references.contains(mid) {
            references.push(mid.clone());
        }
    }
    let mut letter = build(
        ctx,
        Parts {
            purpose: MessageKind::Ack,
            case_id: Some(case_id),
            voice: Voice::TeamReply,
            to: vec![reply.to_owned()],
            subject: compose::reply_subject(p.subject.as_deref(), case_id),
            body,
            message_id: new_id(ctx, "ack", Some(case_id)),
            thread: Thread {
                in_reply_to: p.message_id.clone(),
                references,
            },
            attach: None,
            files: &[],
        },
    )?;
    // Signed, never encrypted: it must reach the reporter whatever their
    // client, and it says nothing of the report.
    if let Some(pgp) = cfg.pgp.as_ref().filter(|p| p.sign_acknowledgements) {
        letter.out.raw = crate::mail::seal::sign(&letter.out.raw, &pgp.team)
            .map_err(compose::ComposeError::Seal)?;
    }
    Ok(letter)
}

/// Mail to the case's reporter in `thread` (their latest message and the
/// conversation so far), under the case's subject (`workflow::relay`
/// shows the real subject of an encrypted report only in sealed mail).
fn to_reporter<'a>(
    ctx: &Context<'_>,
    case: &'a CaseRow,
    purpose: MessageKind,
    voice: Voice<'a>,
    body: String,
    thread: Thread,
    files: &'a [Attachment],
) -> Result<Letter, LetterError> {
    Ok(build(
        ctx,
        Parts {
            purpose,
            case_id: Some(&case.id),
            voice,
            to: vec![case.reporter.clone().unwrap_or_default()],
            subject: compose::reply_subject(case.subject.as_deref(), &case.id),
            body,
            message_id: new_id(ctx, purpose.as_str(), Some(&case.id)),
            thread,
            attach: None,
            files,
        },
    )?)
}

/// A handler's answer relayed to the reporter (`relay.txt`), from the
/// security address under the handler's name, with their files.
pub fn relay(
    ctx: &Context<'_>,
    case: &CaseRow,
    thread: Thread,
    handler: &str,
    text: &str,
    files: &[Attachment],
) -> Result<Letter, LetterError> {
    let name = handler_name(ctx.cfg, handler);
    let body = ctx.templates.render(
        "relay.txt",
        minijinja::context! {
            text => text, name => name, case_id => case.id,
            project => ctx.cfg.mailbox.project, address => ctx.cfg.mailbox.address,
        },
    )?;
    to_reporter(
        ctx,
        case,
        MessageKind::Relay,
        Voice::Handler(&name),
        body,
        thread,
        files,
    )
}

/// What changed for the reporter, for [`update`].
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// One of [`crate::templates::UPDATE_EVENTS`].
    pub event: &'a str,
    /// Why the report was rejected ("" otherwise).
    pub reason: &'a str,
    /// The advisory as it went to the list, when announced ("" otherwise).
    pub advisory: &'a str,
    /// The fix deadline's date, "" when none.
    pub fix_date: &'a str,
    /// The embargo's date, "" when none.
    pub announce_date: &'a str,
}

/// Tells the reporter, in their thread, that their case was
/// `update.event` (`update.txt`).
pub fn update(
    ctx: &Context<'_>,
    case: &CaseRow,
    thread: Thread,
    u: Update<'_>,
) -> Result<Letter, LetterError> {
    let body = ctx.templates.render(
        "update.txt",
        minijinja::context! {
            project => ctx.cfg.mailbox.project, address => ctx.cfg.mailbox.address,
            policy_url => ctx.cfg.mailbox.policy_url, case_id => case.id, event => u.event,
            reason => u.reason, cve => case.cve.as_deref().unwrap_or(""),
            fix_date => u.fix_date, announce_date => u.announce_date,
            advisory => u.advisory,
        },
    )?;
    to_reporter(
        ctx,
        case,
        MessageKind::Update,
        Voice::TeamNotice,
        body,
        thread,
        &[],
    )
}

/// The advisory's text (`advisory.txt`): `summary` and the case's facts.
/// Rendered before anything is sent, so the caller can check it does not
/// repeat the report.
pub fn advisory(
    ctx: &Context<'_>,
    case: &CaseRow,
    summary: &str,
    credit: Option<&str>,
) -> Result<String, TemplateError> {
    ctx.templates.render(
        "advisory.txt",
        minijinja::context! {
            summary => summary, severity => case.severity, affected => case.affected,
            fixed_in => case.fixed_in, cve => case.cve, credit => credit,
            policy_url => ctx.cfg.mailbox.policy_url, project => ctx.cfg.mailbox.project,
            address => ctx.cfg.mailbox.address,
        },
    )
}

/// The announcement of `advisory` (from [`advisory`]) under the subject
/// "[security] `title`", to `to`. A dry run must not look like the real
/// thing: marked in the subject, and threaded in the case with the rest of
/// the handlers' mail.
pub fn announcement(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Vec<String>,
    dry_run: bool,
    title: &str,
    advisory: String,
) -> Result<Letter, LetterError> {
    let (subject, thread) = if dry_run {
        let root = thread_root(case, &ctx.cfg.mailbox.address);
        let thread = Thread {
            in_reply_to: Some(root.clone()),
            references: vec![root],
        };
        (format!("[DRY RUN] [security] {title}"), thread)
    } else {
        (format!("[security] {title}"), Thread::default())
    };
    Ok(build(
        ctx,
        Parts {
            purpose: MessageKind::Announce,
            case_id: Some(&case.id),
            voice: Voice::Announcement,
            to,
            subject,
            body: advisory,
            message_id: new_id(ctx, "announce", Some(&case.id)),
            thread,
            attach: None,
            files: &[],
        },
    )?)
}
