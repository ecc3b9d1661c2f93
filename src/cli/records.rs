//! `secintake cases export ID --out DIR` and `secintake cases erase ID`:
//! one case's records handed over (JSON plus its mail as an mbox), and a
//! case's personal data removed on request (issue 12).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context as _;

use super::*;
use crate::config::Config;
use crate::store;

/// The case as `cases show --json` prints it.
pub(super) fn case_json(c: &rusqlite::Connection, id: &str) -> anyhow::Result<serde_json::Value> {
    let Some(case) = store::case(c, id)? else {
        anyhow::bail!("no case {id:?} (ids look like SEC-2026-0007; see `secintake cases list`)");
    };
    let mut v = serde_json::to_value(&case)?;
    v["deadlines"] = serde_json::to_value(crate::deadlines::of_case(c, id)?)?;
    v["messages"] = serde_json::to_value(store::messages_of_case(c, id)?)?;
    v["events"] = serde_json::to_value(store::events_of_case(c, id)?)?;
    Ok(v)
}

/// Writes `DIR/ID.json` and `DIR/ID.mbox` (mboxrd), each created 0600 and
/// never over an existing file.
pub(super) fn export(cfg: &Config, id: &str, dir: &Path) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let c = s.conn();
    let json = case_json(c, id)?;
    let mut mbox = Vec::new();
    let mut count = 0;
    for m in store::messages_of_case(c, id)? {
        let Some((row, raw)) = store::message(c, m.id)? else {
            continue;
        };
        if row.purged || raw.is_empty() {
            continue;
        }
        mboxrd_append(&mut mbox, row.from.as_deref(), &row.at, &raw);
        count += 1;
    }
    let write = |name: String, bytes: &[u8]| -> anyhow::Result<()> {
        let path = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", path.display()))
    };
    write(
        format!("{id}.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    write(format!("{id}.mbox"), &mbox)?;
    println!(
        "{id}: wrote {} and {} ({count} message(s))",
        dir.join(format!("{id}.json")).display(),
        dir.join(format!("{id}.mbox")).display()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// One message in mboxrd form: a `From ` line, the message with every
/// line matching `>*From ` given one more `>`, and a blank line.
fn mboxrd_append(out: &mut Vec<u8>, from: Option<&str>, at: &str, raw: &[u8]) {
    let sender = from
        .filter(|f| !f.is_empty() && !f.contains(char::is_whitespace))
        .unwrap_or("MAILER-DAEMON");
    let date = crate::clock::parse_ts(at)
        .map(|t| t.format("%a %b %e %H:%M:%S %Y").to_string())
        .unwrap_or_else(|| "Thu Jan  1 00:00:00 1970".into());
    out.extend_from_slice(format!("From {sender} {date}\n").as_bytes());
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let unquoted = body.iter().position(|b| *b != b'>').map(|i| &body[i..]);
        if unquoted.is_some_and(|u| u.starts_with(b"From ")) {
            out.push(b'>');
        }
        out.extend_from_slice(body);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Removes case `id`'s personal data (see `store::erase_case`), recorded
/// as an event; not reversible, so it asks for `--yes`.
pub(super) fn erase(cfg: &Config, id: &str, yes: bool) -> anyhow::Result<std::process::ExitCode> {
    if !yes {
        anyhow::bail!(
            "erasing {id} removes its reports, replies, addresses and subjects for good \
             (its id, states, deadlines and event names stay): add --yes"
        );
    }
    let mut s = open_store(cfg)?;
    let actor = local_user();
    let now = crate::clock::Clock::now(&crate::clock::SystemClock);
    // Deleted content is overwritten with zeros, not left in free pages.
    s.conn()
        .pragma_update(None, "secure_delete", "ON")
        .context("erasing: PRAGMA secure_delete")?;
    let tx = s.transaction()?;
    if store::case(&tx, id)?.is_none() {
        anyhow::bail!("no case {id:?} (ids look like SEC-2026-0007; see `secintake cases list`)");
    }
    let n = store::erase_case(&tx, id)?;
    store::add_event(
        &tx,
        id,
        now,
        &actor,
        "personal data erased",
        Some(&format!("{n} message(s); not reversible")),
        None,
    )?;
    store::commit(tx, "erasing a case")?;
    // Earlier versions of its rows (before a state change, say) linger in
    // the free space of pages that secure_delete did not cover: VACUUM
    // rewrites every page (seconds per 100 MB; erasure is rare). Then the
    // write-ahead log, which holds the pages as they were, is folded into
    // the file and emptied (a daemon reading at that moment keeps it until
    // its own next checkpoint).
    s.conn()
        .execute_batch("VACUUM")
        .context("erasing: VACUUM (the erasure itself is done)")?;
    let busy: i64 = s
        .conn()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .context("erasing: checkpoint")?;
    println!("{id}: personal data erased ({n} message(s)); the event log records it");
    if busy != 0 {
        println!(
            "{id}: the state file's write-ahead log still holds earlier pages until the daemon's next checkpoint"
        );
    }
    println!("backups made before now still hold it: erase or expire them too");
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::mboxrd_append;

    #[test]
    fn mboxrd_quotes_from_lines_and_ends_with_a_blank_line() {
        let mut out = Vec::new();
        let raw = b"Subject: x\r\n\r\nFrom here\r\n>From there\r\nfrom lower\r\n";
        mboxrd_append(
            &mut out,
            Some("a@example.org"),
            "2026-01-02T03:04:05.000Z",
            raw,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From a@example.org Fri Jan  2 03:04:05 2026\nSubject: x\n\n>From here\n>>From there\nfrom lower\n\n"
        );
    }
}
