//! Stored messages (in and out), their raw bytes, and per-case facts.

use super::{exec, row, Ctx, StoreError};
use crate::clock::fmt_ts;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

// ---------------------------------------------------------------------------
// Messages

/// A message to record.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub direction: crate::model::Direction,
    pub dedup_key: String,
    pub folder: Option<&'a str>,
    pub uidvalidity: Option<u32>,
    pub uid: Option<u32>,
    pub message_id: Option<String>,
    pub case_id: Option<String>,
    pub kind: crate::model::MessageKind,
    pub robot_rule: Option<&'static str>,
    pub from_addr: Option<String>,
    pub to_addrs: Option<String>,
    pub subject: Option<String>,
    pub in_reply_to: Option<String>,
    pub refs: Option<String>,
    pub parsed_ok: bool,
    pub encrypted: bool,
    pub size: u64,
    pub truncated: bool,
    pub at: DateTime<Utc>,
    pub raw: &'a [u8],
    /// [`crate::mail::message::ParsedMessage::content_key`]; `None` for mail we send.
    pub content_key: Option<String>,
}

pub fn message_seen(conn: &Connection, dedup_key: &str) -> Result<bool, StoreError> {
    row(
        conn,
        "SELECT 1 FROM messages WHERE dedup_key = ?1",
        [dedup_key],
        |_| Ok(()),
    )
    .optional()
    .ctx("checking for a duplicate message")
    .map(|o| o.is_some())
}

/// The content key recorded with the message stored under `dedup_key`:
/// `None` when there is no such message, `Some(None)` when it was stored
/// before content keys existed.
pub fn content_key_of(
    conn: &Connection,
    dedup_key: &str,
) -> Result<Option<Option<String>>, StoreError> {
    row(
        conn,
        "SELECT content_key FROM messages WHERE dedup_key = ?1",
        [dedup_key],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading a stored message's content key")
}

/// Messages at least this large are kept in `message_raw` and written into
/// a zeroblob through SQLite's incremental blob I/O: a bound blob parameter
/// is copied whole first (SQLITE_TRANSIENT), one more copy of a large
/// report at the peak. Smaller ones stay in `messages.raw`: one insert
/// each keeps the backlog fast.
pub(super) const BLOB_STREAM_BYTES: usize = 256 * 1024;

/// The raw bytes of message `m` (an alias of `messages`), wherever they are.
pub(super) const RAW_OF_M: &str = "coalesce((SELECT raw FROM message_raw WHERE id = m.id), m.raw)";

pub fn insert_message(conn: &Connection, m: &NewMessage<'_>) -> Result<i64, StoreError> {
    use rusqlite::blob::ZeroBlob;
    let stream = m.raw.len() >= BLOB_STREAM_BYTES;
    let raw: &[u8] = if stream { &[] } else { m.raw };
    exec(conn,
        "INSERT INTO messages (direction, dedup_key, folder, uidvalidity, uid, message_id, case_id,
             kind, robot_rule, from_addr, to_addrs, subject, in_reply_to, refs, parsed_ok,
             encrypted, size, truncated, at, raw, content_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        params![
            m.direction,
            m.dedup_key,
            m.folder,
            m.uidvalidity,
            m.uid,
            m.message_id,
            m.case_id,
            m.kind,
            m.robot_rule,
            m.from_addr,
            m.to_addrs,
            m.subject,
            m.in_reply_to,
            m.refs,
            m.parsed_ok,
            m.encrypted,
            m.size as i64,
            m.truncated,
            fmt_ts(m.at),
            raw,
            m.content_key,
        ],
    )
    .ctx("storing a message")?;
    let id = conn.last_insert_rowid();
    if stream {
        use std::io::Write;
        let len = i32::try_from(m.raw.len()).map_err(|_| StoreError::Query {
            context: "storing a message over 2 GiB",
            source: rusqlite::Error::ToSqlConversionFailure("message too large".into()),
        })?;
        exec(
            conn,
            "INSERT INTO message_raw (id, raw) VALUES (?1, ?2)",
            params![id, ZeroBlob(len)],
        )
        .ctx("storing a message")?;
        let mut blob = conn
            .blob_open(
                rusqlite::DatabaseName::Main,
                "message_raw",
                "raw",
                id,
                false,
            )
            .ctx("storing a message")?;
        blob.write_all(m.raw).map_err(|e| StoreError::Query {
            context: "storing a message",
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
    }
    Ok(id)
}

/// The case a Message-ID belongs to, if any message we stored (in or out)
/// carries it.
pub fn case_of_message_id(conn: &Connection, mid: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT case_id FROM messages WHERE message_id = ?1 AND case_id IS NOT NULL
         ORDER BY id LIMIT 1",
        [mid],
        |r| r.get(0),
    )
    .optional()
    .ctx("looking up a Message-ID")
}

/// The kind of the message we stored with Message-ID `mid`, if any.
pub fn kind_of_message_id(
    conn: &Connection,
    mid: &str,
) -> Result<Option<crate::model::MessageKind>, StoreError> {
    row(
        conn,
        "SELECT kind FROM messages WHERE message_id = ?1 ORDER BY id LIMIT 1",
        [mid],
        |r| r.get(0),
    )
    .optional()
    .ctx("looking up a Message-ID")
}

/// Whether `addr` takes part in the case: its reporter, or the sender of
/// its report (when the reporter asked for answers at a Reply-To).
/// Handlers are checked by the caller; nobody else joins a case.
pub fn takes_part(conn: &Connection, case_id: &str, addr: &str) -> Result<bool, StoreError> {
    let n: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM cases WHERE id = ?1 AND reporter = ?2)
                  + (SELECT count(*) FROM messages
                     WHERE case_id = ?1 AND kind = 'report' AND from_addr = ?2)",
            params![case_id, addr],
            |r| r.get(0),
        )
        .ctx("checking who takes part in a case")?;
    Ok(n > 0)
}

