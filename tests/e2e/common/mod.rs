//! Test support shared by the integration tests (`mod common;`).
//!
//! Why: secintake is tested against a real mail system, not mocks.
//! [`MailStack`] starts a private Dovecot + Postfix + OpenDKIM on loopback
//! through `tests/mailstack/mailstack.sh` (see that script for what runs
//! where, and for the exact header order of delivered mail) and tears it
//! down on drop.  Mail submitted with a From: at example.org / example.net
//! is DKIM-signed; every delivered message carries an
//! `Authentication-Results: mail.example.org; dkim=...` header from the
//! stack ([`AUTHSERV_ID`]).  Around it: a tiny blocking SMTP client for the
//! inbound port, authenticated submission through lettre, an IMAPS reader
//! (async-imap + rustls, trusting the stack's private CA), fast mailbox
//! injection for backlog tests, and a writer for the daemon's TOML config.
//!
//! Everything here panics on failure with the servers' log tails attached:
//! these are test helpers, and a clear panic is the most useful error.
//! Set `MAILSTACK_KEEP=1` to keep a stack's folder (and servers) after a
//! test for inspection.
#![allow(dead_code)]

pub mod daemon;
pub mod dns;
pub mod oauth2;
pub mod panic_hook;
pub mod rng;
pub mod world;

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Path of the mail stack script (`MAILSTACK_SCRIPT` overrides it, e.g.
/// to try a changed stack beside the committed one).
pub fn mailstack_script() -> PathBuf {
    match std::env::var_os("MAILSTACK_SCRIPT") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mailstack/mailstack.sh"),
    }
}

/// The authserv-id of the stack's DKIM verifier (OpenDKIM): the top
/// `Authentication-Results` header of every message the stack delivers
/// starts with `mail.example.org;` (also Postfix's and Dovecot's host name,
/// so every `Received` header names it in its `by` clause).
pub const AUTHSERV_ID: &str = "mail.example.org";

/// The DKIM selector the stack signs with (`s=mailstack`, for both
/// `d=example.org` and `d=example.net`).
pub const DKIM_SELECTOR: &str = "mailstack";

/// Path of the daemon binary built for this test run.
pub fn secintake_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_secintake"))
}

/// A running private mail system. Every user at `example.org` and
/// `example.net` exists and has the password [`MailStack::password`].
pub struct MailStack {
    /// The stack's state folder (/tmp/ms-XXXXXX).
    pub dir: PathBuf,
    /// IMAP, STARTTLS offered (plain LOGIN also allowed on loopback).
    pub imap_port: u16,
    /// IMAP over implicit TLS.
    pub imaps_port: u16,
    /// Dovecot LMTP (Postfix delivers here).
    pub lmtp_port: u16,
    /// Inbound SMTP, the port-25 equivalent: no auth, test domains only.
    pub smtp_port: u16,
    /// Submission: STARTTLS required, SASL auth required.
    pub submission_port: u16,
    /// Submission over implicit TLS, SASL auth required.
    pub smtps_port: u16,
    /// PEM file of the private CA that signed the servers' certificate
    /// (SAN IP:127.0.0.1 and DNS:localhost).
    pub ca_file: PathBuf,
    /// Dovecot's config file, for `doveadm -c`.
    pub dovecot_conf: PathBuf,
    /// The password of every user.
    pub password: String,
    /// The token server Dovecot checks XOAUTH2/OAUTHBEARER tokens with,
    /// when started with [`oauth2::StackOptions::oauth2`] (see
    /// [`MailStack::token_server`]).  Dropped (killed) after the servers
    /// stop, before the folder goes.
    pub oauth2: Option<oauth2::TokenServer>,
    tmp: Option<tempfile::TempDir>,
}

impl MailStack {
    /// Starts a fresh stack on a free block of ports (takes well under a second).
    pub fn start() -> MailStack {
        MailStack::start_with(&oauth2::StackOptions::default())
    }

