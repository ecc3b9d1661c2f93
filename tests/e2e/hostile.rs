//! End to end: hostile mail (issue 7), with the real `secintake` binary
//! against a real private Dovecot + Postfix (tests/e2e/common).
//!
//! Why: security@ is a public address that attackers write to. Each test
//! here is one attack that worked before issue 7: a message that crashed
//! the daemon for good, a Message-ID that made a victim's report vanish,
//! an outsider who joined a case, a forged verdict that ran commands, a
//! Reply-To that turned the acknowledgement against the project's own
//! lists, and a flood of spoofed reports.
//!
//! Each test has its own mail stack, state folder and daemon, so they run
//! in parallel. "Nothing more arrives" is checked after the daemon has
//! processed everything (`status --json` last_uid, empty outbox) plus a
//! short settle time.

use crate::common;

use common::daemon::{cases, cli, cli_json, eventually, status, Daemon};
use common::{header, subjects, MailStack};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const SECURITY: &str = "security@example.org";
const REPORTER: &str = "reporter@example.net";
const ALICE: &str = "alice@example.org";
/// How long any one expected thing may take.
const T: Duration = Duration::from_secs(20);
/// What issue 7 promises: a normal report sent after the attack is
/// acknowledged within this.
const PROMPT: Duration = Duration::from_secs(5);
/// How long we wait for something that must NOT happen.
const SETTLE: Duration = Duration::from_secs(3);

fn mail(from: &str, subject: &str, extra: &[&str], body: &str) -> (Vec<u8>, String) {
    common::text_mail("hostile", from, SECURITY, subject, extra, body)
}

/// Sends `raw` to security@ over SMTP and waits until it is in the
/// mailbox.
fn deliver(stack: &MailStack, from: &str, raw: &[u8]) {
    let before = stack.message_count(SECURITY);
    stack.send_raw(from, &[SECURITY], raw);
    eventually(T, "delivery to security@", None, || {
        (stack.message_count(SECURITY) > before).then_some(())
    });
}

/// Waits until the daemon has recorded every message in the folder and
/// sent everything it queued.
fn wait_idle(config: &Path, stack: &MailStack, daemon: &Daemon) {
    let want = stack.message_count(SECURITY) as u64;
    eventually(T, "the daemon to catch up", Some(daemon), || {
        let s = status(config)?;
        let done = s["last_uid"].as_u64()? >= want && s["outbox"]["backlog"].as_u64()? == 0;
        done.then_some(())
    });
}

fn events(config: &Path, case_id: &str) -> Vec<Value> {
    cli_json(config, &["cases", "show", case_id])["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Sends a normal report now and asserts its acknowledgement arrives within
/// [`PROMPT`]: intake is still running.
fn normal_report_is_acknowledged_promptly(stack: &MailStack, daemon: &mut Daemon) {
    let reporter = "later@example.net";
    let before = stack.fetch_all(reporter).len();
    let (raw, mid) = mail(reporter, "SQL injection in search", &[], "details");
    let sent = Instant::now();
    stack.send_raw(reporter, &[SECURITY], &raw);
    let acks = stack.wait_for(reporter, |m| m.len() > before, T);
    let took = sent.elapsed();
    assert!(daemon.alive(), "the daemon died:\n{}", daemon.log_text());
    assert_eq!(
        header(&acks[before], "In-Reply-To").unwrap_or_default(),
        format!("<{mid}>")
    );
    assert!(
        took <= PROMPT,
        "the report after the attack took {took:?} to be acknowledged"
    );
}

/// A report wrapped in `levels` nested `message/rfc822` parts.
fn nested(levels: usize) -> Vec<u8> {
    let mut s = String::from(
        "From: nester@example.net\r\nTo: security@example.org\r\nSubject: nested\r\n\
         Message-ID: <nested.1@example.net>\r\nMIME-Version: 1.0\r\n",
    );
    for i in 0..levels {
        if i > 0 {
            s.push_str("Subject: inner\r\n");
        }
        s.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n\
             Content-Type: message/rfc822\r\n\r\n"
        ));
    }
    s.push_str("From: inner@example.net\r\nSubject: core\r\n\r\nbody\r\n");
    for i in (0..levels).rev() {
        s.push_str(&format!("\r\n--b{i}--\r\n"));
    }
    s.into_bytes()
}