pub fn set_message_case(conn: &Connection, msg: i64, case_id: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE messages SET case_id = ?2 WHERE id = ?1",
        params![msg, case_id],
    )
    .ctx("attaching a message to a case")?;
    Ok(())
}

/// A stored message, without its raw bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageRow {
    pub id: i64,
    pub direction: crate::model::Direction,
    pub kind: crate::model::MessageKind,
    pub robot_rule: Option<String>,
    pub message_id: Option<String>,
    pub case_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub at: String,
    pub size: i64,
    pub parsed_ok: bool,
    pub encrypted: bool,
    pub truncated: bool,
    /// Its raw bytes were dropped (retention, or the case was erased).
    pub purged: bool,
}

const MESSAGE_COLS: &str = "id, direction, kind, robot_rule, message_id, case_id, from_addr,
    to_addrs, subject, at, size, parsed_ok, encrypted, truncated, purged";

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: r.get(0)?,
        direction: r.get(1)?,
        kind: r.get(2)?,
        robot_rule: r.get(3)?,
        message_id: r.get(4)?,
        case_id: r.get(5)?,
        from: r.get(6)?,
        to: r.get(7)?,
        subject: r.get(8)?,
        at: r.get(9)?,
        size: r.get(10)?,
        parsed_ok: r.get(11)?,
        encrypted: r.get(12)?,
        truncated: r.get(13)?,
        purged: r.get(14)?,
    })
}

pub fn messages_of_case(conn: &Connection, case_id: &str) -> Result<Vec<MessageRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE case_id = ?1 ORDER BY at, id"
        ))
        .ctx("listing a case's messages")?;
    let rows = st
        .query_map([case_id], message_row)
        .ctx("listing a case's messages")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing a case's messages")
}

pub fn robot_messages(conn: &Connection) -> Result<Vec<MessageRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE kind = 'robot' ORDER BY id"
        ))
        .ctx("listing auto-generated mail")?;
    let rows = st
        .query_map([], message_row)
        .ctx("listing auto-generated mail")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing auto-generated mail")
}

