//! A real OAuth 2.0 authorization server for the tests, and SASL XOAUTH2 /
//! OAUTHBEARER clients to prove what the mail stack accepts.
//!
//! Why: secintake can log into IMAP and SMTP with OAuth2 bearer tokens that
//! it refreshes itself.  [`TokenServer`] runs panva's oidc-provider (npm,
//! `tests/mailstack/oauth2/server.mjs`, installed by
//! scripts/install-deps.sh) on a free loopback port; a [`MailStack`] started
//! with [`StackOptions::oauth2`] runs one for itself and makes Dovecot
//! (IMAP, and Postfix submission through Dovecot SASL) check every
//! XOAUTH2/OAUTHBEARER token by RFC 7662 introspection against it.  Password
//! logins keep working on such a stack.
//!
//! The server, as configured in server.mjs:
//! - the daemon's client [`CLIENT_ID`] / [`CLIENT_SECRET`] (confidential;
//!   HTTP Basic auth and `client_secret_post` both work), grants
//!   refresh_token, authorization_code, client_credentials and device_code;
//! - refresh tokens ROTATE: every refresh returns a new one and kills the
//!   old one; presenting an old one again counts as theft and revokes the
//!   whole grant (every token of it) - oidc-provider's reuse detection;
//! - access tokens are opaque and live [`TokenServerOptions::access_ttl`];
//! - RFC 7009 revocation of an access OR refresh token revokes every token
//!   of its grant (oidc-provider's policy);
//! - scopes: `openid`, `offline_access`, [`MAIL_SCOPE`]; Dovecot demands
//!   [`MAIL_SCOPE`] and that the token's account is the login name;
//! - any account id exists: use the mailbox login (security@example.org).
//!
//! HTTP from here is a minimal blocking HTTP/1.1 client over std's
//! TcpStream (loopback, test side only).  Everything panics with the
//! server's log tail on an unexpected failure.

use super::MailStack;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The daemon's OAuth2 client (server.mjs's default).
pub const CLIENT_ID: &str = "secintake";
/// Its secret.
pub const CLIENT_SECRET: &str = "secintake-secret";
/// The client Dovecot introspects tokens with (only the daemon client's
/// access tokens; never refresh tokens).
pub const INTROSPECTION_CLIENT_ID: &str = "dovecot";
pub const INTROSPECTION_CLIENT_SECRET: &str = "dovecot-secret";
/// The scope Dovecot demands of every token.
pub const MAIL_SCOPE: &str = "mail";
/// What [`TokenServerApi::mint_refresh_token`] is usually given: a refresh
/// token that yields access tokens for mail.
pub const DEFAULT_SCOPES: &str = "offline_access mail";

/// Path of the token server's folder (package.json, lock file, server.mjs).
pub fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailstack/oauth2")
}

/// How a [`TokenServer`] is started.
#[derive(Clone, Debug)]
pub struct TokenServerOptions {
    /// Lifetime of every access token (whole seconds; at least 1 s).
    pub access_ttl: Duration,
    pub client_id: String,
    pub client_secret: String,
}

impl Default for TokenServerOptions {
    fn default() -> Self {
        TokenServerOptions {
            access_ttl: Duration::from_secs(3600),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        }
    }
}

/// A running token server (node + oidc-provider); killed on drop.  All the
/// talking is done by its [`TokenServerApi`] (`Deref`), which can be cloned
/// into a [`super::TestConfig`] and outlives nothing.
pub struct TokenServer {
    child: Child,
    api: TokenServerApi,
}

/// The token server's address, clients and endpoints, and the requests the
/// tests make to it.
#[derive(Clone, Debug)]
pub struct TokenServerApi {
    /// `http://127.0.0.1:<port>`, also the OAuth2 issuer.
    pub issuer: String,
    pub port: u16,
    pub client_id: String,
    pub client_secret: String,
    pub access_ttl: Duration,
    /// The server's log (every request, every token event).
    pub log: PathBuf,
}

impl std::ops::Deref for TokenServer {
    type Target = TokenServerApi;
    fn deref(&self) -> &TokenServerApi {
        &self.api
    }
}

