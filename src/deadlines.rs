//! Deadlines, reminders, escalation, the daily digest and the SLA report.
//!
//! Every case gets an acknowledgement and a response deadline when it opens
//! (`sla.acknowledge`, `sla.respond`); operators add `fix` and `embargo`
//! dates. Each unmet deadline walks through numbered **stages**:
//!
//! ```text
//! stage 0 .. R-1   reminder   at due - remind_before[i]   (longest first)
//! stage R + k      escalation at due + k * escalate_every  (k = 0, 1, 2 …)
//! ```
//!
//! The deadline row stores the next stage and when it fires (`next_at`,
//! indexed), so the scheduler sleeps until `min(next_at)` instead of
//! scanning cases. Firing a stage inserts a `reminders` row (UNIQUE on
//! deadline + stage), queues the mail and advances the stage in ONE
//! transaction: a restart never repeats a reminder. When several stages
//! fell due while the daemon was down (or the wall clock jumped forward)
//! only the latest is sent, once, saying it is late; a clock jumping back
//! never lowers the stage, so nothing repeats.

use crate::cases::{queue_outgoing, Context};
use crate::clock::{add, fmt_ts, parse_ts, Clock};
use crate::commands::State;
use crate::compose::{self, Draft};
use crate::config::{Config, Sla};
use crate::store::{Ctx, Db, StoreError};
use crate::templates::{human_duration, human_span, Templates};
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The acknowledgement reaches the SMTP server.
    Acknowledge,
    /// A handler's substantive answer to the reporter.
    Respond,
    /// Fixes are ready (set by a handler).
    Fix,
    /// The agreed public disclosure date (set by a handler).
    Embargo,
    /// The queued acknowledgement is still unsent after
    /// `sla.ack_alert_after`: one alert, no repetition.
    AckQueued,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Acknowledge => "acknowledge",
            Kind::Respond => "respond",
            Kind::Fix => "fix",
            Kind::Embargo => "embargo",
            Kind::AckQueued => "ack-queued",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "acknowledge" => Kind::Acknowledge,
            "respond" => Kind::Respond,
            "fix" => Kind::Fix,
            "embargo" => Kind::Embargo,
            "ack-queued" => Kind::AckQueued,
            _ => return None,
        })
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Acknowledge => "acknowledgement",
            Kind::Respond => "response to the reporter",
            Kind::Fix => "fix",
            Kind::Embargo => "public disclosure (embargo end)",
            Kind::AckQueued => "acknowledgement delivery",
        }
    }
}

// ---------------------------------------------------------------------------
// The stage plan (pure)

/// When `stage` of a deadline due at `due` fires; None when there is no
/// such stage.
pub fn fire_time(kind: Kind, due: DateTime<Utc>, stage: u32, sla: &Sla) -> Option<DateTime<Utc>> {
    if kind == Kind::AckQueued {
        return (stage == 0).then_some(due);
    }
    let r = sla.remind_before.len() as u32;
    if stage < r {
        let before = chrono::Duration::from_std(sla.remind_before[stage as usize]).ok()?;
        due.checked_sub_signed(before)
    } else {
        let k = (stage - r) as u64;
        let every = sla.escalate_every.as_secs().max(1);
        Some(add(due, Duration::from_secs(every.saturating_mul(k))))
    }
}

/// The first stage that fires at or after `now` (stages already in the
/// past when a deadline is set are skipped, not sent late).
pub fn first_stage(kind: Kind, due: DateTime<Utc>, now: DateTime<Utc>, sla: &Sla) -> u32 {
    let r = sla.remind_before.len() as u32;
    let mut s = 0;
    while s < r {
        match fire_time(kind, due, s, sla) {
            Some(t) if t >= now => return s,
            _ => s += 1,
        }
    }
    if kind == Kind::AckQueued {
        return 0;
    }
    // Already past due: the next escalation from now on.
    if now <= due {
        return r;
    }
    r + escalations_passed(due, now, sla)
}

fn escalations_passed(due: DateTime<Utc>, now: DateTime<Utc>, sla: &Sla) -> u32 {
    let past = (now - due).num_seconds().max(0) as u64;
    let every = sla.escalate_every.as_secs().max(1);
    u32::try_from(past / every).unwrap_or(u32::MAX)
}