    /// [`MailStack::start`] with options: with `opts.oauth2`, first a
    /// [`oauth2::TokenServer`] (log: `<dir>/log/oauth2.log`), then a stack
    /// whose Dovecot also accepts XOAUTH2/OAUTHBEARER tokens it vouches for
    /// (`MAILSTACK_OAUTH2_URL`, see mailstack.sh).
    pub fn start_with(opts: &oauth2::StackOptions) -> MailStack {
        let tmp = tempfile::Builder::new()
            .prefix("ms-")
            .tempdir_in("/tmp")
            .expect("create mail stack folder");
        let dir = tmp.path().to_path_buf();
        let token_server = opts.oauth2.as_ref().map(|o| {
            let log_dir = dir.join("log");
            std::fs::create_dir_all(&log_dir).expect("create the stack's log folder");
            oauth2::TokenServer::start(&log_dir.join("oauth2.log"), o)
        });
        let mut env: Vec<(&str, String)> = Vec::new();
        if let Some(ts) = &token_server {
            env.push(("MAILSTACK_OAUTH2_URL", ts.introspection_url_for_dovecot()));
        }
        run_script_env(&["start", path_str(&dir)], &env);
        let env = std::fs::read_to_string(dir.join("env")).expect("read mail stack env");
        let get = |key: &str| -> String {
            env.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .unwrap_or_else(|| panic!("{key} missing from {}/env", dir.display()))
                .to_string()
        };
        let port = |key: &str| -> u16 { get(key).parse().expect("port number") };
        MailStack {
            imap_port: port("MS_IMAP_PORT"),
            imaps_port: port("MS_IMAPS_PORT"),
            lmtp_port: port("MS_LMTP_PORT"),
            smtp_port: port("MS_SMTP_PORT"),
            submission_port: port("MS_SUBMISSION_PORT"),
            smtps_port: port("MS_SMTPS_PORT"),
            ca_file: PathBuf::from(get("MS_CA_FILE")),
            dovecot_conf: PathBuf::from(get("MS_DOVECOT_CONF")),
            password: get("MS_PASSWORD"),
            dir,
            oauth2: token_server,
            tmp: Some(tmp),
        }
    }

    /// Stops Postfix (all SMTP ports): an outgoing-mail outage.
    pub fn stop_smtp(&self) {
        run_script(&["stop-smtp", path_str(&self.dir)]);
    }

    /// Starts Postfix again and waits for its ports.
    pub fn start_smtp(&self) {
        run_script(&["start-smtp", path_str(&self.dir)]);
    }

    /// Submission (STARTTLS and implicit TLS) keeps taking connections and
    /// logins but answers every sender with `451` (at RCPT TO): a relay
    /// that is up and refuses for now. New sessions only (a Postfix
    /// reload); returns once a new session answers 451.
    pub fn defer_submission(&self) {
        run_script(&["defer-submission", path_str(&self.dir)]);
    }

    /// Ends [`MailStack::defer_submission`]; returns once a new session
    /// is accepted.
    pub fn accept_submission(&self) {
        run_script(&["accept-submission", path_str(&self.dir)]);
    }

    /// Stops Dovecot (IMAP, IMAPS and LMTP): a mailbox outage. Mail sent
    /// meanwhile waits in Postfix's queue.
    pub fn stop_imap(&self) {
        run_script(&["stop-imap", path_str(&self.dir)]);
    }

    /// Starts Dovecot again, waits for its ports and flushes Postfix's queue.
    pub fn start_imap(&self) {
        run_script(&["start-imap", path_str(&self.dir)]);
    }

    /// Gives `user` a Pigeonhole vacation auto-responder (replies once per
    /// sender per day, `Auto-Submitted: auto-replied (vacation)`).
    pub fn vacation(&self, user: &str) {
        run_script(&["vacation", path_str(&self.dir), user]);
    }

    /// The tails of the servers' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["dovecot.log", "postfix.log", "oauth2.log"] {
            let path = self.dir.join("log").join(name);
            if name == "oauth2.log" && self.oauth2.is_none() {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- tail of {}\n", path.display()));
            for l in &lines[lines.len().saturating_sub(40)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// rustls client config trusting only the stack's CA.
    pub fn tls_client_config(&self) -> rustls::ClientConfig {
        let pem = std::fs::read(&self.ca_file).expect("read CA file");
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.expect("parse CA PEM")).expect("add CA");
        }
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
    }

    // ------------------------------------------------------------ SMTP --

