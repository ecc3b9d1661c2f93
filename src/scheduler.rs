//! The deadline scheduler: the loop that fires reminders, escalations and
//! the daily digest when their time comes (the stage plan it follows is in
//! `deadlines`), and the text of those mails.

use crate::clock::{fmt_ts, parse_ts, Clock};
use crate::compose::{self, Draft};
use crate::config::Config;
use crate::context::Context;
use crate::deadlines::{due_now, due_stage, fire_time, next_due, thread_root, DeadlineRow};
use crate::model::Kind;
use crate::outgoing::queue_outgoing;
use crate::store::{Ctx, Db, StoreError};
use crate::templates::{human_duration, human_span, Templates};
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Everything needed to fire reminders.
#[derive(Clone)]
pub struct Scheduler {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub templates: Arc<Templates>,
    pub clock: Arc<dyn Clock>,
    /// Wakes the outbox after queueing.
    pub outbox: Arc<Notify>,
    /// Woken when a case or deadline changes.
    pub wake: Arc<Notify>,
    /// Promised handler notifications are built when no backlog is being
    /// recorded.
    pub backlog: Arc<crate::gate::BacklogGate>,
}

/// The longest the scheduler sleeps without re-reading the next due time:
/// bounds the effect of a wall-clock jump forward and picks up deadlines
/// the CLI (another process) set. One indexed query.
const MAX_SLEEP: Duration = Duration::from_secs(2);

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let this = self.clone();
            let res = self.db.call(move |s| this.tick(s)).await;
            let next = match res {
                Ok((fired, next)) => {
                    if fired > 0 {
                        self.outbox.notify_one();
                    }
                    next
                }
                Err(e) => {
                    tracing::error!(error = %e, "deadline scheduler failed; retrying");
                    None
                }
            };
            let now = self.clock.now();
            let wait = next
                .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Fires everything due; returns how many mails were queued and when
    /// to look again.
    fn tick(
        &self,
        s: &mut crate::store::Store,
    ) -> Result<(usize, Option<DateTime<Utc>>), crate::context::CaseError> {
        let now = self.clock.now();
        let mut fired = 0;
        if !self.backlog.is_busy() {
            let ctx = Context {
                cfg: &self.cfg,
                templates: &self.templates,
                now,
            };
            // Read first: an idle daemon should not take the write lock
            // every tick for an empty table.
            while !crate::store::pending_notifications(s.conn(), 1)?.is_empty() {
                let tx = s.transaction()?;
                let n = crate::workflow::build_pending_notifications(&tx, &ctx, 64)?;
                crate::store::commit(tx, "building notifications")?;
                // Each notification attaches its report: give the copies back.
                crate::memory::trim_after(usize::MAX);
                fired += n;
                if n < 64 {
                    break;
                }
            }
        }
        loop {
            let rows = due_now(s.conn(), now)?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let tx = s.transaction()?;
                fired += self.fire(&tx, &row, now)?;
                crate::store::commit(tx, "recording a reminder")?;
            }
        }
        let mut next = next_due(s.conn())?;
        if let Some(at) = self.cfg.sla.digest_at {
            let (due_day, digest_next) = self.digest_due(s.conn(), at, now)?;
            if let Some(day) = due_day {
                let tx = s.transaction()?;
                fired += self.digest(&tx, &day, now)?;
                crate::store::commit(tx, "recording a digest")?;
            }
            next = Some(next.map_or(digest_next, |n| n.min(digest_next)));
        }
        Ok((fired, next))
    }

    /// Fires the due stage of one deadline (at most one mail per
    /// recipient list) and schedules the next.
    fn fire(
        &self,
        conn: &Connection,
        row: &DeadlineRow,
        now: DateTime<Utc>,
    ) -> Result<usize, crate::context::CaseError> {
        let sla = &self.cfg.sla;
        let (Some(kind), Some(due)) = (Kind::parse(&row.kind), parse_ts(&row.due_at)) else {
            crate::store::exec(
                conn,
                "UPDATE deadlines SET next_at = NULL WHERE id = ?1",
                [row.id],
            )
            .ctx("disabling a broken deadline")?;
            return Ok(0);
        };
        let Some(stage) = due_stage(kind, due, row.stage, now, sla) else {
            // next_at was stale (deadline moved, config changed): recompute.
            let next = fire_time(kind, due, row.stage, sla).map(fmt_ts);
            crate::store::exec(
                conn,
                "UPDATE deadlines SET next_at = ?2 WHERE id = ?1",
                params![row.id, next],
            )
            .ctx("rescheduling a reminder")?;
            return Ok(0);
        };
        let fire_at = fire_time(kind, due, stage, sla).unwrap_or(now);
        let late = stage > row.stage || now - fire_at > chrono::Duration::seconds(60);
        let next = fire_time(kind, due, stage + 1, sla).map(fmt_ts);
        crate::store::exec(
            conn,
            "UPDATE deadlines SET stage = ?2, next_at = ?3 WHERE id = ?1",
            params![row.id, stage + 1, next],
        )
        .ctx("advancing a reminder")?;
        let Some(case) = crate::store::case(conn, &row.case_id)? else {
            return Ok(0);
        };
        let r = sla.remind_before.len() as u32;
        let escalation = kind == Kind::AckQueued || stage >= r;
        let reminder_kind = match (kind, escalation) {
            (Kind::AckQueued, _) => "ack-stuck",
            (_, true) => "escalation",
            (_, false) => "reminder",
        };
        // A reminder goes to the case's primary handler (everyone when there
        // is none); an escalation or a stuck acknowledgement to everyone.
        let mut to: Vec<String> = match (&case.primary_handler, escalation) {
            (Some(primary), false) => vec![primary.clone()],
            _ => self.cfg.handlers.iter().map(|h| h.email.clone()).collect(),
        };
        if escalation && kind != Kind::AckQueued {
            for a in &sla.escalate_to {
                if !to.contains(a) {
                    to.push(a.clone());
                }
            }
        }
        let inserted = conn
            .execute(
                "INSERT INTO reminders (deadline, stage, kind, fire_at, sent_at, late)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(deadline, stage) DO NOTHING",
                params![
                    row.id,
                    stage,
                    reminder_kind,
                    fmt_ts(fire_at),
                    fmt_ts(now),
                    late
                ],
            )
            .ctx("recording a reminder")?;
        if inserted == 0 || to.is_empty() {
            return Ok(0);
        }
        let reminder_id = conn.last_insert_rowid();
        // On time, the stage's planned time is the truth ("due in 4 hours",
        // not the 3:59:59.99 left when the mail is built); late, the real gap.
        let at = if late { now } else { fire_at };
        let overdue = at >= due;
        let gap = if at > due { at - due } else { due - at };
        let gap = human_span(gap.num_milliseconds().max(0) as u64);
        let subject = match reminder_kind {
            "ack-stuck" => format!(
                "[{}] Acknowledgement still unsent after {}",
                case.id,
                human_duration(sla.ack_alert_after)
            ),
            "escalation" => format!(
                "[{}] OVERDUE: {} was due {}",
                case.id,
                kind.noun(),
                due.format("%Y-%m-%d %H:%M UTC")
            ),
            _ => format!("[{}] Reminder: {} due in {}", case.id, kind.noun(), gap),
        };
        let next_step = next_step(&self.cfg, kind, &case);
        let body = self.templates.render(
            "reminder.txt",
            minijinja::context! {
                kind => reminder_kind,
                case_id => case.id,
                subject => case.subject.as_deref().unwrap_or(""),
                reporter => case.reporter.as_deref().unwrap_or("(no usable reply address)"),
                deadline => kind.noun(),
                due_at => due.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                overdue => overdue,
                gap => gap,
                late => late,
                fire_at => fire_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                next_step => next_step,
                escalate_every => human_duration(sla.escalate_every),
                project => self.cfg.mailbox.project,
                address => self.cfg.mailbox.address,
            },
        )?;
        let root = thread_root(&case, &self.cfg.mailbox.address);
        let out = compose::build(Draft {
            from_name: Some("secintake"),
            from: &self.cfg.mailbox.address,
            to,
            subject,
            body,
            message_id: compose::new_message_id(
                reminder_kind,
                Some(&case.id),
                &self.cfg.mailbox.address,
            ),
            in_reply_to: Some(root.clone()),
            references: vec![root],
            auto_submitted: "auto-generated",
            date: now,
            attach: None,
            files: &[],
        });
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(case = %case.id, error = %e, "cannot build reminder");
                return Ok(0);
            }
        };
        let ctx = Context {
            cfg: &self.cfg,
            templates: &self.templates,
            now,
        };
        let msg = queue_outgoing(conn, &ctx, Some(&case.id), "reminder", &out)?;
        crate::store::exec(
            conn,
            "UPDATE reminders SET message = ?2 WHERE id = ?1",
            params![reminder_id, msg],
        )
        .ctx("recording a reminder")?;
        crate::store::add_event(
            conn,
            &case.id,
            now,
            "secintake",
            &format!("{reminder_kind} sent"),
            Some(&format!(
                "{} {}{}",
                kind.noun(),
                if overdue {
                    format!("overdue by {gap}")
                } else {
                    format!("due in {gap}")
                },
                if late {
                    " (late: secintake was not running when it fell due)"
                } else {
                    ""
                }
            )),
            None,
        )?;
        tracing::info!(case = %case.id, deadline = kind.as_str(), stage, late, "{reminder_kind} queued");
        Ok(1)
    }

    /// Sends today's digest once it is due; returns (mails queued, next digest time).
    /// Today's digest day when it is due and not sent yet (a read only),
    /// and when to look again.
    fn digest_due(
        &self,
        conn: &Connection,
        at: chrono::NaiveTime,
        now: DateTime<Utc>,
    ) -> Result<(Option<String>, DateTime<Utc>), StoreError> {
        let tz = self.cfg.sla.timezone;
        let local_day = now.with_timezone(&tz).date_naive();
        let when = |day: chrono::NaiveDate| -> DateTime<Utc> {
            tz.from_local_datetime(&day.and_time(at))
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&day.and_time(at)))
        };
        let today = when(local_day);
        let tomorrow = when(local_day.succ_opt().unwrap_or(local_day));
        if now < today {
            return Ok((None, today));
        }
        let day = local_day.to_string();
        let sent = crate::store::row(conn, "SELECT 1 FROM digests WHERE day = ?1", [&day], |_| {
            Ok(())
        })
        .optional()
        .ctx("reading digests")?
        .is_some();
        Ok(((!sent).then_some(day), tomorrow))
    }

    /// Sends the digest of `day` (once: the day is recorded in the same
    /// transaction); returns how many mails were queued.
    fn digest(
        &self,
        conn: &Connection,
        day: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, crate::context::CaseError> {
        let inserted = crate::store::exec(
            conn,
            "INSERT INTO digests (day, sent_at) VALUES (?1, ?2) ON CONFLICT(day) DO NOTHING",
            params![day, fmt_ts(now)],
        )
        .ctx("recording a digest")?;
        if inserted == 0 {
            return Ok(0);
        }
        let open = open_cases_by_urgency(conn)?;
        // Mail filed without a case in the last day (robots that did not
        // thread, mail older than the backfill window): a forwarder that
        // stamps robot headers on a real report must not make it vanish.
        let since = fmt_ts(now - chrono::Duration::days(1));
        let unfiled: i64 = crate::store::row(
            conn,
            "SELECT count(*) FROM messages
             WHERE direction = 'in' AND case_id IS NULL AND kind IN ('robot', 'old') AND at >= ?1",
            [&since],
            |r| r.get(0),
        )
        .ctx("counting mail without a case")?;
        if (open.is_empty() && unfiled == 0) || self.cfg.handlers.is_empty() {
            return Ok(0);
        }
        let mut lines = String::new();
        for (case, next_deadline) in &open {
            lines.push_str(&format!(
                "{}  [{}]  {}\n    reporter {}; next: {}\n",
                case.id,
                case.state,
                case.subject.as_deref().unwrap_or(""),
                case.reporter.as_deref().unwrap_or("-"),
                next_deadline.as_deref().unwrap_or("no open deadline"),
            ));
        }
        let mut sent = 0;
        for h in &self.cfg.handlers {
            let body = self.templates.render(
                "digest.txt",
                minijinja::context! {
                    handler => h.name, project => self.cfg.mailbox.project,
                    day => day, count => open.len(), cases => lines, unfiled => unfiled,
                    greeting => greeting(chrono::Timelike::hour(&now.with_timezone(&self.cfg.sla.timezone))),
                },
            )?;
            let out = compose::build(Draft {
                from_name: Some("secintake"),
                from: &self.cfg.mailbox.address,
                to: vec![h.email.clone()],
                subject: format!("[secintake] {} open case(s) on {day}", open.len()),
                body,
                message_id: compose::new_message_id("digest", None, &self.cfg.mailbox.address),
                in_reply_to: None,
                references: vec![],
                auto_submitted: "auto-generated",
                date: now,
                attach: None,
                files: &[],
            });
            if let Ok(out) = out {
                let ctx = Context {
                    cfg: &self.cfg,
                    templates: &self.templates,
                    now,
                };
                queue_outgoing(conn, &ctx, None, "digest", &out)?;
                sent += 1;
            }
        }
        Ok(sent)
    }
}

