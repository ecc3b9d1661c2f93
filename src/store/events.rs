//! The audit trail: one row per thing that happened to a case.

use super::{exec, Ctx, StoreError};
use crate::clock::fmt_ts;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

// ---------------------------------------------------------------------------
// Events

/// One line of a case's audit trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub at: String,
    pub actor: String,
    pub what: String,
    pub detail: Option<String>,
    pub source_message_id: Option<String>,
}

pub fn add_event(
    conn: &Connection,
    case_id: &str,
    at: DateTime<Utc>,
    actor: &str,
    what: &str,
    detail: Option<&str>,
    source_message_id: Option<&str>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO events (case_id, at, actor, what, detail, source_message_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![case_id, fmt_ts(at), actor, what, detail, source_message_id],
    )
    .ctx("recording an event")?;
    Ok(())
}

pub fn events_of_case(conn: &Connection, case_id: &str) -> Result<Vec<EventRow>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT at, actor, what, detail, source_message_id FROM events
             WHERE case_id = ?1 ORDER BY at, id",
        )
        .ctx("listing events")?;
    let rows = st
        .query_map([case_id], |r| {
            Ok(EventRow {
                at: r.get(0)?,
                actor: r.get(1)?,
                what: r.get(2)?,
                detail: r.get(3)?,
                source_message_id: r.get(4)?,
            })
        })
        .ctx("listing events")?;
    rows.collect::<Result<_, _>>().ctx("listing events")
}