    /// Sends `raw` over plain SMTP to the inbound port (like mail from the
    /// internet arriving at port 25). Panics if the server refuses it.
    ///
    /// Such mail is never DKIM-signed, whatever its From: says; it is
    /// verified and delivered with `Authentication-Results:
    /// mail.example.org; dkim=none` (unsigned), `dkim=pass` / `dkim=fail`
    /// (a signature it carries), above any such headers it already had
    /// (those are kept, forged or not).
    pub fn send_raw(&self, envelope_from: &str, rcpt: &[&str], raw: &[u8]) {
        if let Err(e) = self.try_send_raw(envelope_from, rcpt, raw) {
            panic!("send_raw failed: {e}\n{}", self.logs());
        }
    }

    /// Like [`send_raw`](Self::send_raw) but returns the failure (for
    /// outage tests and expected rejections).
    pub fn try_send_raw(
        &self,
        envelope_from: &str,
        rcpt: &[&str],
        raw: &[u8],
    ) -> Result<(), String> {
        smtp_send(self.smtp_port, envelope_from, rcpt, raw).map(|_| ())
    }

    /// Sends `raw` through authenticated submission (STARTTLS, SASL as
    /// `user`), using lettre and the stack's CA, as a real mail client would.
    ///
    /// Submitted mail whose From: is at example.org or example.net is
    /// DKIM-signed (`d=` that domain, `s=mailstack`), then passes the
    /// stack's verifier like inbound mail, so it is delivered with a genuine
    /// `Authentication-Results: mail.example.org; dkim=pass
    /// header.d=example.org ...` on top (other From: domains: `dkim=none`).
    pub fn submit(&self, user: &str, envelope_from: &str, rcpt: &[&str], raw: &[u8]) {
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        use lettre::{
            address::Envelope, Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor,
        };

        let pem = std::fs::read(&self.ca_file).expect("read CA file");
        let tls = TlsParameters::builder("127.0.0.1".to_string())
            .add_root_certificate(Certificate::from_pem(&pem).expect("CA PEM"))
            .build_rustls()
            .expect("TLS parameters");
        let from: Address = envelope_from.parse().expect("envelope sender");
        let to: Vec<Address> = rcpt.iter().map(|r| r.parse().expect("recipient")).collect();
        let envelope = Envelope::new(Some(from), to).expect("envelope");
        let result = block_on(async {
            let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(self.submission_port)
                .tls(Tls::Required(tls))
                .credentials(Credentials::new(user.to_string(), self.password.clone()))
                .timeout(Some(Duration::from_secs(20)))
                .build();
            transport.send_raw(&envelope, raw).await
        });
        if let Err(e) = result {
            panic!("submission failed: {e}\n{}", self.logs());
        }
    }

    // ------------------------------------------------------- injection --

    /// Runs `doveadm -c <the stack's config> ARGS…`, with `input` on its
    /// stdin when given; panics on failure (with the servers' logs);
    /// returns its stdout.
    pub fn doveadm(&self, args: &[&str], input: Option<&[u8]>) -> String {
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&self.dovecot_conf)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run doveadm");
        if let Some(data) = input {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(data)
                .expect("write to doveadm");
        }
        let out = child.wait_with_output().expect("wait for doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Saves `raw` straight into `user`'s INBOX with doveadm (no SMTP, no
    /// sieve). Dovecot must be running.
    pub fn inject(&self, user: &str, raw: &[u8]) {
        self.save(user, "INBOX", raw);
    }

    /// Saves `raw` straight into one of `user`'s folders with doveadm.
    pub fn save(&self, user: &str, folder: &str, raw: &[u8]) {
        self.doveadm(&["save", "-u", user, "-m", folder], Some(raw));
    }

    /// The IMAP flags of every message in one of `user`'s folders, in
    /// mailbox order (doveadm).
    pub fn flags(&self, user: &str, folder: &str) -> Vec<String> {
        self.doveadm(
            &[
                "-f", "flow", "fetch", "-u", user, "flags", "mailbox", folder, "all",
            ],
            None,
        )
        .lines()
        .filter_map(|l| l.trim().strip_prefix("flags=").map(str::to_owned))
        .collect()
    }

    /// A number from `doveadm mailbox status` (`field`: messages,
    /// uidvalidity, …) of one of `user`'s folders; creates the folder if
    /// needed and makes Dovecot index what is there.
    pub fn mailbox_status(&self, user: &str, field: &str, folder: &str) -> u64 {
        let text = self.doveadm(
            &["-f", "flow", "mailbox", "status", "-u", user, field, folder],
            None,
        );
        // flow format: "mailbox=INBOX messages=N" (or "INBOX messages=N")
        let key = format!("{field}=");
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(key.as_str()))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected doveadm output: {text}"))
    }