// -------------------------------------------------------------- tests --

/// Finding 1: a 1.28 MB message nesting `message/rfc822` 40,000 levels deep
/// killed the daemon (stack overflow freeing the parse tree) on every
/// start. Now it opens a case read from its header only, and intake goes on.
#[test]
fn forty_thousand_nested_levels_do_not_stop_intake() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let mut daemon = Daemon::start(&config, dir.path());
    let raw = nested(40_000);
    assert!(raw.len() > 1_200_000, "{} bytes", raw.len());
    stack.send_raw("nester@example.net", &[SECURITY], &raw);
    let acks = stack.wait_for("nester@example.net", |m| !m.is_empty(), T);
    assert_eq!(acks.len(), 1, "{}", subjects(&acks));
    let all = cases(&config);
    let case = all
        .iter()
        .find(|c| c["reporter"] == "nester@example.net")
        .unwrap_or_else(|| panic!("no case for the nested message: {all:#?}"));
    let ev = events(&config, case["id"].as_str().unwrap());
    assert!(
        ev.iter()
            .any(|e| e["detail"].as_str().unwrap_or("").contains("MIME parts")),
        "no note that only the header was read: {ev:#?}"
    );
    normal_report_is_acknowledged_promptly(&stack, &mut daemon);
}

/// The poison-message guard: a message whose processing kills the daemon
/// (the debug build's fault hook stands in for a parser crash) kills it at
/// most twice; the third start stores it raw, opens a case the handlers
/// are told about, and records the report queued behind it.
#[test]
fn a_message_that_kills_the_daemon_twice_is_stored_raw() {
    const MARK: &str = "POISON-c0ffee-PILL";
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let (poison, _) = mail("poisoner@example.net", "crash me", &[], MARK);
    let (report, report_mid) = mail(REPORTER, "XSS in the wiki", &[], "details");
    stack.inject(SECURITY, &poison);
    stack.inject(SECURITY, &report);

    let env = [("SECINTAKE_TEST_ABORT_ON", MARK)];
    let mut deaths = 0;
    let mut daemon = loop {
        let mut d = Daemon::start_with_env(&config, dir.path(), &env);
        match d.wait_exit(Duration::from_secs(8)) {
            Some(st) => {
                assert!(!st.success(), "the daemon exited cleanly: {st:?}");
                deaths += 1;
                assert!(
                    deaths <= 2,
                    "the poison message killed the daemon {deaths} times:\n{}",
                    d.log_text()
                );
            }
            None => break d,
        }
    };
    assert_eq!(deaths, 2, "the fault hook never fired");

    let acks = stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    assert_eq!(
        header(&acks[0], "In-Reply-To").unwrap_or_default(),
        format!("<{report_mid}>")
    );
    wait_idle(&config, &stack, &daemon);
    let all = cases(&config);
    assert_eq!(all.len(), 2, "{all:#?}");
    let poisoned = all
        .iter()
        .find(|c| c["reporter"].is_null())
        .unwrap_or_else(|| panic!("no unparsed case: {all:#?}"));
    let id = poisoned["id"].as_str().unwrap();
    let shown = cli_json(&config, &["cases", "show", id]);
    assert_eq!(shown["unparsed"], true, "{shown:#}");
    let ev = events(&config, id);
    assert!(
        ev.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("stopped the daemon twice")),
        "{ev:#?}"
    );
    // The handlers are told, with the raw bytes attached.
    let notes = stack.wait_for(ALICE, |m| m.iter().any(|x| contains(x, id)), T);
    assert!(notes.iter().any(|m| contains(m, id) && contains(m, MARK)));
    // Nobody was acknowledged for the unreadable message.
    assert!(stack.fetch_all("poisoner@example.net").is_empty());
    normal_report_is_acknowledged_promptly(&stack, &mut daemon);
}

