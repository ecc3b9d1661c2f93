//! The counts `secintake metrics` reports, read in one pass over the
//! state file (counters are row counts: they survive restarts).

use super::{Ctx, StoreError};
use rusqlite::Connection;

/// What the state file says, for the metrics.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Incoming messages by kind (`report`, `robot`, `follow-up`, …).
    pub incoming: Vec<(String, u64)>,
    /// Outgoing mail by purpose and status (`sent`, `failed`, `scheduled`).
    pub outgoing: Vec<(String, String, u64)>,
    /// The oldest unsent mail's creation time.
    pub oldest_unsent_at: Option<String>,
    /// Cases by state.
    pub cases: Vec<(String, u64)>,
    /// Deadlines by kind: met on time, met late, missed (open and past).
    pub deadlines: Vec<(String, u64, u64, u64)>,
    /// The last successful sync of any folder.
    pub last_sync_at: Option<String>,
}

fn pairs(conn: &Connection, sql: &str) -> Result<Vec<(String, u64)>, StoreError> {
    let mut st = conn.prepare_cached(sql).ctx("reading metrics")?;
    let rows = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .ctx("reading metrics")?;
    rows.collect::<Result<_, _>>().ctx("reading metrics")
}

/// Reads every count; `now` decides which open deadlines are missed.
pub fn counts(conn: &Connection, now: &str) -> Result<Counts, StoreError> {
    let incoming = pairs(
        conn,
        "SELECT kind, count(*) FROM messages WHERE direction = 'in' GROUP BY kind ORDER BY kind",
    )?;
    let mut st = conn
        .prepare_cached(
            "SELECT purpose, status, count(*) FROM outbox GROUP BY purpose, status
             ORDER BY purpose, status",
        )
        .ctx("reading metrics")?;
    let outgoing = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .ctx("reading metrics")?
        .collect::<Result<_, _>>()
        .ctx("reading metrics")?;
    let oldest_unsent_at = conn
        .query_row(
            "SELECT min(created_at) FROM outbox WHERE status = 'scheduled'",
            [],
            |r| r.get(0),
        )
        .ctx("reading metrics")?;
    let cases = pairs(
        conn,
        "SELECT state, count(*) FROM cases GROUP BY state ORDER BY state",
    )?;
    let mut st = conn
        .prepare_cached(
            "SELECT kind,
                    sum(met_at IS NOT NULL AND met_at <= due_at),
                    sum(met_at IS NOT NULL AND met_at > due_at),
                    sum(met_at IS NULL AND due_at < ?1)
             FROM deadlines GROUP BY kind ORDER BY kind",
        )
        .ctx("reading metrics")?;
    let deadlines = st
        .query_map([now], |r| {
            let n = |i| r.get::<_, Option<i64>>(i).map(|v| v.unwrap_or(0) as u64);
            Ok((r.get::<_, String>(0)?, n(1)?, n(2)?, n(3)?))
        })
        .ctx("reading metrics")?
        .collect::<Result<_, _>>()
        .ctx("reading metrics")?;
    let last_sync_at = conn
        .query_row("SELECT max(last_sync_at) FROM folders", [], |r| r.get(0))
        .ctx("reading metrics")?;
    Ok(Counts {
        incoming,
        outgoing,
        oldest_unsent_at,
        cases,
        deadlines,
        last_sync_at,
    })
}
