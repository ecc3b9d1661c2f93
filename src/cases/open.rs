//! Opening a case for a report: its row, the report stored with it, its
//! deadlines, the acknowledgement (see [`super::acks`]) and the promise
//! of the handlers' notification.

use super::acks::{acknowledge, not_acknowledged};
use crate::clock::{add, fmt_ts};
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::mail::classify;
use crate::mail::compose;
use crate::mail::message::ParsedMessage;
use crate::model::{format_case_id, Kind, State};
use crate::store::{self, CaseRow, NewMessage};
use crate::workflow;
use chrono::{DateTime, Datelike, Utc};
use rusqlite::Connection;

/// The message a case is opened for.
pub(super) enum Report<'a> {
    /// Not stored yet: stored with the case's id already set. Updating a
    /// stored row later makes SQLite read and rewrite the whole row, raw
    /// bytes included: two more copies of a 27 MiB report at the peak.
    New(Box<NewMessage<'a>>),
    /// Already stored, by id (`mail promote`).
    Stored(i64),
}

/// Opens a case for `report`, queues its acknowledgement and promises the
/// handlers' notification. Returns the case id and whether an
/// acknowledgement was queued.
pub(super) fn open_case(
    conn: &Connection,
    ctx: &Context<'_>,
    report: Report<'_>,
    p: &ParsedMessage,
    received: DateTime<Utc>,
    actor: &str,
) -> Result<(String, bool), CaseError> {
    let (case_id, msg_id, acked) =
        open_and_acknowledge(conn, ctx, report, p, received, actor, Answer::Yes)?;
    if !ctx.cfg.handlers.is_empty() {
        // Built after this commit (workflow::build_pending_notifications):
        // intake records a backlog faster without composing a second mail
        // per report, and the promise is as durable as the case.
        store::add_pending_notification(conn, &case_id, msg_id)?;
    }
    Ok((case_id, acked))
}

/// Whether opening a case answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Yes,
    /// Recovered after a restore: the acknowledgement went out before.
    AlreadyDone,
}

/// Opens a case for a report secintake handled before a restore: its
/// row, report and deadlines, with no acknowledgement and no
/// notification (both went out before). Returns the case id.
pub(super) fn open_recovered(
    conn: &Connection,
    ctx: &Context<'_>,
    rec: NewMessage<'_>,
    p: &ParsedMessage,
    received: DateTime<Utc>,
) -> Result<String, CaseError> {
    let (case_id, _, _) = open_and_acknowledge(
        conn,
        ctx,
        Report::New(Box::new(rec)),
        p,
        received,
        "secintake",
        Answer::AlreadyDone,
    )?;
    Ok(case_id)
}

/// Records the case, its report and deadlines, then acknowledges it (or
/// records why not). Returns the case id, the report's message id and
/// whether an acknowledgement was queued.
fn open_and_acknowledge(
    conn: &Connection,
    ctx: &Context<'_>,
    report: Report<'_>,
    p: &ParsedMessage,
    received: DateTime<Utc>,
    actor: &str,
    answer: Answer,
) -> Result<(String, i64, bool), CaseError> {
    let now = ctx.now;
    let seq = store::next_case_seq(conn, now.year())?;
    let case_id = format_case_id(now.year(), seq);
    // Never answer ourselves: a Reply-To (or From) naming the mailbox, the
    // comment address, the announce list or a handler would turn the
    // acknowledgement, and every later relay, against the project.
    let mut reply = classify::reply_address(p);
    let refused = reply
        .as_deref()
        .and_then(|r| ctx.project_address(r).map(|what| (r.to_string(), what)));
    if refused.is_some() {
        reply = None;
    }
    let ack_due = add(received, ctx.cfg.sla.acknowledge);
    let respond_due = add(received, ctx.cfg.sla.respond);
    let primary = workflow::next_primary(conn, ctx)?;
    let times = [received, ack_due, respond_due];
    let row = new_case(ctx, &case_id, p, reply.clone(), primary, times);
    store::insert_case(conn, &row)?;
    workflow::keys::adopt(conn, ctx, &row, p, "secintake", false)?;
    let msg_id = match report {
        Report::New(mut rec) => {
            rec.case_id = Some(case_id.clone());
            store::insert_message(conn, &rec)?
        }
        Report::Stored(id) => {
            store::set_message_case(conn, id, &case_id)?;
            id
        }
    };
    let sla = &ctx.cfg.sla;
    deadlines::set(conn, sla, &case_id, Kind::Acknowledge, ack_due, now)?;
    deadlines::set(conn, sla, &case_id, Kind::Respond, respond_due, now)?;
    let mid = p.message_id.as_deref();
    let opened_detail = if p.parsed_ok {
        None
    } else {
        Some("the message could not be parsed; its raw bytes are stored")
    };
    store::add_event(
        conn,
        &case_id,
        now,
        actor,
        "case opened",
        opened_detail,
        mid,
    )?;

    if answer == Answer::AlreadyDone {
        // Acknowledged before the restore: met, so no reminder chases it.
        store::record_acknowledged(conn, &case_id, now, "before a restore (recovered)")?;
        return Ok((case_id, msg_id, false));
    }
    let Some(reply) = reply else {
        let why = match refused {
            Some((addr, what)) => format!(
                "the report asks for answers at {addr}, {what}: nothing is sent there, and \
                 the case has no reporter address"
            ),
            None => "no usable reply address".to_string(),
        };
        not_acknowledged(conn, &case_id, now, &why, mid)?;
        return Ok((case_id, msg_id, false));
    };
    let acked = acknowledge(conn, ctx, &case_id, p, &reply, respond_due)?;
    Ok((case_id, msg_id, acked))
}

/// The row of a new case for `p`: its reporter address, primary handler,
/// and `[received, acknowledge by, respond by]`.
fn new_case(
    ctx: &Context<'_>,
    case_id: &str,
    p: &ParsedMessage,
    reporter: Option<String>,
    primary_handler: Option<String>,
    [received, ack_due, respond_due]: [DateTime<Utc>; 3],
) -> CaseRow {
    CaseRow {
        id: case_id.to_string(),
        state: State::New,
        reporter,
        subject: p.subject.as_deref().map(compose::clean_subject),
        received_at: fmt_ts(received),
        ack_due_at: fmt_ts(ack_due),
        respond_due_at: fmt_ts(respond_due),
        acknowledged_at: None,
        responded_at: None,
        unparsed: !p.parsed_ok,
        primary_handler,
        severity: None,
        affected: None,
        fixed_in: None,
        cve: None,
        duplicate_of: None,
        thread_root: Some(compose::new_message_id(
            "case",
            Some(case_id),
            &ctx.cfg.mailbox.address,
        )),
        encrypted: p.encrypted,
        protected_subject: p.protected_subject.as_deref().map(compose::clean_subject),
        reporter_key: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_id_format() {
        assert_eq!(format_case_id(2026, 7), "SEC-2026-0007");
    }
}
