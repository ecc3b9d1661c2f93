//! Case rows, case fields, settings and pending notifications.

use super::{exec, row, Ctx, StoreError};
use crate::clock::fmt_ts;
use crate::model::Kind;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

// ---------------------------------------------------------------------------
// Cases

/// Allocates the next case number of `year`.
pub fn next_case_seq(conn: &Connection, year: i32) -> Result<u32, StoreError> {
    row(
        conn,
        "INSERT INTO case_seq (year, last) VALUES (?1, 1)
         ON CONFLICT(year) DO UPDATE SET last = last + 1 RETURNING last",
        [year],
        |r| r.get(0),
    )
    .ctx("allocating a case number")
}

/// A case as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseRow {
    pub id: String,
    pub state: crate::model::State,
    pub reporter: Option<String>,
    pub subject: Option<String>,
    pub received_at: String,
    pub ack_due_at: String,
    pub respond_due_at: String,
    pub acknowledged_at: Option<String>,
    pub responded_at: Option<String>,
    pub unparsed: bool,
    pub primary_handler: Option<String>,
    pub severity: Option<String>,
    pub affected: Option<String>,
    pub fixed_in: Option<String>,
    pub cve: Option<String>,
    pub duplicate_of: Option<String>,
    /// Message-ID (without brackets) of the handlers' notification, the
    /// root of the case's thread. Internal; not part of the JSON shape.
    #[serde(skip)]
    pub thread_root: Option<String>,
    /// The report arrived encrypted: its content goes to nobody in
    /// cleartext (see `workflow` and `outgoing`).
    pub encrypted: bool,
    /// The real subject of an encrypted report (its protected headers),
    /// shown only locally and inside encrypted mail.
    pub protected_subject: Option<String>,
    /// Fingerprint of the reporter's OpenPGP key, when one is known.
    pub reporter_key: Option<String>,
}

const CASE_COLS: &str = "id, state, reporter, subject, received_at, ack_due_at, respond_due_at,
    acknowledged_at, responded_at, unparsed, primary_handler, severity, affected, fixed_in, cve,
    duplicate_of, thread_root, encrypted, protected_subject, reporter_key";

fn case_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CaseRow> {
    Ok(CaseRow {
        id: r.get(0)?,
        state: r.get(1)?,
        reporter: r.get(2)?,
        subject: r.get(3)?,
        received_at: r.get(4)?,
        ack_due_at: r.get(5)?,
        respond_due_at: r.get(6)?,
        acknowledged_at: r.get(7)?,
        responded_at: r.get(8)?,
        unparsed: r.get(9)?,
        primary_handler: r.get(10)?,
        severity: r.get(11)?,
        affected: r.get(12)?,
        fixed_in: r.get(13)?,
        cve: r.get(14)?,
        duplicate_of: r.get(15)?,
        thread_root: r.get(16)?,
        encrypted: r.get(17)?,
        protected_subject: r.get(18)?,
        reporter_key: r.get(19)?,
    })
}

pub fn insert_case(conn: &Connection, c: &CaseRow) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO cases (id, state, reporter, subject, received_at, ack_due_at, respond_due_at,
             acknowledged_at, responded_at, unparsed, primary_handler, thread_root, encrypted,
             protected_subject, reporter_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            c.id,
            c.state,
            c.reporter,
            c.subject,
            c.received_at,
            c.ack_due_at,
            c.respond_due_at,
            c.acknowledged_at,
            c.responded_at,
            c.unparsed,
            c.primary_handler,
            c.thread_root,
            c.encrypted,
            c.protected_subject,
            c.reporter_key
        ],
    )
    .ctx("opening a case")?;
    Ok(())
}

pub fn case(conn: &Connection, id: &str) -> Result<Option<CaseRow>, StoreError> {
    row(
        conn,
        &format!("SELECT {CASE_COLS} FROM cases WHERE id = ?1"),
        [id],
        case_row,
    )
    .optional()
    .ctx("reading a case")
}

pub fn cases(
    conn: &Connection,
    state: Option<crate::model::State>,
) -> Result<Vec<CaseRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {CASE_COLS} FROM cases WHERE ?1 IS NULL OR state = ?1 ORDER BY received_at, id"
        ))
        .ctx("listing cases")?;
    let rows = st.query_map([state], case_row).ctx("listing cases")?;
    rows.collect::<Result<_, _>>().ctx("listing cases")
}

/// A case attribute a handler may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseField {
    State,
    PrimaryHandler,
    Severity,
    Affected,
    FixedIn,
    Cve,
    DuplicateOf,
}

impl CaseField {
    fn column(self) -> &'static str {
        match self {
            CaseField::State => "state",
            CaseField::PrimaryHandler => "primary_handler",
            CaseField::Severity => "severity",
            CaseField::Affected => "affected",
            CaseField::FixedIn => "fixed_in",
            CaseField::Cve => "cve",
            CaseField::DuplicateOf => "duplicate_of",
        }
    }
}