    /// `user`'s Maildir (INBOX) folder.
    pub fn maildir(&self, user: &str) -> PathBuf {
        let (local, domain) = user.rsplit_once('@').unwrap_or((user, ""));
        self.dir
            .join("home")
            .join(domain)
            .join(local)
            .join("Maildir")
    }

    /// Loads many messages into `user`'s INBOX at once by writing Maildir
    /// files directly, in order (the first becomes the lowest UID), then
    /// lets Dovecot index them. 5,000 messages take about 3 s.
    /// Returns the number of messages in the INBOX afterwards.
    pub fn inject_many<M: AsRef<[u8]>>(&self, user: &str, messages: &[M]) -> u32 {
        let before = self.message_count(user); // also creates the Maildir
        let maildir = self.maildir(user);
        let meta = std::fs::metadata(&maildir).expect("user's Maildir");
        let (uid, gid) = (meta.uid(), meta.gid());
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let pid = std::process::id();
        for (i, msg) in messages.iter().enumerate() {
            let msg = msg.as_ref();
            // Dovecot orders new files by the time in the name, then the
            // rest of the name: a fixed second plus increasing microseconds
            // keeps the given order.
            let name = format!("{secs}.M{i:06}P{pid}.mailstack,S={}", msg.len());
            let tmp = maildir.join("tmp").join(&name);
            std::fs::write(&tmp, msg).expect("write message");
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).expect("chown message");
            std::fs::rename(&tmp, maildir.join("new").join(&name)).expect("deliver message");
        }
        // A daemon already logged in may have Dovecot syncing the folder
        // while the files land, and that sync can leave some of them
        // unindexed until the folder changes again (seen once: 185 of 300
        // under load). So wait a little, rescanning the folder.
        let want = before as usize + messages.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = self.message_count(user);
        while after as usize != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            self.doveadm(&["force-resync", "-u", user, "INBOX"], None);
            after = self.message_count(user);
        }
        assert_eq!(
            after as usize, want,
            "Dovecot did not pick up all injected messages"
        );
        after
    }

    /// Number of messages in `user`'s INBOX, via doveadm (creates the
    /// mailbox if needed and makes Dovecot index what is there).
    pub fn message_count(&self, user: &str) -> u32 {
        let n = self.mailbox_status(user, "messages", "INBOX");
        u32::try_from(n).expect("message count")
    }

    // ------------------------------------------------------------ IMAP --

    /// Every message in `user`'s INBOX, raw, in mailbox order (read over
    /// IMAPS, verifying the server certificate against the stack's CA;
    /// messages are not marked seen).
    pub fn fetch_all(&self, user: &str) -> Vec<Vec<u8>> {
        self.fetch_folder(user, "INBOX")
    }

    /// Every message in one of `user`'s folders (see [`fetch_all`](Self::fetch_all)).
    pub fn fetch_folder(&self, user: &str, folder: &str) -> Vec<Vec<u8>> {
        self.try_fetch_folder(user, folder)
            .unwrap_or_else(|e| panic!("IMAP fetch failed: {e}\n{}", self.logs()))
    }

    /// Like [`fetch_folder`](Self::fetch_folder) but returns the failure.
    pub fn try_fetch_folder(&self, user: &str, folder: &str) -> Result<Vec<Vec<u8>>, String> {
        block_on(imap_fetch(
            self.imaps_port,
            Arc::new(self.tls_client_config()),
            user,
            &self.password,
            folder,
        ))
    }

    /// Polls `user`'s INBOX until `done` holds for its messages, then
    /// returns them. Panics after `timeout` with what was there. IMAP
    /// errors (e.g. during an outage) count as "not yet".
    pub fn wait_for(
        &self,
        user: &str,
        done: impl Fn(&[Vec<u8>]) -> bool,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.try_fetch_folder(user, "INBOX");
            if let Ok(msgs) = &last {
                if done(msgs) {
                    return last.unwrap();
                }
            }
            if Instant::now() >= deadline {
                let seen = match &last {
                    Ok(msgs) => subjects(msgs),
                    Err(e) => format!("  (IMAP error: {e})"),
                };
                panic!(
                    "wait_for({user}) timed out after {timeout:?}; INBOX holds {}:\n{seen}\n{}",
                    last.as_ref().map(|m| m.len()).unwrap_or(0),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        if std::env::var_os("MAILSTACK_KEEP").is_some() {
            if let Some(ts) = self.oauth2.take() {
                ts.leak();
            }
            if let Some(tmp) = self.tmp.take() {
                eprintln!(
                    "MAILSTACK_KEEP: leaving the stack running in {}",
                    tmp.keep().display()
                );
            }
            return;
        }
        let _ = Command::new(mailstack_script())
            .args(["stop", path_str(&self.dir)])
            .stdout(Stdio::null())
            .status();
        // The TempDir removes the folder.
    }
}

// ------------------------------------------------------------- helpers --

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn run_script(args: &[&str]) {
    run_script_env(args, &[]);
}

fn run_script_env(args: &[&str], env: &[(&str, String)]) {
    let out = Command::new(mailstack_script())
        .args(args)
        // Only a stack started with OAuth2 gets it, whatever the caller's
        // environment says.
        .env_remove("MAILSTACK_OAUTH2_URL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run tests/mailstack/mailstack.sh");
    assert!(
        out.status.success(),
        "mailstack.sh {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a future to completion on a private current-thread runtime in a
/// separate thread, so it works from plain tests and from inside
/// `#[tokio::test]` alike (the calling thread blocks meanwhile).
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

async fn imap_fetch(
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    user: &str,
    password: &str,
    folder: &str,
) -> Result<Vec<Vec<u8>>, String> {
    use futures::StreamExt;
    let err = |what: &str| {
        let what = what.to_string();
        move |e: &dyn std::fmt::Display| format!("{what}: {e}")
    };
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| err("connect")(&e))?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| err("TLS")(&e))?;
        let mut client = async_imap::Client::new(stream);
        client
            .read_response()
            .await
            .map_err(|e| err("greeting")(&e))?
            .ok_or("connection closed before greeting")?;
        let mut session = client
            .login(user, password)
            .await
            .map_err(|(e, _)| err("login")(&e))?;
        let mailbox = session
            .select(folder)
            .await
            .map_err(|e| err("select")(&e))?;
        let mut msgs: Vec<(u32, Vec<u8>)> = Vec::new();
        if mailbox.exists > 0 {
            let mut fetches = session
                .fetch("1:*", "BODY.PEEK[]")
                .await
                .map_err(|e| err("fetch")(&e))?;
            while let Some(f) = fetches.next().await {
                let f = f.map_err(|e| err("fetch")(&e))?;
                if let Some(body) = f.body() {
                    msgs.push((f.message, body.to_vec()));
                }
            }
        }
        session.logout().await.map_err(|e| err("logout")(&e))?;
        msgs.sort_by_key(|(seq, _)| *seq);
        Ok(msgs.into_iter().map(|(_, m)| m).collect())
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| "IMAP fetch timed out".to_string())?
}