/// Incoming mail that belongs to no case: robots that did not thread and
/// messages older than the backfill window.
pub fn unattached_messages(conn: &Connection) -> Result<Vec<MessageRow>, StoreError> {
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLS} FROM messages WHERE direction = 'in' AND case_id IS NULL ORDER BY id"
        ))
        .ctx("listing mail without a case")?;
    let rows = st
        .query_map([], message_row)
        .ctx("listing mail without a case")?;
    rows.collect::<Result<_, _>>()
        .ctx("listing mail without a case")
}

pub fn message(conn: &Connection, id: i64) -> Result<Option<(MessageRow, Vec<u8>)>, StoreError> {
    row(
        conn,
        &format!("SELECT {MESSAGE_COLS}, {RAW_OF_M} FROM messages m WHERE id = ?1"),
        [id],
        |r| Ok((message_row(r)?, r.get(15)?)),
    )
    .optional()
    .ctx("reading a message")
}

/// A stored message and at most the first `max` bytes of its raw bytes,
/// read through incremental blob I/O, with the full length: building a
/// handler mail for a 27 MiB report read it whole twice (SQLite's value
/// and its copy).
pub fn message_prefix(
    conn: &Connection,
    id: i64,
    max: usize,
) -> Result<Option<(MessageRow, Vec<u8>, usize)>, StoreError> {
    use std::io::Read;
    let Some(row) = row(
        conn,
        &format!("SELECT {MESSAGE_COLS} FROM messages m WHERE id = ?1"),
        [id],
        message_row,
    )
    .optional()
    .ctx("reading a message")?
    else {
        return Ok(None);
    };
    let table = if exists(conn, "SELECT 1 FROM message_raw WHERE id = ?1", [id])? {
        "message_raw"
    } else {
        "messages"
    };
    let mut blob = conn
        .blob_open(rusqlite::DatabaseName::Main, table, "raw", id, true)
        .ctx("reading a message")?;
    let len = blob.len();
    let mut raw = Vec::with_capacity(len.min(max));
    (&mut blob)
        .take(max as u64)
        .read_to_end(&mut raw)
        .map_err(|e| StoreError::Query {
            context: "reading a message",
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        })?;
    Ok(Some((row, raw, len)))
}

/// Whether `sql` (a `SELECT 1 …`) finds a row.
fn exists<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> Result<bool, StoreError> {
    row(conn, sql, params, |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
        .ctx("looking up a row")
}

/// A fact recorded for the advisory: `credit`, `summary`.
pub fn fact(conn: &Connection, case_id: &str, key: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT value FROM case_facts WHERE case_id = ?1 AND key = ?2",
        [case_id, key],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading a case fact")
}

pub fn set_fact(
    conn: &Connection,
    case_id: &str,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO case_facts (case_id, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (case_id, key) DO UPDATE SET value = excluded.value",
        [case_id, key, value],
    )
    .ctx("recording a case fact")?;
    Ok(())
}

/// Whether the case's reporter gets no updates (`/quiet`).
pub fn is_quiet(conn: &Connection, case_id: &str) -> Result<bool, StoreError> {
    exists(
        conn,
        "SELECT 1 FROM quiet_cases WHERE case_id = ?1",
        [case_id],
    )
}

pub fn set_quiet(conn: &Connection, case_id: &str, quiet: bool) -> Result<(), StoreError> {
    let sql = if quiet {
        "INSERT INTO quiet_cases (case_id) VALUES (?1) ON CONFLICT DO NOTHING"
    } else {
        "DELETE FROM quiet_cases WHERE case_id = ?1"
    };
    exec(conn, sql, [case_id]).ctx("setting /quiet")?;
    Ok(())
}

pub fn set_message_kind(
    conn: &Connection,
    id: i64,
    kind: crate::model::MessageKind,
) -> Result<(), StoreError> {
    exec(
        conn,
        "UPDATE messages SET kind = ?2 WHERE id = ?1",
        params![id, kind],
    )
    .ctx("updating a message")?;
    Ok(())
}
