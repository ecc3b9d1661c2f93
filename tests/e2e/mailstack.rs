//! Self-test of the mail test harness (tests/mailstack + tests/e2e/common):
//! proves the private mail system behaves like a real one before any
//! secintake test relies on it.  Inbound SMTP → IMAPS, authenticated
//! submission, genuine DSN bounces, plus-addressing, vacation replies,
//! outages, bulk injection, several stacks at once, and real DKIM: signing
//! on submission, verification + Authentication-Results everywhere.

use crate::common;

use common::{
    header, header_fields, headers, simple_message, MailStack, AUTHSERV_ID, DKIM_SELECTOR,
};
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

/// Names of the header fields down to and including the `n`-th
/// `Received`, e.g. ["Return-Path", "Delivered-To", "Received", ...].
fn trace_names(raw: &[u8], received: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut seen = 0;
    for (name, _) in header_fields(raw) {
        names.push(name.clone());
        if name.eq_ignore_ascii_case("Received") {
            seen += 1;
            if seen == received {
                break;
            }
        }
    }
    names
}

fn find<'a>(msgs: &'a [Vec<u8>], subject: &str) -> &'a [u8] {
    msgs.iter()
        .find(|m| header(m, "Subject").as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("no message {subject:?}"))
}

/// The real OpenDKIM in the stack: submitted mail is signed and arrives
/// with dkim=pass; inbound mail is verified, never signed (even with a From:
/// at a test domain), and stamped dkim=none / dkim=fail; forged
/// Authentication-Results headers survive for the daemon to judge.  Also
/// pins the header order documented in mailstack.sh.
#[test]
fn dkim_signs_submissions_and_stamps_everything() {
    let ms = MailStack::start();
    let sec = "security@example.org";
    let ar_none = format!("{AUTHSERV_ID}; dkim=none; dkim-atps=neutral");

    // Inbound, unsigned; and inbound claiming to be from a test domain.
    let raw = simple_message("reporter@example.net", sec, "dkim inbound", "x");
    ms.send_raw("reporter@example.net", &[sec], &raw);
    let raw = simple_message("alice@example.org", sec, "dkim spoof", "x");
    ms.send_raw("alice@example.org", &[sec], &raw);
    // Inbound with a forged Authentication-Results naming our authserv-id.
    let forged = format!("{AUTHSERV_ID}; dkim=pass header.d=example.org header.s={DKIM_SELECTOR}");
    let raw = format!(
        "Authentication-Results: {forged}\r\n{}",
        String::from_utf8(simple_message("alice@example.org", sec, "dkim forged", "x")).unwrap()
    );
    ms.send_raw("alice@example.org", &[sec], raw.as_bytes());
    // Submitted, from both test domains and from a foreign one.
    let raw = simple_message("alice@example.org", sec, "dkim submitted", "Body.\n");
    ms.submit("alice@example.org", "alice@example.org", &[sec], &raw);
    let raw = simple_message("bob@example.net", sec, "dkim submitted net", "x");
    ms.submit("bob@example.net", "bob@example.net", &[sec], &raw);
    let raw = simple_message("someone@elsewhere.test", sec, "dkim foreign", "x");
    ms.submit("alice@example.org", "alice@example.org", &[sec], &raw);

    let msgs = ms.wait_for(sec, |m| m.len() >= 6, T);

    for subject in ["dkim inbound", "dkim spoof"] {
        let m = find(&msgs, subject);
        assert_eq!(
            header(m, "Authentication-Results"),
            Some(ar_none.clone()),
            "{subject}"
        );
        assert_eq!(header(m, "DKIM-Signature"), None, "{subject} was signed");
        assert_eq!(
            trace_names(m, 2),
            [
                "Return-Path",
                "Delivered-To",
                "Received",
                "Authentication-Results",
                "Received"
            ],
            "{subject}"
        );
    }

    let m = find(&msgs, "dkim forged");
    assert_eq!(
        headers(m, "Authentication-Results"),
        [ar_none.clone(), forged]
    );

    for (subject, domain) in [
        ("dkim submitted", "example.org"),
        ("dkim submitted net", "example.net"),
    ] {
        let m = find(&msgs, subject);
        let ar = headers(m, "Authentication-Results");
        assert_eq!(ar.len(), 1, "{subject}: {ar:?}");
        assert!(
            ar[0].starts_with(&format!("{AUTHSERV_ID}; dkim=pass ")),
            "{subject}: {ar:?}"
        );
        assert!(
            ar[0].contains(&format!(" header.d={domain} ")),
            "{subject}: {ar:?}"
        );
        assert!(
            ar[0].contains(&format!(" header.s={DKIM_SELECTOR} ")),
            "{subject}: {ar:?}"
        );
        let sig = header(m, "DKIM-Signature").expect("signed");
        assert!(sig.contains(&format!(" d={domain};")), "{sig}");
        assert_eq!(
            trace_names(m, 3),
            [
                "Return-Path",
                "Delivered-To",
                "Received",
                "Authentication-Results",
                "Received",
                "DKIM-Signature",
                "Received"
            ],
            "{subject}"
        );
        for r in headers(m, "Received") {
            assert!(r.contains(&format!(" by {AUTHSERV_ID} ")), "{r}");
        }
    }

    let m = find(&msgs, "dkim foreign");
    assert_eq!(
        headers(m, "Authentication-Results"),
        std::slice::from_ref(&ar_none)
    );
    assert_eq!(header(m, "DKIM-Signature"), None);

    // The inbound verifier checks real signatures: a replay of the signed
    // message passes, a tampered one fails.
    let signed = find(&msgs, "dkim submitted");
    let text = String::from_utf8_lossy(signed);
    let start = text.find("DKIM-Signature:").unwrap();
    let replay = text[start..].to_string();
    ms.send_raw(
        "alice@example.org",
        &["replay@example.org"],
        replay.as_bytes(),
    );
    let tampered = replay.replace("Body.", "Tampered.");
    ms.send_raw(
        "alice@example.org",
        &["tampered@example.org"],
        tampered.as_bytes(),
    );
    let m = &ms.wait_for("replay@example.org", |m| !m.is_empty(), T)[0];
    let ar = header(m, "Authentication-Results").unwrap();
    assert!(
        ar.starts_with(&format!("{AUTHSERV_ID}; dkim=pass ")),
        "{ar}"
    );
    let m = &ms.wait_for("tampered@example.org", |m| !m.is_empty(), T)[0];
    let ar = header(m, "Authentication-Results").unwrap();
    assert!(
        ar.starts_with(&format!("{AUTHSERV_ID}; dkim=fail ")),
        "{ar}"
    );
}