/// A minimal blocking SMTP client: EHLO, MAIL, RCPT..., DATA (with CRLF
/// line endings and dot-stuffing), QUIT. Returns when the server answered
/// 250 to the end of DATA (the message is then the server's; the benchmark
/// measures from there), or the first non-success reply.
pub fn smtp_send(
    port: u16,
    envelope_from: &str,
    rcpt: &[&str],
    raw: &[u8],
) -> Result<SystemTime, String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    stream.set_nodelay(true).ok();
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut reply = |expect: char| -> Result<String, String> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| format!("read: {e}"))?;
            if line.len() < 4 {
                return Err(format!("bad SMTP reply {line:?}"));
            }
            text.push_str(&line);
            if line.as_bytes()[3] != b'-' {
                break;
            }
        }
        if text.starts_with(expect) {
            Ok(text)
        } else {
            Err(text.trim_end().to_string())
        }
    };
    let send = |w: &mut TcpStream, cmd: &str| -> Result<(), String> {
        // One write per line: two small writes trip Nagle + delayed ACK
        // (~40 ms each) and made every test message take ~180 ms.
        w.write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| format!("write: {e}"))
    };
    reply('2')?;
    send(&mut writer, "EHLO client.test")?;
    reply('2')?;
    send(&mut writer, &format!("MAIL FROM:<{envelope_from}>"))?;
    reply('2')?;
    for r in rcpt {
        send(&mut writer, &format!("RCPT TO:<{r}>"))?;
        reply('2')?;
    }
    send(&mut writer, "DATA")?;
    reply('3')?;
    let mut data = Vec::with_capacity(raw.len() + raw.len() / 40 + 8);
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.first() == Some(&b'.') {
            data.push(b'.');
        }
        data.extend_from_slice(body);
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    writer.write_all(&data).map_err(|e| format!("write: {e}"))?;
    reply('2')?;
    let accepted = SystemTime::now();
    send(&mut writer, "QUIT")?;
    let _ = reply('2');
    Ok(accepted)
}

