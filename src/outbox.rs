//! SMTP delivery from the durable outbox.
//!
//! Nothing is sent from memory: intake stores each outgoing message and its
//! outbox row in the same transaction as the report that caused it, and this
//! loop delivers what is due, oldest first. A row is marked sent only after
//! the server accepted it; a crash between the two sends the very same bytes
//! (same Message-ID) again, it never loses one.
//!
//! 4xx answers, timeouts and connection failures are retried with capped
//! exponential backoff; 5xx answers fail the row and say so on its case.

use crate::clock::{parse_ts, Clock};
use crate::config::{Smtp, TlsMode};
use crate::deadlines::{self, Kind};
use crate::health::{Component, Health};
use crate::store::{self, Db, OutboxItem, StoreError};
use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
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
    #[error("smtp: {0}")]
    Transport(#[from] lettre::transport::smtp::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest idle sleep before re-reading the outbox.
const IDLE_RECHECK: Duration = Duration::from_secs(2);
/// Rows fetched from the outbox per round.
const BATCH: u32 = 64;

/// Builds the SMTP transport for `[smtp]`.
pub fn transport(cfg: &Smtp) -> Result<AsyncSmtpTransport<Tokio1Executor>, OutboxError> {
    let tls_params = || -> Result<TlsParameters, OutboxError> {
        let mut b = TlsParameters::builder(cfg.host.clone());
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| OutboxError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| OutboxError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            b = b.add_root_certificate(cert);
        }
        Ok(b.build_rustls()?)
    };
    let tls = match cfg.tls {
        TlsMode::Implicit => Tls::Wrapper(tls_params()?),
        TlsMode::Starttls => Tls::Required(tls_params()?),
        TlsMode::None => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(cfg.timeout));
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(b.build())
}

/// How one delivery attempt ended.
#[derive(Debug)]
enum Attempt {
    Accepted,
    Transient(String),
    Permanent(String),
}

async fn attempt(
    t: &AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    item: &OutboxItem,
) -> Attempt {
    let from = match item.envelope_from.parse() {
        Ok(a) => Some(a),
        Err(e) => return Attempt::Permanent(format!("bad envelope sender: {e}")),
    };
    let mut to = Vec::new();
    for r in &item.recipients {
        match r.parse() {
            Ok(a) => to.push(a),
            Err(e) => return Attempt::Permanent(format!("bad recipient {r:?}: {e}")),
        }
    }
    let env = match Envelope::new(from, to) {
        Ok(e) => e,
        Err(e) => return Attempt::Permanent(format!("bad envelope: {e}")),
    };
    // lettre's own timeout covers only the connect (lettre issue 1027).
    match tokio::time::timeout(timeout, t.send_raw(&env, &item.raw)).await {
        Err(_) => Attempt::Transient(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
        Ok(Ok(_)) => Attempt::Accepted,
        Ok(Err(e)) if e.is_permanent() => Attempt::Permanent(e.to_string()),
        Ok(Err(e)) => Attempt::Transient(e.to_string()),
    }
}

/// The delay before retry number `attempts` (1-based), with up to 20% jitter.
pub fn backoff(attempts: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    let base = exp.min(MAX_BACKOFF);
    let jitter = rand::thread_rng().gen_range(0.0..0.2);
    base.mul_f64(1.0 + jitter)
}

/// Records the result of one attempt.
fn record(
    s: &mut store::Store,
    item: &OutboxItem,
    result: &Attempt,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let tx = s.transaction()?;
    match result {
        Attempt::Accepted => {
            store::outbox_sent(&tx, item.id, now)?;
            if let Some(case) = &item.case_id {
                if item.purpose == "ack" {
                    store::mark_acknowledged(&tx, case, now)?;
                    crate::workflow::acknowledged(&tx, now, case)?;
                    let how = "acknowledgement accepted by SMTP";
                    deadlines::meet(&tx, case, Kind::Acknowledge, now, how)?;
                    deadlines::meet(&tx, case, Kind::AckQueued, now, how)?;
                }
                store::add_event(
                    &tx,
                    case,
                    now,
                    "secintake",
                    &format!("{} accepted by SMTP server", purpose_name(&item.purpose)),
                    Some(&format!("to {}", item.recipients.join(", "))),
                    None,
                )?;
            }
        }
        Attempt::Transient(err) => {
            let next = crate::clock::add(now, backoff(item.attempts + 1));
            store::outbox_retry(&tx, item.id, next, err)?;
        }
        Attempt::Permanent(err) => {
            store::outbox_failed(&tx, item.id, err)?;
            if let Some(case) = &item.case_id {
                store::add_event(
                    &tx,
                    case,
                    now,
                    "secintake",
                    &format!("{} could not be delivered", purpose_name(&item.purpose)),
                    Some(err),
                    None,
                )?;
            }
        }
    }
    tx.commit().map_err(|source| StoreError::Query {
        context: "recording a delivery attempt",
        source,
    })
}

fn purpose_name(p: &str) -> &str {
    match p {
        "ack" => "acknowledgement",
        other => other,
    }
}

/// The outbox loop: delivers due rows until `shutdown`.
pub async fn run(
    db: Db,
    smtp: Smtp,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), OutboxError> {
    let transport = transport(&smtp)?;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let now = clock.now();
        let items = db
            .call(move |s| store::due_outbox(s.conn(), now, BATCH))
            .await?;
        let mut failing = false;
        for item in &items {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            let result = attempt(&transport, smtp.timeout, item).await;
            let now = clock.now();
            // Record first: the window between "SMTP accepted" and "marked
            // sent", where a crash means one re-send, stays as short as it can.
            let item2 = item.clone();
            let result = db
                .call(move |s| record(s, &item2, &result, now).map(|()| result))
                .await?;
            match &result {
                Attempt::Accepted => {
                    tracing::info!(outbox = item.id, case = item.case_id.as_deref().unwrap_or("-"),
                        purpose = %item.purpose, "mail accepted by SMTP server");
                    health.ok(Component::Smtp, now).await;
                }
                Attempt::Transient(e) => {
                    tracing::debug!(outbox = item.id, error = %e, "delivery deferred");
                    health.failing(Component::Smtp, now, e).await;
                    failing = true;
                }
                Attempt::Permanent(e) => {
                    tracing::warn!(outbox = item.id, case = item.case_id.as_deref().unwrap_or("-"),
                        error = %e, "delivery failed permanently");
                    health.ok(Component::Smtp, now).await;
                }
            }
            if failing {
                // The server is down: don't walk the whole batch into it.
                break;
            }
        }
        if !items.is_empty() && !failing {
            continue;
        }
        // Sleep until the next row is due, a new row is queued, or shutdown.
        let next = db.call(|s| store::next_outbox_due(s.conn())).await?;
        let wait = next
            .as_deref()
            .and_then(parse_ts)
            .map(|t| (t - clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600))
            // Re-read at least every 2 s: the CLI (another process) may
            // queue mail (`mail promote`, `cases note`); one indexed query.
            .min(IDLE_RECHECK)
            .max(Duration::from_millis(if failing { 200 } else { 0 }));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => return Ok(()),
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
