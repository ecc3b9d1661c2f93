//! The IMAP client plumbing: connecting (TLS, STARTTLS), logging in,
//! capabilities, selecting the folder, flags, and errors that never echo
//! server data.

use crate::config::{Auth, Imap, Mechanism, TlsMode};
use crate::store::StoreError;
use crate::tls;
use async_imap::{Client, Session};
use futures::TryStreamExt;
use rand::Rng;
use secintake_oauth2::{sasl, TokenError, TokenSource};
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutStream;

/// Any byte stream the IMAP client can run over (plain TCP or TLS).
pub trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> ImapStream for T {}
/// The IMAP connection: the TLS (or plain) stream wrapped once with the
/// read and write timeout `imap.io_timeout`. async-imap has no timeouts of
/// its own, and a half-open TCP connection would hang a command forever;
/// IDLE switches the read timeout off while it waits ([`idle_reads`]).
pub(super) type Conn = Pin<Box<TimeoutStream<Box<dyn ImapStream>>>>;

/// Wraps an established stream with the `imap.io_timeout` timeouts.
fn timed_stream(s: Box<dyn ImapStream>, io: Duration) -> Conn {
    let mut t = TimeoutStream::new(s);
    t.set_read_timeout(Some(io));
    t.set_write_timeout(Some(io));
    Box::pin(t)
}