impl TokenServer {
    /// Starts a token server on a free loopback port, logging to `log`
    /// (appended; its state file goes beside it, `<log>.state.json`), and
    /// waits until it listens (about 0.4 s).
    pub fn start(log: &Path, opts: &TokenServerOptions) -> TokenServer {
        let dir = server_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "the token server's npm packages are missing: run scripts/install-deps.sh \
             (npm ci --prefix tests/mailstack/oauth2)"
        );
        // server.mjs writes it once it listens: {port, issuer, ...}.
        let state_file = PathBuf::from(format!("{}.state.json", log.display()));
        let _ = std::fs::remove_file(&state_file);
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let ttl = opts.access_ttl.as_secs().max(1);
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--issuer-host", "127.0.0.1"])
            .args(["--access-ttl", &ttl.to_string()])
            .arg("--state-file")
            .arg(&state_file)
            .args(["--client-id", &opts.client_id])
            .args(["--client-secret", &opts.client_secret])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run node ({e}): Node.js 20+ must be installed (scripts/install-deps.sh)")
            });
        // Ready when it has written its state file (after it listens).
        let deadline = Instant::now() + Duration::from_secs(20);
        let state: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&state_file) {
                break serde_json::from_str(&text).expect("the token server's state file");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the token server exited ({status}) before it was ready:\n{}",
                    tail(log, 30)
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the token server did not start in 20 s:\n{}", tail(log, 30));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let port = state["port"].as_u64().expect("port in state file");
        TokenServer {
            child,
            api: TokenServerApi {
                issuer: state["issuer"].as_str().expect("issuer").to_string(),
                port: u16::try_from(port).expect("port number"),
                client_id: opts.client_id.clone(),
                client_secret: opts.client_secret.clone(),
                access_ttl: Duration::from_secs(ttl),
                log: log.to_path_buf(),
            },
        }
    }

    /// A clonable handle for the same server.
    pub fn api(&self) -> TokenServerApi {
        self.api.clone()
    }

    /// Keeps the server running after the test (MAILSTACK_KEEP).
    pub(crate) fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token endpoint's answer (RFC 6749 5.1), as far as the tests care.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: String,
    /// Present when the grant issues one (scope offline_access).
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scope: Option<String>,
}

/// An HTTP response: status and body.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, the client's registered method).
    Basic,
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    Post,
}

impl TokenServerApi {
    /// `{issuer}/token`: the token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// `{issuer}/device/auth`: RFC 8628 device authorization endpoint.
    pub fn device_url(&self) -> String {
        format!("{}/device/auth", self.issuer)
    }

