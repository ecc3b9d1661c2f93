//! `secintake mail promote`: a case opened from a stored message that was
//! filed as auto-generated or too old.

use super::open::{open_case, Report};
use crate::context::{CaseError, Context};
use crate::mail::message;
use crate::model::Direction;
use crate::model::MessageKind;
use crate::store;
use rusqlite::Connection;

/// Opens a case from a stored message that was filed as auto-generated or
/// too old (`secintake mail promote`): a forwarder that stamps robot
/// headers on a real report must not make the report vanish.
pub fn promote(
    conn: &Connection,
    ctx: &Context<'_>,
    msg_id: i64,
    actor: &str,
) -> Result<(String, bool), CaseError> {
    let max = message::MAX_PARSE_BYTES;
    let (row, raw, _) =
        store::message_prefix(conn, msg_id, max)?.ok_or(CaseError::NoSuchMessage(msg_id))?;
    if row.direction != Direction::In
        || !matches!(row.kind, MessageKind::Robot | MessageKind::Old)
        || row.case_id.is_some()
    {
        return Err(CaseError::NotPromotable {
            id: msg_id,
            kind: if row.case_id.is_some() {
                format!(
                    "{} already attached to {}",
                    row.kind,
                    row.case_id.unwrap_or_default()
                )
            } else {
                row.kind.to_string()
            },
        });
    }
    let p = crate::mail::decrypt::read(&raw, row.parsed_ok, ctx.cfg);
    store::set_message_kind(conn, msg_id, MessageKind::Report)?;
    let (case_id, acked) = open_case(conn, ctx, Report::Stored(msg_id), &p, ctx.now, actor)?;
    store::add_event(
        conn,
        &case_id,
        ctx.now,
        actor,
        "promoted",
        Some(&format!(
            "message {msg_id} was filed as {}{}",
            row.kind,
            row.robot_rule
                .map(|r| format!(" (rule {r})"))
                .unwrap_or_default()
        )),
        p.message_id.as_deref(),
    )?;
    Ok((case_id, acked))
}