/// Finding 6: a mail sent first with the Message-ID a victim's report will
/// carry made the real report a "duplicate": no case, no acknowledgement.
/// Different content under a known Message-ID is a new message.
#[test]
fn a_squatted_message_id_does_not_swallow_the_report() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let daemon = Daemon::start(&config, dir.path());
    let mid = "victim-report.4711@example.net";
    let squat = format!(
        "From: squatter@example.net\r\nTo: {SECURITY}\r\nSubject: hello\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{mid}>\r\n\r\nfirst!\r\n"
    );
    stack.send_raw("squatter@example.net", &[SECURITY], squat.as_bytes());
    stack.wait_for("squatter@example.net", |m| !m.is_empty(), T);
    let report = format!(
        "From: {REPORTER}\r\nTo: {SECURITY}\r\nSubject: RCE in the importer\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{mid}>\r\n\r\nthe real report\r\n"
    );
    stack.send_raw(REPORTER, &[SECURITY], report.as_bytes());
    let acks = stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    assert_eq!(acks.len(), 1);
    wait_idle(&config, &stack, &daemon);
    let all = cases(&config);
    let case = all
        .iter()
        .find(|c| c["reporter"] == REPORTER)
        .unwrap_or_else(|| panic!("the victim's report opened no case: {all:#?}"));
    let ev = events(&config, case["id"].as_str().unwrap());
    assert!(
        ev.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("same Message-ID")),
        "{ev:#?}"
    );
    // A second delivery of the very same report is still a duplicate.
    deliver(&stack, REPORTER, report.as_bytes());
    wait_idle(&config, &stack, &daemon);
    std::thread::sleep(SETTLE);
    assert_eq!(stack.fetch_all(REPORTER).len(), 1);
    assert_eq!(cases(&config).len(), 2);
}

/// Finding 7: an outsider who knew the report's Message-ID joined the case,
/// and after that the case tag alone was enough. Now such mail opens a case
/// of its own that names the one it refers to.
#[test]
fn an_outsider_cannot_join_a_case() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let daemon = Daemon::start(&config, dir.path());
    let (report, mid) = mail(REPORTER, "Auth bypass", &[], "the report");
    stack.send_raw(REPORTER, &[SECURITY], &report);
    stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    let first = cases(&config);
    let id = first[0]["id"].as_str().unwrap().to_owned();

    let outsider = "mallory@example.net";
    let refs = format!("In-Reply-To: <{mid}>");
    let (by_mid, _) = mail(outsider, "Re: Auth bypass", &[&refs], "let me in");
    deliver(&stack, outsider, &by_mid);
    let subject = format!("Re: Auth bypass [{id}]");
    let (by_tag, _) = mail(outsider, &subject, &[], "and now by tag");
    deliver(&stack, outsider, &by_tag);
    wait_idle(&config, &stack, &daemon);

    let all = cli_json(&config, &["cases", "list"]);
    let all = all.as_array().unwrap();
    let theirs: Vec<&Value> = all.iter().filter(|c| c["reporter"] == outsider).collect();
    assert_eq!(theirs.len(), 2, "{all:#?}");
    for c in theirs {
        let ev = events(&config, c["id"].as_str().unwrap());
        assert!(
            ev.iter().any(|e| e["what"] == "refers to another case"
                && e["detail"].as_str().unwrap_or("").contains(&id)),
            "{ev:#?}"
        );
    }
    // The handlers' notifications of those cases name the case referred to.
    eventually(
        T,
        "two notifications naming the case",
        Some(&daemon),
        || {
            let refs = stack
                .fetch_all(ALICE)
                .iter()
                .filter_map(|m| secintake::mail::message::parse(m).text_body)
                .filter(|t| t.contains(&format!("threads into {id}")))
                .count();
            (refs == 2).then_some(())
        },
    );
    let shown = cli_json(&config, &["cases", "show", &id]);
    let msgs = shown["messages"].as_array().unwrap();
    assert!(
        !msgs.iter().any(|m| m["from"] == outsider),
        "the outsider's mail joined {id}: {msgs:#?}"
    );
    // The reporter's own follow-up still joins.
    let (follow, _) = mail(REPORTER, &format!("Re: Auth bypass [{id}]"), &[], "more");
    deliver(&stack, REPORTER, &follow);
    wait_idle(&config, &stack, &daemon);
    let shown = cli_json(&config, &["cases", "show", &id]);
    assert_eq!(
        shown["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == "in")
            .count(),
        2,
        "{shown:#}"
    );
}