/// The digest's greeting for the hour it is sent, in `sla.timezone`.
fn greeting(local_hour: u32) -> &'static str {
    match local_hour {
        5..=11 => "Good morning",
        12..=17 => "Good afternoon",
        _ => "Good evening",
    }
}

/// What the handler should do next, and how by email.
fn next_step(cfg: &Config, kind: Kind, case: &crate::store::CaseRow) -> String {
    let reporter = case.reporter.as_deref().unwrap_or("the reporter");
    match kind {
        Kind::Respond => format!(
            "send the reporter a detailed response: reply to {reporter} from your own mail \
             client with {} in Cc and [{}] in the subject; secintake records it as the response \
             and the reminders stop. If you answered another way, run \
             `secintake cases responded {}`.",
            cfg.mailbox.address, case.id, case.id
        ),
        Kind::Acknowledge | Kind::AckQueued => format!(
            "the automatic acknowledgement has not reached the SMTP server: check \
             `secintake status` on the host. Meanwhile acknowledge the report yourself: reply \
             to {reporter} with {} in Cc and [{}] in the subject.",
            cfg.mailbox.address, case.id
        ),
        Kind::Fix => format!(
            "prepare and review the fix; when it is ready run `secintake cases met {} fix`, or \
             move the date with `secintake cases deadline {} fix <date>`.",
            case.id, case.id
        ),
        Kind::Embargo => format!(
            "the agreed public disclosure date: send the announcement with a [security] \
             subject prefix to the announce list, tell {reporter}, then run \
             `secintake cases met {} embargo`.",
            case.id
        ),
    }
}

/// Open cases with their nearest unmet deadline, most urgent first.
fn open_cases_by_urgency(
    conn: &Connection,
) -> Result<Vec<(crate::store::CaseRow, Option<String>)>, StoreError> {
    let cases = crate::store::cases(conn, None)?;
    let mut out = Vec::new();
    for c in cases {
        if !c.state.is_open() {
            continue;
        }
        let next: Option<(String, String)> = conn
            .query_row(
                "SELECT kind, due_at FROM deadlines WHERE case_id = ?1 AND met_at IS NULL
                 ORDER BY due_at LIMIT 1",
                [&c.id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .ctx("reading deadlines")?;
        out.push((c, next));
    }
    out.sort_by(|a, b| match (&a.1, &b.1) {
        (Some(x), Some(y)) => x.1.cmp(&y.1),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.received_at.cmp(&b.0.received_at),
    });
    Ok(out
        .into_iter()
        .map(|(c, n)| (c, n.map(|(k, d)| format!("{k} due {d}"))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_greets_by_the_local_hour() {
        assert_eq!(greeting(9), "Good morning");
        assert_eq!(greeting(14), "Good afternoon");
        assert_eq!(greeting(21), "Good evening");
        assert_eq!(greeting(2), "Good evening");
    }
}
