//! Running one handler command on a case (one function per command
//! group: the primary handler, the state, the response, the facts), and
//! telling the reporter what changed for them.

use super::announce::announce;
use super::leak::stored_text;
use super::notify::is_handler;
use super::relay::reporter_update;
use super::state::{move_state, record_response, set_deadline, set_primary, Reply};
use crate::commands::Command;
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::model::Direction;
use crate::model::{Kind, State};
use crate::store::{self, CaseField, CaseRow, StoreError};
use rusqlite::Connection;

/// Runs one command on a case. An error is a storage failure; the
/// handler's mistake is a [`Reply::Refused`], to be replied.
pub fn apply(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    actor: &str,
    cmd: &Command,
    text: &str,
    source: Option<&str>,
) -> Result<Reply, CaseError> {
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(Reply::Refused(format!("no case {case_id}")));
    };
    let run = Run {
        conn,
        ctx,
        case: &case,
        actor,
        source,
    };
    let reply = match cmd {
        Command::Take => take(&run)?,
        Command::Assign(who) => assign(&run, who)?,
        Command::State(to) => change_state(&run, *to)?,
        Command::Duplicate(other) => duplicate(&run, other, false)?,
        Command::Merge(other) => duplicate(&run, other, true)?,
        Command::Reject(reason) => reject(&run, reason)?,
        Command::Close => move_state(conn, ctx.now, case_id, State::Closed, actor, source)?,
        Command::Responded => responded(&run)?,
        Command::Severity(v) => field(&run, CaseField::Severity, v, "severity set")?,
        Command::Affected(v) => field(&run, CaseField::Affected, v, "affected versions set")?,
        Command::FixedIn(v) => field(&run, CaseField::FixedIn, v, "fixed in")?,
        Command::Cve(v) => field(&run, CaseField::Cve, v, "CVE assigned")?,
        Command::Audit(v) => audit(&run, v)?,
        Command::Credit(who) => credit(&run, who)?,
        Command::Summary(text) => summary(&run, text)?,
        Command::Quiet(on) => quiet(&run, *on)?,
        Command::Deadline { due, .. } => {
            set_deadline(conn, ctx, case_id, Kind::Fix, *due, actor, source)?
        }
        Command::Embargo(due) => {
            set_deadline(conn, ctx, case_id, Kind::Embargo, *due, actor, source)?
        }
        Command::Announce { dry_run, now } => {
            announce(conn, ctx, &case, actor, text, (*dry_run, *now), source)?
        }
        Command::Show => Reply::Done(case_summary(conn, &case)?),
        // What it allows happens with the relay of this mail's text.
        Command::Cleartext => {
            Reply::Done("this mail's answer may go to the reporter in cleartext".to_string())
        }
    };
    match reply {
        Reply::Done(done) => tell_reporter(&run, cmd, done),
        refused => Ok(refused),
    }
}

/// One command's run: the case as it was before, who runs the command,
/// and the Message-ID of the mail it came in (none from the command line).
struct Run<'a> {
    conn: &'a Connection,
    ctx: &'a Context<'a>,
    case: &'a CaseRow,
    actor: &'a str,
    source: Option<&'a str>,
}

// The primary handler.

/// `/take`: the sender becomes the primary handler.
fn take(run: &Run<'_>) -> Result<Reply, CaseError> {
    let Run {
        conn, ctx, actor, ..
    } = *run;
    if !is_handler(ctx, actor) {
        return Ok(Reply::Refused(format!(
            "only a handler can take a case; {actor} is not one of [[handlers]]: use /assign <handler>"
        )));
    }
    Ok(set_primary(
        conn,
        ctx,
        &run.case.id,
        actor,
        actor,
        run.source,
    )?)
}