fn contains(raw: &[u8], needle: &str) -> bool {
    raw.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Finding 4: a report's Reply-To pointed the acknowledgement (attacker's
/// subject, From security@) at the announce list, and a handler's address
/// got acknowledgements too. Such a report opens a case with no reporter
/// address, and the case says why.
#[test]
fn the_acknowledgement_never_goes_to_the_projects_own_addresses() {
    const ANNOUNCE: &str = "announce@example.org";
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| {
        c.extra = format!("[announce]\nlist = \"{ANNOUNCE}\"\n");
    });
    let daemon = Daemon::start(&config, dir.path());
    let targets = [
        (
            "Reply-To: Announce <ANNOUNCE@Example.org>",
            "the announce list",
        ),
        ("Reply-To: alice+acks@example.org", "a handler's address"),
        (
            "Reply-To: security+x@example.org",
            "the security mailbox itself",
        ),
    ];
    for (i, (reply_to, _)) in targets.iter().enumerate() {
        let subject = format!("URGENT: upgrade to evil-1.0 #{i}");
        let (raw, _) = mail("mallory@example.net", &subject, &[reply_to], "x");
        deliver(&stack, "mallory@example.net", &raw);
    }
    wait_idle(&config, &stack, &daemon);
    std::thread::sleep(SETTLE);
    assert!(
        stack.fetch_all(ANNOUNCE).is_empty(),
        "mail reached the announce list: {}",
        subjects(&stack.fetch_all(ANNOUNCE))
    );
    let to_alice = stack.fetch_all(ALICE);
    assert!(
        to_alice.iter().all(|m| !header(m, "Subject")
            .unwrap_or_default()
            .starts_with("Re: URGENT")),
        "a handler got an acknowledgement: {}",
        subjects(&to_alice)
    );
    assert!(stack.fetch_all("mallory@example.net").is_empty());
    let all = cases(&config);
    assert_eq!(all.len(), targets.len(), "{all:#?}");
    // Each notification says why nobody was acknowledged.
    for (_, what) in &targets {
        assert!(
            to_alice
                .iter()
                .any(|m| contains(m, "New report") && contains(m, what)),
            "no notification names {what:?}"
        );
    }
    for c in &all {
        assert!(c["reporter"].is_null(), "{c:#}");
        let ev = events(&config, c["id"].as_str().unwrap());
        let why = ev
            .iter()
            .find(|e| e["what"] == "not acknowledged")
            .and_then(|e| e["detail"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(
            targets.iter().any(|(_, what)| why.contains(what)),
            "{why:?} names none of the project's addresses"
        );
    }
}

/// Finding 5, one victim: 40 plus-address variants and 3 case variants put
/// 43 acknowledgements into one mailbox. The per-sender cap now counts the
/// mailbox, not the spelling; 300 such spoofed reports leave intake running
/// and a normal report afterwards is acknowledged promptly.
#[test]
fn plus_address_variants_share_the_per_sender_cap() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let mut daemon = Daemon::start(&config, dir.path());
    let flood: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            let from = match i % 3 {
                0 => format!("victim+{i}@example.net"),
                1 => format!("Victim+{i}@EXAMPLE.net"),
                _ => "VICTIM@example.net".to_string(),
            };
            mail(&from, &format!("report {i}"), &[], "spoofed").0
        })
        .collect();
    stack.inject_many(SECURITY, &flood);
    wait_idle(&config, &stack, &daemon);
    std::thread::sleep(SETTLE);
    let got = stack.fetch_all("victim@example.net");
    assert_eq!(got.len(), 5, "{}", subjects(&got));
    assert_eq!(cases(&config).len(), 300);
    normal_report_is_acknowledged_promptly(&stack, &mut daemon);
}

