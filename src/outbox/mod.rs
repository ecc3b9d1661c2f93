//! SMTP delivery from the durable outbox.
//!
//! Nothing is sent from memory: intake stores each outgoing message and its
//! outbox row in the same transaction as the report that caused it, and this
//! loop delivers what is due, acknowledgements first, then oldest first,
//! over one kept SMTP session. A row is marked sent only after the server
//! accepted it (results are committed up to 8 at a time); a crash in
//! between sends the very same bytes (same Message-ID) again, it never
//! loses one.
//!
//! 4xx answers, timeouts and connection failures are retried with capped
//! exponential backoff; 5xx answers fail the row and say so on its case.

use crate::clock::{parse_ts, Clock};
use crate::health::{Component, Health};
use crate::model::MessageKind;
use crate::store::{self, Db, OutboxItem, StoreError};
use chrono::{DateTime, Utc};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("smtp.ca_file {path}: {reason}")]
    CaFile {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("SMTP server {host}:{port}: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("SMTP: {0}")]
    Transport(#[from] lettre::transport::smtp::Error),
    /// The server refused the login (535 and other 5xx to AUTH): the
    /// password or token is wrong or revoked.
    #[error("SMTP server refused the login: {0}")]
    Credential(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// While the SMTP server fails, how often one waiting mail is tried
/// before its own backoff is up (a probe): its return is noticed within
/// this, without hammering it (1,607 attempts in a 5-minute outage).
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// Longest idle sleep before re-reading the outbox.
const IDLE_RECHECK: Duration = Duration::from_secs(2);
/// Rows fetched from the outbox per round.
const BATCH: u32 = 64;
/// At most this much raw mail per round (at least one message).
const BATCH_BYTES: usize = 16 << 20;

/// TLS parameters for lettre (STARTTLS), trusting `smtp.ca_file` too.
mod smtp;

use smtp::{check_tls, Attempt, Client};
pub use smtp::{connect, Relay};

/// The delay before retry number `attempts` (1-based), with up to 20% jitter.
pub fn backoff(attempts: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let base = exp.min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.0..0.2);
    base.mul_f64(1.0 + jitter)
}

/// Records the results of a few attempts in one transaction.
fn record_many(
    s: &mut store::Store,
    done: &[(OutboxItem, Attempt, DateTime<Utc>)],
) -> Result<(), StoreError> {
    let tx = s.transaction()?;
    for (item, result, now) in done {
        record(&tx, item, result, *now)?;
    }
    crate::store::commit(tx, "recording delivery attempts")
}

/// Records the result of one attempt.
fn record(
    tx: &rusqlite::Connection,
    item: &OutboxItem,
    result: &Attempt,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    match result {
        Attempt::Accepted => {
            store::outbox_sent(tx, item.id, now)?;
            if let Some(case) = &item.case_id {
                if item.purpose == MessageKind::Ack {
                    let how = "acknowledgement accepted by SMTP";
                    store::record_acknowledged(tx, case, now, how)?;
                    crate::workflow::acknowledged(tx, now, case)?;
                }
                store::add_event(
                    tx,
                    case,
                    now,
                    "secintake",
                    &format!("{} accepted by SMTP server", purpose_name(item.purpose)),
                    Some(&format!("to {}", item.recipients.join(", "))),
                    None,
                )?;
            }
        }
        Attempt::Transient(err) => {
            let next = crate::clock::add(now, backoff(item.attempts + 1));
            store::outbox_retry(tx, item.id, next, err)?;
        }
        Attempt::Credential(err) => {
            let next = crate::clock::add(now, crate::health::credential_retry());
            store::outbox_retry(tx, item.id, next, err)?;
        }
        Attempt::Permanent(err) => {
            store::outbox_failed(tx, item.id, err)?;
            if let Some(case) = &item.case_id {
                store::add_event(
                    tx,
                    case,
                    now,
                    "secintake",
                    &format!("{} could not be delivered", purpose_name(item.purpose)),
                    Some(err),
                    None,
                )?;
            }
        }
    }
    Ok(())
}

fn purpose_name(p: MessageKind) -> &'static str {
    match p {
        MessageKind::Ack => "acknowledgement",
        other => other.as_str(),
    }
}

/// Sends recorded at most this many at a time.
const RECORD_EVERY: usize = 8;

/// Records `done` and reports the SMTP health it shows.
async fn flush(
    db: &Db,
    health: &Health,
    done: &mut Vec<(OutboxItem, Attempt, DateTime<Utc>)>,
) -> Result<(), StoreError> {
    if done.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(done);
    let batch = db
        .call(move |s| record_many(s, &batch).map(|()| batch))
        .await?;
    if let Some((_, last, at)) = batch.last() {
        match last {
            Attempt::Transient(e) => health.failing(Component::Smtp, *at, e).await,
            Attempt::Credential(e) => health.credential_rejected(Component::Smtp, *at, e).await,
            _ => health.ok(Component::Smtp, *at).await,
        }
    }
    Ok(())
}

/// The outbox loop: delivers due rows until `shutdown`.
pub async fn run(
    db: Db,
    relay: Relay,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    health: Health,
    backlog: Arc<crate::gate::BacklogGate>,
    shutdown: CancellationToken,
) -> Result<(), OutboxError> {
    check_tls(&relay.cfg)?;
    let mut client = Client::new(relay);
    // Whether the last round ended on a failing server. True at start:
    // mail that backed off before a restart is due once a send works.
    let mut was_failing = true;
    let mut last_probe = tokio::time::Instant::now();
    let mut probe_every = PROBE_EVERY;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        backlog.wait_idle().await;
        let now = clock.now();
        let probe = was_failing && last_probe.elapsed() >= probe_every;
        let (items, probed) = due_or_probe(&db, now, probe).await?;
        if probed {
            last_probe = tokio::time::Instant::now();
        }
        let mut failing = false;
        // Results are recorded a few at a time: one fsync per send made the
        // outbox and intake queue on the state file during a backlog. A
        // crash before the record re-sends at most RECORD_EVERY mails, with
        // their same Message-IDs.
        let mut done: Vec<(OutboxItem, Attempt, DateTime<Utc>)> = Vec::new();
        for item in &items {
            if shutdown.is_cancelled() {
                break;
            }
            let result = client.send(item).await;
            let now = clock.now();
            log_attempt(item, &result);
            if was_failing && matches!(result, Attempt::Accepted) {
                // It works again: what backed off meanwhile is due now.
                was_failing = false;
                let n = db
                    .call(move |s| store::outbox_due_now(s.conn(), now))
                    .await?;
                if n > 0 {
                    tracing::info!(waiting = n, "SMTP works again: waiting mail is due now");
                }
            }
            failing |= matches!(result, Attempt::Transient(_) | Attempt::Credential(_));
            if failing {
                probe_every = refused_login(&db, &result, now).await?;
            }
            done.push((item.clone(), result, now));
            if done.len() >= RECORD_EVERY || failing {
                flush(&db, &health, &mut done).await?;
            }
            if failing {
                // The server is down: don't walk the whole batch into it.
                break;
            }
        }
        flush(&db, &health, &mut done).await?;
        was_failing |= failing;
        let (had_items, bytes) = (!items.is_empty(), items.iter().map(|i| i.raw.len()).sum());
        drop(items);
        if bytes >= crate::memory::TRIM_AFTER_BYTES {
            db.call(move |s| s.release_memory(bytes)).await;
        }
        crate::memory::trim_after(bytes);
        if shutdown.is_cancelled() {
            client.close().await;
            return Ok(());
        }
        if had_items && !failing {
            continue;
        }
        client.close_if_idle().await;
        // Sleep until the next row is due, a new row is queued, or shutdown.
        let wait = idle_wait(&db, clock.now(), failing).await?;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => {
                client.close().await;
                return Ok(());
            }
        }
    }
}

