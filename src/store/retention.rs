//! What is kept, and for how long (issue 12): raw reports are unfixed
//! vulnerabilities and reporters' personal data. `purge_closed` drops the
//! raw bytes and bodies of cases closed long ago (facts, deadlines and
//! the event log stay); `purge_delivered` drops the stored copies of
//! outgoing mail delivered long ago; `erase_case` removes one case's
//! personal data on request.

use super::{exec, Ctx, StoreError};
use rusqlite::Connection;

/// States in which a case is finished.
const FINISHED: &str = "('closed', 'rejected', 'duplicate')";

/// Drops the raw bytes (and so the bodies) of the messages of cases that
/// entered a finished state before `before`; returns how many messages.
/// The message rows stay (who wrote when, with which subject), marked
/// `purged`.
pub fn purge_closed(conn: &Connection, before: &str) -> Result<usize, StoreError> {
    let cases = format!(
        "SELECT c.id FROM cases c WHERE c.state IN {FINISHED}
           AND (SELECT max(e.at) FROM events e
                WHERE e.case_id = c.id AND e.what = 'state changed') < ?1"
    );
    let ids = format!(
        "SELECT id FROM messages WHERE purged = 0 AND case_id IN ({cases})
           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message = messages.id
                           AND o.status = 'scheduled')"
    );
    exec(
        conn,
        &format!("DELETE FROM message_raw WHERE id IN ({ids})"),
        [before],
    )
    .ctx("purging raw bytes")?;
    exec(
        conn,
        &format!("UPDATE messages SET raw = x'', purged = 1 WHERE id IN ({ids})"),
        [before],
    )
    .ctx("purging raw bytes")
}

/// Drops the stored copies of outgoing mail delivered before `before`;
/// returns how many. Kept while their case is open: acknowledgements
/// aside, they are the internal mail the leak guard keeps from reaching
/// the reporter (a handler's reply may quote a month-old notification).
pub fn purge_delivered(conn: &Connection, before: &str) -> Result<usize, StoreError> {
    let ids = format!(
        "SELECT m.id FROM messages m JOIN outbox o ON o.message = m.id
         WHERE m.direction = 'out' AND m.purged = 0 AND o.status = 'sent'
           AND o.sent_at < ?1
           AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.message = m.id
                           AND p.status = 'scheduled')
           AND (m.case_id IS NULL OR m.kind = 'ack'
                OR (SELECT state FROM cases WHERE id = m.case_id) IN {FINISHED})"
    );
    exec(
        conn,
        &format!("DELETE FROM message_raw WHERE id IN ({ids})"),
        [before],
    )
    .ctx("purging delivered mail")?;
    exec(
        conn,
        &format!("UPDATE messages SET raw = x'', purged = 1 WHERE id IN ({ids})"),
        [before],
    )
    .ctx("purging delivered mail")
}

/// Removes case `id`'s personal data: every message's raw bytes, sender,
/// recipients and subject; the reporter, subjects, reporter key and
/// recorded facts (credits name people); event details. Mail still
/// waiting to go out for it is failed. What stays: the case id, its
/// states, deadlines and the event names, so the SLA figures hold.
/// Returns how many messages were erased.
pub fn erase_case(conn: &Connection, id: &str) -> Result<usize, StoreError> {
    exec(
        conn,
        "UPDATE outbox SET status = 'failed', last_error = 'case erased'
         WHERE case_id = ?1 AND status = 'scheduled'",
        [id],
    )
    .ctx("erasing a case")?;
    exec(
        conn,
        "DELETE FROM message_raw WHERE id IN (SELECT id FROM messages WHERE case_id = ?1)",
        [id],
    )
    .ctx("erasing a case")?;
    let n = exec(
        conn,
        "UPDATE messages SET raw = x'', purged = 1, from_addr = NULL, to_addrs = NULL,
             subject = NULL, message_id = NULL, in_reply_to = NULL, refs = NULL
         WHERE case_id = ?1",
        [id],
    )
    .ctx("erasing a case")?;
    exec(
        conn,
        "UPDATE cases SET reporter = NULL, subject = NULL, protected_subject = NULL,
             reporter_key = NULL, affected = NULL, fixed_in = NULL, thread_root = NULL
         WHERE id = ?1",
        [id],
    )
    .ctx("erasing a case")?;
    exec(conn, "DELETE FROM case_facts WHERE case_id = ?1", [id]).ctx("erasing a case")?;
    exec(conn, "DELETE FROM held_acks WHERE case_id = ?1", [id]).ctx("erasing a case")?;
    exec(
        conn,
        "UPDATE events SET detail = NULL, source_message_id = NULL,
             actor = CASE WHEN actor LIKE '%@%' THEN 'erased' ELSE actor END
         WHERE case_id = ?1",
        [id],
    )
    .ctx("erasing a case")?;
    Ok(n)
}
