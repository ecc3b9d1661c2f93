//! Deadline rows: one per case and kind, with the next reminder stage and
//! when it fires (`next_at`, indexed). The stage plan is `deadlines`'.

use super::{exec, Ctx, StoreError};
use crate::clock::{fmt_ts, parse_ts};
use crate::model::Kind;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

/// A deadline row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadlineRow {
    #[serde(skip)]
    pub id: i64,
    pub case_id: String,
    pub kind: Kind,
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

/// Writes a deadline (new or moved) with its first stage and fire time;
/// a met deadline keeps no fire time.
pub fn put_deadline(
    conn: &Connection,
    case_id: &str,
    kind: Kind,
    due: DateTime<Utc>,
    stage: u32,
    next: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO deadlines (case_id, kind, due_at, stage, next_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(case_id, kind) DO UPDATE SET due_at = excluded.due_at,
             stage = excluded.stage,
             next_at = CASE WHEN met_at IS NULL THEN excluded.next_at ELSE NULL END",
        params![case_id, kind.as_str(), fmt_ts(due), stage, next.map(fmt_ts)],
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

pub fn due_now(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<DeadlineRow>, StoreError> {
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

/// How a case's deadline of `kind` was met or waived, if it was.
pub fn deadline_met_how(
    conn: &Connection,
    case_id: &str,
    kind: &str,
) -> Result<Option<String>, StoreError> {
    super::row(
        conn,
        "SELECT met_how FROM deadlines WHERE case_id = ?1 AND kind = ?2",
        params![case_id, kind],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading deadlines")
    .map(Option::flatten)
}

/// Sets (or clears, with None) when a deadline's next stage fires.
pub fn set_next_at(
    conn: &Connection,
    id: i64,
    next: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE deadlines SET next_at = ?2 WHERE id = ?1",
        params![id, next.map(fmt_ts)],
    )
    .ctx("rescheduling a reminder")?;
    Ok(())
}

/// Moves a deadline to its next stage and when that fires.
pub fn advance_stage(
    conn: &Connection,
    id: i64,
    stage: u32,
    next: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE deadlines SET stage = ?2, next_at = ?3 WHERE id = ?1",
        params![id, stage, next.map(fmt_ts)],
    )
    .ctx("advancing a reminder")?;
    Ok(())
}

/// Records that a stage of a deadline fired; None when it already had
/// (UNIQUE on deadline + stage: a restart never repeats a reminder),
/// else the reminder's id.
pub fn insert_reminder(
    conn: &Connection,
    deadline: i64,
    stage: u32,
    kind: &str,
    fire_at: DateTime<Utc>,
    now: DateTime<Utc>,
    late: bool,
) -> Result<Option<i64>, StoreError> {
    let inserted = exec(
        conn,
        "INSERT INTO reminders (deadline, stage, kind, fire_at, sent_at, late)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(deadline, stage) DO NOTHING",
        params![deadline, stage, kind, fmt_ts(fire_at), fmt_ts(now), late],
    )
    .ctx("recording a reminder")?;
    Ok((inserted > 0).then(|| conn.last_insert_rowid()))
}

/// Links a reminder to the mail it queued.
pub fn set_reminder_message(conn: &Connection, id: i64, message: i64) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE reminders SET message = ?2 WHERE id = ?1",
        params![id, message],
    )
    .ctx("recording a reminder")?;
    Ok(())
}

/// When the stuck-acknowledgement alert of the SMTP outage still going on
/// was queued: the latest one, if no acknowledgement has been accepted by
/// the server since. One alert per outage, not one per case (an outage of
/// 5 minutes once brought 82).
pub fn ack_stuck_alert_of_outage(conn: &Connection) -> Result<Option<String>, StoreError> {
    super::row(
        conn,
        "SELECT r.sent_at FROM reminders r
         WHERE r.kind = 'ack-stuck' AND r.message IS NOT NULL
           AND r.sent_at >= coalesce(
               (SELECT max(sent_at) FROM outbox WHERE purpose = 'ack' AND status = 'sent'), '')
         ORDER BY r.sent_at DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()
    .ctx("looking for this outage's alert")
}

/// The cases other than `except` whose acknowledgement still waits in
/// the outbox, oldest first (at most `limit`), and how many there are.
pub fn cases_with_unsent_acks(
    conn: &Connection,
    except: &str,
    limit: usize,
) -> Result<(Vec<String>, usize), StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT DISTINCT case_id FROM outbox
             WHERE purpose = 'ack' AND status = 'scheduled' AND case_id IS NOT NULL
               AND case_id <> ?1
             ORDER BY case_id",
        )
        .ctx("listing unsent acknowledgements")?;
    let all: Vec<String> = st
        .query_map([except], |r| r.get(0))
        .ctx("listing unsent acknowledgements")?
        .collect::<Result<_, _>>()
        .ctx("listing unsent acknowledgements")?;
    let n = all.len();
    Ok((all.into_iter().take(limit).collect(), n))
}

/// Whether the digest of `day` (local date) was sent.
pub fn digest_sent(conn: &Connection, day: &str) -> Result<bool, StoreError> {
    Ok(
        super::row(conn, "SELECT 1 FROM digests WHERE day = ?1", [day], |_| {
            Ok(())
        })
        .optional()
        .ctx("reading digests")?
        .is_some(),
    )
}

/// Records the digest of `day` as sent; false when it already was.
pub fn record_digest(conn: &Connection, day: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let inserted = exec(
        conn,
        "INSERT INTO digests (day, sent_at) VALUES (?1, ?2) ON CONFLICT(day) DO NOTHING",
        params![day, fmt_ts(now)],
    )
    .ctx("recording a digest")?;
    Ok(inserted > 0)
}

/// Incoming mail filed without a case since `since` (robots that did not
/// thread, mail older than the backfill window).
pub fn unfiled_since(conn: &Connection, since: DateTime<Utc>) -> Result<i64, StoreError> {
    super::row(
        conn,
        "SELECT count(*) FROM messages
         WHERE direction = 'in' AND case_id IS NULL AND kind IN ('robot', 'old') AND at >= ?1",
        [fmt_ts(since)],
        |r| r.get(0),
    )
    .ctx("counting mail without a case")
}

/// A case's earliest unmet deadline: (kind, due_at).
pub fn next_open_deadline(
    conn: &Connection,
    case_id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    super::row(
        conn,
        "SELECT kind, due_at FROM deadlines WHERE case_id = ?1 AND met_at IS NULL
         ORDER BY due_at LIMIT 1",
        [case_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .ctx("reading deadlines")
}
