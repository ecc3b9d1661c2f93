//! The durable outbox and the acknowledgement limits (held acks).

use super::messages::RAW_OF_M;
use super::{exec, row, Ctx, StoreError};
use crate::clock::fmt_ts;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};

// ---------------------------------------------------------------------------
// Outbox

/// A row of the outbox that is due.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: i64,
    pub case_id: Option<String>,
    pub purpose: crate::model::MessageKind,
    pub envelope_from: String,
    pub recipients: Vec<String>,
    pub attempts: u32,
    pub raw: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
pub fn enqueue(
    conn: &Connection,
    message: i64,
    case_id: Option<&str>,
    purpose: crate::model::MessageKind,
    envelope_from: &str,
    recipients: &[String],
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let rcpts = recipients.join(",");
    let key = match recipients {
        [one] => Some(crate::model::mailbox_key(one)),
        _ => None,
    };
    exec(
        conn,
        "INSERT INTO outbox (message, case_id, purpose, envelope_from, recipients, status,
             next_attempt_at, created_at, recipient_key)
         VALUES (?1, ?2, ?3, ?4, ?5, 'scheduled', ?6, ?6, ?7)",
        params![
            message,
            case_id,
            purpose,
            envelope_from,
            rcpts,
            fmt_ts(now),
            key
        ],
    )
    .ctx("queueing outgoing mail")?;
    let id = conn.last_insert_rowid();
    if purpose == crate::model::MessageKind::Ack {
        let minute = now.timestamp().div_euclid(60);
        let n: i64 = row(
            conn,
            "INSERT INTO ack_minutes (minute, n) VALUES (?1, 1)
             ON CONFLICT (minute) DO UPDATE SET n = n + 1 RETURNING n",
            [minute],
            |r| r.get(0),
        )
        .ctx("counting an acknowledgement")?;
        // A new minute: forget the ones no hour looks at any more.
        if n == 1 {
            exec(
                conn,
                "DELETE FROM ack_minutes WHERE minute < ?1",
                [minute - 120],
            )
            .ctx("counting an acknowledgement")?;
        }
    }
    Ok(id)
}

/// Acknowledgements queued or held for the mailbox `key` (see
/// [`crate::model::mailbox_key`]) since `since`, for the per-sender limit.
pub fn acks_to_since(
    conn: &Connection,
    key: &str,
    since: DateTime<Utc>,
) -> Result<u32, StoreError> {
    row(
        conn,
        "SELECT (SELECT count(*) FROM outbox
                 WHERE purpose = 'ack' AND recipient_key = ?1 AND created_at >= ?2)
              + (SELECT count(*) FROM held_acks WHERE recipient_key = ?1 AND held_at >= ?2)",
        params![key, fmt_ts(since)],
        |r| r.get(0),
    )
    .ctx("counting acknowledgements")
}

/// Acknowledgements queued for anyone in the 60 minutes up to `now` (by
/// whole minutes), for the hourly limit.
pub fn acks_last_hour(conn: &Connection, now: DateTime<Utc>) -> Result<u32, StoreError> {
    let minute = now.timestamp().div_euclid(60);
    row(
        conn,
        "SELECT coalesce(sum(n), 0) FROM ack_minutes WHERE minute > ?1 AND minute <= ?2",
        [minute - 60, minute],
        |r| r.get(0),
    )
    .ctx("counting acknowledgements")
}

/// An acknowledgement held back by a limit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldAck {
    pub case_id: String,
    /// The stored outgoing message.
    pub message: i64,
    pub recipient: String,
    pub reason: String,
    pub held_at: String,
}

pub fn hold_ack(conn: &Connection, h: &HeldAck, key: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO held_acks (case_id, message, recipient, recipient_key, reason, held_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![h.case_id, h.message, h.recipient, key, h.reason, h.held_at],
    )
    .ctx("holding an acknowledgement")?;
    Ok(())
}

/// Held acknowledgements, oldest first; only `case_id`'s when given.
pub fn held_acks(conn: &Connection, case_id: Option<&str>) -> Result<Vec<HeldAck>, StoreError> {
    let mut st = conn
        .prepare_cached(
            "SELECT case_id, message, recipient, reason, held_at FROM held_acks
             WHERE ?1 IS NULL OR case_id = ?1 ORDER BY held_at, case_id",
        )
        .ctx("listing held acknowledgements")?;
    let rows = st
        .query_map([case_id], |r| {
            Ok(HeldAck {
                case_id: r.get(0)?,
                message: r.get(1)?,
                recipient: r.get(2)?,
                reason: r.get(3)?,
                held_at: r.get(4)?,
            })
        })
        .ctx("listing held acknowledgements")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing held acknowledgements")
}

pub fn unhold_ack(conn: &Connection, case_id: &str) -> Result<(), StoreError> {
    exec(conn, "DELETE FROM held_acks WHERE case_id = ?1", [case_id])
        .ctx("releasing a held acknowledgement")?;
    Ok(())
}

