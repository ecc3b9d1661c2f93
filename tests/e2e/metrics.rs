//! Metrics (issue 12): the daemon's `[metrics] listen` endpoint and
//! `secintake metrics` print OpenMetrics text that a real parser accepts
//! (the Prometheus project's Python client, from Debian), with the counts
//! the state file holds.

use crate::common;

use common::daemon::cli;
use common::world::World;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// Parses `text` with prometheus_client's OpenMetrics parser; returns
/// its samples as "name{labels} value" lines.
fn parse(text: &str) -> String {
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))\n\
        \x20       print(f'{s.name}{{{labels}}} {s.value}')\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (install-deps: python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_endpoint_and_the_command_print_openmetrics_a_parser_accepts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let w = World::start_ready(|c| {
        c.extra = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    });
    w.report("one@example.net", "Counted");
    w.report("two@example.net", "Counted too");
    w.wait_acked_cases(2);

    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    let samples = parse(body);
    for want in [
        "secintake_incoming_messages_total{kind=report} 2",
        "secintake_outgoing_messages_total{purpose=ack,result=sent} 2",
        "secintake_cases{state=acknowledged} 2",
        "secintake_failing{part=imap} 0",
        "secintake_failing{part=storage} 0",
        "secintake_mailbox_held{} 1",
        "secintake_outbox_backlog{} 0",
    ] {
        assert!(samples.contains(want), "no {want}:\n{samples}");
    }
    assert!(
        samples.contains("secintake_seconds_since_last_sync{} "),
        "{samples}"
    );
    assert!(
        samples.contains("secintake_imap_reconnects_total{} "),
        "{samples}"
    );
    assert!(
        samples.contains("secintake_deadlines{kind=acknowledge,outcome=met} 2"),
        "{samples}"
    );

    // Anything else: 404.
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");

    // The command prints the state file's counts (no live health).
    let (code, out, err) = cli(&w.config, &["metrics"]);
    assert_eq!(code, 0, "{err}");
    let samples = parse(&out);
    assert!(
        samples.contains("secintake_incoming_messages_total{kind=report} 2"),
        "{samples}"
    );
    assert!(!samples.contains("secintake_failing"), "{samples}");
}

#[test]
fn metrics_are_served_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let stack = common::MailStack::start();
    let path = common::write_config(dir.path(), &stack, |c| {
        c.extra = "[metrics]\nlisten = \"0.0.0.0:9464\"\n".into();
    });
    let (code, _, err) = cli(&path, &["check-config", "--offline"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("metrics.listen") && err.contains("not a loopback address"),
        "{err}"
    );
}
