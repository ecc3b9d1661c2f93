//! Folder sync state (UIDVALIDITY, last UID) and the poison guard's
//! intake attempts.

use super::{exec, row, Ctx, StoreError};
use crate::clock::fmt_ts;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

// ---------------------------------------------------------------------------
// Folders

/// What we know about an IMAP folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderState {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

pub fn folder_state(conn: &Connection, name: &str) -> Result<Option<FolderState>, StoreError> {
    row(
        conn,
        "SELECT uidvalidity, last_uid FROM folders WHERE name = ?1",
        [name],
        |r| {
            Ok(FolderState {
                uidvalidity: r.get(0)?,
                last_uid: r.get(1)?,
            })
        },
    )
    .optional()
    .ctx("reading folder state")
}

/// Records the folder's UIDVALIDITY and last processed UID. The last UID only
/// grows within one UIDVALIDITY.
pub fn set_folder_state(
    conn: &Connection,
    name: &str,
    st: &FolderState,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO folders (name, uidvalidity, last_uid, last_sync_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO UPDATE SET
           last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                           THEN max(last_uid, excluded.last_uid) ELSE excluded.last_uid END,
           uidvalidity = excluded.uidvalidity,
           last_sync_at = excluded.last_sync_at",
        params![name, st.uidvalidity, st.last_uid, fmt_ts(now)],
    )
    .ctx("saving folder state")?;
    Ok(())
}

/// Poison guard, before processing: the attempts already counted for each
/// of `uids` (0 for none), in the order given: the most of any attempted
/// range that holds the UID.
pub fn intake_attempts(
    conn: &Connection,
    folder: &str,
    uidvalidity: u32,
    uids: &[u32],
) -> Result<Vec<u32>, StoreError> {
    let (Some(lo), Some(hi)) = (uids.iter().min(), uids.iter().max()) else {
        return Ok(Vec::new());
    };
    let mut st = conn
        .prepare_cached(
            "SELECT first_uid, last_uid, attempts FROM intake_attempts
             WHERE folder = ?1 AND uidvalidity = ?2 AND first_uid <= ?4 AND last_uid >= ?3",
        )
        .ctx("reading intake attempts")?;
    let ranges = st
        .query_map(params![folder, uidvalidity, lo, hi], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, u32>(2)?,
            ))
        })
        .ctx("reading intake attempts")?
        .collect::<Result<Vec<_>, _>>()
        .ctx("reading intake attempts")?;
    Ok(uids
        .iter()
        .map(|uid| {
            ranges
                .iter()
                .filter(|(first, last, _)| first <= uid && uid <= last)
                .map(|(_, _, attempts)| *attempts)
                .max()
                .unwrap_or(0)
        })
        .collect())
}

/// Poison guard: counts one more attempt at processing `uids`, as one
/// range row; `prior` is what the UIDs already had (see
/// [`intake_attempts`]), so a message tried alone after its group failed
/// counts as a second attempt. The caller commits before touching them.
pub fn count_intake_attempt(
    conn: &Connection,
    folder: &str,
    uidvalidity: u32,
    uids: &[u32],
    prior: u32,
) -> Result<(), StoreError> {
    let (Some(lo), Some(hi)) = (uids.iter().min(), uids.iter().max()) else {
        return Ok(());
    };
    exec(
        conn,
        "INSERT INTO intake_attempts (folder, uidvalidity, first_uid, last_uid, attempts)
         VALUES (?1, ?2, ?3, ?4, ?5 + 1)
         ON CONFLICT (folder, uidvalidity, first_uid, last_uid)
         DO UPDATE SET attempts = max(attempts, ?5) + 1",
        params![folder, uidvalidity, lo, hi, prior],
    )
    .ctx("counting an intake attempt")?;
    Ok(())
}

/// Poison guard: the UIDs up to `max_uid` are recorded; forget their
/// attempts (in the transaction that records them).
pub fn clear_intake_attempts(
    conn: &Connection,
    folder: &str,
    uidvalidity: u32,
    max_uid: u32,
) -> Result<(), StoreError> {
    exec(
        conn,
        "DELETE FROM intake_attempts WHERE folder = ?1 AND (uidvalidity <> ?2 OR last_uid <= ?3)",
        params![folder, uidvalidity, max_uid],
    )
    .ctx("clearing intake attempts")?;
    Ok(())
}

/// When `name` was last synced (for `status`).
pub fn last_sync_at(conn: &Connection, name: &str) -> Result<Option<String>, StoreError> {
    row(
        conn,
        "SELECT last_sync_at FROM folders WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .optional()
    .ctx("reading folder state")
    .map(Option::flatten)
}