/// How long the outbox sleeps (unless woken): until the next row is due,
/// re-reading at least every [`IDLE_RECHECK`] (the CLI, another process,
/// may queue mail: `mail promote`, `cases note`; one indexed query), and at
/// least 200 ms after a failure.
async fn idle_wait(db: &Db, now: DateTime<Utc>, failing: bool) -> Result<Duration, StoreError> {
    let next = db.call(|s| store::next_outbox_due(s.conn())).await?;
    Ok(next
        .as_deref()
        .and_then(parse_ts)
        .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
        .unwrap_or(Duration::from_secs(3600))
        .min(IDLE_RECHECK)
        .max(Duration::from_millis(if failing { 200 } else { 0 })))
}

/// After a failed attempt, how often the server is probed: every
/// [`PROBE_EVERY`], or, when it refused our login, as slowly as a login is
/// retried, with every waiting mail put off as long (one refused login per
/// queued mail would get the account locked).
async fn refused_login(
    db: &Db,
    result: &Attempt,
    now: DateTime<Utc>,
) -> Result<Duration, StoreError> {
    if !matches!(result, Attempt::Credential(_)) {
        return Ok(PROBE_EVERY);
    }
    let wait = crate::health::credential_retry();
    let until = crate::clock::add(now, wait);
    db.call(move |s| store::outbox_defer_all(s.conn(), until))
        .await?;
    Ok(wait)
}