/// `/assign <handler>`, by address or name.
fn assign(run: &Run<'_>, who: &str) -> Result<Reply, CaseError> {
    let Run {
        conn, ctx, actor, ..
    } = *run;
    let w = who.to_ascii_lowercase();
    let found = ctx
        .cfg
        .handlers
        .iter()
        .find(|h| h.email == w || h.name.to_ascii_lowercase() == w);
    Ok(match found {
        Some(h) => set_primary(conn, ctx, &run.case.id, &h.email.clone(), actor, run.source)?,
        None => Reply::Refused(format!(
            "unknown handler {who:?}; handlers are: {}",
            ctx.cfg
                .handlers
                .iter()
                .map(|h| format!("{} <{}>", h.name, h.email))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    })
}

// The state.

/// `/state <state>`: the states with commands of their own are refused
/// here; triage needs (and, from a handler, sets) a primary handler.
fn change_state(run: &Run<'_>, to: State) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        case,
        actor,
        source,
    } = *run;
    Ok(match to {
        State::Announced => {
            Reply::Refused("use /announce (with the advisory text below it) to announce".into())
        }
        State::Duplicate => Reply::Refused("use /duplicate <case id> to mark a duplicate".into()),
        State::Rejected => Reply::Refused("use /reject <reason> to reject".into()),
        State::Triage if case.primary_handler.is_none() && is_handler(ctx, actor) => {
            set_primary(conn, ctx, &case.id, actor, actor, source)?
        }
        State::Triage if case.primary_handler.is_none() => Reply::Refused(
            "triage needs a primary handler: assign one first (/assign <handler>)".into(),
        ),
        to => move_state(conn, ctx.now, &case.id, to, actor, source)?,
    })
}

/// `/duplicate <case>`, or `/merge <case>` (`merge`), which also tells
/// the case it names of its co-finder.
fn duplicate(run: &Run<'_>, other: &str, merge: bool) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        case,
        actor,
        source,
    } = *run;
    let case_id = case.id.as_str();
    if other == case_id {
        return Ok(Reply::Refused("a case cannot duplicate itself".into()));
    }
    if store::case(conn, other)?.is_none() {
        return Ok(Reply::Refused(format!(
            "no case {other}; see `secintake cases list`"
        )));
    }
    let m = match move_state(conn, ctx.now, case_id, State::Duplicate, actor, source)? {
        Reply::Done(m) => m,
        refused => return Ok(refused),
    };
    store::set_case_field(conn, case_id, CaseField::DuplicateOf, other)?;
    store::add_event(
        conn,
        case_id,
        ctx.now,
        actor,
        "duplicate of",
        Some(other),
        source,
    )?;
    if merge {
        // The case it names learns of its co-finder.
        let finder = case.reporter.as_deref().unwrap_or("no address");
        store::add_event(
            conn,
            other,
            ctx.now,
            actor,
            "co-finder merged",
            Some(&format!("{case_id}, reported by {finder}")),
            source,
        )?;
    }
    Ok(Reply::Done(format!("{m}; duplicate of {other}")))
}

/// `/reject <reason>`.
fn reject(run: &Run<'_>, reason: &str) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        case,
        actor,
        source,
    } = *run;
    let m = match move_state(conn, ctx.now, &case.id, State::Rejected, actor, source)? {
        Reply::Done(m) => m,
        refused => return Ok(refused),
    };
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        actor,
        "rejected",
        Some(reason),
        source,
    )?;
    Ok(Reply::Done(format!("{m}; reason recorded")))
}

// The response.

/// `/responded`: the reporter was answered another way.
fn responded(run: &Run<'_>) -> Result<Reply, CaseError> {
    let actor = run.actor;
    let first = record_response(
        run.conn,
        run.ctx.now,
        &run.case.id,
        actor,
        &format!("marked by {actor}"),
        ["response recorded", "response recorded again"],
        "sent another way (/responded)",
        run.source,
    )?;
    Ok(Reply::Done(if first {
        "response recorded; response reminders stop".into()
    } else {
        "the response was already recorded".into()
    }))
}

// The facts.

/// A field of the case's row (`/severity`, `/affected`, `/fixed-in`,
/// `/cve`), recorded as the event `what`.
fn field(run: &Run<'_>, f: CaseField, v: &str, what: &str) -> Result<Reply, CaseError> {
    let Run {
        conn, ctx, actor, ..
    } = *run;
    store::set_case_field(conn, &run.case.id, f, v)?;
    store::add_event(
        conn,
        &run.case.id,
        ctx.now,
        actor,
        what,
        Some(v),
        run.source,
    )?;
    Ok(Reply::Done(format!("{what}: {v}")))
}

/// `/audit <text>`: a line for the audit trail only.
fn audit(run: &Run<'_>, v: &str) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        case,
        actor,
        source,
    } = *run;
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        actor,
        "audit note",
        Some(v),
        source,
    )?;
    Ok(Reply::Done(format!("audit note recorded: {v}")))
}

/// `/credit <name>` (or `none`): whom the advisory credits.
fn credit(run: &Run<'_>, who: &str) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        case,
        actor,
        source,
    } = *run;
    let who = if who.eq_ignore_ascii_case("none") {
        "none"
    } else {
        who
    };
    store::set_fact(conn, &case.id, "credit", who)?;
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        actor,
        "credit set",
        Some(who),
        source,
    )?;
    Ok(Reply::Done(if who == "none" {
        "credit: none (the advisory names nobody)".to_string()
    } else {
        format!("credit: {who}")
    }))
}