/// Finding 5, many victims: 300 spoofed reports made 300 acknowledgements
/// to 300 people. Past `limits.acks_per_hour` acknowledgements are held,
/// not dropped: cases open, the handlers are alerted once, `mail held` and
/// `status` show them, and `mail release` sends them.
#[test]
fn acknowledgements_past_the_hourly_cap_are_held_until_released() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| c.acks_per_hour = 3);
    let daemon = Daemon::start(&config, dir.path());
    let senders: Vec<String> = (0..8).map(|i| format!("person{i}@example.net")).collect();
    let flood: Vec<Vec<u8>> = senders
        .iter()
        .map(|s| mail(s, "help", &[], "spoofed").0)
        .collect();
    stack.inject_many(SECURITY, &flood);
    wait_idle(&config, &stack, &daemon);
    std::thread::sleep(SETTLE);
    let acked: Vec<&String> = senders
        .iter()
        .filter(|s| !stack.fetch_all(s).is_empty())
        .collect();
    assert_eq!(acked.len(), 3, "{acked:?}");
    assert_eq!(cases(&config).len(), 8);
    let held = cli_json(&config, &["mail", "held"]);
    assert_eq!(held.as_array().unwrap().len(), 5, "{held:#}");
    assert_eq!(status(&config).unwrap()["held_acks"], 5);
    let alerts: Vec<Vec<u8>> = stack
        .fetch_all(ALICE)
        .into_iter()
        .filter(|m| {
            header(m, "Subject")
                .unwrap_or_default()
                .contains("Acknowledgements held")
        })
        .collect();
    assert_eq!(alerts.len(), 1, "{}", subjects(&stack.fetch_all(ALICE)));
    assert!(contains(&alerts[0], "secintake mail release --all"));

    let (code, out, err) = cli(&config, &["mail", "release", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    for s in &senders {
        stack.wait_for(s, |m| m.len() == 1, T);
    }
    assert_eq!(status(&config).unwrap()["held_acks"], 0);
    let (code, _, err) = cli(&config, &["mail", "release", "SEC-1999-0001"]);
    assert_ne!(code, 0);
    assert!(err.contains("SEC-1999-0001"), "{err}");
}

/// Finding 8: a 56 MB message that is nearly all header was stored whole
/// (the header fetch was unbounded) and sent to the handlers as a 58 MB
/// notification. Now a partial FETCH stores its first 256 KiB, the
/// notification stays small, and intake goes on.
#[test]
fn a_56_mb_header_is_fetched_bounded() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let mut daemon = Daemon::start(&config, dir.path());
    let mut raw = String::from(
        "From: big@example.net\r\nTo: security@example.org\r\nSubject: big header\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <big.1@example.net>\r\n",
    );
    let filler = "x".repeat(990);
    while raw.len() < 56 << 20 {
        raw.push_str(&format!("X-Filler: {filler}\r\n"));
    }
    raw.push_str("\r\nthe report\r\n");
    stack.inject(SECURITY, raw.as_bytes());
    let acks = stack.wait_for("big@example.net", |m| !m.is_empty(), T);
    assert_eq!(acks.len(), 1);
    wait_idle(&config, &stack, &daemon);
    let notes = stack.fetch_all(ALICE);
    assert_eq!(notes.len(), 1, "{}", subjects(&notes));
    assert!(
        notes[0].len() < 1 << 20,
        "the notification is {} bytes",
        notes[0].len()
    );
    let all = cases(&config);
    let id = all[0]["id"].as_str().unwrap();
    let msgs = cli_json(&config, &["cases", "show", id])["messages"].clone();
    let stored = &msgs.as_array().unwrap()[0];
    assert_eq!(stored["truncated"], true, "{msgs:#}");
    let db = std::fs::metadata(dir.path().join("state.db"))
        .unwrap()
        .len()
        + std::fs::metadata(dir.path().join("state.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    assert!(db < 8 << 20, "state file holds {db} bytes");
    normal_report_is_acknowledged_promptly(&stack, &mut daemon);
}

/// No mail to the handlers is larger than `limits.max_message_size`: an
/// original that would push the notification past it is not attached, and
/// the notification says so.
#[test]
fn notifications_stay_under_the_size_limit() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| {
        c.max_message_size = "1MiB".into();
    });
    let daemon = Daemon::start(&config, dir.path());
    let body = "A".repeat(76).repeat(12_000); // ~0.9 MiB, under the limit
    let (raw, _) = mail(REPORTER, "big but allowed", &[], &body);
    assert!(raw.len() < 1 << 20);
    stack.inject(SECURITY, &raw);
    stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    wait_idle(&config, &stack, &daemon);
    let notes = stack.fetch_all(ALICE);
    assert_eq!(notes.len(), 1);
    assert!(notes[0].len() <= 1 << 20, "{} bytes", notes[0].len());
    assert!(contains(&notes[0], "is not attached"));
    // The handlers can still have the original.
    let id = cases(&config)[0]["id"].as_str().unwrap().to_owned();
    let shown = cli_json(&config, &["cases", "show", &id]);
    let msg = shown["messages"][0]["id"].as_i64().unwrap().to_string();
    let out = std::process::Command::new(common::secintake_bin())
        .arg("--config")
        .arg(&config)
        .args(["mail", "export", &msg])
        .output()
        .expect("run mail export");
    assert!(out.status.success());
    assert!(out.stdout.ends_with(&raw), "export differs from the report");
}