/// The rows due at `now`; when none are and `probe`, the earliest waiting
/// one, ahead of its backoff: while the server fails, one mail probes it
/// every [`PROBE_EVERY`], so its return is noticed within seconds (and
/// then everything waiting goes, see [`store::outbox_due_now`]). Also
/// says whether it probed.
async fn due_or_probe(
    db: &Db,
    now: DateTime<Utc>,
    probe: bool,
) -> Result<(Vec<OutboxItem>, bool), StoreError> {
    let items = db
        .call(move |s| store::due_outbox(s.conn(), now, BATCH, BATCH_BYTES))
        .await?;
    if !items.is_empty() || !probe {
        return Ok((items, false));
    }
    let horizon = crate::clock::add(now, MAX_BACKOFF.mul_f64(2.0));
    let earliest = db
        .call(move |s| store::due_outbox(s.conn(), horizon, 1, BATCH_BYTES))
        .await?;
    Ok((earliest, true))
}

/// Fails fast on a broken `smtp.ca_file` instead of retrying forever.
/// One log line per attempt: the server's reply text is left out.
fn log_attempt(item: &OutboxItem, result: &Attempt) {
    match result {
        Attempt::Accepted => {
            tracing::info!(outbox = item.id, case = item.case_id.as_deref().unwrap_or("-"),
                purpose = %item.purpose, "mail accepted by SMTP server");
        }
        // The refusal itself is logged once by `health`.
        Attempt::Transient(e) | Attempt::Credential(e) => {
            tracing::debug!(outbox = item.id, error = %crate::health::loggable(e), "delivery deferred");
        }
        Attempt::Permanent(e) => {
            tracing::warn!(outbox = item.id, case = item.case_id.as_deref().unwrap_or("-"),
                error = %crate::health::loggable(e), "delivery failed permanently");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b1 = backoff(1);
        assert!(b1 >= FIRST_BACKOFF && b1 <= FIRST_BACKOFF.mul_f64(1.2));
        let b3 = backoff(3);
        assert!(b3 >= FIRST_BACKOFF * 4 && b3 <= (FIRST_BACKOFF * 4).mul_f64(1.2));
        let b40 = backoff(40);
        assert!(b40 >= MAX_BACKOFF && b40 <= MAX_BACKOFF.mul_f64(1.2));
    }
}
