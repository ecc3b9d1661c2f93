//! Self-test of the mail test harness (tests/mailstack + tests/common):
//! proves the private mail system behaves like a real one before any
//! secintake test relies on it.  Inbound SMTP → IMAPS, authenticated
//! submission, genuine DSN bounces, plus-addressing, vacation replies,
//! outages, bulk injection and several stacks at once.

mod common;

use common::{header, simple_message, MailStack};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn has_subject(msgs: &[Vec<u8>], subject: &str) -> bool {
    msgs.iter()
        .any(|m| header(m, "Subject").as_deref() == Some(subject))
}

#[test]
fn inbound_smtp_reaches_imaps() {
    let ms = MailStack::start();
    let raw = simple_message(
        "reporter@example.net",
        "security@example.org",
        "inbound check",
        "Hello.\n.leading dot line\n",
    );
    ms.send_raw("reporter@example.net", &["security@example.org"], &raw);
    let msgs = ms.wait_for(
        "security@example.org",
        |m| has_subject(m, "inbound check"),
        T,
    );
    let text = String::from_utf8_lossy(&msgs[0]);
    assert!(
        text.contains("\r\n.leading dot line\r\n"),
        "dot-stuffing undone: {text}"
    );
    assert_eq!(
        header(&msgs[0], "Delivered-To").as_deref(),
        Some("security@example.org")
    );
}

#[test]
fn plus_addressing_lands_in_base_inbox() {
    let ms = MailStack::start();
    let raw = simple_message(
        "reporter@example.net",
        "security+cve@example.org",
        "plus check",
        "x",
    );
    ms.send_raw("reporter@example.net", &["security+cve@example.org"], &raw);
    let msgs = ms.wait_for("security@example.org", |m| has_subject(m, "plus check"), T);
    assert_eq!(
        header(&msgs[0], "Delivered-To").as_deref(),
        Some("security+cve@example.org")
    );
}

#[test]
fn submission_delivers_and_unknown_domains_bounce() {
    let ms = MailStack::start();
    let raw = simple_message(
        "security@example.org",
        "reporter@example.net",
        "ack check",
        "Thanks.",
    );
    ms.submit(
        "security@example.org",
        "security@example.org",
        &["reporter@example.net"],
        &raw,
    );
    ms.wait_for("reporter@example.net", |m| has_subject(m, "ack check"), T);

    // Unknown domain: accepted by submission, then bounced with a real DSN.
    let raw = simple_message(
        "security@example.org",
        "nobody@unknown.invalid",
        "bounce me",
        "x",
    );
    ms.submit(
        "security@example.org",
        "security@example.org",
        &["nobody@unknown.invalid"],
        &raw,
    );
    let msgs = ms.wait_for(
        "security@example.org",
        |m| has_subject(m, "Undelivered Mail Returned to Sender"),
        T,
    );
    let dsn = &msgs[0];
    assert!(header(dsn, "Content-Type")
        .unwrap()
        .contains("multipart/report"));
    assert_eq!(
        header(dsn, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert!(header(dsn, "From").unwrap().contains("MAILER-DAEMON"));
    assert_eq!(header(dsn, "Return-Path").as_deref(), Some("<>"));

    // The inbound port is not an open relay.
    let err = ms
        .try_send_raw("x@example.net", &["nobody@unknown.invalid"], &raw)
        .unwrap_err();
    assert!(err.starts_with("554"), "{err}");
}

#[test]
fn vacation_replies_through_postfix() {
    let ms = MailStack::start();
    ms.vacation("security@example.org");
    let raw = simple_message(
        "reporter@example.net",
        "security@example.org",
        "are you there",
        "x",
    );
    ms.send_raw("reporter@example.net", &["security@example.org"], &raw);
    let msgs = ms.wait_for("reporter@example.net", |m| !m.is_empty(), T);
    assert_eq!(
        header(&msgs[0], "Auto-Submitted").as_deref(),
        Some("auto-replied (vacation)")
    );
}

#[test]
fn outages_queue_then_deliver() {
    let ms = MailStack::start();
    ms.stop_imap();
    assert!(ms
        .try_fetch_folder("security@example.org", "INBOX")
        .is_err());
    let raw = simple_message(
        "reporter@example.net",
        "security@example.org",
        "while down",
        "x",
    );
    ms.send_raw("reporter@example.net", &["security@example.org"], &raw);
    ms.start_imap();
    ms.wait_for("security@example.org", |m| has_subject(m, "while down"), T);

    ms.stop_smtp();
    assert!(ms
        .try_send_raw("a@example.net", &["security@example.org"], &raw)
        .is_err());
    ms.start_smtp();
    ms.send_raw("reporter@example.net", &["security@example.org"], &raw);
}

#[test]
fn inject_and_inject_many_keep_order() {
    let ms = MailStack::start();
    ms.inject(
        "bulk@example.org",
        &simple_message("a@example.net", "bulk@example.org", "first", "x"),
    );
    let msgs: Vec<Vec<u8>> = (0..5000)
        .map(|i| {
            simple_message(
                "a@example.net",
                "bulk@example.org",
                &format!("bulk {i}"),
                "x",
            )
        })
        .collect();
    let started = Instant::now();
    assert_eq!(ms.inject_many("bulk@example.org", &msgs), 5001);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "inject_many took {took:?}");
    eprintln!("inject_many: 5000 messages in {took:?}");
    let all = ms.fetch_all("bulk@example.org");
    assert_eq!(all.len(), 5001);
    assert_eq!(header(&all[0], "Subject").as_deref(), Some("first"));
    for (i, m) in all[1..].iter().enumerate() {
        assert_eq!(header(m, "Subject"), Some(format!("bulk {i}")));
    }
}

#[test]
fn several_stacks_at_once() {
    let stacks: Vec<MailStack> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(MailStack::start)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, ms) in stacks.iter().enumerate() {
        let subject = format!("stack {i}");
        let raw = simple_message("r@example.net", "security@example.org", &subject, "x");
        ms.send_raw("r@example.net", &["security@example.org"], &raw);
    }
    for (i, ms) in stacks.iter().enumerate() {
        let msgs = ms.wait_for("security@example.org", |m| !m.is_empty(), T);
        assert_eq!(msgs.len(), 1);
        assert_eq!(header(&msgs[0], "Subject"), Some(format!("stack {i}")));
    }
}

#[test]
fn config_writer_produces_the_documented_shape() {
    let ms = MailStack::start();
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_config(dir.path(), &ms, |c| {
        c.idle = false;
        c.project = "Quote \"me\"".into();
    });
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(&format!("port = {}\n", ms.imap_port)));
    assert!(text.contains(&format!("port = {}\n", ms.submission_port)));
    assert!(text.contains("idle = false\n"));
    assert!(text.contains("project = \"Quote \\\"me\\\"\"\n"));
    assert!(text.contains("[[handlers]]\nname = \"Alice\"\n"));
}