/// `/summary <text>`: what `/announce` without text drafts from.
fn summary(run: &Run<'_>, text: &str) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        case,
        actor,
        source,
    } = *run;
    store::set_fact(conn, &case.id, "summary", text)?;
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        actor,
        "summary set",
        Some(text),
        source,
    )?;
    Ok(Reply::Done(
        "summary set: /announce with no text drafts the advisory from it".to_string(),
    ))
}

/// `/quiet [off]`: whether the reporter gets updates on this case.
fn quiet(run: &Run<'_>, on: bool) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        case,
        actor,
        source,
    } = *run;
    store::set_quiet(conn, &case.id, on)?;
    let what = if on {
        "reporter updates off"
    } else {
        "reporter updates on"
    };
    store::add_event(conn, &case.id, ctx.now, actor, what, None, source)?;
    Ok(Reply::Done(if on {
        "the reporter gets no updates on this case (/quiet off turns them on)".into()
    } else {
        "the reporter gets updates on this case again".into()
    }))
}

// Telling the reporter.

/// After a command was done: tells the reporter what changed for them
/// (issue 8), and adds to `done` whether they were told.
fn tell_reporter(run: &Run<'_>, cmd: &Command, done: String) -> Result<Reply, CaseError> {
    let Run {
        conn,
        ctx,
        actor,
        source,
        ..
    } = *run;
    let after = store::case(conn, &run.case.id)?;
    let Some((after, event)) = after
        .as_ref()
        .and_then(|after| Some((after, reporter_event(cmd, run.case, after)?)))
    else {
        return Ok(Reply::Done(done));
    };
    let reason = match cmd {
        Command::Reject(r) => r.as_str(),
        _ => "",
    };
    // The advisory as it went to the list (drafted or written).
    let advisory = if event == "announced" {
        match store::messages_of_case(conn, &run.case.id)?
            .iter()
            .rev()
            .find(|m| {
                m.direction == Direction::Out && m.kind == crate::model::MessageKind::Announce
            }) {
            Some(m) => stored_text(conn, ctx.cfg, m)?,
            None => String::new(),
        }
    } else {
        String::new()
    };
    let told = reporter_update(conn, ctx, after, event, reason, &advisory, actor, source)?;
    Ok(Reply::Done(format!("{done}; {told}")))
}

/// The update the reporter gets for `cmd`, which turned `before` into
/// `after`, if any: only on a real change, so a repeated command does
/// not mail them twice.
fn reporter_event(cmd: &Command, before: &CaseRow, after: &CaseRow) -> Option<&'static str> {
    let moved = after.state != before.state;
    Some(match cmd {
        Command::State(State::Confirmed) if moved => "confirmed",
        Command::State(State::FixReady) if moved => "fix-ready",
        Command::State(State::Closed) | Command::Close if moved => "closed",
        Command::Reject(_) if moved => "rejected",
        Command::Duplicate(_) if moved => "duplicate",
        Command::Merge(_) if moved => "merged",
        Command::Embargo(_) => "scheduled",
        Command::Announce { dry_run: false, .. } if moved => "announced",
        Command::Cve(_) if after.cve != before.cve => "cve",
        _ => return None,
    })
}

/// The case's facts for `/show`: state, people, versions, CVE, deadlines
/// and the last events.
fn case_summary(conn: &Connection, case: &CaseRow) -> Result<String, StoreError> {
    let or = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = format!(
        "the facts of {}:\n    state {}; primary {}; severity {}\n    reporter {}\n    \
         affected {}; fixed in {}; CVE {}\n",
        case.id,
        case.state,
        or(&case.primary_handler),
        or(&case.severity),
        or(&case.reporter),
        or(&case.affected),
        or(&case.fixed_in),
        or(&case.cve)
    );
    for key in ["credit", "summary"] {
        if let Some(v) = store::fact(conn, &case.id, key)? {
            out.push_str(&format!("    {key} {v}\n"));
        }
    }
    for d in deadlines::of_case(conn, &case.id)? {
        out.push_str(&format!(
            "    deadline {} {}{}\n",
            d.kind,
            d.due_at,
            d.met_how
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default()
        ));
    }
    let events = store::events_of_case(conn, &case.id)?;
    for e in events.iter().rev().take(8).rev() {
        out.push_str(&format!("    {} {} {}\n", e.at, e.actor, e.what));
    }
    Ok(out)
}
