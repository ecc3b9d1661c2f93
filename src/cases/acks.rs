//! The acknowledgement of a new report: queued, held by a limit (until
//! `secintake mail release`), or not sent and why; releasing held ones.

use crate::clock::{add, fmt_ts};
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::mail::auth;
use crate::mail::message::ParsedMessage;
use crate::model::Kind;
use crate::outgoing::{outside, queue_outgoing, store_outgoing, Letter, LetterError};
use crate::store::{self, StoreError};
use crate::workflow;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

/// Acknowledges the new case `case_id` to `reply`, the reporter's address:
/// queued, or held by a limit, or not sent (the reason recorded on the
/// case). Returns whether it was queued.
pub(super) fn acknowledge(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    p: &ParsedMessage,
    reply: &str,
    respond_due: DateTime<Utc>,
) -> Result<bool, CaseError> {
    let now = ctx.now;
    let mid = p.message_id.as_deref();
    let limit = ctx.cfg.limits.acks_per_sender_per_day;
    let since = now - chrono::Duration::days(1);
    let key = crate::model::mailbox_key(reply);
    if store::acks_to_since(conn, &key, since)? >= limit {
        let why = format!(
            "{reply} already got {limit} acknowledgements in the last 24 hours \
             (limits.acks_per_sender_per_day)"
        );
        not_acknowledged(conn, case_id, now, &why, mid)?;
        return Ok(false);
    }
    let ack = match outside::acknowledgement(ctx, case_id, p, reply, respond_due) {
        Ok(ack) => ack,
        // Never let one bad message (or template) stop intake: the case is
        // recorded, the reason is on it, the handlers still get notified.
        Err(e) => {
            let why = match e {
                LetterError::Compose(e) => e.to_string(),
                LetterError::Template(e) => {
                    tracing::error!(case = %case_id, error = %e, "acknowledgement template failed");
                    e.to_string()
                }
            };
            not_acknowledged(conn, case_id, now, &why, mid)?;
            return Ok(false);
        }
    };
    if let Some(why) = hold_reason(conn, ctx, p)? {
        hold(conn, ctx, case_id, &ack, reply, &why, mid)?;
        return Ok(false);
    }
    queue_outgoing(conn, ctx, &ack)?;
    let sla = &ctx.cfg.sla;
    deadlines::set(
        conn,
        sla,
        case_id,
        Kind::AckQueued,
        add(now, sla.ack_alert_after),
        now,
    )?;
    store::add_event(
        conn,
        case_id,
        now,
        "secintake",
        "acknowledgement queued",
        Some(&format!("to {reply}, Message-ID <{}>", ack.out.message_id)),
        mid,
    )?;
    Ok(true)
}

/// Stores the acknowledgement without queueing it, held because `why`;
/// the handlers are alerted (at most once an hour).
fn hold(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    ack: &Letter,
    reply: &str,
    why: &str,
    mid: Option<&str>,
) -> Result<(), CaseError> {
    let now = ctx.now;
    let message = store_outgoing(conn, ctx, ack)?;
    let held = store::HeldAck {
        case_id: case_id.to_string(),
        message,
        recipient: reply.to_string(),
        reason: why.to_string(),
        held_at: fmt_ts(now),
    };
    store::hold_ack(conn, &held, &crate::model::mailbox_key(reply))?;
    store::add_event(
        conn,
        case_id,
        now,
        "secintake",
        "acknowledgement held",
        Some(&format!(
            "{why}; `secintake mail release {case_id}` sends it to {reply}"
        )),
        mid,
    )?;
    workflow::acks_held_alert(conn, ctx, case_id, why)?;
    Ok(())
}

/// Why an acknowledgement must be held rather than sent, if it must:
/// the sender is not verified while `limits.ack_only_if = "dmarc-pass"`,
/// or `limits.acks_per_hour` acknowledgements went out in the last hour
/// (300 spoofed reports in 9 s made 300 acknowledgements to 300 victims).
fn hold_reason(
    conn: &Connection,
    ctx: &Context<'_>,
    p: &ParsedMessage,
) -> Result<Option<String>, StoreError> {
    let limits = &ctx.cfg.limits;
    if limits.ack_only_if_dmarc_pass && !auth::dmarc_pass(&ctx.cfg.handler_auth, p) {
        return Ok(Some(
            "the receiving server did not verify the sender's From by DMARC \
             (limits.ack_only_if = \"dmarc-pass\")"
                .into(),
        ));
    }
    if store::acks_last_hour(conn, ctx.now)? >= limits.acks_per_hour {
        return Ok(Some(format!(
            "{} acknowledgements already went out in the last hour (limits.acks_per_hour)",
            limits.acks_per_hour
        )));
    }
    Ok(None)
}

/// Sends held acknowledgements: `case_id`'s, or all of them. Returns the
/// cases whose acknowledgement was queued.
pub fn release_held(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: Option<&str>,
    actor: &str,
) -> Result<Vec<String>, StoreError> {
    let sla = &ctx.cfg.sla;
    let mut released = Vec::new();
    for h in store::held_acks(conn, case_id)? {
        store::enqueue(
            conn,
            h.message,
            Some(&h.case_id),
            crate::model::MessageKind::Ack,
            &ctx.cfg.mailbox.address,
            std::slice::from_ref(&h.recipient),
            ctx.now,
        )?;
        store::unhold_ack(conn, &h.case_id)?;
        deadlines::set(
            conn,
            sla,
            &h.case_id,
            Kind::AckQueued,
            add(ctx.now, sla.ack_alert_after),
            ctx.now,
        )?;
        store::add_event(
            conn,
            &h.case_id,
            ctx.now,
            actor,
            "acknowledgement released",
            Some(&format!(
                "to {}; it was held because {}",
                h.recipient, h.reason
            )),
            None,
        )?;
        released.push(h.case_id);
    }
    Ok(released)
}

/// Records why no acknowledgement goes out, and waives the acknowledgement
/// deadline: there is nothing the handlers could do to meet it by mail.
pub(super) fn not_acknowledged(
    conn: &Connection,
    case_id: &str,
    now: DateTime<Utc>,
    why: &str,
    mid: Option<&str>,
) -> Result<(), StoreError> {
    store::add_event(
        conn,
        case_id,
        now,
        "secintake",
        "not acknowledged",
        Some(why),
        mid,
    )?;
    deadlines::meet(
        conn,
        case_id,
        Kind::Acknowledge,
        now,
        &format!("waived: {why}"),
    )?;
    Ok(())
}