/// A fresh Message-ID (without angle brackets), unique across tests and
/// test processes.
pub fn new_message_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{prefix}.{nanos}.{}.{}@client.test",
        N.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

/// A plain-text message from `from` to `to` with extra header lines (each
/// "Name: value"); returns it with its Message-ID (without brackets).
pub fn text_mail(
    prefix: &str,
    from: &str,
    to: &str,
    subject: &str,
    extra: &[&str],
    body: &str,
) -> (Vec<u8>, String) {
    let mid = new_message_id(prefix);
    let mut raw = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{mid}>\r\n"
    );
    for h in extra {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    raw.push_str(body);
    raw.push_str("\r\n");
    (raw.into_bytes(), mid)
}

/// A plain-text message dated now, to several recipients and with Cc;
/// `extra` header lines (each "Name: value") go first, above From:, where
/// a sender's own trace and verdict lines would stand. Returns it with its
/// Message-ID (without brackets, see [`new_message_id`]).
pub fn mail(
    prefix: &str,
    from: &str,
    to: &[&str],
    cc: &[&str],
    subject: &str,
    extra: &[String],
    body: &str,
) -> (Vec<u8>, String) {
    let mid = new_message_id(prefix);
    let mut raw = String::new();
    for h in extra {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str(&format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\n\
         Date: {}\r\nMessage-ID: <{mid}>\r\n",
        to.join(", "),
        chrono::Utc::now().to_rfc2822()
    ));
    if !cc.is_empty() {
        raw.push_str(&format!("Cc: {}\r\n", cc.join(", ")));
    }
    raw.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    raw.push_str(body);
    raw.push_str("\r\n");
    (raw.into_bytes(), mid)
}

/// The unfolded values of every header `name` (case-insensitive) of a raw
/// message, top to bottom, without decoding.
pub fn headers(raw: &[u8], name: &str) -> Vec<String> {
    header_fields(raw)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

/// Every header field of a raw message as (name, unfolded value), top to
/// bottom: the header order, e.g. to check where `Authentication-Results`
/// sits among the `Received` lines.
pub fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break; // end of the header section
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// The unfolded value of the first header `name` (case-insensitive) of a
/// raw message, without decoding.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break; // end of the header section
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            if key.trim().eq_ignore_ascii_case(name) {
                found = Some(value.trim().to_string());
            }
        }
    }
    found
}

