//! End to end: the real `secintake` binary against a real private Dovecot +
//! Postfix (tests/e2e/common). Reports arrive over inbound SMTP, robots are made
//! by the real servers (Postfix DSNs, Pigeonhole vacation replies), and the
//! acknowledgements are read back from the reporters' mailboxes over IMAPS.
//!
//! Why: the decisions in cases.rs and classify.rs are unit-tested, but only
//! the whole pipeline shows that a report yields exactly one case and one
//! correctly threaded acknowledgement, and that no robot is ever answered.
//!
//! Each test has its own mail stack, state folder and daemon, so they run in
//! parallel. "Nothing more arrives" is checked by first waiting until the
//! daemon has processed the message in question (`status --json` last_uid)
//! and then giving the mail system a short settle time.

use crate::common;

use common::daemon::{cli, cli_json, eventually};
use common::header;
use common::world::{World, T};
use serde_json::Value;
use std::time::{Duration, Instant};

const SECURITY: &str = "security@example.org";
const REPORTER: &str = "reporter@example.net";
/// How long we wait for something that must NOT happen after the daemon
/// has processed its cause (a submitted ack reaches LMTP in well under 1 s).
const SETTLE: Duration = Duration::from_secs(3);

/// A fresh Message-ID, without angle brackets.
fn new_mid() -> String {
    common::new_message_id("e2e")
}

/// A plain-text message to security@ with the given extra header lines
/// (each "Name: value"); returns it with its Message-ID (no brackets).
fn mail(from: &str, subject: &str, extra: &[&str], body: &str) -> (Vec<u8>, String) {
    common::text_mail("e2e", from, SECURITY, subject, extra, body)
}

