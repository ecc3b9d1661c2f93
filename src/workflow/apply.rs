//! Running one handler command on a case, and telling the reporter what
//! changed for them.

use super::announce::announce;
use super::leak::stored_text;
use super::notify::is_handler;
use super::relay::reporter_update;
use super::state::{move_state, record_response, set_deadline, set_primary};
use crate::commands::Command;
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::model::{Kind, State};
use crate::store::{self, CaseField, CaseRow, StoreError};
use rusqlite::Connection;

/// Runs one command on a case. The outer error is a storage failure; the
/// inner one is the handler's mistake, to be replied.
pub fn apply(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    actor: &str,
    cmd: &Command,
    text: &str,
    source: Option<&str>,
) -> Result<Result<String, String>, CaseError> {
    let Some(case) = store::case(conn, case_id)? else {
        return Ok(Err(format!("no case {case_id}")));
    };
    let field = |f: CaseField, v: &str, what: &str| -> Result<Result<String, String>, CaseError> {
        store::set_case_field(conn, case_id, f, v)?;
        store::add_event(conn, case_id, ctx.now, actor, what, Some(v), source)?;
        Ok(Ok(format!("{what}: {v}")))
    };
    let result = match cmd {
        Command::Take if !is_handler(ctx, actor) => Err(format!(
            "only a handler can take a case; {actor} is not one of [[handlers]]: use /assign <handler>"
        )),
        Command::Take => set_primary(conn, ctx, case_id, actor, actor, source)?,
        Command::Assign(who) => {
            let w = who.to_ascii_lowercase();
            let found = ctx
                .cfg
                .handlers
                .iter()
                .find(|h| h.email == w || h.name.to_ascii_lowercase() == w);
            match found {
                Some(h) => set_primary(conn, ctx, case_id, &h.email.clone(), actor, source)?,
                None => Err(format!(
                    "unknown handler {who:?}; handlers are: {}",
                    ctx.cfg
                        .handlers
                        .iter()
                        .map(|h| format!("{} <{}>", h.name, h.email))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
        Command::State(to) => match to {
            State::Announced => {
                Err("use /announce (with the advisory text below it) to announce".into())
            }
            State::Duplicate => Err("use /duplicate <case id> to mark a duplicate".into()),
            State::Rejected => Err("use /reject <reason> to reject".into()),
            State::Triage if case.primary_handler.is_none() && is_handler(ctx, actor) => {
                set_primary(conn, ctx, case_id, actor, actor, source)?
            }
            State::Triage if case.primary_handler.is_none() => Err(
                "triage needs a primary handler: assign one first (/assign <handler>)".into(),
            ),
            to => move_state(conn, ctx.now, case_id, *to, actor, source)?,
        },
        Command::Severity(v) => field(CaseField::Severity, v, "severity set")?,
        Command::Affected(v) => field(CaseField::Affected, v, "affected versions set")?,
        Command::FixedIn(v) => field(CaseField::FixedIn, v, "fixed in")?,
        Command::Cve(v) => field(CaseField::Cve, v, "CVE assigned")?,
        Command::Audit(v) => {
            store::add_event(conn, case_id, ctx.now, actor, "audit note", Some(v), source)?;
            Ok(format!("audit note recorded: {v}"))
        }
        Command::Duplicate(other) | Command::Merge(other) => {
            if other == case_id {
                Err("a case cannot duplicate itself".into())
            } else if store::case(conn, other)?.is_none() {
                Err(format!("no case {other}; see `secintake cases list`"))
            } else {
                match move_state(conn, ctx.now, case_id, State::Duplicate, actor, source)? {
                    Ok(m) => {
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
                        if matches!(cmd, Command::Merge(_)) {
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
                        Ok(format!("{m}; duplicate of {other}"))
                    }
                    Err(e) => Err(e),
                }
            }
        }
        Command::Reject(reason) => {
            match move_state(conn, ctx.now, case_id, State::Rejected, actor, source)? {
                Ok(m) => {
                    store::add_event(
                        conn,
                        case_id,
                        ctx.now,
                        actor,
                        "rejected",
                        Some(reason),
                        source,
                    )?;
                    Ok(format!("{m}; reason recorded"))
                }
                Err(e) => Err(e),
            }
        }
        Command::Responded => {
            if record_response(
                conn,
                ctx.now,
                case_id,
                actor,
                &format!("marked by {actor}"),
                ["response recorded", "response recorded again"],
                "sent another way (/responded)",
                source,
            )? {
                Ok("response recorded; response reminders stop".into())
            } else {
                Ok("the response was already recorded".into())
            }
        }
        Command::Close => move_state(conn, ctx.now, case_id, State::Closed, actor, source)?,
        Command::Deadline { due, .. } => {
            set_deadline(conn, ctx, case_id, Kind::Fix, *due, actor, source)?
        }
        Command::Embargo(due) => {
            set_deadline(conn, ctx, case_id, Kind::Embargo, *due, actor, source)?
        }
        Command::Announce { dry_run, now } => {
            announce(conn, ctx, &case, actor, text, (*dry_run, *now), source)?
        }
        Command::Show => Ok(case_summary(conn, &case)?),
        Command::Credit(who) => {
            let who = if who.eq_ignore_ascii_case("none") {
                "none"
            } else {
                who.as_str()
            };
            store::set_fact(conn, case_id, "credit", who)?;
            store::add_event(conn, case_id, ctx.now, actor, "credit set", Some(who), source)?;
            Ok(if who == "none" {
                "credit: none (the advisory names nobody)".to_string()
            } else {
                format!("credit: {who}")
            })
        }
        Command::Summary(text) => {
            store::set_fact(conn, case_id, "summary", text)?;
            store::add_event(conn, case_id, ctx.now, actor, "summary set", Some(text), source)?;
            Ok("summary set: /announce with no text drafts the advisory from it".to_string())
        }
        Command::Quiet(on) => {
            store::set_quiet(conn, case_id, *on)?;
            let what = if *on {
                "reporter updates off"
            } else {
                "reporter updates on"
            };
            store::add_event(conn, case_id, ctx.now, actor, what, None, source)?;
            Ok(if *on {
                "the reporter gets no updates on this case (/quiet off turns them on)".into()
            } else {
                "the reporter gets updates on this case again".into()
            })
        }
    };
    // Tell the reporter what changed for them (issue 8): only on a real
    // change, so a repeated command does not mail them twice.
    let Ok(done) = result else {
        return Ok(result);
    };
    let after = store::case(conn, case_id)?;
    let update = after.as_ref().and_then(|after| {
        let moved = after.state != case.state;
        let event = match cmd {
            Command::State(State::Confirmed) if moved => "confirmed",
            Command::State(State::FixReady) if moved => "fix-ready",
            Command::State(State::Closed) | Command::Close if moved => "closed",
            Command::Reject(_) if moved => "rejected",
            Command::Duplicate(_) if moved => "duplicate",
            Command::Merge(_) if moved => "merged",
            Command::Embargo(_) => "scheduled",
            Command::Announce { dry_run: false, .. } if moved => "announced",
            Command::Cve(_) if after.cve != case.cve => "cve",
            _ => return None,
        };
        Some((after, event))
    });
    let Some((after, event)) = update else {
        return Ok(Ok(done));
    };
    let reason = match cmd {
        Command::Reject(r) => r.as_str(),
        _ => "",
    };
    // The advisory as it went to the list (drafted or written).
    let advisory = if event == "announced" {
        match store::messages_of_case(conn, case_id)?
            .iter()
            .rev()
            .find(|m| m.direction == "out" && m.kind == "announce")
        {
            Some(m) => stored_text(conn, m)?,
            None => String::new(),
        }
    } else {
        String::new()
    };
    let told = reporter_update(conn, ctx, after, event, reason, &advisory, actor, source)?;
    Ok(Ok(format!("{done}; {told}")))
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
