//! The deadline scheduler: the loop that fires reminders, escalations and
//! the daily digest when their time comes (the stage plan it follows is in
//! `deadlines`; what the mails say is in `outgoing::operations`).

use crate::clock::{parse_ts, Clock};
use crate::config::Config;
use crate::context::Context;
use crate::deadlines::{due_now, due_stage, fire_time, next_due, DeadlineRow};
use crate::model::Kind;
use crate::outgoing::operations::{self, Digest, Reminder};
use crate::outgoing::{queue_outgoing, LetterError};
use crate::store::{Db, StoreError};
use crate::templates::{human_span, Templates};
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::Connection;
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
    /// When `[retention]` last ran (it runs at most hourly).
    pub retention_at: Arc<std::sync::Mutex<Option<DateTime<Utc>>>>,
}

/// How often `[retention]` looks for what to drop.
const RETENTION_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// The longest the scheduler sleeps without re-reading the next due time:
/// bounds the effect of a wall-clock jump forward and picks up deadlines
/// the CLI (another process) set. One indexed query.
const MAX_SLEEP: Duration = Duration::from_secs(2);

/// The handlers already have this SMTP outage's stuck-acknowledgement
/// alert (of `at`): say it on the case, not in one more mail.
fn covered_by_outage_alert(
    conn: &Connection,
    case: &str,
    now: DateTime<Utc>,
    at: &str,
) -> Result<(), crate::context::CaseError> {
    crate::store::add_event(
        conn,
        case,
        now,
        "secintake",
        "acknowledgement still unsent",
        Some(&format!("covered by the outage alert of {at}")),
        None,
    )?;
    Ok(())
}