/// What a mailbox holds, for failure messages: one line per message,
/// `  Date: … | From: … | Subject: …` (address and subject decoded).
/// Takes raw messages, or anything that holds one (`&[Vec<u8>]`,
/// `&[&Vec<u8>]`, a decoded mail type that keeps its raw bytes).
pub fn subjects<M: AsRef<[u8]>>(msgs: &[M]) -> String {
    msgs.iter()
        .map(|m| {
            let raw = m.as_ref();
            let parsed = mail_parser::MessageParser::default().parse_headers(raw);
            let from = parsed
                .as_ref()
                .and_then(|p| p.from()?.first()?.address().map(str::to_owned))
                .or_else(|| header(raw, "From"))
                .unwrap_or_default();
            let subject = parsed
                .as_ref()
                .and_then(|p| p.subject().map(str::to_owned))
                .or_else(|| header(raw, "Subject"))
                .unwrap_or_default();
            format!(
                "  Date: {} | From: {from} | Subject: {subject}",
                header(raw, "Date").unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A small RFC 5322 message with CRLF line endings.
pub fn simple_message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <{nanos}.{n}.{pid}@client.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        pid = std::process::id()
    )
    .into_bytes()
}

// ----------------------------------------------------------- config --

/// The daemon's configuration for a test, pointed at a [`MailStack`].
/// Tweak the public fields, then [`TestConfig::write`]. `extra` is raw TOML
/// appended at the end (for whole extra sections).
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub address: String,
    pub project: String,
    pub policy_url: String,
    /// Raw TOML lines appended to `[mailbox]` (e.g. `comment_address = …`).
    pub mailbox_extra: String,
    /// Raw TOML lines appended to `[imap]` (e.g. `junk = "auto"`).
    pub imap_extra: String,
    pub imap_host: String,
    pub imap_port: u16,
    /// "implicit" | "starttls" | "none"
    pub imap_tls: String,
    pub imap_username: String,
    pub imap_password: String,
    pub folder: String,
    pub idle: bool,
    pub poll_interval: String,
    /// "seen" | "move:<folder>" | "keep"
    pub after: String,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// "implicit" | "starttls" | "none"
    pub smtp_tls: String,
    pub smtp_username: String,
    pub smtp_password: String,
    /// Log in to both servers with `auth = "oauth2"` instead of the
    /// passwords (the test adds the `[oauth2]` section in `extra`).
    pub oauth2_login: bool,
    pub ca_file: PathBuf,
    pub storage_path: PathBuf,
    pub acknowledge: String,
    pub respond: String,
    /// Raw TOML lines appended to `[sla]` (e.g. `remind_before = […]`).
    pub sla_extra: String,
    /// (name, email)
    pub handlers: Vec<(String, String)>,
    pub acks_per_sender_per_day: u32,
    /// `[limits] acks_per_hour`. High by default, so tests that send
    /// hundreds of reports (and the benchmark) measure intake, not the
    /// backscatter limit; the hostile tests set it low.
    pub acks_per_hour: u32,
    pub max_message_size: String,
    pub alert_after: String,
    /// `[workflow] assign`: "none" by default here, so a case stays in
    /// "acknowledged" unless a test asks for round-robin.
    pub assign: String,
    pub extra: String,
    /// The stack's token server when it runs one (not written to the
    /// TOML: a tweak uses it to write the daemon's OAuth2 settings, e.g.
    /// `token_url()` and a minted refresh token).
    pub oauth2: Option<oauth2::TokenServerApi>,
}

impl TestConfig {
    /// Defaults: mailbox security@example.org over IMAP STARTTLS with IDLE,
    /// outgoing mail through submission (STARTTLS), state in `dir/state.db`.
    pub fn new(stack: &MailStack, dir: &Path) -> TestConfig {
        let address = "security@example.org".to_string();
        TestConfig {
            project: "Example".into(),
            policy_url: "https://example.org/security".into(),
            mailbox_extra: String::new(),
            imap_extra: String::new(),
            imap_host: "127.0.0.1".into(),
            imap_port: stack.imap_port,
            imap_tls: "starttls".into(),
            imap_username: address.clone(),
            imap_password: stack.password.clone(),
            folder: "INBOX".into(),
            idle: true,
            poll_interval: "60s".into(),
            after: "seen".into(),
            smtp_host: "127.0.0.1".into(),
            smtp_port: stack.submission_port,
            smtp_tls: "starttls".into(),
            smtp_username: address.clone(),
            smtp_password: stack.password.clone(),
            oauth2_login: false,
            ca_file: stack.ca_file.clone(),
            storage_path: dir.join("state.db"),
            acknowledge: "48h".into(),
            respond: "72h".into(),
            sla_extra: String::new(),
            handlers: vec![("Alice".into(), "alice@example.org".into())],
            acks_per_sender_per_day: 5,
            acks_per_hour: 100_000,
            max_message_size: "50MiB".into(),
            alert_after: "15m".into(),
            assign: "none".into(),
            extra: String::new(),
            oauth2: stack.oauth2.as_ref().map(|t| t.api()),
            address,
        }
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        let q = toml_str;
        let p = |p: &Path| toml_str(path_str(p));
        let mut t = String::new();
        t.push_str("[mailbox]\n");
        t.push_str(&format!("address = {}\n", q(&self.address)));
        t.push_str(&format!("project = {}\n", q(&self.project)));
        t.push_str(&format!("policy_url = {}\n", q(&self.policy_url)));
        push_lines(&mut t, &self.mailbox_extra);
        t.push('\n');
        t.push_str("[imap]\n");
        t.push_str(&format!("host = {}\n", q(&self.imap_host)));
        t.push_str(&format!("port = {}\n", self.imap_port));
        t.push_str(&format!("tls = {}\n", q(&self.imap_tls)));
        t.push_str(&format!("ca_file = {}\n", p(&self.ca_file)));
        t.push_str(&format!("username = {}\n", q(&self.imap_username)));
        if self.oauth2_login {
            t.push_str("auth = \"oauth2\"\n");
        } else {
            t.push_str(&format!("password = {}\n", q(&self.imap_password)));
        }
        t.push_str(&format!("folder = {}\n", q(&self.folder)));
        t.push_str(&format!("idle = {}\n", self.idle));
        t.push_str(&format!("poll_interval = {}\n", q(&self.poll_interval)));
        t.push_str(&format!("after = {}\n", q(&self.after)));
        push_lines(&mut t, &self.imap_extra);
        t.push('\n');
        t.push_str("[smtp]\n");
        t.push_str(&format!("host = {}\n", q(&self.smtp_host)));
        t.push_str(&format!("port = {}\n", self.smtp_port));
        t.push_str(&format!("tls = {}\n", q(&self.smtp_tls)));
        t.push_str(&format!("ca_file = {}\n", p(&self.ca_file)));
        t.push_str(&format!("username = {}\n", q(&self.smtp_username)));
        if self.oauth2_login {
            t.push_str("auth = \"oauth2\"\n\n");
        } else {
            t.push_str(&format!("password = {}\n\n", q(&self.smtp_password)));
        }
        t.push_str("[storage]\n");
        t.push_str(&format!("path = {}\n\n", p(&self.storage_path)));
        t.push_str("[sla]\n");
        t.push_str(&format!("acknowledge = {}\n", q(&self.acknowledge)));
        t.push_str(&format!("respond = {}\n", q(&self.respond)));
        push_lines(&mut t, &self.sla_extra);
        t.push('\n');
        for (name, email) in &self.handlers {
            t.push_str("[[handlers]]\n");
            t.push_str(&format!("name = {}\nemail = {}\n\n", q(name), q(email)));
        }
        t.push_str("[limits]\n");
        t.push_str(&format!(
            "acks_per_sender_per_day = {}\n",
            self.acks_per_sender_per_day
        ));
        t.push_str(&format!("acks_per_hour = {}\n", self.acks_per_hour));
        t.push_str(&format!(
            "max_message_size = {}\n",
            q(&self.max_message_size)
        ));
        t.push_str(&format!("alert_after = {}\n\n", q(&self.alert_after)));
        t.push_str("[workflow]\n");
        t.push_str(&format!("assign = {}\n", q(&self.assign)));
        if !self.extra.is_empty() {
            t.push('\n');
            t.push_str(&self.extra);
            t.push('\n');
        }
        t
    }

    /// Writes the config to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_toml()).expect("write config");
    }
}

