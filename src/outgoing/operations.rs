//! secintake's own letters to the handlers: deadline reminders and
//! escalations (in the case's thread), the daily digest, and the notices
//! that the mailbox or the SMTP server fails and works again. All from
//! "secintake", so a handler can filter them.

use super::{build, new_id, Letter, LetterError, Parts, Thread, Voice};
use crate::clock::fmt_ts;
use crate::context::Context;
use crate::deadlines::thread_root;
use crate::model::Kind;
use crate::model::MessageKind;
use crate::store::CaseRow;
use crate::templates::{human_duration, TemplateError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A stage of a deadline that fell due, for [`reminder`].
#[derive(Debug, Clone, Copy)]
pub struct Reminder<'a> {
    /// The deadline's kind.
    pub kind: Kind,
    /// `reminder` (before the deadline), `escalation` (after it) or
    /// `ack-stuck` (the acknowledgement still waits in the outbox).
    pub stage: &'static str,
    pub due: DateTime<Utc>,
    /// When the stage was planned to fire.
    pub fire_at: DateTime<Utc>,
    /// It fires later than planned: secintake was not running.
    pub late: bool,
    /// The deadline has passed.
    pub overdue: bool,
    /// How long until (or since) the deadline, for people.
    pub gap: &'a str,
    /// `ack-stuck`: the other cases whose acknowledgement waits too (the
    /// first 50), and how many there are: one alert per outage.
    pub also: &'a [String],
    pub also_total: usize,
}

/// A reminder, escalation or stuck-acknowledgement alert
/// (`reminder.txt`, with `next-step.txt`), in the case's thread.
pub fn reminder(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Vec<String>,
    r: Reminder<'_>,
) -> Result<Letter, LetterError> {
    let cfg = ctx.cfg;
    let subject = match r.stage {
        "ack-stuck" if r.also_total > 0 => format!(
            "[{}] Acknowledgements still unsent after {}: {} cases",
            case.id,
            human_duration(cfg.sla.ack_alert_after),
            r.also_total + 1
        ),
        "ack-stuck" => format!(
            "[{}] Acknowledgement still unsent after {}",
            case.id,
            human_duration(cfg.sla.ack_alert_after)
        ),
        "escalation" => format!(
            "[{}] OVERDUE: {} was due {}",
            case.id,
            r.kind.noun(),
            r.due.format("%Y-%m-%d %H:%M UTC")
        ),
        _ => format!("[{}] Reminder: {} due in {}", case.id, r.kind.noun(), r.gap),
    };
    let next_step = ctx.templates.part(
        "next-step.txt",
        minijinja::context! {
            deadline_kind => r.kind.as_str(), case_id => case.id,
            reporter => case.reporter, address => cfg.mailbox.address,
        },
    )?;
    let body = ctx.templates.render(
        "reminder.txt",
        minijinja::context! {
            kind => r.stage,
            case_id => case.id,
            subject => case.subject.as_deref().unwrap_or(""),
            reporter => case.reporter.as_deref().unwrap_or("(no usable reply address)"),
            deadline => r.kind.noun(),
            due_at => r.due.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            overdue => r.overdue,
            gap => r.gap,
            late => r.late,
            fire_at => r.fire_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            next_step => next_step,
            also => r.also,
            also_more => r.also_total.saturating_sub(r.also.len()),
            escalate_every => human_duration(cfg.sla.escalate_every),
            project => cfg.mailbox.project,
            address => cfg.mailbox.address,
        },
    )?;
    let root = thread_root(case, &cfg.mailbox.address);
    Ok(build(
        ctx,
        Parts {
            purpose: MessageKind::Reminder,
            case_id: Some(&case.id),
            voice: Voice::Robot,
            to,
            subject,
            body,
            message_id: new_id(ctx, r.stage, Some(&case.id)),
            thread: Thread {
                in_reply_to: Some(root.clone()),
                references: vec![root],
            },
            attach: None,
            files: &[],
        },
    )?)
}

/// The digest's list of open cases (`digest-case.txt` for each), given
/// with each case's nearest unmet deadline, most urgent first.
pub fn digest_cases(
    ctx: &Context<'_>,
    open: &[(CaseRow, Option<String>)],
) -> Result<String, TemplateError> {
    let mut lines = String::new();
    for (case, next_deadline) in open {
        lines.push_str(&ctx.templates.part(
            "digest-case.txt",
            minijinja::context! {
                case_id => case.id, state => case.state.as_str(),
                subject => case.subject.as_deref().unwrap_or(""),
                reporter => case.reporter, next_deadline => next_deadline,
            },
        )?);
        lines.push('\n');
    }
    Ok(lines)
}

