//! End to end: the promises about the integrity and confidentiality of the
//! intake, checked with the real `secintake` binary against a real private
//! Dovecot + Postfix (tests/e2e/common).
//!
//! Why: these are the properties an operator cannot easily see going wrong
//! — a folder recreated on the server (new UIDVALIDITY) must not answer
//! every old report a second time; a report is an unfixed vulnerability, so
//! its text must never reach a log and the state file must never be
//! readable by other users; and one hostile or broken message must never
//! stop the intake of the reports behind it.
//!
//! Each test has its own mail stack, state folder and daemon, so they run in
//! parallel. "Nothing more arrives" is checked by first waiting until the
//! daemon has processed everything (`status --json` last_uid, empty outbox)
//! and then giving the mail system a short settle time.

use crate::common;

use common::daemon::{cases, cli, cli_json, eventually, status, Daemon};
use common::{header, subjects, MailStack, TestConfig};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECURITY: &str = "security@example.org";
const REPORTER: &str = "reporter@example.net";
const ALICE: &str = "alice@example.org";
/// How long any one expected thing may take.
const T: Duration = Duration::from_secs(20);
/// How long we wait for something that must NOT happen after the daemon
/// has processed its cause (a submitted ack reaches LMTP in well under 1 s).
const SETTLE: Duration = Duration::from_secs(3);
/// Appears only in report bodies; must never appear in a log line.
const BODY_MARKER: &str = "SECRET-BODY-7f3a9c";

// ------------------------------------------------------------- helpers --

/// A plain-text message to security@ with the given extra header lines
/// (each "Name: value"); returns it with its Message-ID (no brackets).
fn mail(from: &str, subject: &str, extra: &[&str], body: &str) -> (Vec<u8>, String) {
    common::text_mail("integrity", from, SECURITY, subject, extra, body)
}

/// Saves `raw` into security@'s `folder` with doveadm.
fn save(stack: &MailStack, folder: &str, raw: &[u8]) {
    stack.save(SECURITY, folder, raw);
}

/// The folder's UIDVALIDITY as Dovecot reports it.
fn uidvalidity(stack: &MailStack, folder: &str) -> u64 {
    stack.mailbox_status(SECURITY, "uidvalidity", folder)
}