/// Finding 2, on genuine verdicts: the stack's OpenDKIM stamps
/// `Authentication-Results: mail.example.org` on every delivery. A forged
/// pass naming that server, written below a Received field of another host
/// or spelled `Authentication-Results :`, ran commands and published an
/// advisory before; now nothing acts and the handlers are alerted. The
/// same handler's genuinely signed mail still acts.
#[test]
fn forged_verdicts_do_nothing_genuine_ones_act() {
    const ANNOUNCE: &str = "announce@example.org";
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| {
        c.extra = format!(
            "[handler_auth]\ntrusted_authserv_id = \"{}\"\n\n[announce]\nlist = \"{ANNOUNCE}\"\n",
            common::AUTHSERV_ID
        );
    });
    let daemon = Daemon::start(&config, dir.path());
    let (report, _) = mail(REPORTER, "RCE in the importer", &[], "details");
    deliver(&stack, REPORTER, &report);
    stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    let id = cases(&config)[0]["id"].as_str().unwrap().to_owned();
    let root = common::daemon::thread_root(&dir.path().join("state.db"), &id);
    let in_reply = format!("In-Reply-To: <{root}>");
    let subject = format!("Re: [{id}] New report: RCE in the importer");
    let body = "/state confirmed\nUpgrade to evil-1.0 from http://attacker.example/now";
    let pass = format!(
        "Authentication-Results: {}; dkim=pass header.d=example.org",
        common::AUTHSERV_ID
    );
    let foreign =
        "Received: from x by relay.example.net with ESMTP; Mon, 1 Jan 2024 00:00:00 +0000";
    let obsolete = pass.replacen(':', " :", 1);
    let (below_foreign, _) = mail(ALICE, &subject, &[foreign, &pass, &in_reply], body);
    deliver(&stack, ALICE, &below_foreign);
    // Postfix rewrites `Name :` to `Name:`; a border that keeps the
    // spelling delivers it as written (here: straight into the mailbox).
    let (spelled, _) = mail(ALICE, &subject, &[&obsolete, &in_reply], body);
    stack.inject(SECURITY, &spelled);
    wait_idle(&config, &stack, &daemon);
    std::thread::sleep(SETTLE);
    let shown = cli_json(&config, &["cases", "show", &id]);
    assert_eq!(shown["state"], "acknowledged", "a forged command ran");
    assert_eq!(
        stack.fetch_all(REPORTER).len(),
        1,
        "forged text was relayed"
    );
    assert!(stack.fetch_all(ANNOUNCE).is_empty());
    let reasons: Vec<String> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "unauthenticated mail from a handler address ignored")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(
        reasons.iter().any(|r| r.contains("relay.example.net")),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("non-standard name")),
        "{reasons:#?}"
    );
    let alerts = stack
        .fetch_all(ALICE)
        .into_iter()
        .filter(|m| contains(m, "Forged handler mail ignored"))
        .count();
    assert_eq!(alerts, 1, "one alert per case");

    // Alice's real mail, DKIM-signed on submission and verified by the
    // border, acts.
    let (genuine, _) = mail(ALICE, &subject, &[&in_reply], "/state triage");
    stack.submit(ALICE, ALICE, &[SECURITY], &genuine);
    eventually(T, "the genuine command", Some(&daemon), || {
        let s = cli_json(&config, &["cases", "show", &id]);
        (s["state"] == "triage").then_some(())
    });
}