/// The stage to fire now, if any: the LATEST stage at or after `stage`
/// whose time has come. Earlier stages that also came are skipped, so a
/// daemon that was down sends one late reminder, not a burst.
pub fn due_stage(
    kind: Kind,
    due: DateTime<Utc>,
    stage: u32,
    now: DateTime<Utc>,
    sla: &Sla,
) -> Option<u32> {
    if fire_time(kind, due, stage, sla)? > now {
        return None;
    }
    if kind == Kind::AckQueued {
        return Some(0);
    }
    let r = sla.remind_before.len() as u32;
    let latest = if now >= due {
        r + escalations_passed(due, now, sla)
    } else {
        // Reminders only: the last one whose time has come.
        (stage..r)
            .take_while(|s| fire_time(kind, due, *s, sla).is_some_and(|t| t <= now))
            .last()
            .unwrap_or(stage)
    };
    Some(latest.max(stage))
}

// ---------------------------------------------------------------------------
// Recording

/// A deadline row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadlineRow {
    #[serde(skip)]
    pub id: i64,
    pub case_id: String,
    pub kind: String,
    pub due_at: String,
    pub met_at: Option<String>,
    pub met_how: Option<String>,
    pub stage: u32,
    pub next_at: Option<String>,
}

fn deadline_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadlineRow> {
    Ok(DeadlineRow {
        id: r.get(0)?,
        case_id: r.get(1)?,
        kind: r.get(2)?,
        due_at: r.get(3)?,
        met_at: r.get(4)?,
        met_how: r.get(5)?,
        stage: r.get(6)?,
        next_at: r.get(7)?,
    })
}

const DEADLINE_COLS: &str = "id, case_id, kind, due_at, met_at, met_how, stage, next_at";

/// Sets (or moves) a deadline of a case. Moving it restarts its reminders
/// from the first stage still ahead.
pub fn set(
    conn: &Connection,
    sla: &Sla,
    case_id: &str,
    kind: Kind,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let stage = first_stage(kind, due, now, sla);
    let next = fire_time(kind, due, stage, sla).map(fmt_ts);
    crate::store::exec(
        conn,
        "INSERT INTO deadlines (case_id, kind, due_at, stage, next_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(case_id, kind) DO UPDATE SET due_at = excluded.due_at,
             stage = excluded.stage,
             next_at = CASE WHEN met_at IS NULL THEN excluded.next_at ELSE NULL END",
        params![case_id, kind.as_str(), fmt_ts(due), stage, next],
    )
    .ctx("setting a deadline")?;
    Ok(())
}

/// Marks a deadline met (first time only). Returns whether it changed.
pub fn meet(
    conn: &Connection,
    case_id: &str,
    kind: Kind,
    at: DateTime<Utc>,
    how: &str,
) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE deadlines SET met_at = ?3, met_how = ?4, next_at = NULL
             WHERE case_id = ?1 AND kind = ?2 AND met_at IS NULL",
            params![case_id, kind.as_str(), fmt_ts(at), how],
        )
        .ctx("meeting a deadline")?;
    Ok(n > 0)
}

pub fn of_case(conn: &Connection, case_id: &str) -> Result<Vec<DeadlineRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {DEADLINE_COLS} FROM deadlines WHERE case_id = ?1 ORDER BY due_at"
        ))
        .ctx("listing deadlines")?;
    let rows = st
        .query_map([case_id], deadline_row)
        .ctx("listing deadlines")?;
    rows.collect::<Result<_, _>>().ctx("listing deadlines")
}

/// The earliest pending reminder time (indexed).
pub fn next_due(conn: &Connection) -> Result<Option<DateTime<Utc>>, StoreError> {
    let s: Option<String> = conn
        .query_row(
            "SELECT min(next_at) FROM deadlines WHERE next_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .ctx("finding the next reminder")?;
    Ok(s.as_deref().and_then(parse_ts))
}

fn due_now(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<DeadlineRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {DEADLINE_COLS} FROM deadlines
             WHERE next_at IS NOT NULL AND next_at <= ?1 ORDER BY next_at LIMIT 100"
        ))
        .ctx("finding due reminders")?;
    let rows = st
        .query_map([fmt_ts(now)], deadline_row)
        .ctx("finding due reminders")?;
    rows.collect::<Result<_, _>>().ctx("finding due reminders")
}

