//! The whole real-world corpus (tests/fixtures/corpus, 396 messages from
//! other people's mail software) through the real daemon and a real
//! Dovecot + Postfix.
//!
//! Why: `corpus::classify` checks `parse` and the robot rules one
//! message at a time; this checks what the running daemon does with a
//! backlog of them: it survives every file, robots open no case and are
//! never answered, people get cases, and the acknowledgements it sends to
//! the corpus' (mostly unreachable) addresses come back as real Postfix
//! DSNs that are filed as robots on their cases, never answered: no loop.
//!
//! Files are loaded into security@'s fresh INBOX in manifest order, so file
//! number i has UID i + 1. The CLI shows no UIDs, so the test reads the
//! daemon's state file read-only to map each UID to what became of it (a
//! second file with an already-seen Message-ID leaves no row: a duplicate).

use crate::common;

use super::{corpus_dir, is_robot_category, listed, KNOWN_FALSE_POSITIVES, KNOWN_MISSES};
use common::daemon::{cases, status, Daemon};
use common::MailStack;
use rusqlite::{Connection, OpenFlags};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

const SECURITY: &str = "security@example.org";

/// (path, category) in manifest order.
fn manifest() -> Vec<(String, String)> {
    super::manifest()
        .into_iter()
        .map(|e| (e.path, e.category))
        .collect()
}

/// What the daemon stored for one incoming message.
#[derive(Debug, Clone)]
struct Row {
    kind: String,
    robot_rule: Option<String>,
    case_id: Option<String>,
    from: Option<String>,
}

fn rows_by_uid(db: &Path) -> BTreeMap<u32, Row> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the state file read-only");
    let mut st = conn
        .prepare(
            "SELECT uid, kind, robot_rule, case_id, from_addr FROM messages
             WHERE direction = 'in' AND uid IS NOT NULL",
        )
        .expect("query messages");
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                Row {
                    kind: r.get(1)?,
                    robot_rule: r.get(2)?,
                    case_id: r.get(3)?,
                    from: r.get(4)?,
                },
            ))
        })
        .expect("query messages");
    rows.map(|r| r.expect("message row")).collect()
}

/// (case id, recipients) of every outgoing message.
fn outgoing(db: &Path) -> Vec<(Option<String>, String, String)> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the state file read-only");
    let mut st = conn
        .prepare(
            "SELECT case_id, kind, coalesce(to_addrs, '') FROM messages WHERE direction = 'out'",
        )
        .expect("query outgoing");
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query outgoing");
    rows.map(|r| r.expect("outgoing row")).collect()
}

const HANDLER: &str = "corpus-handler@example.org";

fn is_daemon_address(addr: &str) -> bool {
    let local = addr.split('@').next().unwrap_or("").to_ascii_lowercase();
    matches!(local.as_str(), "mailer-daemon" | "postmaster")
}