/// Writes `dir/secintake.toml` for `stack` after letting `tweak` adjust
/// the defaults of [`TestConfig::new`]; returns its path.
pub fn write_config(dir: &Path, stack: &MailStack, tweak: impl FnOnce(&mut TestConfig)) -> PathBuf {
    let mut cfg = TestConfig::new(stack, dir);
    tweak(&mut cfg);
    let path = dir.join("secintake.toml");
    cfg.write(&path);
    path
}

/// Appends `lines` (raw TOML) to `t`, ending in a newline.
fn push_lines(t: &mut String, lines: &str) {
    if !lines.is_empty() {
        t.push_str(lines);
        if !lines.ends_with('\n') {
            t.push('\n');
        }
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An `[alerts] command` for tests: a script that appends every alert it
/// is handed to a file.
pub struct AlertSink {
    _dir: tempfile::TempDir,
    pub file: PathBuf,
    pub script: PathBuf,
}

impl AlertSink {
    pub fn new() -> AlertSink {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("alerts.eml");
        let script = dir.path().join("alert.sh");
        std::fs::write(&script, format!("#!/bin/sh\ncat >> {}\n", file.display()))
            .expect("write the alert script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .expect("make the alert script executable");
        AlertSink {
            _dir: dir,
            file,
            script,
        }
    }

    /// The `[alerts]` section that runs it.
    pub fn config(&self) -> String {
        format!("[alerts]\ncommand = [\"{}\"]\n", self.script.display())
    }

    /// What it received so far, quoted-printable soft line breaks undone.
    pub fn text(&self) -> Option<String> {
        std::fs::read_to_string(&self.file)
            .ok()
            .map(|t| t.replace("=\r\n", "").replace("=\n", ""))
    }
}