    /// `{issuer}/token/revocation`: RFC 7009.
    pub fn revocation_url(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    /// `{issuer}/token/introspection`: RFC 7662.
    pub fn introspection_url(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// The introspection URL with Dovecot's client credentials in it, as
    /// Dovecot's `introspection_url` wants it.
    pub fn introspection_url_for_dovecot(&self) -> String {
        format!(
            "http://{INTROSPECTION_CLIENT_ID}:{INTROSPECTION_CLIENT_SECRET}@127.0.0.1:{}/token/introspection",
            self.port
        )
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.client_secret
    }

    /// The tail of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// TEST-ONLY endpoint: a refresh token for `account` (the mailbox
    /// login) with `scopes` (space-separated, e.g. [`DEFAULT_SCOPES`]), as
    /// if its owner had consented once in a browser.
    pub fn mint_refresh_token(&self, account: &str, scopes: &str) -> String {
        let r = self.test_endpoint("mint", &[("account", account), ("scope", scopes)]);
        r.json()["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh_token from /test/mint: {}", r.body))
            .to_string()
    }

    /// TEST-ONLY endpoint: revokes every grant minted or approved for
    /// `account` (all their refresh and access tokens); returns how many.
    pub fn revoke_grants(&self, account: &str) -> u64 {
        let r = self.test_endpoint("revoke-grant", &[("account", account)]);
        r.json()["revoked"].as_u64().expect("revoked count")
    }

    /// TEST-ONLY endpoint: approves a pending device authorization (RFC
    /// 8628) for `account`, as its owner would in a browser.
    pub fn approve_device(&self, user_code: &str, account: &str) {
        self.test_endpoint(
            "approve-device",
            &[("user_code", user_code), ("account", account)],
        );
    }

    fn test_endpoint(&self, name: &str, query: &[(&str, &str)]) -> HttpResponse {
        let q = form_encode(query);
        let r = http_post(self.port, &format!("/test/{name}?{q}"), None, "");
        assert_eq!(
            r.status,
            200,
            "/test/{name} failed: {}\n{}",
            r.body,
            self.log_tail(20)
        );
        r
    }

    /// POSTs a form to `path` (e.g. "/token") with the daemon client's
    /// credentials the way `auth` says (`secret` overrides the secret);
    /// returns whatever the server answered.
    pub fn post_as_client(
        &self,
        path: &str,
        auth: ClientAuth,
        secret: Option<&str>,
        form: &[(&str, &str)],
    ) -> HttpResponse {
        let secret = secret.unwrap_or(&self.client_secret);
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let basic = match auth {
            ClientAuth::Basic => Some((self.client_id.as_str(), secret)),
            ClientAuth::Post => {
                fields.push(("client_id", &self.client_id));
                fields.push(("client_secret", secret));
                None
            }
        };
        http_post(self.port, path, basic, &form_encode(&fields))
    }

    /// grant_type=refresh_token at the token endpoint (HTTP Basic auth):
    /// the tokens, or the error response.
    pub fn try_refresh(&self, refresh_token: &str) -> Result<Tokens, HttpResponse> {
        let r = self.post_as_client(
            "/token",
            ClientAuth::Basic,
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        );
        tokens_from(r)
    }

    /// [`try_refresh`](Self::try_refresh) that must succeed.
    pub fn refresh(&self, refresh_token: &str) -> Tokens {
        self.try_refresh(refresh_token).unwrap_or_else(|r| {
            panic!(
                "refresh failed: {} {}\n{}",
                r.status,
                r.body,
                self.log_tail(20)
            )
        })
    }

    /// A fresh access token for `account` with [`DEFAULT_SCOPES`] (mint +
    /// refresh).
    pub fn access_token(&self, account: &str) -> String {
        let rt = self.mint_refresh_token(account, DEFAULT_SCOPES);
        self.refresh(&rt).access_token
    }

    /// RFC 7009 revocation through the real endpoint, as the daemon client.
    /// (oidc-provider then revokes every token of the token's grant.)
    pub fn revoke(&self, token: &str) {
        let r = self.post_as_client(
            "/token/revocation",
            ClientAuth::Basic,
            None,
            &[("token", token)],
        );
        assert_eq!(r.status, 200, "revocation failed: {}", r.body);
    }

    /// RFC 7662 introspection as Dovecot does it (its client, POST).
    pub fn introspect(&self, token: &str) -> Value {
        let r = http_post(
            self.port,
            "/token/introspection",
            Some((INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET)),
            &form_encode(&[("token", token)]),
        );
        assert_eq!(r.status, 200, "introspection failed: {}", r.body);
        r.json()
    }

    /// How many introspection requests the server has answered so far
    /// (from its log): proof that Dovecot asked.
    pub fn introspections(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("POST /token/introspection "))
            .count()
    }
}

fn tokens_from(r: HttpResponse) -> Result<Tokens, HttpResponse> {
    if r.status != 200 {
        return Err(r);
    }
    let v = r.json();
    Ok(Tokens {
        access_token: v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {}", r.body))
            .to_string(),
        refresh_token: v["refresh_token"].as_str().map(str::to_owned),
        expires_in: v["expires_in"].as_u64().unwrap_or(0),
        scope: v["scope"].as_str().map(str::to_owned),
    })
}

// ------------------------------------------------------------- stack --

