//! `secintake cases …`: listing and showing cases, and the operator's
//! actions on them (recorded like a handler's, with `cli:<user>` as actor).

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::mail::compose::printable;
use crate::model::Kind;
use crate::store::{self};
use anyhow::Context as _;

pub(super) fn cases_list(
    cfg: &Config,
    state: Option<String>,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let state = match state.as_deref() {
        None => None,
        Some(s) => Some(crate::model::State::parse(s).ok_or_else(|| {
            anyhow::anyhow!(
                "--state {s:?}: expected one of {}",
                crate::model::names(crate::model::State::ALL)
            )
        })?),
    };
    let s = open_store(cfg)?;
    let rows = store::cases(s.conn(), state)?;
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no cases");
    } else {
        println!(
            "{:<15} {:<13} {:<20} {:<30} subject",
            "ID", "STATE", "RECEIVED", "REPORTER"
        );
        for r in rows {
            println!(
                "{:<15} {:<13} {:<20} {:<30} {}",
                r.id,
                r.state,
                &r.received_at[..r.received_at.len().min(19)],
                printable(r.reporter.as_deref().unwrap_or("-")),
                printable(r.subject.as_deref().unwrap_or(""))
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The case's facts and due times, as `cases show` prints them first.
fn print_facts(case: &store::CaseRow, deadlines: &[store::DeadlineRow]) {
    println!("{}  [{}]", case.id, case.state);
    println!(
        "subject       {}",
        printable(case.subject.as_deref().unwrap_or(""))
    );
    if case.encrypted {
        println!(
            "encrypted     yes; real subject: {}",
            printable(case.protected_subject.as_deref().unwrap_or("(none inside)"))
        );
    }
    if let Some(k) = &case.reporter_key {
        println!("reporter key  {k}");
    }
    println!(
        "reporter      {}",
        case.reporter
            .as_deref()
            .unwrap_or("(no usable reply address)")
    );
    println!("received      {}", case.received_at);
    println!(
        "acknowledge   due {}{}",
        case.ack_due_at,
        case.acknowledged_at
            .as_deref()
            .map(|a| format!(", done {a}"))
            .unwrap_or_default()
    );
    println!(
        "respond       due {}{}",
        case.respond_due_at,
        case.responded_at
            .as_deref()
            .map(|a| format!(", done {a}"))
            .unwrap_or_default()
    );
    for d in deadlines
        .iter()
        .filter(|d| matches!(d.kind, Kind::Fix | Kind::Embargo))
    {
        println!(
            "{:<13} due {}{}",
            d.kind,
            d.due_at,
            d.met_at
                .as_deref()
                .map(|a| format!(", done {a}"))
                .unwrap_or_default()
        );
    }
    if case.unparsed {
        println!("note          the report could not be parsed; read its raw bytes");
    }
}

pub(super) fn case_show(
    cfg: &Config,
    id: &str,
    json: bool,
    text: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let c = s.conn();
    let Some(case) = store::case(c, id)? else {
        anyhow::bail!("no case {id:?} (ids look like SEC-2026-0007; see `secintake cases list`)");
    };
    let messages = store::messages_of_case(c, id)?;
    if text {
        let report = messages
            .iter()
            .find(|m| m.kind == crate::model::MessageKind::Report);
        let Some(m) = report else {
            anyhow::bail!("{id}: no report message is stored with the case");
        };
        print!("{}", crate::workflow::stored_text(c, cfg, m)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if json {
        print_json(&super::records::case_json(c, id)?)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let events = store::events_of_case(c, id)?;
    let deadlines = crate::deadlines::of_case(c, id)?;
    print_facts(&case, &deadlines);
    println!("\nmessages:");
    for m in &messages {
        println!(
            "  #{:<6} {} {:<3} {:<10} {} {}{}",
            m.id,
            m.at,
            m.direction,
            m.kind,
            printable(m.from.as_deref().unwrap_or("-")),
            printable(m.subject.as_deref().unwrap_or("")),
            m.robot_rule
                .as_deref()
                .map(|r| format!(" (robot: {r})"))
                .unwrap_or_default()
        );
    }
    println!("\ntimeline:");
    for e in &events {
        println!(
            "  {} {:<28} {}{}",
            e.at,
            e.actor,
            e.what,
            e.detail
                .as_deref()
                .map(|d| format!(": {}", printable(d)))
                .unwrap_or_default()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs an operator action in one transaction, with what the workflow
/// needs: the configuration, the templates, the time, and the local user
/// as the actor.
pub(super) fn as_operator<R>(
    cfg: &Config,
    f: impl FnOnce(&rusqlite::Connection, &crate::context::Context<'_>, &str) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let mut s = open_store(cfg)?;
    let templates = crate::templates::Templates::load(cfg.templates.dir.as_deref())?;
    let actor = local_user();
    let ctx = crate::context::Context {
        cfg,
        templates: &templates,
        now: SystemClock.now(),
    };
    let tx = s.transaction()?;
    let r = f(&tx, &ctx, &actor)?;
    tx.commit().context("saving the case")?;
    Ok(r)
}

pub(super) fn case_must_exist(
    conn: &rusqlite::Connection,
    id: &str,
) -> anyhow::Result<store::CaseRow> {
    store::case(conn, id)?.ok_or_else(|| {
        anyhow::anyhow!("no case {id:?} (ids look like SEC-2026-0007; see `secintake cases list`)")
    })
}

pub(super) fn met(cfg: &Config, id: &str, kind: &str) -> anyhow::Result<std::process::ExitCode> {
    use crate::model::Kind;
    let kind = match Kind::parse(kind) {
        Some(k @ (Kind::Fix | Kind::Embargo | Kind::Respond | Kind::Acknowledge)) => k,
        _ => anyhow::bail!(
            "unknown deadline {kind:?}: expected one of fix, embargo, respond, acknowledge"
        ),
    };
    let changed = as_operator(cfg, |tx, ctx, actor| {
        case_must_exist(tx, id)?;
        let now = ctx.now;
        let how = format!("marked by {actor}");
        if kind == Kind::Respond {
            return Ok(crate::workflow::record_response(
                tx,
                now,
                id,
                actor,
                &how,
                ["response recorded", "response recorded again"],
                "sent another way (secintake cases responded)",
                None,
            )?);
        }
        let changed = if kind == Kind::Acknowledge {
            let met = store::record_acknowledged(tx, id, now, &how)?;
            crate::workflow::acknowledged(tx, now, id)?;
            met
        } else {
            crate::deadlines::meet(tx, id, kind, now, &how)?
        };
        if changed {
            let what = format!("{} deadline met", kind.as_str());
            store::add_event(tx, id, now, actor, &what, None, None)?;
        }
        Ok(changed)
    })?;
    if changed {
        println!("{id}: {} deadline met; its reminders stop", kind.as_str());
    } else {
        println!(
            "{id}: no open {} deadline (already met, or never set)",
            kind.as_str()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(super) fn set_deadline(
    cfg: &Config,
    id: &str,
    kind: &str,
    date: &str,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::model::Kind;
    let kind = match Kind::parse(kind) {
        Some(k @ (Kind::Fix | Kind::Embargo)) => k,
        _ => anyhow::bail!("cannot set deadline {kind:?}: expected fix or embargo (acknowledge and respond follow sla.*)"),
    };
    let Some(due) = crate::clock::parse_date(date) else {
        anyhow::bail!("date {date:?}: expected {}", crate::clock::DATE_FORMS);
    };
    let done = as_operator(cfg, |tx, ctx, actor| {
        case_must_exist(tx, id)?;
        Ok(crate::workflow::set_deadline(
            tx, ctx, id, kind, due, actor, None,
        )?)
    })?;
    match done {
        crate::workflow::Reply::Done(done) => println!("{id}: {done}"),
        crate::workflow::Reply::Refused(e) => anyhow::bail!("{id}: {e}"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs one handler command from the command line, with the same rules
/// as by email; the actor is the local user.
pub(super) fn run_command(
    cfg: &Config,
    id: &str,
    line: &str,
) -> anyhow::Result<std::process::ExitCode> {
    let parsed = crate::commands::parse(line);
    let Some((_, cmd)) = parsed.commands.into_iter().next() else {
        anyhow::bail!("not a command: {line}");
    };
    let cmd = cmd.map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = as_operator(cfg, |tx, ctx, actor| {
        case_must_exist(tx, id)?;
        Ok(crate::workflow::apply(tx, ctx, id, actor, &cmd, "", None)?)
    })?;
    match result {
        crate::workflow::Reply::Done(done) => {
            println!("{id}: {done}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        crate::workflow::Reply::Refused(e) => {
            eprintln!("secintake: {id}: {e}");
            Ok(std::process::ExitCode::from(1))
        }
    }
}

pub(super) fn note(cfg: &Config, id: &str, text: &str) -> anyhow::Result<std::process::ExitCode> {
    if text.trim().is_empty() {
        anyhow::bail!("the note is empty");
    }
    as_operator(cfg, |tx, ctx, actor| {
        let case = case_must_exist(tx, id)?;
        Ok(crate::workflow::note(
            tx,
            ctx,
            &case,
            actor,
            text.trim(),
            None,
        )?)
    })?;
    println!("{id}: note recorded and copied to the handlers (the running daemon sends it)");
    Ok(std::process::ExitCode::SUCCESS)
}
