//! Queueing the letters secintake sends: every outgoing message is stored
//! (direction `out`) and put in the durable outbox in the caller's
//! transaction, so a letter exists exactly when the effect that caused it
//! was recorded.

use crate::compose;
use crate::context::Context;
use crate::store::{self, NewMessage, StoreError};
use rusqlite::Connection;

/// Stores an outgoing message and queues it for delivery.
pub fn queue_outgoing(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: Option<&str>,
    purpose: &'static str,
    out: &compose::Outgoing,
) -> Result<i64, StoreError> {
    let id = store_outgoing(conn, ctx, case_id, purpose, out)?;
    store::enqueue(
        conn,
        id,
        case_id,
        purpose,
        &ctx.cfg.mailbox.address,
        &out.to,
        ctx.now,
    )
}

/// Stores an outgoing message without queueing it; returns its id.
pub fn store_outgoing(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: Option<&str>,
    purpose: &'static str,
    out: &compose::Outgoing,
) -> Result<i64, StoreError> {
    let rec = NewMessage {
        direction: "out",
        dedup_key: format!("out:{}", out.message_id),
        message_id: Some(out.message_id.clone()),
        case_id: case_id.map(str::to_owned),
        kind: purpose,
        from_addr: Some(ctx.cfg.mailbox.address.clone()),
        to_addrs: Some(out.to.join(" ")),
        subject: Some(out.subject.clone()),
        parsed_ok: true,
        size: out.raw.len() as u64,
        at: ctx.now,
        raw: &out.raw,
        ..NewMessage::default()
    };
    store::insert_message(conn, &rec)
}