/// Finding 3: loose alignment. Each of these verdicts, written by the
/// trusted server itself (injected at the top of the header, as the border
/// would prepend it), was accepted as Alice: a DKIM pass for a public
/// suffix, an SPF pass for a bare domain, a DKIM identity naming another
/// user, a parent domain's signature for a subdomain address.
#[test]
fn loosely_aligned_verdicts_do_not_make_a_handler() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| {
        c.handlers = vec![
            ("Alice".into(), ALICE.into()),
            ("Sub".into(), "sub@dev.example.org".into()),
        ];
        c.extra = format!(
            "[handler_auth]\ntrusted_authserv_id = \"{}\"\n",
            common::AUTHSERV_ID
        );
    });
    let daemon = Daemon::start(&config, dir.path());
    let (report, _) = mail(REPORTER, "XXE in the importer", &[], "details");
    deliver(&stack, REPORTER, &report);
    stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    let id = cases(&config)[0]["id"].as_str().unwrap().to_owned();
    let subject = format!("Re: [{id}] New report: XXE in the importer");
    let id_ = common::AUTHSERV_ID;
    let verdicts = [
        (ALICE, format!("{id_}; dkim=pass header.d=org")),
        (ALICE, format!("{id_}; spf=pass smtp.mailfrom=example.org")),
        (
            ALICE,
            format!("{id_}; dkim=pass header.d=example.org header.i=mallory@example.org"),
        ),
        (
            "sub@dev.example.org",
            format!("{id_}; dkim=pass header.d=example.org"),
        ),
    ];
    for (from, v) in &verdicts {
        let ar = format!("Authentication-Results: {v}");
        let (m, _) = common::text_mail("align", from, SECURITY, &subject, &[], "/state triage");
        let mut raw = format!("{ar}\r\n").into_bytes();
        raw.extend_from_slice(&m);
        stack.inject(SECURITY, &raw);
    }
    wait_idle(&config, &stack, &daemon);
    let shown = cli_json(&config, &["cases", "show", &id]);
    assert_eq!(
        shown["state"], "acknowledged",
        "a loosely aligned verdict acted"
    );
    let ignored = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "unauthenticated mail from a handler address ignored")
        .count();
    assert_eq!(ignored, verdicts.len(), "{shown:#}");
}

/// Finding 10: bidi controls (U+202E) in a report's subject were kept in
/// the subject of the acknowledgement; now they never reach mail we send.
#[test]
fn invisible_characters_never_reach_outgoing_subjects() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let _daemon = Daemon::start(&config, dir.path());
    // "Invoice.pdf" to the eye, ending in ".exe", in an encoded word.
    let subject = "=?utf-8?b?SW52b2ljZSDigK5mZHAuZXhl4oCLIFBvQw==?=";
    let (raw, _) = mail(REPORTER, subject, &[], "details");
    deliver(&stack, REPORTER, &raw);
    let acks = stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    let notes = stack.wait_for(ALICE, |m| !m.is_empty(), T);
    for m in [&acks[0], &notes[0]] {
        let decoded = secintake::mail::message::parse(m)
            .subject
            .unwrap_or_default();
        assert!(decoded.contains("Invoice"), "{decoded:?}");
        assert!(
            !decoded.chars().any(secintake::mail::compose::invisible),
            "invisible characters in {decoded:?}"
        );
    }
}