fn bare(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn messages(case: &Value) -> Vec<Value> {
    case["messages"].as_array().cloned().unwrap_or_default()
}

fn events(case: &Value) -> Vec<Value> {
    case["events"].as_array().cloned().unwrap_or_default()
}

/// Checks one acknowledgement against the report it answers.
fn assert_ack(ack: &[u8], report_mid: &str, subject: &str, case_id: &str, to: &str) {
    let h = |n: &str| header(ack, n).unwrap_or_else(|| panic!("ack has no {n}: {ack:?}"));
    assert_eq!(h("Subject"), format!("Re: {subject} [{case_id}]"));
    assert!(h("From").contains(SECURITY), "From: {}", h("From"));
    assert!(h("To").contains(to), "To: {}", h("To"));
    assert_eq!(h("In-Reply-To"), format!("<{report_mid}>"));
    let refs = h("References");
    assert!(
        refs.split_whitespace().last() == Some(&format!("<{report_mid}>")),
        "References must end with the report's Message-ID: {refs}"
    );
    assert_eq!(h("Auto-Submitted"), "auto-replied");
    assert!(header(ack, "Message-ID").is_some(), "ack has no Message-ID");
}

// --------------------------------------------------------------- tests --

#[test]
fn report_becomes_one_case_and_one_ack() {
    let w = World::start(|_| {});
    let subject = "Heap overflow in the PNG decoder";
    let (raw, mid) = mail(REPORTER, subject, &[], "Steps to reproduce: ...");
    let t0 = Instant::now();
    w.deliver(REPORTER, &raw);

    let acks = w.wait_mailbox(REPORTER, 1);
    eprintln!("report -> ack in the reporter's INBOX: {:?}", t0.elapsed());
    let case = eventually(T, "case acknowledged", Some(&w.daemon), || {
        let c = w.cases();
        (c.len() == 1 && s(&c[0], "state") == "acknowledged").then(|| c[0].clone())
    });
    let id = s(&case, "id").to_owned();
    assert!(id.starts_with("SEC-"), "{id}");
    assert_eq!(s(&case, "reporter"), REPORTER);
    assert_eq!(s(&case, "subject"), subject);
    assert!(case["acknowledged_at"].is_string());
    assert_eq!(case["unparsed"], false);
    assert_ack(&acks[0], &mid, subject, &id, REPORTER);

    // The case records the report and the ack, threaded by Message-ID.
    let shown = w.show(&id);
    let msgs = messages(&shown);
    let report: Vec<_> = msgs.iter().filter(|m| s(m, "kind") == "report").collect();
    assert_eq!(report.len(), 1, "{msgs:#?}");
    assert_eq!(bare(s(report[0], "message_id")), mid);
    assert_eq!(s(report[0], "direction"), "in");
    let out: Vec<_> = msgs
        .iter()
        .filter(|m| s(m, "direction") == "out" && s(m, "kind") != "notification")
        .collect();
    assert_eq!(out.len(), 1, "{msgs:#?}");
    assert_eq!(s(out[0], "kind"), "ack");
    assert_eq!(
        bare(s(out[0], "message_id")),
        bare(&header(&acks[0], "Message-ID").unwrap())
    );

    // Processed with the default imap.after = "seen": still there, \Seen.
    w.wait_processed(1);
    let flags = w.stack.flags(SECURITY, "INBOX");
    assert_eq!(flags.len(), 1);
    assert!(flags[0].contains("\\Seen"), "flags: {flags:?}");

    std::thread::sleep(SETTLE);
    w.assert_mailbox(REPORTER, 1);
    assert_eq!(w.cases().len(), 1);
}

#[test]
fn ack_goes_to_reply_to_not_from() {
    let w = World::start(|_| {});
    let other = "other@example.net";
    let subject = "XSS in the admin panel";
    let (raw, mid) = mail(
        REPORTER,
        subject,
        &[&format!("Reply-To: {other}")],
        "details",
    );
    w.deliver(REPORTER, &raw);

    let acks = w.wait_mailbox(other, 1);
    let c = w.wait_cases(1);
    let id = s(&c[0], "id");
    assert_eq!(s(&c[0], "reporter"), other);
    assert_ack(&acks[0], &mid, subject, id, other);
    w.wait_processed(1);
    std::thread::sleep(SETTLE);
    w.assert_mailbox(REPORTER, 0);
    w.assert_mailbox(other, 1);
}

#[test]
fn same_message_twice_is_one_case() {
    let w = World::start(|_| {});
    let (raw, _) = mail(REPORTER, "SQL injection in search", &[], "x");
    w.deliver(REPORTER, &raw);
    w.wait_mailbox(REPORTER, 1);
    w.deliver(REPORTER, &raw);
    // Both deliveries are in the INBOX (UIDs 1 and 2) and both processed.
    w.wait_processed(2);
    std::thread::sleep(SETTLE);
    assert_eq!(w.cases().len(), 1);
    w.assert_mailbox(REPORTER, 1);
    assert_eq!(w.stack.message_count(SECURITY), 2);
}

#[test]
fn reply_to_ack_without_tag_attaches() {
    let w = World::start(|_| {});
    let subject = "Path traversal in uploads";
    let (raw, _) = mail(REPORTER, subject, &[], "x");
    w.deliver(REPORTER, &raw);
    let acks = w.wait_mailbox(REPORTER, 1);
    let id = s(&w.wait_cases(1)[0], "id").to_owned();
    let ack_mid = header(&acks[0], "Message-ID").unwrap();

    // A mail client whose user deleted the tag from the subject.
    let (reply, reply_mid) = mail(
        REPORTER,
        &format!("Re: {subject}"),
        &[
            &format!("In-Reply-To: {ack_mid}"),
            &format!("References: {ack_mid}"),
        ],
        "Here is a proof of concept.",
    );
    w.deliver(REPORTER, &reply);
    w.wait_processed(2);

    let shown = w.show(&id);
    let follow: Vec<_> = messages(&shown)
        .into_iter()
        .filter(|m| s(m, "kind") == "follow-up")
        .collect();
    assert_eq!(follow.len(), 1, "{shown:#}");
    assert_eq!(bare(s(&follow[0], "message_id")), reply_mid);
    assert!(
        events(&shown)
            .iter()
            .any(|e| s(e, "what") == "follow-up received"),
        "{shown:#}"
    );
    std::thread::sleep(SETTLE);
    assert_eq!(w.cases().len(), 1);
    w.assert_mailbox(REPORTER, 1);
}

#[test]
fn tag_rules() {
    let w = World::start(|_| {});
    let (raw, _) = mail(REPORTER, "RCE via deserialization", &[], "x");
    w.deliver(REPORTER, &raw);
    w.wait_mailbox(REPORTER, 1);
    let id = s(&w.wait_cases(1)[0], "id").to_owned();

    // The reporter writes anew, only the tag ties it to the case.
    let (more, more_mid) = mail(REPORTER, &format!("More details [{id}]"), &[], "x");
    w.deliver(REPORTER, &more);
    w.wait_processed(2);
    let shown = w.show(&id);
    assert!(
        messages(&shown)
            .iter()
            .any(|m| s(m, "kind") == "follow-up" && bare(s(m, "message_id")) == more_mid),
        "tagged mail from the reporter did not attach: {shown:#}"
    );
    assert_eq!(w.cases().len(), 1);

    // A stranger quoting the tag gets a case (and an ack) of their own.
    let stranger = "stranger@example.net";
    let subject = format!("Also affected [{id}]");
    let (raw, mid) = mail(stranger, &subject, &[], "x");
    w.deliver(stranger, &raw);
    let acks = w.wait_mailbox(stranger, 1);
    let all = w.wait_cases(2);
    let new = all
        .iter()
        .find(|c| s(c, "id") != id)
        .expect("a second case");
    assert_eq!(s(new, "reporter"), stranger);
    let new_id = s(new, "id");
    let ack_subject = header(&acks[0], "Subject").unwrap();
    assert!(
        ack_subject.contains(&format!("[{new_id}]")),
        "{ack_subject}"
    );
    assert_eq!(header(&acks[0], "In-Reply-To").unwrap(), format!("<{mid}>"));
    // The old case did not gain the stranger's message.
    let old = w.show(&id);
    assert!(
        !messages(&old)
            .iter()
            .any(|m| bare(s(m, "message_id")) == mid),
        "{old:#}"
    );
    w.wait_processed(3);
    std::thread::sleep(SETTLE);
    w.assert_mailbox(REPORTER, 1);
    w.assert_mailbox(stranger, 1);
}

#[test]
fn robots_get_no_answer() {
    let w = World::start(|_| {});
    // (a) A real Pigeonhole vacation reply: we write to ooo@ as security@,
    //     its auto-reply goes to the envelope sender, security@.
    let ooo = "ooo@example.org";
    w.stack.vacation(ooo);
    let mid = new_mid();
    let to_ooo = format!(
        "From: {SECURITY}\r\nTo: {ooo}\r\nSubject: question for you\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{mid}>\r\n\r\nhi\r\n"
    );
    w.stack.send_raw(SECURITY, &[ooo], to_ooo.as_bytes());

    // (b) A real Postfix DSN: mail from security@ to a domain nobody serves.
    let (bounce_me, _) = mail(SECURITY, "to nowhere", &[], "x");
    w.stack.submit(
        SECURITY,
        SECURITY,
        &["nosuchuser@unknown.invalid"],
        &bounce_me,
    );

    // (c) A mailing list post.
    let list = "list@example.net";
    let (post, _) = mail(
        list,
        "[dev] weekly digest",
        &["List-Id: Developers <dev.lists.example.net>"],
        "x",
    );
    w.deliver(list, &post);

    let robots = eventually(T, "3 robot messages", Some(&w.daemon), || {
        let r = w.robots();
        (r.len() >= 3).then_some(r)
    });
    w.wait_processed(3);
    let rules: Vec<(String, String)> = robots
        .iter()
        .map(|r| (s(r, "from").to_owned(), s(r, "robot_rule").to_owned()))
        .collect();
    eprintln!("robots: {rules:?}");
    assert_eq!(robots.len(), 3, "{robots:#?}");
    for r in &robots {
        assert!(!s(r, "robot_rule").is_empty(), "no rule named: {r:#}");
        assert!(r["case_id"].is_null(), "robot attached to a case: {r:#}");
    }
    let from = |who: &str| {
        robots
            .iter()
            .find(|r| s(r, "from").eq_ignore_ascii_case(who))
            .unwrap_or_else(|| panic!("no robot from {who}: {robots:#?}"))
    };
    assert_eq!(s(from(ooo), "robot_rule"), "auto-submitted");
    assert_eq!(s(from(list), "robot_rule"), "list-id");
    let dsn = robots
        .iter()
        .find(|r| {
            s(r, "from")
                .to_ascii_lowercase()
                .starts_with("mailer-daemon")
        })
        .unwrap_or_else(|| panic!("no DSN among {robots:#?}"));
    assert!(!s(dsn, "robot_rule").is_empty());

    std::thread::sleep(SETTLE);
    assert!(w.cases().is_empty(), "{:#?}", w.cases());
    w.assert_mailbox(ooo, 1); // only the message this test sent
    w.assert_mailbox(list, 0);
    w.assert_mailbox("alice@example.org", 0); // no alert either
    let st = w.status().unwrap();
    assert_eq!(st["outbox"]["backlog"], 0, "{st:#}");
    assert_eq!(st["outbox"]["failed"], 0, "{st:#}");
    assert_eq!(w.stack.message_count(SECURITY), 3);
}

#[test]
fn bounce_of_ack_recorded_on_case() {
    let w = World::start(|_| {});
    let sender = "someone@unknown.invalid";
    let (raw, _) = mail(sender, "CSRF on settings page", &[], "x");
    w.deliver(sender, &raw);
    let id = s(&w.wait_cases(1)[0], "id").to_owned();

    // Our ack bounces (Postfix: unknown.invalid is nowhere); the DSN comes
    // back to security@ and must land on the case, unanswered.
    let shown = eventually(T, "the DSN on the case", Some(&w.daemon), || {
        let v = w.show(&id);
        messages(&v)
            .iter()
            .any(|m| s(m, "kind") == "robot")
            .then_some(v)
    });
    let msgs = messages(&shown);
    let robot = msgs.iter().find(|m| s(m, "kind") == "robot").unwrap();
    assert!(
        s(robot, "from")
            .to_ascii_lowercase()
            .starts_with("mailer-daemon"),
        "{robot:#}"
    );
    assert!(!s(robot, "robot_rule").is_empty());
    assert!(
        events(&shown)
            .iter()
            .any(|e| s(e, "what") == "auto-generated mail attached"),
        "{shown:#}"
    );

    w.wait_processed(2);
    w.wait_outbox_empty();
    std::thread::sleep(SETTLE);
    let shown = w.show(&id);
    let out = messages(&shown)
        .iter()
        .filter(|m| s(m, "direction") == "out" && s(m, "kind") != "notification")
        .count();
    assert_eq!(out, 1, "expected only the one ack: {shown:#}");
    assert_eq!(w.cases().len(), 1);
    // Nothing bounced twice: security@ holds the report and one DSN.
    assert_eq!(w.stack.message_count(SECURITY), 2);
    assert!(w.robots().iter().all(|r| s(r, "case_id") == id));
}

#[test]
fn per_sender_limit() {
    let w = World::start(|c| c.acks_per_sender_per_day = 2);
    for i in 0..4 {
        let (raw, _) = mail(REPORTER, &format!("Finding number {i}"), &[], "x");
        w.deliver(REPORTER, &raw);
    }
    let all = w.wait_cases(4);
    w.wait_mailbox(REPORTER, 2);
    w.wait_processed(4);
    w.wait_outbox_empty();
    std::thread::sleep(SETTLE);
    w.assert_mailbox(REPORTER, 2);

    let mut limited = 0;
    for c in &all {
        let shown = w.show(s(c, "id"));
        let not_acked = events(&shown)
            .into_iter()
            .find(|e| s(e, "what") == "not acknowledged");
        let out = messages(&shown)
            .iter()
            .filter(|m| s(m, "direction") == "out" && s(m, "kind") != "notification")
            .count();
        match not_acked {
            Some(e) => {
                limited += 1;
                assert_eq!(out, 0, "{shown:#}");
                assert!(s(&e, "detail").contains("acks_per_sender_per_day"), "{e:#}");
                assert_eq!(s(&shown, "state"), "new");
                assert!(shown["acknowledged_at"].is_null());
            }
            None => {
                assert_eq!(out, 1, "{shown:#}");
                assert_eq!(s(&shown, "state"), "acknowledged", "{shown:#}");
            }
        }
    }
    assert_eq!(limited, 2);
}

#[test]
fn promote_robot() {
    let w = World::start(|_| {});
    // A forwarder that stamps its own robot header on a real report.
    let subject = "Fwd: auth bypass";
    let (raw, mid) = mail(
        REPORTER,
        subject,
        &["Auto-Submitted: auto-generated"],
        "forwarded report",
    );
    w.deliver(REPORTER, &raw);
    let robot = eventually(T, "the robot message", Some(&w.daemon), || {
        w.robots().into_iter().next()
    });
    assert_eq!(s(&robot, "robot_rule"), "auto-submitted");
    assert_eq!(bare(s(&robot, "message_id")), mid);
    assert!(w.cases().is_empty());
    let unattached = cli_json(&w.config, &["mail", "list"]);
    assert_eq!(
        unattached.as_array().map(Vec::len),
        Some(1),
        "{unattached:#}"
    );
    std::thread::sleep(SETTLE);
    w.assert_mailbox(REPORTER, 0);

    let msg_id = robot["id"].as_i64().unwrap().to_string();
    let (code, out, err) = cli(&w.config, &["mail", "promote", &msg_id]);
    assert_eq!(code, 0, "promote failed: {out}{err}");
    let c = w.wait_cases(1);
    let id = s(&c[0], "id").to_owned();
    assert!(out.contains(&id), "{out}");

    // The running daemon sends the acknowledgement the CLI queued, promptly:
    // an operator promotes a report because it needs its ack now.
    let t0 = Instant::now();
    eventually(
        T,
        "the ack queued by `mail promote` (the outbox is not woken by the CLI \
         and only re-reads its queue every 60 s)",
        Some(&w.daemon),
        || {
            let m = w.stack.try_fetch_folder(REPORTER, "INBOX").ok()?;
            (!m.is_empty()).then_some(())
        },
    );
    let acks = w.wait_mailbox(REPORTER, 1);
    eprintln!("promote -> ack in the reporter's INBOX: {:?}", t0.elapsed());
    assert_ack(&acks[0], &mid, subject, &id, REPORTER);
    let shown = w.show(&id);
    assert!(
        events(&shown).iter().any(|e| s(e, "what") == "promoted"),
        "{shown:#}"
    );
    // Promoting again is refused.
    let (code, _, _) = cli(&w.config, &["mail", "promote", &msg_id]);
    assert_ne!(code, 0);
}

#[test]
fn move_after() {
    let w = World::start(|c| c.after = "move:Processed".into());
    let (raw, mid) = mail(REPORTER, "Open redirect", &[], "x");
    w.deliver(REPORTER, &raw);
    w.wait_mailbox(REPORTER, 1);
    w.wait_cases(1);
    let moved = eventually(T, "the report in Processed", Some(&w.daemon), || {
        let f = w
            .stack
            .try_fetch_folder(SECURITY, "Processed")
            .unwrap_or_default();
        (!f.is_empty()).then_some(f)
    });
    assert_eq!(moved.len(), 1);
    assert_eq!(header(&moved[0], "Message-ID").unwrap(), format!("<{mid}>"));
    w.assert_mailbox(SECURITY, 0);
}

#[test]
fn keep_after_leaves_report_unseen() {
    let w = World::start(|c| c.after = "keep".into());
    let (raw, _) = mail(REPORTER, "Timing attack on login", &[], "x");
    w.deliver(REPORTER, &raw);
    w.wait_mailbox(REPORTER, 1);
    w.wait_processed(1);
    w.assert_mailbox(SECURITY, 1);
    let flags = w.stack.flags(SECURITY, "INBOX");
    assert_eq!(flags.len(), 1);
    assert!(!flags[0].contains("\\Seen"), "flags: {flags:?}");
}

#[test]
fn oversized_message() {
    let w = World::start(|c| c.max_message_size = "1MiB".into());
    let line = "A".repeat(76);
    let body: String = (0..(3 << 20) / 78).map(|_| format!("{line}\r\n")).collect();
    let subject = "Crash dump attached";
    let (raw, mid) = mail(REPORTER, subject, &[], &body);
    assert!(raw.len() > 3 << 20);
    w.deliver(REPORTER, &raw);

    let acks = w.wait_mailbox(REPORTER, 1);
    let c = w.wait_cases(1);
    let id = s(&c[0], "id").to_owned();
    assert_ack(&acks[0], &mid, subject, &id, REPORTER);
    let shown = w.show(&id);
    let report = messages(&shown)
        .into_iter()
        .find(|m| s(m, "kind") == "report")
        .expect("report message");
    assert_eq!(report["truncated"], true, "{report:#}");
    assert!(
        report["size"].as_u64().unwrap() >= raw.len() as u64,
        "size should be the server's: {report:#}"
    );
    // The full message stays on the server.
    w.wait_processed(1);
    let kept = w.assert_mailbox(SECURITY, 1);
    assert!(kept[0].len() >= raw.len());
}

/// A bounce whose body has a non-ASCII line (here Japanese, as Google
/// Groups sends) must be filed like any robot, not take the daemon down.
#[test]
fn robot_with_non_ascii_body_line_does_not_crash() {
    let mut w = World::start(|_| {});
    let (robot, _) = mail(
        "mailer-daemon@googlegroups.example",
        "Delivery Status Notification (Failure)",
        &["Auto-Submitted: auto-replied"],
        "連絡しようとしたグループ（example）が存在しないか、権限がありません。",
    );
    w.deliver("", &robot);
    let (report, _) = mail(REPORTER, "Use after free", &[], "x");
    w.deliver(REPORTER, &report);

    let deadline = Instant::now() + T;
    while w.last_uid() < 2 {
        assert!(
            w.daemon.alive(),
            "the daemon died on a robot with a non-ASCII body line:\n{}",
            w.daemon.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "timed out\n{}",
            w.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(w.daemon.alive());
    assert_eq!(w.robots().len(), 1);
    w.wait_cases(1);
    w.wait_mailbox(REPORTER, 1);
}

/// Issue 11: a report the provider filed as spam is seen. `junk = "auto"`
/// finds the stack's `\Junk` folder (Dovecot's special_use) and watches
/// it beside INBOX; the case says where the report was found, and the
/// reporter is acknowledged as from INBOX.
#[test]
fn a_report_filed_as_spam_opens_a_case_that_says_where_it_was_found() {
    let w = World::start_ready(|cfg| {
        cfg.imap_extra = "junk = \"auto\"".into();
    });
    let raw = common::simple_message(REPORTER, SECURITY, "RCE via crafted PoC", "PoC attached.");
    w.stack.save(SECURITY, "Junk", &raw);
    w.report("other@example.net", "From the inbox");
    let cases = w.wait_acked_cases(2);
    let spam = cases
        .iter()
        .find(|c| c["subject"] == "RCE via crafted PoC")
        .unwrap_or_else(|| w.fail("no case for the report in Junk"));
    let id = spam["id"].as_str().unwrap();
    let notes: Vec<String> = w.show(id)["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "intake note")
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("found in the folder \"Junk\"")),
        "{notes:?}"
    );
    // The inbox report carries no such note, and the handler sees it.
    let inbox = cases
        .iter()
        .find(|c| c["subject"] == "From the inbox")
        .unwrap();
    let inbox_events = w.show(inbox["id"].as_str().unwrap())["events"].to_string();
    assert!(
        !inbox_events.contains("found in the folder"),
        "{inbox_events}"
    );
    let alice = w.wait_mail("alice@example.org", T, |m| m.len() >= 2);
    assert!(
        alice.iter().any(|m| {
            let t = String::from_utf8_lossy(m).replace("=\r\n", "");
            t.contains(id) && t.contains("found in the folder \"Junk\"")
        }),
        "the notification says where the report was found"
    );
    // Each folder keeps its own UIDVALIDITY/UID checkpoint.
    let db =
        rusqlite::Connection::open_with_flags(w.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut names: Vec<(String, i64)> = db
        .prepare("SELECT name, last_uid FROM folders ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names.sort();
    assert_eq!(names, [("INBOX".to_string(), 1), ("Junk".to_string(), 1)]);
    assert!(w.log().contains("watching the junk folder"), "{}", w.log());
}
