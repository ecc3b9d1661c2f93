//! `secintake status` and `secintake sla`: what the daemon is doing, and
//! how the deadlines went.

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::{self};

pub(super) fn status(cfg: &Config, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let storage = storage_problem(&cfg.storage.path);
    let s = match open_store(cfg) {
        Ok(s) => s,
        Err(e) => match &storage {
            // The daemon cannot write it either: that is the status.
            Some(problem) => {
                println!("storage        FAILING: {problem}");
                eprintln!("secintake: {e:#}");
                return Ok(std::process::ExitCode::from(STATUS_FAILING));
            }
            None => return Err(e),
        },
    };
    let c = s.conn();
    let folder = store::folder_state(c, &cfg.imap.folder)?;
    let last_sync = store::last_sync_at(c, &cfg.imap.folder)?;
    let imap = store::health(c, "imap")?;
    let smtp = store::health(c, "smtp")?;
    let lease = store::health(c, crate::health::LEASE)?;
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
            "lease": lease,
            "outbox": { "backlog": backlog, "oldest_unsent_at": oldest, "failed": failed },
            "held_acks": held,
            "open_cases": open,
            "storage": { "path": cfg.storage.path, "problem": storage },
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
        let why = lease.last_error.as_deref().unwrap_or("unknown error");
        match (&lease.failing_since, &lease.last_ok_at) {
            (Some(since), _) if why.starts_with(crate::health::STANDBY) => {
                println!("mailbox lease  STANDBY since {since}: {why}")
            }
            // Heartbeats fail and the lease ran out: no mail is read.
            (Some(since), _) => println!(
                "mailbox lease  FAILING since {since} ({why}): this instance reads no mail"
            ),
            (None, Some(at)) if lease_lapsed(at) => println!(
                "mailbox lease  lapsed: last heartbeat {at} (the daemon is stopped or cannot \
                 reach the mailbox; another instance may take it)"
            ),
            (None, Some(at)) => println!("mailbox lease  held (last heartbeat {at})"),
            (None, None) => println!("mailbox lease  not taken yet"),
        }
        match &storage {
            Some(problem) => println!("storage        FAILING: {problem}"),
            None => println!("storage        ok"),
        }
    }
    // For monitoring: 3 while the mailbox or the outgoing server fails
    // (an outage or a refused credential), the state file takes no
    // writes, or another instance holds the mailbox (this one answers
    // nothing); 1 when the status cannot be read, 0 otherwise.
    let failing = [&imap, &smtp, &lease]
        .iter()
        .any(|h| h.failing_since.is_some());
    if failing || storage.is_some() {
        return Ok(std::process::ExitCode::from(STATUS_FAILING));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Whether a lease last renewed at `at` has run out by now (the daemon
/// stops reading mail then).
fn lease_lapsed(at: &str) -> bool {
    crate::clock::parse_ts(at).is_some_and(|t| {
        crate::clock::add(t, crate::intake::lease::valid_for()) < SystemClock.now()
    })
}

/// Less free space than this where the state file lives is a fault: a
/// new report needs a few pages, a large one its whole size.
const MIN_FREE_BYTES: u64 = 1 << 20;

/// Why the daemon cannot write the state file, as this process sees it
/// (the daemon keeps its own view in memory): not writable, an empty
/// file, or a file system that is full or read-only.
fn storage_problem(path: &std::path::Path) -> Option<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        // No state file yet: `open_store` says so (exit 1).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("{}: {e}", path.display())),
    };
    if meta.len() == 0 {
        return Some(format!("{} is empty", path.display()));
    }
    if let Err(e) = std::fs::OpenOptions::new().write(true).open(path) {
        return Some(format!("{} takes no writes: {e}", path.display()));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match rustix::fs::statvfs(dir) {
        Ok(v) if v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) => {
            Some(format!("{} is on a read-only file system", path.display()))
        }
        Ok(v) if v.f_bavail.saturating_mul(v.f_frsize) < MIN_FREE_BYTES => Some(format!(
            "the file system of {} has {} KiB free",
            path.display(),
            v.f_bavail.saturating_mul(v.f_frsize) / 1024
        )),
        _ => None,
    }
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
