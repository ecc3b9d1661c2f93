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
use crate::health::{Component, Health, Writer};
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

mod alert_relay;
/// TLS parameters for lettre (STARTTLS), trusting `smtp.ca_file` too.
mod smtp;

pub use alert_relay::SecondRelay;

use smtp::{check_tls, Attempt, Client};
pub use smtp::{connect, Relay, Section};

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
///
/// A state file that cannot be written (a full disk, a read-only file)
/// does not end it: sending stops (see [`Loop::send_all`]: nothing goes
/// out that could not be recorded), the failure is logged at error and
/// alerted by `[alerts] command`, and the loop tries again every
/// [`STORAGE_RETRY`] until the file takes writes again. Ending would have
/// the unit restart it and, before the claim, re-send the same mail each
/// time (8 reporters got 11 copies each in 60 s).
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
    let mut this = Loop {
        client: Client::new(relay),
        db,
        clock,
        health,
        // True at start: mail that backed off before a restart is due once
        // a send works.
        was_failing: true,
        last_probe: tokio::time::Instant::now(),
        probe_every: PROBE_EVERY,
    };
    loop {
        if shutdown.is_cancelled() {
            this.client.close().await;
            return Ok(());
        }
        backlog.wait_idle().await;
        let wait = match this.write_probe().await {
            Ok(()) => this.round(&shutdown).await,
            Err(e) => Err(e),
        };
        let wait = match wait {
            Ok(wait) => wait,
            Err(e) => {
                this.client.close().await;
                let now = this.clock.now();
                this.health
                    .storage_failing(Writer::Outbox, now, &e.to_string())
                    .await;
                Some(STORAGE_RETRY)
            }
        };
        let Some(wait) = wait else {
            continue;
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// While the state file takes no writes, how often the outbox tries again.
const STORAGE_RETRY: Duration = Duration::from_secs(5);

/// The outbox loop's state between rounds.
struct Loop {
    client: Client,
    db: Db,
    clock: Arc<dyn Clock>,
    health: Health,
    /// Whether the last round ended on a failing server.
    was_failing: bool,
    last_probe: tokio::time::Instant,
    probe_every: Duration,
}

impl Loop {
    /// After a failed write, a small one first: the round may write
    /// nothing (no mail due), and only a write proves the file takes them
    /// again.
    async fn write_probe(&mut self) -> Result<(), StoreError> {
        if !self.health.storage_failed_for(Writer::Outbox) {
            return Ok(());
        }
        let now = self.clock.now();
        self.db.call(move |s| store::probe_write(s, now)).await?;
        self.health.storage_ok(Writer::Outbox, now).await;
        Ok(())
    }

    /// Sends what is due; returns how long to wait for more (None: go on
    /// at once).
    async fn round(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Duration>, StoreError> {
        let now = self.clock.now();
        let probe = self.was_failing && self.last_probe.elapsed() >= self.probe_every;
        let (items, probed) = due_or_probe(&self.db, now, probe).await?;
        if probed {
            self.last_probe = tokio::time::Instant::now();
        }
        let sent = self.send_all(&items, shutdown).await;
        let (had_items, bytes) = (!items.is_empty(), items.iter().map(|i| i.raw.len()).sum());
        drop(items);
        if bytes >= crate::memory::TRIM_AFTER_BYTES {
            self.db.call(move |s| s.release_memory(bytes)).await;
        }
        crate::memory::trim_after(bytes);
        let failing = sent?;
        self.was_failing |= failing;
        if shutdown.is_cancelled() || (had_items && !failing) {
            return Ok(None);
        }
        self.client.close_if_idle().await;
        // Sleep until the next row is due, a new row is queued, or shutdown.
        idle_wait(&self.db, self.clock.now(), failing)
            .await
            .map(Some)
    }

    /// Sends `items`, RECORD_EVERY at a time; returns whether the server
    /// failed. Each group is first claimed in a committed write: a state
    /// file that cannot record the attempt stops the sending before any
    /// mail goes out, instead of repeating it after every restart. Results
    /// are recorded a group at a time: one fsync per send made the outbox
    /// and intake queue on the state file during a backlog. A crash before
    /// the record re-sends at most RECORD_EVERY mails, with their same
    /// Message-IDs.
    async fn send_all(
        &mut self,
        items: &[OutboxItem],
        shutdown: &CancellationToken,
    ) -> Result<bool, StoreError> {
        for group in items.chunks(RECORD_EVERY) {
            if shutdown.is_cancelled() {
                break;
            }
            let ids: Vec<i64> = group.iter().map(|i| i.id).collect();
            let now = self.clock.now();
            self.db
                .call(move |s| store::outbox_claim(s, &ids, now))
                .await?;
            let mut done: Vec<(OutboxItem, Attempt, DateTime<Utc>)> = Vec::new();
            let mut failing = false;
            for item in group {
                if shutdown.is_cancelled() {
                    break;
                }
                let result = self.client.send(item).await;
                let now = self.clock.now();
                log_attempt(item, &result);
                if self.was_failing && matches!(result, Attempt::Accepted) {
                    // It works again: what backed off meanwhile is due now.
                    self.was_failing = false;
                    let n = self
                        .db
                        .call(move |s| store::outbox_due_now(s.conn(), now))
                        .await?;
                    if n > 0 {
                        tracing::info!(waiting = n, "SMTP works again: waiting mail is due now");
                    }
                }
                failing = matches!(result, Attempt::Transient(_) | Attempt::Credential(_));
                if failing {
                    self.probe_every = refused_login(&self.db, &result, now).await?;
                }
                done.push((item.clone(), result, now));
                if failing {
                    // The server is down: don't walk the whole batch into it.
                    break;
                }
            }
            flush(&self.db, &self.health, &mut done).await?;
            if failing {
                return Ok(true);
            }
        }
        Ok(false)
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
