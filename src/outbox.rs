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
use crate::config::{Auth, Smtp, TlsMode};
use crate::health::{Component, Health};
use crate::model::MessageKind;
use crate::store::{self, Db, OutboxItem, StoreError};
use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::Auth as AuthCommand;
use lettre::transport::smtp::extension::ClientId;
use rand::Rng;
use secintake_oauth2::{TokenError, TokenSource};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
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
fn tls_parameters(cfg: &Smtp) -> Result<TlsParameters, OutboxError> {
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
}

/// Implicit TLS over our own socket (lettre needs `AsyncTokioStream`).
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// The relay and how to log in to it.
#[derive(Debug, Clone)]
pub struct Relay {
    pub cfg: Smtp,
    /// `smtp.auth = "oauth2"`: the access tokens (shared with intake).
    pub tokens: Option<Arc<TokenSource>>,
}

/// Opens an SMTP session as `[smtp]` says: TCP with TCP_NODELAY (lettre
/// 0.11 leaves Nagle on, and its two writes per message then wait ~40 ms
/// for a delayed ACK on every send), TLS, EHLO, AUTH.
pub async fn connect(relay: &Relay) -> Result<AsyncSmtpConnection, OutboxError> {
    let cfg = &relay.cfg;
    let conn_err = |e: String| OutboxError::Connect {
        host: cfg.host.clone(),
        port: cfg.port,
        reason: e,
    };
    let tcp = tokio::time::timeout(
        cfg.timeout,
        TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| conn_err(format!("no answer within {} s", cfg.timeout.as_secs())))?
    .map_err(|e| conn_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let hello = ClientId::default();
    let session = async {
        let mut conn = match cfg.tls {
            TlsMode::Implicit => {
                let config = crate::tls::client_config(cfg.ca_file.as_deref(), "smtp.ca_file")
                    .map_err(|e| conn_err(e.to_string()))?;
                let name = crate::tls::server_name(&cfg.host, "smtp.host")
                    .map_err(|e| conn_err(e.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| conn_err(format!("TLS: {e}")))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(ImplicitTls(tls)), &hello)
                    .await?
            }
            TlsMode::Starttls => {
                let mut c =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await?;
                c.starttls(tls_parameters(cfg)?, &hello).await?;
                c
            }
            TlsMode::None => {
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await?
            }
        };
        if let (Auth::OAuth2, Some(user)) = (cfg.auth, &cfg.username) {
            login_with_token(&mut conn, user, relay.tokens.as_deref(), &conn_err).await?;
        } else if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            conn.auth(
                &[Mechanism::Plain, Mechanism::Login],
                &Credentials::new(u.clone(), p.clone()),
            )
            .await
            .map_err(|e| {
                if e.is_permanent() {
                    OutboxError::Credential(e.to_string())
                } else {
                    OutboxError::Transport(e)
                }
            })?;
        }
        Ok::<_, OutboxError>(conn)
    };
    tokio::time::timeout(cfg.timeout, session)
        .await
        .map_err(|_| conn_err(format!("no answer within {} s", cfg.timeout.as_secs())))?
}

/// SASL XOAUTH2 with an access token (the one token mechanism lettre,
/// Google and Microsoft share). A refused token is renewed and tried once
/// more (it may have been revoked or expired early); a second refusal is
/// "credential rejected".
async fn login_with_token(
    conn: &mut AsyncSmtpConnection,
    user: &str,
    tokens: Option<&TokenSource>,
    conn_err: &impl Fn(String) -> OutboxError,
) -> Result<(), OutboxError> {
    let token_error = |e: TokenError| match e {
        TokenError::Rejected(r) => OutboxError::Credential(format!("OAuth2: {r}")),
        TokenError::Unavailable(r) => conn_err(format!("OAuth2: {r}")),
    };
    let Some(tokens) = tokens else {
        return Err(OutboxError::Credential(
            "smtp.auth is \"oauth2\" but no token source was set up".into(),
        ));
    };
    let token = tokens.token().await.map_err(token_error)?;
    match xoauth2(conn, user, &token).await {
        Ok(()) => return Ok(()),
        Err(OutboxError::Credential(why)) => {
            tracing::info!(user, reason = %why, "SMTP refused the access token; renewing it once");
        }
        Err(e) => return Err(e),
    }
    let token = tokens.renew(&token).await.map_err(token_error)?;
    xoauth2(conn, user, &token).await
}

/// One XOAUTH2 exchange. lettre's own `auth` cannot finish one that the
/// server refuses: the refusal comes as a 334 challenge (a JSON error),
/// which XOAUTH2 answers with an empty line to get the final 5xx.
async fn xoauth2(
    conn: &mut AsyncSmtpConnection,
    user: &str,
    token: &str,
) -> Result<(), OutboxError> {
    let auth = AuthCommand::new(
        Mechanism::Xoauth2,
        Credentials::new(user.to_string(), token.to_string()),
        None,
    )?;
    let mut answer = conn.command(auth).await;
    if answer.as_ref().is_ok_and(|r| r.has_code(334)) {
        answer = conn.command("\r\n").await;
    }
    match answer {
        Ok(r) if r.has_code(235) => Ok(()),
        Ok(r) => Err(OutboxError::Credential(format!(
            "unexpected answer {} to AUTH XOAUTH2",
            r.code()
        ))),
        Err(e) if e.is_permanent() => Err(OutboxError::Credential(e.to_string())),
        Err(e) => Err(OutboxError::Transport(e)),
    }
}