/// Switches the session's read timeout off (`None`, while IDLE waits for
/// the server for minutes) or back on.
pub(super) fn idle_reads(session: &mut Session<Conn>, timeout: Option<Duration>) {
    AsMut::<Conn>::as_mut(session)
        .as_mut()
        .set_read_timeout_pinned(timeout);
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("cannot connect to IMAP server {host}:{port}: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("TLS with IMAP server {host}:{port} failed: {reason}")]
    Tls {
        host: String,
        port: u16,
        reason: String,
    },
    #[error("IMAP login as {user:?} failed: {reason}")]
    Login { user: String, reason: String },
    /// The server answered NO to the login: the password (or token) is
    /// wrong or revoked, not a network blip.
    #[error("IMAP server refused the login as {user:?}: {reason}")]
    Credential { user: String, reason: String },
    #[error("IMAP folder {folder:?}: {reason}")]
    Folder { folder: String, reason: String },
    #[error("IMAP {op} failed: {reason}")]
    Command { op: &'static str, reason: String },
    #[error("IMAP server did not answer {op} within {secs} s")]
    Timeout { op: &'static str, secs: u64 },
    /// The mailbox's lease ran out or another instance took it: this one
    /// stops reading mail (not an IMAP failure; see `intake::lease`).
    #[error("this instance no longer holds the mailbox's lease")]
    LeaseLost,
    #[error(transparent)]
    TlsConfig(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Case(#[from] crate::context::CaseError),
}

/// Describes an async-imap error without echoing server data: a parse
/// error may carry bytes of a message, which must not reach a log.
pub(super) fn describe(e: &async_imap::error::Error) -> String {
    use async_imap::error::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::Bad(s) | E::No(s) => server_text(s),
        E::ConnectionLost => "connection lost".into(),
        E::Parse(_) => "unparseable server response".into(),
        E::Validate(_) => "invalid command argument".into(),
        E::Append => "append failed".into(),
        _ => "IMAP error".into(),
    }
}

/// The human part of a NO/BAD answer: async-imap hands over a debug dump
/// like `code: None, info: Some("[AUTHENTICATIONFAILED] …")`.
pub(super) fn server_text(s: &str) -> String {
    let text = s
        .split_once("info: Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(info, _)| info)
        .unwrap_or(s);
    text.chars().take(200).collect()
}

/// A greeting read error for logs: the kind only, since a parse failure
/// may carry the server's bytes.
pub(super) fn greeting_error(e: &std::io::Error) -> String {
    format!("reading the greeting failed: {}", e.kind())
}

pub(super) fn cmd_err(op: &'static str) -> impl FnOnce(async_imap::error::Error) -> IntakeError {
    move |e| IntakeError::Command {
        op,
        reason: describe(&e),
    }
}

/// Runs `fut` with the command timeout.
pub(super) async fn timed<T>(
    limit: Duration,
    op: &'static str,
    fut: impl std::future::Future<Output = Result<T, IntakeError>>,
) -> Result<T, IntakeError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| IntakeError::Timeout {
            op,
            secs: limit.as_secs(),
        })?
}

/// Connects, upgrades to TLS as configured, and logs in (with a token
/// from `tokens` when `imap.auth = "oauth2"`).
pub async fn connect(
    cfg: &Imap,
    tokens: Option<&TokenSource>,
) -> Result<Session<Conn>, IntakeError> {
    let (host, port) = (cfg.host.as_str(), cfg.port);
    let connect_err = |reason: String| IntakeError::Connect {
        host: host.to_owned(),
        port,
        reason,
    };
    let tls_err = |reason: String| IntakeError::Tls {
        host: host.to_owned(),
        port,
        reason,
    };
    let io = cfg.io_timeout;
    let tcp = tokio::time::timeout(io, TcpStream::connect((host, port)))
        .await
        .map_err(|_| connect_err(format!("no answer within {} s", io.as_secs())))?
        .map_err(|e| connect_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let tls_connector = || -> Result<_, IntakeError> {
        let config = tls::client_config(cfg.ca_file.as_deref(), "imap.ca_file")?;
        Ok(tokio_rustls::TlsConnector::from(config))
    };
    let name = || tls::server_name(host, "imap.host");
    // The TLS handshake, over a stream with no timeouts of its own yet.
    let handshake = async |tcp: TcpStream| {
        timed(io, "TLS handshake", async {
            tls_connector()?
                .connect(name()?, tcp)
                .await
                .map_err(|e| tls_err(e.to_string()))
        })
        .await
    };
    let mut client: Client<Conn> = match cfg.tls {
        TlsMode::None => Client::new(timed_stream(Box::new(tcp), io)),
        TlsMode::Implicit => Client::new(timed_stream(Box::new(handshake(tcp).await?), io)),
        TlsMode::Starttls => {
            let mut plain = Client::new(tcp);
            timed(io, "greeting", async {
                greeting(&mut plain).await.map_err(connect_err)
            })
            .await?;
            timed(io, "STARTTLS", async {
                plain
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| tls_err(format!("STARTTLS refused: {}", describe(&e))))
            })
            .await?;
            let tls = handshake(plain.into_inner()).await?;
            // No second greeting after STARTTLS.
            let client = Client::new(timed_stream(Box::new(tls), io));
            return login(client, cfg, tokens).await;
        }
    };
    // The stream's read timeout covers the greeting.
    greeting(&mut client).await.map_err(connect_err)?;
    login(client, cfg, tokens).await
}

/// Reads the server's greeting; the error is a reason for
/// `IntakeError::Connect`, never the server's bytes.
async fn greeting<T>(client: &mut Client<T>) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("closed before greeting".into()),
        Err(e) => Err(greeting_error(&e)),
    }
}

pub(super) async fn login(
    client: Client<Conn>,
    cfg: &Imap,
    tokens: Option<&TokenSource>,
) -> Result<Session<Conn>, IntakeError> {
    if cfg.auth == Auth::OAuth2 {
        return oauth2_login(client, cfg, tokens).await;
    }
    client
        .login(&cfg.username, &cfg.password)
        .await
        .map_err(|(e, _)| login_error(cfg, &e))
}

/// A refused login (NO) is a credential problem; anything else is not.
fn login_error(cfg: &Imap, e: &async_imap::error::Error) -> IntakeError {
    match e {
        async_imap::error::Error::No(_) => IntakeError::Credential {
            user: cfg.username.clone(),
            reason: describe(e),
        },
        _ => IntakeError::Login {
            user: cfg.username.clone(),
            reason: describe(e),
        },
    }
}

/// SASL XOAUTH2 or OAUTHBEARER with an access token. A refused token is
/// renewed and tried once more on the same connection (it may have been
/// revoked or expired early); a second refusal is "credential rejected".
async fn oauth2_login(
    client: Client<Conn>,
    cfg: &Imap,
    tokens: Option<&TokenSource>,
) -> Result<Session<Conn>, IntakeError> {
    let token_error = |e: TokenError| match e {
        TokenError::Rejected(reason) => IntakeError::Credential {
            user: cfg.username.clone(),
            reason: format!("OAuth2: {reason}"),
        },
        TokenError::Unavailable(reason) => IntakeError::Login {
            user: cfg.username.clone(),
            reason: format!("OAuth2: {reason}"),
        },
    };
    let Some(tokens) = tokens else {
        return Err(token_error(TokenError::Rejected(
            "imap.auth is \"oauth2\" but no token source was set up".into(),
        )));
    };
    let token = tokens.token().await.map_err(token_error)?;
    let client = match client
        .authenticate(cfg.mechanism_name(), Bearer::new(cfg, &token))
        .await
    {
        Ok(session) => return Ok(session),
        Err((e @ async_imap::error::Error::No(_), client)) => {
            tracing::info!(user = %cfg.username, reason = %describe(&e), "IMAP refused the access token; renewing it once");
            client
        }
        Err((e, _)) => return Err(login_error(cfg, &e)),
    };
    let token = tokens.renew(&token).await.map_err(token_error)?;
    client
        .authenticate(cfg.mechanism_name(), Bearer::new(cfg, &token))
        .await
        .map_err(|(e, _)| login_error(cfg, &e))
}

/// The client side of a token SASL exchange: the initial response, then
/// the answer to the server's error challenge that ends the exchange
/// (XOAUTH2: an empty line; OAUTHBEARER: `%x01`, RFC 7628 3.2.3).
struct Bearer {
    initial: Option<String>,
    after_error: &'static str,
}

impl Bearer {
    fn new(cfg: &Imap, token: &str) -> Bearer {
        let (initial, after_error) = match cfg.mechanism {
            Mechanism::XOAuth2 => (sasl::xoauth2(&cfg.username, token), ""),
            Mechanism::OAuthBearer => (
                sasl::oauthbearer(&cfg.username, &cfg.host, cfg.port, token),
                "\x01",
            ),
        };
        Bearer {
            initial: Some(initial),
            after_error,
        }
    }
}

impl async_imap::Authenticator for Bearer {
    type Response = String;

    fn process(&mut self, _challenge: &[u8]) -> String {
        self.initial
            .take()
            .unwrap_or_else(|| self.after_error.to_string())
    }
}

/// Drops unsolicited responses we don't use, so the channel (bounded at
/// 100 in async-imap) never fills and silently drops.
pub(super) fn drain(session: &mut Session<Conn>) {
    while session.unsolicited_responses.try_recv().is_ok() {}
}

/// `1,2,3,7` → `1:3,7`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// `UID SEARCH <query>`: the matching UIDs in ascending order, restricted
/// to `keep` (a `UID n:*` window always matches the newest message even
/// when its UID is below n, RFC 3501 6.4.8, so callers filter).
pub(super) async fn uid_search(
    session: &mut Session<Conn>,
    query: &str,
    keep: impl Fn(u32) -> bool,
) -> Result<Vec<u32>, IntakeError> {
    let found = session
        .uid_search(query)
        .await
        .map_err(cmd_err("UID SEARCH"))?;
    drain(session);
    let mut uids: Vec<u32> = found.into_iter().filter(|u| keep(*u)).collect();
    uids.sort_unstable();
    Ok(uids)
}

/// `UID STORE set +FLAGS.SILENT (flag)`, reading the (empty) answer.
pub(super) async fn add_flag(
    session: &mut Session<Conn>,
    set: &str,
    flag: &str,
) -> Result<(), IntakeError> {
    let query = format!("+FLAGS.SILENT ({flag})");
    let answers = session
        .uid_store(set, &query)
        .await
        .map_err(cmd_err("UID STORE"))?;
    // Read every answer: a failure mid-stream is an error, not a silently
    // shorter list.
    answers
        .try_collect::<Vec<_>>()
        .await
        .map_err(cmd_err("UID STORE"))?;
    Ok(())
}

/// The server capabilities intake uses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caps {
    pub(super) idle: bool,
    pub(super) can_move: bool,
    pub(super) can_uidplus: bool,
    /// The selected folder takes new keywords (the handled mark).
    pub(super) keywords: bool,
}

