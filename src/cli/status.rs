//! `secintake status` and `secintake sla`: what the daemon is doing, and
//! how the deadlines went.

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::{self};

pub(super) fn status(cfg: &Config, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let c = s.conn();
    let folder = store::folder_state(c, &cfg.imap.folder)?;
    let last_sync = store::last_sync_at(c, &cfg.imap.folder)?;
    let imap = store::health(c, "imap")?;
    let smtp = store::health(c, "smtp")?;
    let (backlog, oldest) = store::outbox_backlog(c)?;
    let failed = store::outbox_failed_count(c)?;
    let held = store::held_acks(c, None)?.len();
    let open = store::count_not_closed(c)?;
    if json {
        print_json(&serde_json::json!({
            "folder": cfg.imap.folder,
            "uidvalidity": folder.as_ref().map(|f| f.uidvalidity),
            "last_uid": folder.as_ref().map(|f| f.last_uid),
            "last_sync_at": last_sync,
            "imap": imap,
            "smtp": smtp,
            "outbox": { "backlog": backlog, "oldest_unsent_at": oldest, "failed": failed },
            "held_acks": held,
            "open_cases": open,
        }))?;
    } else {
        println!(
            "mailbox        {} (folder {})",
            cfg.mailbox.address, cfg.imap.folder
        );
        println!("last sync      {}", last_sync.as_deref().unwrap_or("never"));
        for h in [&imap, &smtp] {
            match &h.failing_since {
                Some(since) => println!(
                    "{:<14} FAILING since {} ({}){}",
                    h.component,
                    since,
                    h.last_error.as_deref().unwrap_or("unknown error"),
                    if h.alerted { ", handlers alerted" } else { "" }
                ),
                None => println!(
                    "{:<14} ok (last success {})",
                    h.component,
                    h.last_ok_at.as_deref().unwrap_or("never")
                ),
            }
        }
        println!(
            "outbox         {backlog} waiting{}; {failed} failed permanently",
            oldest
                .map(|o| format!(", oldest since {o}"))
                .unwrap_or_default()
        );
        println!("open cases     {open}");
    }
    // For monitoring: 3 while the mailbox or the outgoing server fails
    // (an outage or a refused credential), 1 when the status cannot be
    // read, 0 otherwise.
    if imap.failing_since.is_some() || smtp.failing_since.is_some() {
        return Ok(std::process::ExitCode::from(STATUS_FAILING));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `secintake status` exits with this while a connection fails.
pub(super) const STATUS_FAILING: u8 = 3;

pub(super) fn sla(
    cfg: &Config,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let since = match since {
        None => None,
        Some(d) => Some(crate::clock::parse_date(d).ok_or_else(|| {
            anyhow::anyhow!("--since {d:?}: expected {}", crate::clock::DATE_FORMS)
        })?),
    };
    let s = open_store(cfg)?;
    let r = crate::sla::report(s.conn(), since, SystemClock.now())?;
    if json {
        print_json(&r)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let secs = |s: Option<i64>| {
        s.map(|s| {
            humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string()
        })
        .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<15} {:<22} {:<10} {:<14} {:<10} to response",
        "CASE", "RECEIVED", "ACK", "to ack", "RESPONSE"
    );
    for c in &r.cases {
        println!(
            "{:<15} {:<22} {:<10} {:<14} {:<10} {}",
            c.id,
            &c.received_at[..c.received_at.len().min(19)],
            c.acknowledge.status,
            secs(c.acknowledge.seconds),
            c.respond.status,
            secs(c.respond.seconds)
        );
    }
    for (name, t) in [
        ("acknowledgement", &r.acknowledge),
        ("response", &r.respond),
    ] {
        println!(
            "{name:<16} met {}, missed {}, pending {}, waived {}; median {}, 90th percentile {}",
            t.met,
            t.missed,
            t.pending,
            t.waived,
            secs(t.median_seconds),
            secs(t.p90_seconds)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