/// Options of [`MailStack::start_with`].
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// Run a [`TokenServer`] with these options beside the stack and make
    /// Dovecot accept XOAUTH2/OAUTHBEARER tokens it vouches for.
    pub oauth2: Option<TokenServerOptions>,
}

impl StackOptions {
    /// A stack with OAuth2 and a token server with default options.
    pub fn oauth2() -> StackOptions {
        StackOptions {
            oauth2: Some(TokenServerOptions::default()),
        }
    }
}

impl MailStack {
    /// The stack's token server; panics if it was started without OAuth2.
    pub fn token_server(&self) -> &TokenServer {
        self.oauth2
            .as_ref()
            .expect("this stack was started without OAuth2 (StackOptions::oauth2)")
    }

    /// `AUTHENTICATE <mech>` with `user`'s bearer `token` over IMAPS (a new
    /// connection, initial response per SASL-IR); on success also SELECTs
    /// the INBOX.  See [`SaslOutcome`].
    pub fn imap_sasl(&self, mech: Mech, user: &str, token: &str) -> SaslOutcome {
        let ir = mech.initial_response(user, token, self.imaps_port);
        let mut c = TlsLines::connect(self.imaps_port, self);
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "IMAP greeting: {greeting}");
        c.send(&format!("a AUTHENTICATE {} {ir}", mech.name()));
        let mut reply = c.line();
        let mut error_challenge = None;
        if let Some(ch) = reply.strip_prefix("+ ") {
            error_challenge = Some(b64_decode_str(ch));
            c.send(mech.abort_line());
            reply = c.line();
        }
        let ok = reply.starts_with("a OK");
        if ok {
            c.send("b SELECT INBOX");
            let selected = loop {
                let l = c.line();
                if l.starts_with("b ") {
                    break l;
                }
            };
            assert!(
                selected.starts_with("b OK"),
                "SELECT after login: {selected}"
            );
            c.send("c LOGOUT");
        }
        SaslOutcome {
            ok,
            error_challenge,
            reply,
        }
    }

    /// `AUTH <mech> <initial response>` on the submission port (STARTTLS,
    /// Postfix asking Dovecot SASL).  See [`SaslOutcome`]; `reply` is the
    /// final SMTP reply (235 / 535 ...).
    pub fn submission_sasl(&self, mech: Mech, user: &str, token: &str) -> SaslOutcome {
        let ir = mech.initial_response(user, token, self.submission_port);
        let tcp = TcpStream::connect(("127.0.0.1", self.submission_port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut plain = BufReader::new(tcp.try_clone().expect("clone socket"));
        let mut w = tcp;
        let reply = |r: &mut dyn BufRead| -> String {
            let mut text = String::new();
            loop {
                let mut line = String::new();
                r.read_line(&mut line).expect("read SMTP reply");
                assert!(line.len() >= 4, "bad SMTP reply {line:?}");
                text.push_str(&line);
                if line.as_bytes()[3] != b'-' {
                    return text.trim_end().to_string();
                }
            }
        };
        assert!(reply(&mut plain).starts_with("220"));
        w.write_all(b"EHLO client.test\r\n").unwrap();
        reply(&mut plain);
        w.write_all(b"STARTTLS\r\n").unwrap();
        let r = reply(&mut plain);
        assert!(r.starts_with("220"), "STARTTLS: {r}");
        let mut c = TlsLines::wrap(w, self);
        c.send("EHLO client.test");
        let ehlo = c.smtp_reply();
        assert!(
            ehlo.contains(mech.name()),
            "submission does not offer {}: {ehlo}",
            mech.name()
        );
        c.send(&format!("AUTH {} {ir}", mech.name()));
        let mut reply = c.smtp_reply();
        let mut error_challenge = None;
        if let Some(ch) = reply.strip_prefix("334 ") {
            error_challenge = Some(b64_decode_str(ch));
            c.send(mech.abort_line());
            reply = c.smtp_reply();
        }
        let ok = reply.starts_with("235");
        c.send("QUIT");
        SaslOutcome {
            ok,
            error_challenge,
            reply,
        }
    }
}

/// A SASL bearer-token mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mech {
    /// Google's/Microsoft's XOAUTH2.
    XOAuth2,
    /// RFC 7628 OAUTHBEARER.
    OAuthBearer,
}