/// One kept-open SMTP session, reopened when it breaks or idles too long.
struct Client {
    relay: Relay,
    conn: Option<(AsyncSmtpConnection, tokio::time::Instant)>,
}

/// Close a session unused this long (servers drop idle clients after a few
/// minutes; we would only find out on the next send).
const IDLE_CLOSE: Duration = Duration::from_secs(30);

impl Client {
    async fn close(&mut self) {
        if let Some((mut c, _)) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
        }
    }

    async fn close_if_idle(&mut self) {
        if self
            .conn
            .as_ref()
            .is_some_and(|(_, used)| used.elapsed() > IDLE_CLOSE)
        {
            self.close().await;
        }
    }

    /// One delivery attempt, over the kept session or a new one.
    async fn send(&mut self, item: &OutboxItem) -> Attempt {
        let env = match envelope(item) {
            Ok(e) => e,
            Err(e) => return Attempt::Permanent(e),
        };
        // A kept session may have been closed by the server meanwhile: a
        // failure on it gets one retry on a fresh session.
        for fresh in [false, true] {
            let reused = self.conn.is_some() && !fresh;
            if fresh || self.conn.is_none() {
                self.conn = None;
                match connect(&self.relay).await {
                    Ok(c) => self.conn = Some((c, tokio::time::Instant::now())),
                    Err(OutboxError::Credential(e)) => return Attempt::Credential(e),
                    Err(e) => return Attempt::Transient(e.to_string()),
                }
            }
            let Some((conn, used)) = self.conn.as_mut() else {
                continue;
            };
            let timeout = self.relay.cfg.timeout;
            let r = tokio::time::timeout(timeout, conn.send(&env, &item.raw)).await;
            *used = tokio::time::Instant::now();
            let result = match r {
                Err(_) => Attempt::Transient(format!(
                    "no answer within {}",
                    humantime::format_duration(timeout)
                )),
                Ok(Ok(_)) => Attempt::Accepted,
                Ok(Err(e)) if e.is_permanent() && !over_quota(&e.to_string()) => {
                    Attempt::Permanent(e.to_string())
                }
                Ok(Err(e)) => Attempt::Transient(e.to_string()),
            };
            match &result {
                Attempt::Accepted => return result,
                Attempt::Permanent(_) => {
                    // The session is still good after a 5xx for this message.
                    if conn.has_broken() {
                        self.conn = None;
                    }
                    return result;
                }
                Attempt::Transient(_) | Attempt::Credential(_) => {
                    self.conn = None;
                    if !reused {
                        return result;
                    }
                }
            }
        }
        Attempt::Transient("SMTP session failed twice".into())
    }
}

fn envelope(item: &OutboxItem) -> Result<Envelope, String> {
    let from = item
        .envelope_from
        .parse()
        .map_err(|e| format!("bad envelope sender: {e}"))?;
    let mut to = Vec::new();
    for r in &item.recipients {
        to.push(r.parse().map_err(|e| format!("bad recipient {r:?}: {e}"))?);
    }
    Envelope::new(Some(from), to).map_err(|e| format!("bad envelope: {e}"))
}

/// Whether a permanent-looking answer is a quota, which lifts: our
/// sending quota (Gmail: `550 5.4.5 Daily user sending limit exceeded`) or
/// a full mailbox (`552 5.2.2 … quota exceeded`). The mail waits and is
/// retried with the usual spread-out backoff; it does not fail.
fn over_quota(error: &str) -> bool {
    let lower = error.to_ascii_lowercase();
    lower.contains("5.4.5")
        || (lower.contains("5.2.2") && (lower.contains("quota") || lower.contains("full")))
}

/// How one delivery attempt ended.
#[derive(Debug)]
enum Attempt {
    Accepted,
    Transient(String),
    Permanent(String),
    /// The server refused our login: the mail waits for a fixed password
    /// (retried after `health::credential_retry`), nothing fails.
    Credential(String),
}

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
    let mut client = Client { relay, conn: None };
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
fn check_tls(smtp: &Smtp) -> Result<(), OutboxError> {
    match smtp.tls {
        TlsMode::Starttls => {
            tls_parameters(smtp)?;
        }
        TlsMode::Implicit => {
            crate::tls::client_config(smtp.ca_file.as_deref(), "smtp.ca_file").map_err(|e| {
                OutboxError::CaFile {
                    path: smtp.ca_file.clone().unwrap_or_default(),
                    reason: e.to_string(),
                }
            })?;
        }
        TlsMode::None => {}
    }
    Ok(())
}

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
    fn a_sending_quota_waits_other_5xx_fail() {
        assert!(over_quota(
            "permanent error (550): 5.4.5 Daily user sending limit exceeded. For more information"
        ));
        assert!(over_quota(
            "permanent error (552): 5.2.2 The email account that you tried to reach is over quota"
        ));
        assert!(!over_quota(
            "permanent error (550): 5.1.1 The email account does not exist"
        ));
        assert!(!over_quota(
            "permanent error (552): 5.2.2 message too large"
        ));
    }

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