/// Due outbox rows: acknowledgements first (the promise to reporters is
/// the one with a clock), then oldest first.
/// Due outbox rows, at most `limit` of them and, past the first, at most
/// `max_bytes` of raw mail: a notification attaches the whole report, so
/// 64 rows could otherwise hold gigabytes.
pub fn due_outbox(
    conn: &Connection,
    now: DateTime<Utc>,
    limit: u32,
    max_bytes: usize,
) -> Result<Vec<OutboxItem>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT o.id, o.message, o.case_id, o.purpose, o.envelope_from, o.recipients,
                    o.attempts, {RAW_OF_M}
             FROM outbox o INDEXED BY outbox_order JOIN messages m ON m.id = o.message
             WHERE o.status = 'scheduled' AND o.next_attempt_at <= ?1
             ORDER BY o.status, (o.purpose <> 'ack'), o.next_attempt_at, o.id LIMIT ?2"
        ))
        .ctx("reading the outbox")?;
    let rows = st
        .query_map(params![fmt_ts(now), limit], |r| {
            let rcpts: String = r.get(5)?;
            Ok(OutboxItem {
                id: r.get(0)?,
                case_id: r.get(2)?,
                purpose: r.get(3)?,
                envelope_from: r.get(4)?,
                recipients: rcpts.split(',').map(str::to_owned).collect(),
                attempts: r.get(6)?,
                raw: r.get(7)?,
            })
        })
        .ctx("reading the outbox")?;
    let mut out: Vec<OutboxItem> = Vec::new();
    let mut bytes = 0;
    for item in rows {
        let item = item.ctx("reading the outbox")?;
        bytes += item.raw.len();
        out.push(item);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// When the next scheduled outbox row falls due, if any.
pub fn next_outbox_due(conn: &Connection) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT min(next_attempt_at) FROM outbox WHERE status = 'scheduled'",
        [],
        |r| r.get(0),
    )
    .ctx("reading the outbox")
}

/// Marks `ids` as about to be sent, in a committed write: the outbox sends
/// a mail only after this succeeded, so a state file that cannot record
/// an attempt (a full disk, a read-only file) stops the sending instead of
/// letting mail go out that will be sent again after a restart.
pub fn outbox_claim(
    s: &mut super::Store,
    ids: &[i64],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let tx = s.transaction()?;
    {
        let mut st = tx
            .prepare_cached(
                "UPDATE outbox SET claimed_at = ?2 WHERE id = ?1 AND status = 'scheduled'",
            )
            .ctx("claiming outgoing mail")?;
        let at = fmt_ts(at);
        for id in ids {
            st.execute(rusqlite::params![id, at])
                .ctx("claiming outgoing mail")?;
        }
    }
    super::commit(tx, "claiming outgoing mail")
}

/// A small committed write, to learn whether the state file takes writes
/// again after one failed.
pub fn probe_write(s: &mut super::Store, at: DateTime<Utc>) -> Result<(), StoreError> {
    let tx = s.transaction()?;
    exec(
        &tx,
        "INSERT INTO storage_probe (id, at) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        [fmt_ts(at)],
    )
    .ctx("probing the state file")?;
    super::commit(tx, "probing the state file")
}

pub fn outbox_sent(conn: &Connection, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
    exec(conn,
        "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
         WHERE id = ?1",
        params![id, fmt_ts(at)],
    )
    .ctx("recording a delivery")?;
    Ok(())
}

/// Makes every waiting row due now: the server works again, so mail
/// that backed off during the outage need not wait out its own backoff
/// (after 5 minutes of 451 answers the outbox took 288 s more to drain,
/// issue 12). Returns how many rows were brought forward.
pub fn outbox_due_now(conn: &Connection, now: DateTime<Utc>) -> Result<usize, StoreError> {
    exec(
        conn,
        "UPDATE outbox SET next_attempt_at = ?1 WHERE status = 'scheduled' AND next_attempt_at > ?1",
        [fmt_ts(now)],
    )
    .ctx("bringing waiting mail forward")
}

/// Puts every waiting row off until at least `until`: the server refused
/// our login, and trying each queued mail once more would be one refused
/// login per mail (an account lockout with a backlog).
pub fn outbox_defer_all(conn: &Connection, until: DateTime<Utc>) -> Result<usize, StoreError> {
    exec(
        conn,
        "UPDATE outbox SET next_attempt_at = ?1 WHERE status = 'scheduled' AND next_attempt_at < ?1",
        [fmt_ts(until)],
    )
    .ctx("putting waiting mail off")
}

pub fn outbox_retry(
    conn: &Connection,
    id: i64,
    next: DateTime<Utc>,
    error: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE id = ?1",
        params![id, fmt_ts(next), error],
    )
    .ctx("scheduling a retry")?;
    Ok(())
}

pub fn outbox_failed(conn: &Connection, id: i64, error: &str) -> Result<(), StoreError> {
    exec(conn,
        "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
        params![id, error],
    )
    .ctx("recording a failed delivery")?;
    Ok(())
}

/// Outbox backlog: number of unsent rows and the creation time of the oldest.
pub fn outbox_backlog(conn: &Connection) -> Result<(u64, Option<String>), StoreError> {
    row(
        conn,
        "SELECT count(*), min(created_at) FROM outbox WHERE status = 'scheduled'",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )
    .ctx("reading the outbox backlog")
}

/// Withdraws the outage alerts about `component` still waiting in the
/// outbox (their Message-IDs start with the component's name): once it
/// works again, an alert that says it fails is stale. The stored messages
/// stay; returns how many were withdrawn.
pub fn withdraw_stale_alerts(conn: &Connection, component: &str) -> Result<usize, StoreError> {
    exec(
        conn,
        "DELETE FROM outbox WHERE status = 'scheduled' AND purpose = 'alert' AND case_id IS NULL
           AND message IN (SELECT id FROM messages WHERE message_id LIKE ?1 || '.%')",
        [component],
    )
    .ctx("withdrawing stale alerts")
}

pub fn outbox_failed_count(conn: &Connection) -> Result<u64, StoreError> {
    row(
        conn,
        "SELECT count(*) FROM outbox WHERE status = 'failed'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n as u64),
    )
    .ctx("reading the outbox")
}
