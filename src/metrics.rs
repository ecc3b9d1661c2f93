//! OpenMetrics text (issue 12), through `prometheus-client` (the one
//! place that names it): what the state file counts, read at each scrape
//! so counters survive restarts, plus the daemon's live health. Printed
//! by `secintake metrics` (for node_exporter's textfile collector) and
//! served by the daemon on `[metrics] listen`, a loopback address.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::clock::{fmt_ts, parse_ts, Clock};
use crate::health::Health;
use crate::store::{Db, MetricCounts};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The OpenMetrics text for `counts` at `now`, with the live health when
/// the daemon serves it.
pub fn render(counts: &MetricCounts, now: DateTime<Utc>, live: Option<&Health>) -> String {
    let mut reg = Registry::with_prefix("secintake");
    let incoming = Family::<Labels, Counter>::default();
    reg.register(
        "incoming_messages",
        "Incoming messages recorded, by kind (report, robot, follow-up, ...)",
        incoming.clone(),
    );
    for (kind, n) in &counts.incoming {
        incoming
            .get_or_create(&labels(&[("kind", kind)]))
            .inc_by(*n);
    }
    let sent = Family::<Labels, Counter>::default();
    reg.register(
        "outgoing_messages",
        "Outgoing mail delivered or failed for good, by purpose (ack, notification, ...) and result",
        sent.clone(),
    );
    let backlog: Gauge = Gauge::default();
    reg.register(
        "outbox_backlog",
        "Mail waiting in the outbox",
        backlog.clone(),
    );
    for (purpose, status, n) in &counts.outgoing {
        match status.as_str() {
            "scheduled" => {
                backlog.inc_by(*n as i64);
            }
            result => {
                sent.get_or_create(&labels(&[("purpose", purpose), ("result", result)]))
                    .inc_by(*n);
            }
        }
    }
    let age = |at: &Option<String>| {
        at.as_deref()
            .and_then(parse_ts)
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
    };
    let oldest = Gauge::<f64, AtomicU64>::default();
    reg.register(
        "outbox_oldest_age_seconds",
        "Age of the oldest unsent mail (0: none waits)",
        oldest.clone(),
    );
    oldest.set(age(&counts.oldest_unsent_at).unwrap_or(0.0));
    let since_sync = Gauge::<f64, AtomicU64>::default();
    reg.register(
        "seconds_since_last_sync",
        "Seconds since a folder was last read in full (-1: never)",
        since_sync.clone(),
    );
    since_sync.set(age(&counts.last_sync_at).unwrap_or(-1.0));
    let cases = Family::<Labels, Gauge>::default();
    reg.register("cases", "Cases by state", cases.clone());
    for (state, n) in &counts.cases {
        cases
            .get_or_create(&labels(&[("state", state)]))
            .set(*n as i64);
    }
    let deadlines = Family::<Labels, Gauge>::default();
    reg.register(
        "deadlines",
        "Deadlines by kind and outcome: met (on time), late (met after it was due), missed (open, past due)",
        deadlines.clone(),
    );
    for (kind, met, late, missed) in &counts.deadlines {
        for (outcome, n) in [("met", met), ("late", late), ("missed", missed)] {
            deadlines
                .get_or_create(&labels(&[("kind", kind), ("outcome", outcome)]))
                .set(*n as i64);
        }
    }
    if let Some(h) = live {
        register_live(&mut reg, h);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// The daemon's live health: what fails, whether it holds the mailbox,
/// reconnects since start.
fn register_live(reg: &mut Registry, h: &Health) {
    let failing = Family::<Labels, Gauge>::default();
    reg.register(
        "failing",
        "1 while a part fails (imap, smtp, storage, lease: heartbeats failing and the lease run out), else 0",
        failing.clone(),
    );
    for (part, bad) in h.failing_parts() {
        failing
            .get_or_create(&labels(&[("part", part)]))
            .set(bad as i64);
    }
    let held: Gauge = Gauge::default();
    reg.register(
        "mailbox_held",
        "1 while this instance holds the mailbox's lease (reads and answers mail); 0 before its first heartbeat, once it has run out, and while another instance holds it",
        held.clone(),
    );
    held.set(h.holds_mailbox() as i64);
    let reconnects = Counter::<u64>::default();
    reg.register(
        "imap_reconnects",
        "IMAP sessions that ended in an error and were reconnected, since the daemon started",
        reconnects.clone(),
    );
    reconnects.inc_by(h.reconnects());
}

/// Reads the counts and renders them.
pub async fn scrape(db: &Db, now: DateTime<Utc>, live: Option<&Health>) -> anyhow::Result<String> {
    let at = fmt_ts(now);
    let counts = db
        .call(move |s| crate::store::metric_counts(s.conn(), &at))
        .await?;
    Ok(render(&counts, now, live))
}

/// A request head larger than this is refused.
const MAX_REQUEST: usize = 8 << 10;

/// Serves `GET /metrics` on `listener` until `shutdown`: one short
/// request per connection, read with a bound and a timeout (the address
/// is loopback only; anything else gets 404).
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Db,
    clock: std::sync::Arc<dyn Clock>,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let (mut conn, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let (db, clock, health) = (db.clone(), clock.clone(), health.clone());
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                    let n = conn.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    head.extend_from_slice(&buf[..n]);
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let (status, body, kind) = if line.starts_with(b"GET /metrics ") {
                match scrape(&db, clock.now(), Some(&health)).await {
                    Ok(text) => ("200 OK", text, CONTENT_TYPE),
                    Err(e) => ("503 Service Unavailable", format!("{e}\n"), "text/plain"),
                }
            } else {
                ("404 Not Found", "GET /metrics\n".to_string(), "text/plain")
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

/// OpenMetrics' media type.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