#[test]
fn corpus_through_the_daemon() {
    let files = manifest();
    assert_eq!(files.len(), 396, "corpus size changed; update this test");
    let raws: Vec<Vec<u8>> = files
        .iter()
        .map(|(p, _)| std::fs::read(corpus_dir().join(p)).expect("read corpus file"))
        .collect();

    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // A handler address no corpus file uses (several are From alice@example.org).
    let config = common::write_config(dir.path(), &stack, |c| {
        c.handlers = vec![("Handler".into(), HANDLER.into())];
    });
    let injected = stack.inject_many(SECURITY, &raws);
    assert_eq!(injected as usize, files.len());

    let t0 = Instant::now();
    let mut daemon = Daemon::start(&config, dir.path());

    // 1. Every injected message processed.
    wait_alive(
        &mut daemon,
        Duration::from_secs(90),
        "all injected messages processed",
        || {
            let s = status(&config)?;
            (s["last_uid"].as_u64()? >= injected as u64).then_some(())
        },
    );
    let processed = t0.elapsed();

    // 2. Quiet: the outbox is empty, every DSN of our acks has arrived and
    //    been processed, and nothing changed for a few seconds.
    let mut last: Option<(u64, u32)> = None;
    let mut stable_since = Instant::now();
    wait_alive(
        &mut daemon,
        Duration::from_secs(90),
        "outbox empty and INBOX fully processed, stable for 3 s",
        || {
            let s = status(&config)?;
            let uid = s["last_uid"].as_u64()?;
            let count = stack.message_count(SECURITY);
            let quiet = s["outbox"]["backlog"].as_u64() == Some(0) && uid == count as u64;
            let now = Some((uid, count));
            if !quiet || now != last {
                last = now;
                stable_since = Instant::now();
                return None;
            }
            (stable_since.elapsed() >= Duration::from_secs(3)).then_some(())
        },
    );
    let quiet = t0.elapsed();
    assert!(daemon.alive(), "the daemon died:\n{}", daemon.log_text());
    let st = status(&config).expect("status");
    eprintln!(
        "corpus: {} files processed in {processed:?}, quiet after {quiet:?}; status {st}",
        files.len()
    );
    assert!(
        st["imap"]["failing_since"].is_null(),
        "IMAP failing after the corpus: {st:#}"
    );

    // 3. Per file.
    let db = dir.path().join("state.db");
    let rows = rows_by_uid(&db);
    let parsed: Vec<_> = raws
        .iter()
        .map(|r| secintake::mail::message::parse(r))
        .collect();
    let mut first_with_key: HashMap<String, usize> = HashMap::new();
    let mut problems = Vec::new();
    let mut table: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut opened_by: HashMap<String, usize> = HashMap::new();
    for (i, (path, category)) in files.iter().enumerate() {
        let uid = i as u32 + 1;
        // A duplicate shares the Message-ID and the content (trace fields
        // aside): a different message under a known Message-ID is new.
        let key = match &parsed[i].message_id {
            Some(m) => format!("mid:{m}#{}", parsed[i].content_key),
            None => format!("sha256:{}", parsed[i].content_hash),
        };
        let first = *first_with_key.entry(key).or_insert(i);
        let Some(row) = rows.get(&uid) else {
            if first != i && rows.contains_key(&(first as u32 + 1)) {
                *table
                    .entry((category.clone(), "duplicate".into()))
                    .or_default() += 1;
            } else {
                problems.push(format!("{path}: not recorded and not a duplicate"));
            }
            continue;
        };
        if first != i {
            problems.push(format!(
                "{path}: same Message-ID and content as {} but recorded twice",
                files[first].0
            ));
        }
        let what = match (&row.kind[..], &row.robot_rule) {
            ("robot", Some(rule)) => format!("robot:{rule}"),
            (k, _) => k.to_owned(),
        };
        *table.entry((category.clone(), what)).or_default() += 1;
        if row.kind == "report" {
            match &row.case_id {
                Some(c) => {
                    opened_by.insert(c.clone(), i);
                }
                None => problems.push(format!("{path}: a report without a case")),
            }
        }
        if row.kind == "old" {
            problems.push(format!(
                "{path}: filed as older than intake.backfill (INTERNALDATE should be now)"
            ));
        }
        let miss = listed(KNOWN_MISSES, path);
        let false_positive = listed(KNOWN_FALSE_POSITIVES, path);
        // malformed/ and the known exceptions: anything but a crash.
        let robot_file = is_robot_category(category) == Some(true);
        let person_file = is_robot_category(category) == Some(false);
        if robot_file && !miss && row.kind != "robot" {
            problems.push(format!(
                "{path}: a robot filed as {} (case {:?})",
                row.kind, row.case_id
            ));
        }
        if person_file
            && !false_positive
            && (!matches!(&row.kind[..], "report" | "follow-up") || row.case_id.is_none())
        {
            problems.push(format!(
                "{path}: a person filed as {} (rule {:?}, case {:?})",
                row.kind, row.robot_rule, row.case_id
            ));
        }
    }

    // 4. What arrived after the corpus: only DSNs (and the like) of our own
    //    acks, each a robot on its case, none of them answered.
    let mut late = 0;
    for (uid, row) in rows.range(injected + 1..) {
        late += 1;
        if row.kind != "robot" {
            problems.push(format!(
                "UID {uid} from {:?} (after the corpus) filed as {}",
                row.from, row.kind
            ));
        } else if row.case_id.is_none() {
            problems.push(format!(
                "UID {uid} from {:?} (rule {:?}): a bounce of our ack not attached to its case",
                row.from, row.robot_rule
            ));
        }
    }

    // 5. No case opened by a mailer daemon; every case opened by a person
    //    file (or a documented miss); at most one message out per case.
    let case_list = cases(&config);
    assert_eq!(
        case_list.len(),
        opened_by.len(),
        "cases list and report rows disagree"
    );
    for row in rows.values().filter(|r| r.kind == "report") {
        if row.from.as_deref().is_some_and(is_daemon_address) {
            problems.push(format!(
                "case {:?} opened by a message from {:?}",
                row.case_id, row.from
            ));
        }
    }
    for (case, i) in &opened_by {
        let (path, category) = &files[*i];
        if is_robot_category(category) == Some(true) && !listed(KNOWN_MISSES, path) {
            problems.push(format!("case {case} opened by robot file {path}"));
        }
    }
    let out = outgoing(&db);
    // Per case: at most one acknowledgement (to the reporter) and one
    // notification (to the handlers); forwarded follow-ups go to handlers
    // only. Anything else, or a second of either, would be a loop.
    let mut per_case: HashMap<(Option<String>, String), usize> = HashMap::new();
    let mut acks = 0;
    for (case, kind, to) in &out {
        *per_case.entry((case.clone(), kind.clone())).or_default() += 1;
        let to_handler = to == HANDLER;
        match kind.as_str() {
            "ack" => {
                acks += 1;
                if to_handler {
                    problems.push(format!("an ack went to a handler (case {case:?})"));
                }
            }
            "notification" | "forward" if to_handler => {}
            _ => problems.push(format!(
                "unexpected outgoing {kind} to {to} (case {case:?})"
            )),
        }
        if is_daemon_address(to) {
            problems.push(format!("mail went to {to} (case {case:?})"));
        }
    }
    for ((case, kind), n) in &per_case {
        if *n > 1 && kind != "forward" {
            problems.push(format!("case {case:?} sent {n} {kind} messages: a loop?"));
        }
    }

    for ((category, what), n) in &table {
        eprintln!("  {category:<16} {what:<28} {n}");
    }
    eprintln!(
        "  {} cases, {acks} acks sent, {} outgoing in all, {late} messages arrived after the corpus",
        opened_by.len(),
        out.len()
    );
    assert!(daemon.alive(), "the daemon died:\n{}", daemon.log_text());
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n---- tail of the daemon log\n{}",
        problems.len(),
        problems.join("\n"),
        tail(&daemon.log_text(), 40)
    );
    let code = daemon.terminate(Duration::from_secs(30));
    assert!(code.success(), "daemon exit: {code:?}");
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `check` until it returns Some; panics at once if the daemon dies
/// (with the log's tail: the debug log of a whole corpus is long), or after
/// `timeout`.
fn wait_alive<T>(
    daemon: &mut Daemon,
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if !daemon.alive() {
            panic!(
                "the daemon died while waiting for {what}:\n{}",
                tail(&daemon.log_text(), 30)
            );
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                tail(&daemon.log_text(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