pub(super) async fn capabilities(session: &mut Session<Conn>) -> Result<Caps, IntakeError> {
    let caps = async { session.capabilities().await.map_err(cmd_err("CAPABILITY")) }.await?;
    Ok(Caps {
        idle: caps.has_str("IDLE"),
        can_move: caps.has_str("MOVE"),
        can_uidplus: caps.has_str("UIDPLUS"),
        keywords: false,
    })
}

/// SELECTs (or, read-only, EXAMINEs) `folder`.
pub(super) async fn open_folder(
    session: &mut Session<Conn>,
    folder: &str,
    read_only: bool,
) -> Result<async_imap::types::Mailbox, IntakeError> {
    let folder_err = |e: async_imap::error::Error| IntakeError::Folder {
        folder: folder.to_string(),
        reason: describe(&e),
    };
    let mailbox = if read_only {
        session.examine(folder).await.map_err(folder_err)?
    } else {
        session.select(folder).await.map_err(folder_err)?
    };
    drain(session);
    Ok(mailbox)
}

/// 1 s, 2 s, 4 s … capped at 60 s, with up to 25% jitter.
pub fn reconnect_delay(failures: u32) -> Duration {
    let base =
        Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60));
    base.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.25))
}

/// The folder the server marks `\Junk` (RFC 6154 special use), if any:
/// where providers file what they take for spam, first reports from
/// unknown researchers with a PoC attached among it.
pub async fn find_junk(
    cfg: &Imap,
    tokens: Option<&TokenSource>,
) -> Result<Option<String>, IntakeError> {
    let mut session = connect(cfg, tokens).await?;
    let names: Vec<async_imap::types::Name> = session
        .list(Some(""), Some("*"))
        .await
        .map_err(cmd_err("LIST"))?
        .try_collect()
        .await
        .map_err(cmd_err("LIST"))?;
    let junk = names
        .iter()
        .find(|n| {
            n.attributes()
                .iter()
                .any(|a| matches!(a, async_imap::imap_proto::NameAttribute::Junk))
        })
        .map(|n| n.name().to_string());
    drop(names);
    let _ = session.logout().await;
    Ok(junk)
}

