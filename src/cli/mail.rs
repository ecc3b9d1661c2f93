//! `secintake mail …`: stored mail without a case, held acknowledgements,
//! exporting and promoting messages.

use super::*;
use crate::config::Config;
use crate::mail::compose::printable;
use crate::store::{self};
use anyhow::Context as _;

pub(super) fn mail_list(
    cfg: &Config,
    robots: bool,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let rows: Vec<store::MessageRow> = if robots {
        store::robot_messages(s.conn())?
    } else {
        store::unattached_messages(s.conn())?
    };
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no messages");
    } else {
        println!(
            "{:<7} {:<24} {:<20} {:<15} {:<30} subject",
            "ID", "AT", "RULE", "CASE", "FROM"
        );
        for m in rows {
            println!(
                "{:<7} {:<24} {:<20} {:<15} {:<30} {}",
                m.id,
                m.at,
                m.robot_rule.as_deref().unwrap_or(m.kind.as_str()),
                m.case_id.as_deref().unwrap_or("-"),
                printable(m.from.as_deref().unwrap_or("-")),
                printable(m.subject.as_deref().unwrap_or(""))
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(super) fn export(cfg: &Config, id: i64) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let s = open_store(cfg)?;
    let Some((_, raw)) = store::message(s.conn(), id)? else {
        anyhow::bail!("no stored message with id {id} (see `secintake cases show` or `mail list`)");
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&raw)
        .context("writing the message to standard output")?;
    out.flush()
        .context("writing the message to standard output")?;
    Ok(std::process::ExitCode::SUCCESS)
}

pub(super) fn held(cfg: &Config, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let rows = store::held_acks(s.conn(), None)?;
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no held acknowledgements");
    } else {
        println!("{:<15} {:<24} {:<30} why", "CASE", "HELD AT", "TO");
        for h in rows {
            println!(
                "{:<15} {:<24} {:<30} {}",
                h.case_id,
                h.held_at,
                printable(&h.recipient),
                h.reason
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(super) fn release(
    cfg: &Config,
    ids: &[String],
    all: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let released = as_operator(cfg, |tx, ctx, actor| {
        if all {
            return Ok(crate::cases::release_held(tx, ctx, None, actor)?);
        }
        let mut out = Vec::new();
        for id in ids {
            case_must_exist(tx, id)?;
            let r = crate::cases::release_held(tx, ctx, Some(id), actor)?;
            if r.is_empty() {
                anyhow::bail!("case {id} has no held acknowledgement (see `secintake mail held`)");
            }
            out.extend(r);
        }
        Ok(out)
    })?;
    if released.is_empty() {
        println!("no held acknowledgements");
    } else {
        println!(
            "released {} acknowledgement(s): {} (the running daemon sends them)",
            released.len(),
            released.join(", ")
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(super) fn promote(cfg: Config, id: i64) -> anyhow::Result<std::process::ExitCode> {
    let (case_id, acked) = as_operator(&cfg, |tx, ctx, actor| {
        Ok(crate::cases::promote(tx, ctx, id, actor)?)
    })?;
    println!(
        "message {id} opened case {case_id}{}",
        if acked {
            "; acknowledgement queued (the running daemon sends it)"
        } else {
            "; no acknowledgement (see `secintake cases show`)"
        }
    );
    Ok(std::process::ExitCode::SUCCESS)
}
