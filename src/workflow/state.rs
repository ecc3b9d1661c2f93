//! A case's state and people: moving the state (and the deadlines that
//! follow it), the acknowledgement and the first response recorded, the
//! primary handler (round-robin or chosen), fix and embargo deadlines.

use crate::clock::fmt_ts;
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::model::{Kind, State};
use crate::outgoing::handler_name;
use crate::store::{self, CaseField, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::Connection;

/// What a command (or a step of one) answers the handler who sent it. A
/// storage failure is not an answer: it is the `Err` around this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// It was done: what changed, for the confirmation.
    Done(String),
    /// Nothing was done: the handler's mistake, exactly, to be replied.
    Refused(String),
}

impl Reply {
    /// The answer's text, done or refused.
    pub fn into_text(self) -> String {
        match self {
            Reply::Done(t) | Reply::Refused(t) => t,
        }
    }

    /// As the confirmation letter lists a command's result.
    pub fn into_result(self) -> Result<String, String> {
        match self {
            Reply::Done(t) => Ok(t),
            Reply::Refused(t) => Err(t),
        }
    }
}

/// Moves a case to `to` if the process allows it, recording the event.
pub fn move_state(
    conn: &Connection,
    now: DateTime<Utc>,
    case_id: &str,
    to: State,
    actor: &str,
    source: Option<&str>,
) -> Result<Reply, StoreError> {
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(Reply::Refused(format!("no case {case_id}")));
    };
    let from = case.state;
    if from == to {
        return Ok(Reply::Done(format!("already {}", to.as_str())));
    }
    if !from.can_move_to(to) {
        return Ok(Reply::Refused(format!(
            "cannot move from {} to {}; from {} the case can go to: {}",
            from.as_str(),
            to.as_str(),
            from.as_str(),
            crate::model::names(from.next())
        )));
    }
    store::set_case_field(conn, case_id, CaseField::State, to.as_str())?;
    store::add_event(
        conn,
        case_id,
        now,
        actor,
        "state changed",
        Some(&format!("{} → {}", from.as_str(), to.as_str())),
        source,
    )?;
    // Deadlines follow the state: a case that needs no more work stops
    // every reminder and escalation (a rejected case once sent one handler
    // 69 mails in 18 minutes); the fix deadline is met when the fix is
    // ready, not when the case is closed.
    match to {
        State::Rejected | State::Duplicate | State::Announced | State::Closed => {
            let how = format!("waived: case {}", to.as_str());
            for kind in [
                Kind::Acknowledge,
                Kind::Respond,
                Kind::Fix,
                Kind::Embargo,
                Kind::AckQueued,
            ] {
                deadlines::meet(conn, case_id, kind, now, &how)?;
            }
        }
        State::FixReady => {
            deadlines::meet(conn, case_id, Kind::Fix, now, "met: fix ready")?;
        }
        _ => {}
    }
    Ok(Reply::Done(format!(
        "state {} → {}",
        from.as_str(),
        to.as_str()
    )))
}

/// After the acknowledgement went out: new → acknowledged, then triage
/// when a primary handler is already set.
pub fn acknowledged(
    conn: &Connection,
    now: DateTime<Utc>,
    case_id: &str,
) -> Result<(), StoreError> {
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(());
    };
    if case.state == State::New {
        let _ = move_state(conn, now, case_id, State::Acknowledged, "secintake", None)?;
        if case.primary_handler.is_some() {
            let _ = move_state(conn, now, case_id, State::Triage, "secintake", None)?;
        }
    }
    Ok(())
}

/// Records an answer to the reporter: the first one is the response the
/// policy promises (meets the deadline, stops its reminders). `what` names
/// the event for the first answer and for later ones. Returns whether this
/// was the first.
#[allow(clippy::too_many_arguments)]
pub fn record_response(
    conn: &Connection,
    now: DateTime<Utc>,
    case_id: &str,
    actor: &str,
    how: &str,
    what: [&str; 2],
    detail: &str,
    source: Option<&str>,
) -> Result<bool, StoreError> {
    let first = store::record_responded(conn, case_id, now, how)?;
    let what = if first { what[0] } else { what[1] };
    store::add_event(conn, case_id, now, actor, what, Some(detail), source)?;
    Ok(first)
}

/// The next primary handler, round-robin over `[[handlers]]`; None when
/// `[workflow] assign = "none"` or nobody is configured.
pub fn next_primary(conn: &Connection, ctx: &Context<'_>) -> Result<Option<String>, StoreError> {
    let hs = &ctx.cfg.handlers;
    if !ctx.cfg.workflow.round_robin || hs.is_empty() {
        return Ok(None);
    }
    let next: usize = store::setting(conn, "round_robin_next")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    store::set_setting(
        conn,
        "round_robin_next",
        &((next + 1) % hs.len()).to_string(),
    )?;
    Ok(Some(hs[next % hs.len()].email.clone()))
}

pub(super) fn set_primary(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    email: &str,
    actor: &str,
    source: Option<&str>,
) -> Result<Reply, StoreError> {
    store::set_case_field(conn, case_id, CaseField::PrimaryHandler, email)?;
    store::add_event(
        conn,
        case_id,
        ctx.now,
        actor,
        "primary handler set",
        Some(email),
        source,
    )?;
    let state = store::case(conn, case_id)?.map(|c| c.state);
    let mut done = format!(
        "primary handler is now {} <{email}>",
        handler_name(ctx.cfg, email)
    );
    if matches!(state, Some(State::New | State::Acknowledged)) {
        if let Reply::Done(m) = move_state(conn, ctx.now, case_id, State::Triage, actor, source)? {
            done.push_str(&format!("; {m}"));
        }
    }
    Ok(Reply::Done(done))
}

/// Sets (or moves) a fix or embargo deadline, recording who did it.
pub fn set_deadline(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    kind: Kind,
    due: DateTime<Utc>,
    actor: &str,
    source: Option<&str>,
) -> Result<Reply, CaseError> {
    if due < ctx.now {
        return Ok(Reply::Refused(format!(
            "{} is in the past (it is now {}): give a later date",
            fmt_ts(due),
            fmt_ts(ctx.now)
        )));
    }
    deadlines::set(conn, &ctx.cfg.sla, case_id, kind, due, ctx.now)?;
    store::add_event(
        conn,
        case_id,
        ctx.now,
        actor,
        &format!("{} deadline set", kind.as_str()),
        Some(&fmt_ts(due)),
        source,
    )?;
    Ok(Reply::Done(format!(
        "{} deadline set to {}",
        kind.as_str(),
        fmt_ts(due)
    )))
}