impl Mech {
    pub fn name(self) -> &'static str {
        match self {
            Mech::XOAuth2 => "XOAUTH2",
            Mech::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// The initial client response, base64:
    /// XOAUTH2 `user=U\x01auth=Bearer T\x01\x01`;
    /// OAUTHBEARER `n,a=U,\x01host=127.0.0.1\x01port=P\x01auth=Bearer T\x01\x01`.
    pub fn initial_response(self, user: &str, token: &str, port: u16) -> String {
        let raw = match self {
            Mech::XOAuth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
            Mech::OAuthBearer => format!(
                "n,a={user},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01"
            ),
        };
        b64_encode(raw.as_bytes())
    }

    /// What a client answers to the server's error challenge: an empty
    /// line (XOAUTH2), a single %x01 (RFC 7628 3.2.3).
    pub fn abort_line(self) -> &'static str {
        match self {
            Mech::XOAuth2 => "",
            Mech::OAuthBearer => "AQ==",
        }
    }
}

/// How a SASL exchange ended.
#[derive(Clone, Debug)]
pub struct SaslOutcome {
    /// IMAP `a OK` / SMTP 235.
    pub ok: bool,
    /// The decoded error challenge the server sent before refusing (JSON,
    /// e.g. `{"status":"401","schemes":"bearer","scope":"mail"}`).
    pub error_challenge: Option<String>,
    /// The final tagged IMAP line / SMTP reply.
    pub reply: String,
}

/// Line-oriented TLS client trusting the stack's CA (rustls, blocking).
struct TlsLines {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsLines {
    fn connect(port: u16, stack: &MailStack) -> TlsLines {
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
        TlsLines::wrap(tcp, stack)
    }

    fn wrap(tcp: TcpStream, stack: &MailStack) -> TlsLines {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(stack.tls_client_config()), name)
            .expect("TLS client");
        TlsLines {
            tls: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, line: &str) {
        self.tls
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("TLS write");
        self.tls.flush().expect("TLS flush");
    }

    /// One line without its CRLF.
    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&line).trim_end().to_string();
            }
            let mut chunk = [0u8; 4096];
            let n = self.tls.read(&mut chunk).expect("TLS read");
            assert!(n > 0, "connection closed; got so far: {:?}", self.buf);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A whole (multi-line) SMTP reply.
    fn smtp_reply(&mut self) -> String {
        let mut text = String::new();
        loop {
            let l = self.line();
            text.push_str(&l);
            text.push('\n');
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return text.trim_end().to_string();
            }
        }
    }
}

// -------------------------------------------------------------- HTTP --

/// POST `body` (a form, possibly empty) to 127.0.0.1:`port``path` over
/// HTTP/1.1, with HTTP Basic auth when given; reads the whole response.
pub fn http_post(port: u16, path: &str, basic: Option<(&str, &str)>, body: &str) -> HttpResponse {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to the token server on port {port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Accept: application/json\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some((user, pass)) = basic {
        // RFC 6749 2.3.1: each part form-encoded, then base64.
        let cred = format!("{}:{}", form_escape(user), form_escape(pass));
        req.push_str(&format!(
            "Authorization: Basic {}\r\n",
            b64_encode(cred.as_bytes())
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send HTTP request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read HTTP response");
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed HTTP response: {text}"));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status: {head}"));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n =
                usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
        }
        out
    } else {
        body.to_string()
    };
    HttpResponse { status, body }
}

/// application/x-www-form-urlencoded.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding optional) to text; panics on bad input.
pub fn b64_decode_str(s: &str) -> String {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim().bytes().filter(|c| *c != b'=') {
        let v = B64
            .iter()
            .position(|x| *x == c)
            .unwrap_or_else(|| panic!("not base64: {s:?}"));
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let mut out = format!("---- tail of {}\n", path.display());
    for l in &all[all.len().saturating_sub(lines)..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}