/// The Message-ID every handler mail about a case refers to, so a case is
/// one conversation in a handler's client. Random per case (set when it
/// opens); cases from before that have the old predictable form.
pub fn thread_root(case: &crate::store::CaseRow, our_address: &str) -> String {
    match &case.thread_root {
        Some(root) => root.clone(),
        None => {
            let domain = our_address.rsplit('@').next().unwrap_or("localhost");
            format!("case.{}@{domain}", case.id)
        }
    }
}
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
    pub backlog: Arc<crate::intake::BacklogGate>,
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
    ) -> Result<(usize, Option<DateTime<Utc>>), crate::cases::CaseError> {
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
    ) -> Result<usize, crate::cases::CaseError> {
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
    ) -> Result<usize, crate::cases::CaseError> {
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
        if !State::parse(&c.state).is_some_and(State::is_open) {
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

// ---------------------------------------------------------------------------
// The SLA report

/// One deadline's outcome in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub due_at: String,
    pub done_at: Option<String>,
    /// Seconds from receipt to done.
    pub seconds: Option<i64>,
    /// "met", "missed", "pending" or "waived".
    pub status: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseSla {
    pub id: String,
    pub received_at: String,
    pub acknowledge: Outcome,
    pub respond: Outcome,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    pub met: u32,
    pub missed: u32,
    pub pending: u32,
    pub waived: u32,
    /// Seconds from receipt, over the cases where it was done.
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub since: Option<String>,
    pub generated_at: String,
    pub cases: Vec<CaseSla>,
    pub acknowledge: Totals,
    pub respond: Totals,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median: the mean of the two middle values for an even count.
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

fn outcome(
    received: DateTime<Utc>,
    due: &str,
    done: Option<&str>,
    how: Option<&str>,
    now: DateTime<Utc>,
) -> Outcome {
    let due_t = parse_ts(due);
    let done_t = done.and_then(parse_ts);
    let status = match (done_t, due_t) {
        _ if how.is_some_and(|h| h.starts_with("waived")) => "waived",
        (Some(d), Some(due)) if d <= due => "met",
        (Some(_), _) => "missed",
        (None, Some(due)) if now > due => "missed",
        _ => "pending",
    };
    Outcome {
        due_at: due.to_owned(),
        done_at: if status == "waived" {
            None
        } else {
            done.map(str::to_owned)
        },
        seconds: if status == "waived" {
            None
        } else {
            done_t.map(|d| (d - received).num_seconds())
        },
        status,
    }
}

fn totals(outcomes: &[&Outcome]) -> Totals {
    let mut t = Totals::default();
    let mut secs = Vec::new();
    for o in outcomes {
        match o.status {
            "met" => t.met += 1,
            "missed" => t.missed += 1,
            "waived" => t.waived += 1,
            _ => t.pending += 1,
        }
        secs.extend(o.seconds);
    }
    secs.sort_unstable();
    t.median_seconds = median(&secs);
    t.p90_seconds = percentile(&secs, 90.0);
    t
}

/// Time to acknowledgement and to response, per case and in total.
pub fn report(
    conn: &Connection,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let mut cases = Vec::new();
    for c in crate::store::cases(conn, None)? {
        let Some(received) = parse_ts(&c.received_at) else {
            continue;
        };
        if since.is_some_and(|s| received < s) {
            continue;
        }
        let how = |kind: &str| -> Result<Option<String>, StoreError> {
            crate::store::row(
                conn,
                "SELECT met_how FROM deadlines WHERE case_id = ?1 AND kind = ?2",
                params![c.id, kind],
                |r| r.get(0),
            )
            .optional()
            .ctx("reading deadlines")
            .map(Option::flatten)
        };
        cases.push(CaseSla {
            acknowledge: outcome(
                received,
                &c.ack_due_at,
                c.acknowledged_at.as_deref(),
                how("acknowledge")?.as_deref(),
                now,
            ),
            respond: outcome(
                received,
                &c.respond_due_at,
                c.responded_at.as_deref(),
                how("respond")?.as_deref(),
                now,
            ),
            id: c.id,
            received_at: c.received_at,
        });
    }
    let acknowledge = totals(&cases.iter().map(|c| &c.acknowledge).collect::<Vec<_>>());
    let respond = totals(&cases.iter().map(|c| &c.respond).collect::<Vec<_>>());
    Ok(Report {
        since: since.map(fmt_ts),
        generated_at: fmt_ts(now),
        cases,
        acknowledge,
        respond,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_digest_greets_by_the_local_hour() {
        assert_eq!(greeting(9), "Good morning");
        assert_eq!(greeting(14), "Good afternoon");
        assert_eq!(greeting(21), "Good evening");
        assert_eq!(greeting(2), "Good evening");
    }

    use super::*;

    fn sla() -> Sla {
        Sla {
            acknowledge: Duration::from_secs(48 * 3600),
            respond: Duration::from_secs(72 * 3600),
            remind_before: vec![
                Duration::from_secs(24 * 3600),
                Duration::from_secs(4 * 3600),
            ],
            escalate_every: Duration::from_secs(12 * 3600),
            escalate_to: vec![],
            ack_alert_after: Duration::from_secs(3600),
            digest_at: None,
            timezone: chrono_tz::UTC,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        parse_ts(s).unwrap()
    }

    const H: i64 = 3600;

    #[test]
    fn stage_times_follow_the_plan() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        let at = |st| fire_time(Kind::Respond, due, st, &s).unwrap();
        assert_eq!(at(0), due - chrono::Duration::seconds(24 * H));
        assert_eq!(at(1), due - chrono::Duration::seconds(4 * H));
        assert_eq!(at(2), due);
        assert_eq!(at(3), due + chrono::Duration::seconds(12 * H));
        assert_eq!(fire_time(Kind::AckQueued, due, 1, &s), None);
    }

    #[test]
    fn first_stage_skips_reminders_already_past() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-01T00:00:00Z"), &s),
            0
        );
        // 10 hours before due: the 24h reminder is past, the 4h one is ahead.
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-03T14:00:00Z"), &s),
            1
        );
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-03T22:00:00Z"), &s),
            2
        );
        // 13 hours overdue when set: the latest escalation (due+12h, stage 3)
        // fires at once.
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-04T13:00:00Z"), &s),
            3
        );
    }

    #[test]
    fn a_long_absence_fires_only_the_latest_stage() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        // Nothing yet.
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-02T23:00:00Z"), &s),
            None
        );
        // Exactly at the 24h reminder.
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-03T00:00:00Z"), &s),
            Some(0)
        );
        // Daemon down through both reminders and the deadline: one escalation.
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-04T01:00:00Z"), &s),
            Some(2)
        );
        // 30 hours overdue: escalation k=2 (due+24h).
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-05T06:00:00Z"), &s),
            Some(4)
        );
    }

    #[test]
    fn clock_jumps_neither_lose_nor_repeat() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        // The 24h reminder fired (stage is now 1). The clock jumps back a day:
        // stage 1 is not due, and stage 0 is never considered again.
        let back = t("2026-01-02T00:00:00Z");
        assert_eq!(due_stage(Kind::Respond, due, 1, back, &s), None);
        // Forward past the 4h reminder and the deadline: one escalation
        // (stage 2), nothing lost: the case is overdue and says so.
        let fwd = t("2026-01-04T02:00:00Z");
        assert_eq!(due_stage(Kind::Respond, due, 1, fwd, &s), Some(2));
        // Having fired stage 2, the same instant fires nothing more.
        assert_eq!(due_stage(Kind::Respond, due, 3, fwd, &s), None);
    }

    #[test]
    fn ack_queued_alerts_once() {
        let due = t("2026-01-01T01:00:00Z");
        let s = sla();
        assert_eq!(
            due_stage(Kind::AckQueued, due, 0, t("2026-01-01T00:59:00Z"), &s),
            None
        );
        assert_eq!(
            due_stage(Kind::AckQueued, due, 0, t("2026-01-01T05:00:00Z"), &s),
            Some(0)
        );
        assert_eq!(
            due_stage(Kind::AckQueued, due, 1, t("2026-01-09T05:00:00Z"), &s),
            None
        );
    }

    #[test]
    fn percentiles() {
        assert_eq!(median(&[1, 2, 3]), Some(2));
        assert_eq!(median(&[1, 2, 3, 5]), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90.0), Some(9));
        assert_eq!(percentile(&[7], 90.0), Some(7));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn outcomes() {
        let rec = t("2026-01-01T00:00:00Z");
        let now = t("2026-01-10T00:00:00Z");
        let o = outcome(
            rec,
            "2026-01-03T00:00:00Z",
            Some("2026-01-01T00:00:05Z"),
            None,
            now,
        );
        assert_eq!((o.status, o.seconds), ("met", Some(5)));
        let o = outcome(
            rec,
            "2026-01-03T00:00:00Z",
            Some("2026-01-04T00:00:00Z"),
            None,
            now,
        );
        assert_eq!(o.status, "missed");
        let o = outcome(rec, "2026-01-03T00:00:00Z", None, None, now);
        assert_eq!(o.status, "missed");
        let o = outcome(rec, "2026-01-30T00:00:00Z", None, None, now);
        assert_eq!(o.status, "pending");
        let o = outcome(
            rec,
            "2026-01-03T00:00:00Z",
            None,
            Some("waived: no address"),
            now,
        );
        assert_eq!(o.status, "waived");
    }
}
