//! The SMTP side of the outbox: one kept session to the relay (TLS, login
//! with a password or an OAuth2 token), and what one attempt came to.

use super::OutboxError;
use crate::config::{Auth, Smtp, TlsMode};
use crate::store::OutboxItem;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::commands::Auth as AuthCommand;
use lettre::transport::smtp::extension::ClientId;
use secintake_oauth2::{TokenError, TokenSource};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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

/// Which section of the config a relay comes from, for the keys its
/// errors name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `[smtp]`, the outbox's relay.
    Smtp,
    /// `[alert_relay]`, the alerts' second relay.
    AlertRelay,
}

impl Section {
    /// Its `ca_file` and `host` keys.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Section::Smtp => ("smtp.ca_file", "smtp.host"),
            Section::AlertRelay => ("alert_relay.ca_file", "alert_relay.host"),
        }
    }
}

/// The relay and how to log in to it.
#[derive(Debug, Clone)]
pub struct Relay {
    pub section: Section,
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
    let (ca_key, host_key) = relay.section.keys();
    let session = async {
        let mut conn = match cfg.tls {
            TlsMode::Implicit => {
                let config = crate::tls::client_config(cfg.ca_file.as_deref(), ca_key)
                    .map_err(|e| conn_err(e.to_string()))?;
                let name = crate::tls::server_name(&cfg.host, host_key)
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
pub(super) struct Client {
    relay: Relay,
    conn: Option<(AsyncSmtpConnection, tokio::time::Instant)>,
}

/// Close a session unused this long (servers drop idle clients after a few
/// minutes; we would only find out on the next send).
const IDLE_CLOSE: Duration = Duration::from_secs(30);

impl Client {
    pub(super) fn new(relay: Relay) -> Client {
        Client { relay, conn: None }
    }

    pub(super) async fn close(&mut self) {
        if let Some((mut c, _)) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
        }
    }

    pub(super) async fn close_if_idle(&mut self) {
        if self
            .conn
            .as_ref()
            .is_some_and(|(_, used)| used.elapsed() > IDLE_CLOSE)
        {
            self.close().await;
        }
    }

    /// One delivery attempt, over the kept session or a new one.
    pub(super) async fn send(&mut self, item: &OutboxItem) -> Attempt {
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
    envelope_of(&item.envelope_from, &item.recipients)
}

/// The SMTP envelope from `from` to `to`; the error names the address.
pub(super) fn envelope_of(from: &str, to: &[String]) -> Result<Envelope, String> {
    let from = from
        .parse()
        .map_err(|e| format!("bad envelope sender {from:?}: {e}"))?;
    let mut rcpt = Vec::new();
    for r in to {
        rcpt.push(r.parse().map_err(|e| format!("bad recipient {r:?}: {e}"))?);
    }
    Envelope::new(Some(from), rcpt).map_err(|e| format!("bad envelope: {e}"))
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
pub(super) enum Attempt {
    Accepted,
    Transient(String),
    Permanent(String),
    /// The server refused our login: the mail waits for a fixed password
    /// (retried after `health::credential_retry`), nothing fails.
    Credential(String),
}

pub(super) fn check_tls(smtp: &Smtp) -> Result<(), OutboxError> {
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
}