/// For a stuck acknowledgement: the other cases whose acknowledgement
/// waits too (the first 50), and how many, for the one outage alert.
fn others_waiting(
    conn: &Connection,
    kind: Kind,
    case: &str,
) -> Result<(Vec<String>, usize), crate::context::CaseError> {
    Ok(match kind {
        Kind::AckQueued => crate::store::cases_with_unsent_acks(conn, case, 50)?,
        _ => (Vec::new(), 0),
    })
}

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
                s.release_memory(usize::MAX);
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
        self.retention(s, now)?;
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

    /// Applies `[retention]`, at most every [`RETENTION_EVERY`]: drops the
    /// raw bytes of cases finished `raw_after` ago and the copies of mail
    /// delivered `sent_after` ago, in one transaction.
    fn retention(
        &self,
        s: &mut crate::store::Store,
        now: DateTime<Utc>,
    ) -> Result<(), crate::context::CaseError> {
        let r = &self.cfg.retention;
        if r.raw_after.is_none() && r.sent_after.is_none() {
            return Ok(());
        }
        {
            let mut last = self.retention_at.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now - t < RETENTION_EVERY) {
                return Ok(());
            }
            *last = Some(now);
        }
        let before = |d: Duration| {
            crate::clock::fmt_ts(
                now - chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX),
            )
        };
        let tx = s.transaction()?;
        let mut dropped = 0;
        if let Some(d) = r.raw_after {
            dropped += crate::store::purge_closed(&tx, &before(d))?;
        }
        if let Some(d) = r.sent_after {
            dropped += crate::store::purge_delivered(&tx, &before(d))?;
        }
        crate::store::commit(tx, "applying [retention]")?;
        if dropped > 0 {
            tracing::info!(messages = dropped, "retention: raw bytes dropped");
        }
        Ok(())
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
        let kind = row.kind;
        let Some(due) = parse_ts(&row.due_at) else {
            crate::store::set_next_at(conn, row.id, None)?;
            return Ok(0);
        };
        let Some(stage) = due_stage(kind, due, row.stage, now, sla) else {
            // next_at was stale (deadline moved, config changed): recompute.
            let next = fire_time(kind, due, row.stage, sla);
            crate::store::set_next_at(conn, row.id, next)?;
            return Ok(0);
        };
        let fire_at = fire_time(kind, due, stage, sla).unwrap_or(now);
        let late = stage > row.stage || now - fire_at > chrono::Duration::seconds(60);
        let next = fire_time(kind, due, stage + 1, sla);
        crate::store::advance_stage(conn, row.id, stage + 1, next)?;
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
        let to = self.recipients(&case, kind, escalation);
        let outage_alert = match kind {
            Kind::AckQueued => crate::store::ack_stuck_alert_of_outage(conn)?,
            _ => None,
        };
        let inserted =
            crate::store::insert_reminder(conn, row.id, stage, reminder_kind, fire_at, now, late)?;
        let Some(reminder_id) = inserted.filter(|_| !to.is_empty()) else {
            return Ok(0);
        };
        if let Some(at) = outage_alert {
            covered_by_outage_alert(conn, &case.id, now, &at)?;
            return Ok(0);
        }
        let (also, also_total) = others_waiting(conn, kind, &case.id)?;
        // On time, the stage's planned time is the truth ("due in 4 hours",
        // not the 3:59:59.99 left when the mail is built); late, the real gap.
        let at = if late { now } else { fire_at };
        let overdue = at >= due;
        let gap = if at > due { at - due } else { due - at };
        let gap = human_span(gap.num_milliseconds().max(0) as u64);
        let ctx = Context {
            cfg: &self.cfg,
            templates: &self.templates,
            now,
        };
        let reminder = Reminder {
            kind,
            stage: reminder_kind,
            due,
            fire_at,
            late,
            overdue,
            gap: &gap,
            also: &also,
            also_total,
        };
        let letter = match operations::reminder(&ctx, &case, to, reminder) {
            Ok(letter) => letter,
            Err(LetterError::Template(e)) => return Err(e.into()),
            Err(LetterError::Compose(e)) => {
                tracing::error!(case = %case.id, error = %e, "cannot build reminder");
                return Ok(0);
            }
        };
        let msg = queue_outgoing(conn, &ctx, &letter)?;
        crate::store::set_reminder_message(conn, reminder_id, msg)?;
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

    /// A reminder goes to the case's primary handler (everyone when there
    /// is none); an escalation or a stuck acknowledgement to everyone, and
    /// an escalation to `sla.escalate_to` too.
    fn recipients(
        &self,
        case: &crate::store::CaseRow,
        kind: Kind,
        escalation: bool,
    ) -> Vec<String> {
        let mut to: Vec<String> = match (&case.primary_handler, escalation) {
            (Some(primary), false) => vec![primary.clone()],
            _ => self.cfg.handlers.iter().map(|h| h.email.clone()).collect(),
        };
        if escalation && kind != Kind::AckQueued {
            for a in &self.cfg.sla.escalate_to {
                if !to.contains(a) {
                    to.push(a.clone());
                }
            }
        }
        to
    }

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
        let sent = crate::store::digest_sent(conn, &day)?;
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
        if !crate::store::record_digest(conn, day, now)? {
            return Ok(0);
        }
        let open = open_cases_by_urgency(conn)?;
        // Mail filed without a case in the last day (robots that did not
        // thread, mail older than the backfill window): a forwarder that
        // stamps robot headers on a real report must not make it vanish.
        let unfiled = crate::store::unfiled_since(conn, now - chrono::Duration::days(1))?;
        if (open.is_empty() && unfiled == 0) || self.cfg.handlers.is_empty() {
            return Ok(0);
        }
        let ctx = Context {
            cfg: &self.cfg,
            templates: &self.templates,
            now,
        };
        let cases = operations::digest_cases(&ctx, &open)?;
        let digest = Digest {
            day,
            count: open.len(),
            cases: &cases,
            unfiled,
            local_hour: chrono::Timelike::hour(&now.with_timezone(&self.cfg.sla.timezone)),
        };
        let mut sent = 0;
        for h in &self.cfg.handlers {
            match operations::digest(&ctx, h, digest) {
                Ok(letter) => {
                    queue_outgoing(conn, &ctx, &letter)?;
                    sent += 1;
                }
                Err(LetterError::Template(e)) => return Err(e.into()),
                Err(LetterError::Compose(_)) => {}
            }
        }
        Ok(sent)
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
        let next = crate::store::next_open_deadline(conn, &c.id)?;
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
#[path = "scheduler_clock_tests.rs"]
mod clock_tests;