/// What the day's digest says, for [`digest`].
#[derive(Debug, Clone, Copy)]
pub struct Digest<'a> {
    /// The local day, `2026-01-31`.
    pub day: &'a str,
    /// How many cases are open.
    pub count: usize,
    /// The open cases, from [`digest_cases`].
    pub cases: &'a str,
    /// Mail filed without a case in the last day.
    pub unfiled: i64,
    /// The hour it is sent, in `sla.timezone`, for the greeting.
    pub local_hour: u32,
}

/// The daily digest to one handler (`digest.txt`, greeting from
/// `greeting.txt`).
pub fn digest(
    ctx: &Context<'_>,
    handler: &crate::config::Handler,
    d: Digest<'_>,
) -> Result<Letter, LetterError> {
    let greeting = ctx
        .templates
        .part("greeting.txt", minijinja::context! { hour => d.local_hour })?;
    let body = ctx.templates.render(
        "digest.txt",
        minijinja::context! {
            handler => handler.name, project => ctx.cfg.mailbox.project,
            day => d.day, count => d.count, cases => d.cases, unfiled => d.unfiled,
            greeting => greeting,
        },
    )?;
    Ok(build(
        ctx,
        Parts {
            purpose: MessageKind::Digest,
            case_id: None,
            voice: Voice::Robot,
            to: vec![handler.email.clone()],
            subject: format!("[secintake] {} open case(s) on {}", d.count, d.day),
            body,
            message_id: new_id(ctx, "digest", None),
            thread: Thread::default(),
            attach: None,
            files: &[],
        },
    )?)
}

/// A connection that fails or failed, for [`outage_alert`] and
/// [`recovery_notice`].
#[derive(Debug, Clone, Copy)]
pub struct Outage<'a> {
    /// `imap` or `smtp`.
    pub component: &'static str,
    /// What it is for people: "IMAP mailbox".
    pub component_name: &'static str,
    pub failing_since: DateTime<Utc>,
    pub last_error: Option<&'a str>,
    /// Messages waiting in the outbox.
    pub backlog: u64,
}

/// The alert that a connection has failed longer than
/// `limits.alert_after` (`alert.txt`), to every handler.
pub fn outage_alert(
    ctx: &Context<'_>,
    to: Vec<String>,
    o: Outage<'_>,
) -> Result<Letter, LetterError> {
    let subject = format!("[secintake] ALERT: {} failing", o.component_name);
    outage_notice(ctx, to, "alert.txt", subject, o)
}

/// The notice that a connection works again (`recovery.txt`), after an
/// alert.
pub fn recovery_notice(
    ctx: &Context<'_>,
    to: Vec<String>,
    o: Outage<'_>,
) -> Result<Letter, LetterError> {
    let subject = format!("[secintake] recovered: {} works again", o.component_name);
    outage_notice(ctx, to, "recovery.txt", subject, o)
}

fn outage_notice(
    ctx: &Context<'_>,
    to: Vec<String>,
    template: &str,
    subject: String,
    o: Outage<'_>,
) -> Result<Letter, LetterError> {
    let cfg = ctx.cfg;
    let failing_for = (ctx.now - o.failing_since).to_std().unwrap_or_default();
    let body = ctx.templates.render(
        template,
        minijinja::context! {
            project => cfg.mailbox.project,
            address => cfg.mailbox.address,
            component => o.component,
            component_name => o.component_name,
            failing_since => fmt_ts(o.failing_since),
            failing_for => humantime::format_duration(Duration::from_secs(failing_for.as_secs())).to_string(),
            alert_after => human_duration(cfg.limits.alert_after),
            last_error => o.last_error.unwrap_or("unknown"),
            // A refused login is alerted at once, not after alert_after.
            credential => o.last_error.is_some_and(|e| e.starts_with(crate::model::CREDENTIAL_REJECTED)),
            recovered_at => fmt_ts(ctx.now),
            backlog => o.backlog,
        },
    )?;
    Ok(build(
        ctx,
        Parts {
            purpose: MessageKind::Alert,
            case_id: None,
            voice: Voice::Robot,
            to,
            subject,
            body,
            message_id: new_id(ctx, o.component, None),
            thread: Thread::default(),
            attach: None,
            files: &[],
        },
    )?)
}