/// Connects, logs in, selects the folder and logs out; for `check-config`.
pub async fn check(cfg: &Imap, tokens: Option<&TokenSource>) -> Result<String, IntakeError> {
    let mut session = connect(cfg, tokens).await?;
    let idle = capabilities(&mut session).await?.idle;
    let mailbox = open_folder(&mut session, &cfg.folder, true).await?;
    let _ = async { session.logout().await.map_err(cmd_err("LOGOUT")) }.await;
    Ok(format!(
        "IMAP ok: logged in to {}:{} as {}{}, folder {:?} holds {} message(s), IDLE {}",
        cfg.host,
        cfg.port,
        cfg.username,
        match cfg.auth {
            Auth::Password => "",
            Auth::OAuth2 => " with an OAuth2 access token",
        },
        cfg.folder,
        mailbox.exists,
        if idle {
            "supported"
        } else {
            "not supported (polling)"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_answers_read_like_text() {
        assert_eq!(
            server_text(
                "code: None, info: Some(\"[AUTHENTICATIONFAILED] Authentication failed.\")"
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(server_text("plain"), "plain");
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn reconnect_delay_is_capped() {
        assert!(reconnect_delay(1) < Duration::from_millis(1300));
        assert!(reconnect_delay(50) <= Duration::from_secs(75));
        assert!(reconnect_delay(50) >= Duration::from_secs(60));
    }
}