/// Waits until the daemon has committed UID `uid` and its outbox is empty.
fn wait_idle(config: &Path, uid: u64, daemon_log: &str, what: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        if let Some(s) = status(config) {
            if s["last_uid"].as_u64().unwrap_or(0) >= uid && s["outbox"]["backlog"] == 0 {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} (last_uid >= {uid}, empty outbox); status: {:?}\n{}",
            status(config),
            std::fs::read_to_string(daemon_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts `user`'s INBOX holds exactly `n` messages now.
fn assert_mailbox(stack: &MailStack, user: &str, n: usize, log: &str) -> Vec<Vec<u8>> {
    let got = stack.fetch_all(user);
    assert_eq!(
        got.len(),
        n,
        "{user} holds {} message(s), expected {n}:\n{}\n---- daemon log\n{log}",
        got.len(),
        subjects(&got),
    );
    got
}

/// A `secintake run` started our own way (log format, filter, umask);
/// killed on drop if still alive.
struct Spawned {
    child: Option<Child>,
    log: PathBuf,
}

impl Spawned {
    /// `sh -c 'umask 022; exec secintake [--log-format F] --config C run'`,
    /// stderr to `log`, `SECINTAKE_LOG=filter`.
    fn start(config: &Path, log: &Path, log_format: &str, filter: &str) -> Spawned {
        let file = std::fs::File::create(log).expect("create daemon log");
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"umask 022; exec "$0" --log-format "$1" --config "$2" run"#)
            .arg(common::secintake_bin())
            .arg(log_format)
            .arg(config)
            .env("SECINTAKE_LOG", filter)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start secintake");
        Spawned {
            child: Some(child),
            log: log.to_owned(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    /// SIGTERM, then waits up to 15 s for a clean exit.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        // `exec` in sh: the child's pid is secintake's.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&c),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = c.try_wait().expect("wait daemon") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("daemon did not exit after SIGTERM\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The lines of `log` that contain `needle`.
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// Whether `needle` occurs in `line` not flanked by a letter, digit, `_`
/// or `-`.
fn contains_word(line: &str, needle: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    line.match_indices(needle).any(|(at, _)| {
        !word(line[..at].chars().next_back()) && !word(line[at + needle.len()..].chars().next())
    })
}

/// At most 400 characters of a log line, for failure messages.
fn clip(line: &str) -> String {
    line.chars().take(400).collect()
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// --------------------------------------------------------------- tests --

/// A watched folder deleted and recreated on the server gets a new
/// UIDVALIDITY: the daemon rescans it from UID 1, recognises the reports it
/// already has by Message-ID, and opens a case (and acknowledges) only the
/// one that is really new.
#[test]
fn uidvalidity_change_rescans_without_duplicates() {
    let t0 = Instant::now();
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| {
        c.folder = "Reports".into();
        c.after = "keep".into();
    });
    stack.doveadm(&["mailbox", "create", "-u", SECURITY, "Reports"], None);

    let reporters = [
        "reporter1@example.net",
        "reporter2@example.net",
        "reporter3@example.net",
        "reporter4@example.net",
    ];
    let reports: Vec<(Vec<u8>, String)> = reporters
        .iter()
        .enumerate()
        .map(|(i, r)| mail(r, &format!("Issue number {}", i + 1), &[], "details"))
        .collect();
    for (raw, _) in &reports[..3] {
        save(&stack, "Reports", raw);
    }

    let mut daemon = Daemon::start(&config, dir.path());
    eventually(T, "3 cases", Some(&daemon), || {
        (cases(&config).len() == 3).then_some(())
    });
    for r in &reporters[..3] {
        stack.wait_for(r, |m| !m.is_empty(), T);
    }
    let before = wait_idle(&config, 3, &daemon.log.display().to_string(), "3 reports");
    let old_validity = uidvalidity(&stack, "Reports");
    assert_eq!(before["folder"], "Reports", "{before:#}");
    assert_eq!(before["uidvalidity"], old_validity, "{before:#}");
    let st = daemon.terminate(Duration::from_secs(15));
    assert!(st.success(), "SIGTERM exit: {st:?}\n{}", daemon.log_text());
    let first_log = daemon.log_text();

    // Recreate the folder: a new UIDVALIDITY, the old reports again (new
    // UIDs 1..3) and one new report (UID 4).
    stack.doveadm(&["mailbox", "delete", "-u", SECURITY, "Reports"], None);
    stack.doveadm(&["mailbox", "create", "-u", SECURITY, "Reports"], None);
    let new_validity = uidvalidity(&stack, "Reports");
    assert_ne!(
        old_validity, new_validity,
        "Dovecot kept the UIDVALIDITY of the recreated folder"
    );
    for (raw, _) in &reports {
        save(&stack, "Reports", raw);
    }

    let daemon = Daemon::start(&config, dir.path());
    stack.wait_for(reporters[3], |m| !m.is_empty(), T);
    let after = eventually(
        T,
        "last_uid 4 under the new UIDVALIDITY",
        Some(&daemon),
        || {
            status(&config).filter(|s| {
                s["uidvalidity"] == new_validity
                    && s["last_uid"].as_u64() == Some(4)
                    && s["outbox"]["backlog"] == 0
            })
        },
    );
    std::thread::sleep(SETTLE);
    let log = daemon.log_text();

    let all = cases(&config);
    assert_eq!(
        all.len(),
        4,
        "expected 4 cases, got {}: {all:#?}\n{log}",
        all.len()
    );
    let mut case_reporters: Vec<&str> = all
        .iter()
        .map(|c| c["reporter"].as_str().unwrap_or(""))
        .collect();
    case_reporters.sort_unstable();
    assert_eq!(case_reporters, reporters, "one case per reporter");
    for r in reporters {
        let acks = assert_mailbox(&stack, r, 1, &log);
        let (_, mid) = &reports[reporters.iter().position(|x| *x == r).unwrap()];
        assert_eq!(
            header(&acks[0], "In-Reply-To").unwrap_or_default(),
            format!("<{mid}>")
        );
    }
    // One new-case notification per case, none repeated by the rescan.
    assert_mailbox(&stack, ALICE, 4, &log);

    assert!(
        log.contains("UIDVALIDITY changed"),
        "the restart log does not mention the UIDVALIDITY change:\n{log}"
    );
    assert!(
        !first_log.contains("UIDVALIDITY changed"),
        "the first run already claimed a UIDVALIDITY change:\n{first_log}"
    );
    assert_eq!(after["folder"], "Reports", "{after:#}");
    assert_eq!(after["uidvalidity"], new_validity, "{after:#}");
    assert_eq!(after["open_cases"], 4, "{after:#}");
    eprintln!(
        "uidvalidity_change_rescans_without_duplicates: {:?}",
        t0.elapsed()
    );
}

/// A report's body never reaches a log line (text and JSON format, debug
/// and trace filters), nor the operator's `status` / `cases list` output;
/// and no log line shows a configured password.
#[test]
fn no_report_body_or_password_in_logs() {
    let t0 = Instant::now();
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // One acknowledgement per run, all to one reporter.
    let config = common::write_config(dir.path(), &stack, |c| c.acks_per_sender_per_day = 20);
    let password = stack.password.clone();
    assert_eq!(base64(b"secret"), "c2VjcmV0");
    assert_eq!(base64(b"\0a\0b"), "AGEAYg==");

    // (log format, SECINTAKE_LOG filter, subject of that run's report)
    let runs = [
        ("text", "secintake=debug,info", "Path traversal in upload"),
        ("json", "secintake=debug,info", "Heap overflow in parser"),
        ("text", "debug", "Open redirect in login"),
        ("text", "trace", "SQL injection in search"),
        ("json", "trace", "Race in session handling"),
        // Issue 7: a per-target directive is more specific than any cap
        // added to the same filter; it logged LOGIN with the password.
        (
            "text",
            "trace,async_imap::imap_stream=trace,async_imap=trace,imap_proto=trace,\
             lettre::transport::smtp=trace,rustls=trace,tokio_rustls=trace",
            "Auth bypass in the API",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (format, filter, subject)) in runs.iter().enumerate() {
        let log_path = dir.path().join(format!("run-{i}-{format}.log"));
        let mut daemon = Spawned::start(&config, &log_path, format, filter);
        let body = format!(
            "Hello,\r\n\r\nthe upload handler accepts ../ ({BODY_MARKER}).\r\n\
             Proof of concept: curl -F f=@{BODY_MARKER}.txt http://x/\r\n"
        );
        let (report, mid) = mail(REPORTER, subject, &[], &body);
        stack.send_raw(REPORTER, &[SECURITY], &report);
        let acks = stack.wait_for(REPORTER, |m| m.len() > i, T);
        let ack = acks.last().unwrap();
        let ack_subject = header(ack, "Subject").unwrap_or_default();
        let ack_mid = header(ack, "Message-ID").unwrap_or_default();
        // A follow-up in the ack's thread, again with the marker.
        let (follow, _) = mail(
            REPORTER,
            &format!("Re: {ack_subject}"),
            &[
                &format!("In-Reply-To: {ack_mid}"),
                &format!("References: <{mid}> {ack_mid}"),
            ],
            &format!("One more detail: {BODY_MARKER} also works with %2e%2e/\r\n> {BODY_MARKER}"),
        );
        stack.send_raw(REPORTER, &[SECURITY], &follow);
        wait_idle(
            &config,
            2 * (i as u64 + 1),
            &log_path.display().to_string(),
            "report and follow-up",
        );
        assert!(daemon.alive(), "daemon died:\n{}", daemon.log_text());
        let st = daemon.terminate();
        assert!(st.success(), "SIGTERM exit: {st:?}\n{}", daemon.log_text());

        let log = daemon.log_text();
        assert!(
            log.lines().count() > 3,
            "run {i} ({format}, {filter}) logged almost nothing:\n{log}"
        );
        if *format == "json" {
            for l in log.lines() {
                assert!(
                    serde_json::from_str::<Value>(l).is_ok(),
                    "--log-format json wrote a line that is not JSON: {l}"
                );
            }
        }
        let mut bad: Vec<String> = Vec::new();
        for needle in [
            BODY_MARKER,
            "password =",
            "password=",
            "\"password\":",
            "password: \"",
        ] {
            for l in lines_with(&log, needle) {
                bad.push(format!("[{needle}] {}", clip(l)));
            }
        }
        // The password itself as a word of its own (so that e.g. rustls'
        // `extended_master_secret` is not taken for it), in clear or as
        // the base64 of SMTP AUTH LOGIN / PLAIN.
        let plain = format!("\0{SECURITY}\0{password}");
        for (what, needle) in [
            ("password", password.clone()),
            ("base64 password", base64(password.as_bytes())),
            ("base64 AUTH PLAIN", base64(plain.as_bytes())),
        ] {
            for l in log.lines().filter(|l| contains_word(l, &needle)) {
                bad.push(format!("[{what}] {}", clip(l)));
            }
        }
        if !bad.is_empty() {
            failures.push(format!(
                "run {i} (--log-format {format}, SECINTAKE_LOG={filter}): {} offending line(s):\n{}",
                bad.len(),
                bad.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
            ));
        }
        eprintln!(
            "run {i} ({format}, {filter}): {} log lines, {} offending",
            log.lines().count(),
            bad.len()
        );
    }

    // The operator's overviews do not print report text either.
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["cases", "list"],
        &["cases", "list", "--json"],
        &["mail", "list"],
        &["mail", "list", "--json"],
    ] {
        let (code, out, err) = cli(&config, args);
        assert_eq!(code, 0, "secintake {args:?}: {err}");
        if out.contains(BODY_MARKER) || err.contains(BODY_MARKER) {
            failures.push(format!(
                "`secintake {args:?}` prints the report body:\n{out}{err}"
            ));
        }
    }
    assert_eq!(cases(&config).len(), runs.len(), "one case per report");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("no_report_body_or_password_in_logs: {:?}", t0.elapsed());
}

/// The state file and its WAL and shared-memory siblings are 0600 even
/// when the daemon runs under umask 022.
#[test]
fn state_files_are_private() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |_| {});
    let db = TestConfig::new(&stack, dir.path()).storage_path;
    let log = dir.path().join("daemon.log");
    let mut daemon = Spawned::start(&config, &log, "text", "secintake=debug,info");

    let (report, _) = mail(REPORTER, "Privilege escalation via setuid helper", &[], "x");
    stack.send_raw(REPORTER, &[SECURITY], &report);
    stack.wait_for(REPORTER, |m| m.len() == 1, T);
    wait_idle(&config, 1, &log.display().to_string(), "the report");
    assert!(daemon.alive(), "daemon died:\n{}", daemon.log_text());

    let mode_of = |p: &Path| -> Option<u32> {
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    };
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    let shm = PathBuf::from(format!("{}-shm", db.display()));
    let mut wrong = Vec::new();
    for p in [&db, &wal, &shm] {
        match mode_of(p) {
            Some(0o600) => {}
            Some(m) => wrong.push(format!("{} has mode {m:04o}", p.display())),
            None => wrong.push(format!("{} does not exist", p.display())),
        }
    }
    // Anything else the daemon left next to it (journals, temp files).
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("state.db") {
            let m = mode_of(&e.path()).unwrap_or(0);
            if m & 0o077 != 0 {
                wrong.push(format!("{name} has mode {m:04o}"));
            }
        }
    }
    let st = daemon.terminate();
    assert!(st.success(), "SIGTERM exit: {st:?}\n{}", daemon.log_text());
    assert_eq!(mode_of(&db), Some(0o600), "state file after shutdown");
    assert!(
        wrong.is_empty(),
        "state files readable by others:\n{}",
        wrong.join("\n")
    );
}

/// Hostile and broken messages in front of a report — a 210 KB header
/// field, thousands of nested multipart boundaries, an ARF abuse report
/// behind a UTF-8 BOM, and a 2.8 MiB message above max_message_size — do
/// not stop intake: the report behind them is acknowledged, the daemon
/// stays up, and the robot is not answered.
#[test]
fn oversized_robot_and_malformed_do_not_stop_intake() {
    let t0 = Instant::now();
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| {
        c.max_message_size = "1MiB".into();
    });
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/malformed");
    let hostile = [
        "flanker-long-header.eml",
        "mimekit-stack-overflow.eml",
        "mimekit-feedback-report.eml",
        "flanker-enclosed-endless.eml",
    ];
    for f in hostile {
        let raw = std::fs::read(corpus.join(f)).expect("read corpus file");
        stack.inject(SECURITY, &raw);
    }
    let subject = "Stored XSS in comments";
    let (report, mid) = mail(REPORTER, subject, &[], "x");
    stack.inject(SECURITY, &report);
    let report_uid = hostile.len() as u64 + 1;

    let mut daemon = Daemon::start(&config, dir.path());
    let deadline = Instant::now() + T;
    loop {
        assert!(
            daemon.alive(),
            "the daemon died on the hostile messages:\n{}",
            daemon.log_text()
        );
        let uid = status(&config)
            .and_then(|s| s["last_uid"].as_u64())
            .unwrap_or(0);
        if uid >= report_uid {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "intake stuck at UID {uid} of {report_uid}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let acks = stack.wait_for(REPORTER, |m| !m.is_empty(), T);
    assert_eq!(acks.len(), 1, "{}", subjects(&acks));
    assert_eq!(
        header(&acks[0], "In-Reply-To").unwrap_or_default(),
        format!("<{mid}>")
    );
    let all = cases(&config);
    let case = all
        .iter()
        .find(|c| c["reporter"] == REPORTER)
        .unwrap_or_else(|| panic!("no case for the report: {all:#?}"));
    let subj = header(&acks[0], "Subject").unwrap_or_default();
    assert_eq!(
        subj,
        format!("Re: {subject} [{}]", case["id"].as_str().unwrap())
    );

    // The ARF report is a robot: filed, never a case, never answered.
    assert!(
        !all.iter().any(|c| c["reporter"] == "abusedesk@example.com"),
        "the ARF abuse report opened a case: {all:#?}"
    );
    let robots = cli_json(&config, &["mail", "list", "--robots"]);
    assert!(
        robots
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["from"].as_str().unwrap_or("").contains("abusedesk@")),
        "the ARF report is not among the robots: {robots:#}"
    );
    // The oversized one is stored truncated (header only).
    let shown: Vec<Value> = all
        .iter()
        .map(|c| cli_json(&config, &["cases", "show", c["id"].as_str().unwrap()]))
        .collect();
    let truncated = shown
        .iter()
        .flat_map(|c| c["messages"].as_array().cloned().unwrap_or_default())
        .chain(
            cli_json(&config, &["mail", "list"])
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
        .filter(|m| m["truncated"] == true)
        .count();
    assert!(
        truncated >= 1,
        "the 2.8 MiB message was not stored truncated: {shown:#?}"
    );

    // Still alive and still taking mail after all that.
    let (second, _) = mail(REPORTER, "CSRF on settings page", &[], "y");
    stack.send_raw(REPORTER, &[SECURITY], &second);
    stack.wait_for(REPORTER, |m| m.len() == 2, T);
    assert!(daemon.alive(), "{}", daemon.log_text());
    let st = daemon.terminate(Duration::from_secs(15));
    assert!(st.success(), "SIGTERM exit: {st:?}\n{}", daemon.log_text());
    eprintln!(
        "oversized_robot_and_malformed_do_not_stop_intake: {:?}",
        t0.elapsed()
    );
}

/// A message recorded before the connection broke may have missed its
/// `after = "seen"` flag; the next connection sets it, without recording
/// the message again.
#[test]
fn missed_after_action_is_caught_up_on_reconnect() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &stack, |c| c.after = "seen".into());
    let (raw, _) = mail(REPORTER, "Open redirect", &[], "details");
    stack.send_raw(REPORTER, &[SECURITY], &raw);
    let mut daemon = Daemon::start(&config, dir.path());
    wait_idle(&config, 1, &daemon.log.display().to_string(), "the report");
    let seen = |stack: &MailStack| {
        stack
            .doveadm(
                &["search", "-u", SECURITY, "mailbox", "INBOX", "SEEN"],
                None,
            )
            .lines()
            .count()
    };
    assert_eq!(seen(&stack), 1, "flagged \\Seen after its commit");
    daemon.terminate(T);

    // As if the daemon died between the commit and the flag.
    stack.doveadm(
        &[
            "flags", "remove", "-u", SECURITY, "\\Seen", "mailbox", "INBOX", "ALL",
        ],
        None,
    );
    assert_eq!(seen(&stack), 0);
    let daemon = Daemon::start(&config, dir.path());
    eventually(T, "the \\Seen flag set again", Some(&daemon), || {
        (seen(&stack) == 1).then_some(())
    });
    std::thread::sleep(SETTLE);
    assert_eq!(cases(&config).len(), 1, "no second case");
    assert_eq!(
        stack.fetch_all(REPORTER).len(),
        1,
        "no second acknowledgement"
    );
}

/// Issue 12: `secintake backup FILE` copies the state file consistently
/// while the daemon runs (what is still in the WAL included), 0600, and
/// refuses to overwrite.
#[test]
fn backup_while_running_is_consistent_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let w = crate::common::world::World::start_ready(|_| {});
    for i in 0..5 {
        w.report(&format!("b{i}@example.net"), &format!("Backed up {i}"));
    }
    w.wait_acked_cases(5);
    let copy = w.dir.path().join("backup.db");
    let out = w.cli_ok(&["backup", copy.to_str().unwrap()]);
    assert!(out.contains("state file copied"), "{out}");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "backup mode {mode:o}");
    let db =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let n: i64 = db
        .query_row("SELECT count(*) FROM cases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 5);
    let (code, _, err) = crate::common::daemon::cli(&w.config, &["backup", copy.to_str().unwrap()]);
    assert_ne!(code, 0, "overwrote a backup");
    assert!(err.contains("backup.db"), "{err}");
}

/// Issue 12: a backup taken while 500 reports stream in opens, passes
/// SQLite's integrity check (`--verify`), and holds every case committed
/// before it began.
#[test]
fn a_backup_during_a_stream_of_500_reports_holds_every_case_before_it() {
    let w = crate::common::world::World::start_ready(|_| {});
    let stream = {
        let stack_cfg = w.cfg.address.clone();
        let reporters: Vec<String> = (0..500).map(|i| format!("s{i:03}@example.net")).collect();
        let raws: Vec<Vec<u8>> = reporters
            .iter()
            .map(|r| {
                crate::common::mail(
                    "report",
                    r,
                    &[stack_cfg.as_str()],
                    &[],
                    "Streamed",
                    &[],
                    "x",
                )
                .0
            })
            .collect();
        raws
    };
    let mut sent = 0;
    for raw in &stream[..150] {
        w.stack.save("security@example.org", "INBOX", raw);
        sent += 1;
    }
    let before: Vec<String> = loop {
        let cases = w.cases();
        if cases.len() >= 100 {
            break cases
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let copy = w.dir.path().join("stream.db");
    let backup = {
        let config = w.config.clone();
        let copy = copy.clone();
        std::thread::spawn(move || {
            crate::common::daemon::cli(&config, &["backup", "--verify", copy.to_str().unwrap()])
        })
    };
    for raw in &stream[sent..] {
        w.stack.save("security@example.org", "INBOX", raw);
    }
    let (code, out, err) = backup.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("the copy is sound: integrity check ok"),
        "{out}"
    );
    let db =
        rusqlite::Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    for id in &before {
        let n: i64 = db
            .query_row("SELECT count(*) FROM cases WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1, "{id} committed before the backup but missing from it");
    }
    w.wait_cases(500);
}

/// Issue 12: a state file deleted under the running daemon stops it
/// (nothing more is recorded into a file nobody reads), and it will not
/// start afresh on a missing or empty state file it used before: that
/// would answer every message in the mailbox again.
#[test]
fn a_lost_state_file_stops_the_daemon_and_is_never_silently_recreated() {
    let sink = crate::common::AlertSink::new();
    let mut w = crate::common::world::World::start_ready(|c| c.extra = sink.config());
    w.report("first@example.net", "Before the loss");
    w.wait_acked_cases(1);
    std::fs::remove_file(w.db()).unwrap();
    let status = w
        .daemon
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon stops");
    assert!(!status.success());
    assert!(
        w.log().contains("was deleted while the daemon ran"),
        "{}",
        w.log()
    );
    // The handlers heard it through [alerts] command before it stopped.
    let alert = sink.text().unwrap_or_default();
    assert!(
        alert.contains("ALERT: state file failing") && alert.contains("was deleted"),
        "{alert}"
    );
    assert!(
        !alert.contains("one more message when it recovers"),
        "{alert}"
    );

    // Restarted (as systemd would): refused, nothing answered again.
    w.restart();
    let status = w
        .daemon
        .wait_exit(Duration::from_secs(20))
        .expect("the restart is refused");
    assert!(!status.success());
    let log = w.daemon.log_text();
    assert!(
        log.contains("the state file is gone, but a daemon used it before"),
        "{log}"
    );
    assert!(!w.db().exists(), "no fresh state file was made");
    assert_eq!(w.stack.fetch_all("first@example.net").len(), 1);

    // An empty file in its place is refused the same way.
    std::fs::write(w.db(), b"").unwrap();
    w.restart();
    let status = w
        .daemon
        .wait_exit(Duration::from_secs(20))
        .expect("the empty state file is refused");
    assert!(!status.success());
    assert!(w.daemon.log_text().contains("the state file is empty"));
}