pub fn set_case_field(
    conn: &Connection,
    id: &str,
    field: CaseField,
    value: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        &format!("UPDATE cases SET {} = ?2 WHERE id = ?1", field.column()),
        params![id, value],
    )
    .ctx("updating a case")?;
    Ok(())
}

/// Sets the forged-mail alert flag; returns true the first time.
pub fn first_forged_alert(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE cases SET forged_alerted = 1 WHERE id = ?1 AND forged_alerted = 0",
            [id],
        )
        .ctx("recording a forged-mail alert")?;
    Ok(n > 0)
}

/// Promises a handler notification for a new case (built later by
/// `workflow::build_pending_notifications`).
pub fn add_pending_notification(
    conn: &Connection,
    case_id: &str,
    message: i64,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO pending_notifications (case_id, message) VALUES (?1, ?2)
         ON CONFLICT(case_id) DO NOTHING",
        params![case_id, message],
    )
    .ctx("promising a notification")?;
    Ok(())
}

/// Up to `limit` promised notifications: (case id, report message id).
pub fn pending_notifications(
    conn: &Connection,
    limit: u32,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT case_id, message FROM pending_notifications ORDER BY rowid LIMIT ?1",
        )
        .ctx("reading promised notifications")?;
    let rows = st
        .query_map([limit], |r| Ok((r.get(0)?, r.get(1)?)))
        .ctx("reading promised notifications")?;
    rows.collect::<Result<_, _>>()
        .ctx("reading promised notifications")
}

pub fn done_pending_notification(conn: &Connection, case_id: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "DELETE FROM pending_notifications WHERE case_id = ?1",
        [case_id],
    )
    .ctx("keeping a promised notification")?;
    Ok(())
}

/// Reads a setting (small persistent counters such as the round-robin position).
pub fn setting(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT value FROM settings WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading a setting")
}

pub fn set_setting(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .ctx("saving a setting")?;
    Ok(())
}

/// Records that a case's acknowledgement went out (SMTP accepted it, or an
/// operator says it went another way): the case's `acknowledged_at` and
/// its acknowledge and ack-queued deadlines, together. The one place that
/// keeps the two copies in step; returns whether the acknowledge deadline
/// was still open.
pub fn record_acknowledged(
    conn: &Connection,
    case_id: &str,
    at: DateTime<Utc>,
    how: &str,
) -> Result<bool, StoreError> {
    mark_acknowledged(conn, case_id, at)?;
    let met = super::meet(conn, case_id, Kind::Acknowledge, at, how)?;
    super::meet(conn, case_id, Kind::AckQueued, at, how)?;
    Ok(met)
}

/// Records a response to the reporter: the case's `responded_at` (first
/// time only) and its respond deadline, together. Returns whether this was
/// the first response.
pub fn record_responded(
    conn: &Connection,
    case_id: &str,
    at: DateTime<Utc>,
    how: &str,
) -> Result<bool, StoreError> {
    let first = mark_responded(conn, case_id, at)?;
    super::meet(conn, case_id, Kind::Respond, at, how)?;
    Ok(first)
}

/// Records when the case was first acknowledged; returns whether it
/// changed. The state move is `workflow::acknowledged`'s.
fn mark_acknowledged(conn: &Connection, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE cases SET acknowledged_at = ?2 WHERE id = ?1 AND acknowledged_at IS NULL",
            params![id, fmt_ts(at)],
        )
        .ctx("marking a case acknowledged")?;
    Ok(n > 0)
}

/// Records the first response to the reporter; returns whether it changed.
fn mark_responded(conn: &Connection, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
    let n = conn
        .execute(
            "UPDATE cases SET responded_at = ?2 WHERE id = ?1 AND responded_at IS NULL",
            params![id, fmt_ts(at)],
        )
        .ctx("recording a response")?;
    Ok(n > 0)
}

/// The case fact holding the reporter's OpenPGP key, armored.
const REPORTER_KEY_FACT: &str = "reporter_pgp_key";

/// Records the reporter's OpenPGP key on the case: its fingerprint (shown
/// by `cases show`) and the key itself.
pub fn set_reporter_key(
    conn: &Connection,
    case_id: &str,
    fingerprint: &str,
    armored: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE cases SET reporter_key = ?2 WHERE id = ?1",
        params![case_id, fingerprint],
    )
    .ctx("recording the reporter's key")?;
    super::set_fact(conn, case_id, REPORTER_KEY_FACT, armored)
}

/// The reporter's OpenPGP key recorded on the case, armored.
pub fn reporter_key(conn: &Connection, case_id: &str) -> Result<Option<String>, StoreError> {
    super::fact(conn, case_id, REPORTER_KEY_FACT)
}

/// Cases not closed (for `status`; rejected, duplicate and announced ones
/// count, as they always have).
pub fn count_not_closed(conn: &Connection) -> Result<i64, StoreError> {
    row(
        conn,
        "SELECT count(*) FROM cases WHERE state NOT IN ('closed')",
        [],
        |r| r.get(0),
    )
    .ctx("counting cases")
}
