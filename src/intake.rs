//! IMAP intake: watch the mailbox, hand each new message to [`cases::ingest`].
//!
//! The shape follows Delta Chat's IMAP loop:
//! - per folder we persist (UIDVALIDITY, last processed UID) in SQLite, in
//!   the same transaction as the messages' effects; a UIDVALIDITY change
//!   rescans the folder and deduplicates by Message-ID;
//! - messages are fetched with `BODY.PEEK[]` in batches bounded by count and
//!   total size; a message above `limits.max_message_size` has only its
//!   header fetched and stays on the server;
//! - the server copy is flagged or moved (`imap.after`) only after the
//!   effects are committed;
//! - IDLE (RFC 2177) is re-issued every `min(idle_timeout, poll_interval)`
//!   and always followed by a fetch, since IDLE is only a hint; without IDLE
//!   we poll;
//! - every command has a timeout (async-imap has none: a half-open TCP
//!   connection would hang forever); any error drops the connection and we
//!   reconnect with capped, jittered exponential backoff, logging the state
//!   change once.

use crate::cases::{self, Incoming, Outcome};
use crate::clock::Clock;
use crate::config::{After, Config, Imap, TlsMode};
use crate::context::Context;
use crate::health::{Component, Health};
use crate::store::{self, Db, FolderState, StoreError};
use crate::templates::Templates;
use crate::tls;
use async_imap::{Client, Session};
use chrono::Utc;
use futures::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Any byte stream the IMAP client can run over (plain TCP or TLS).
pub trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> ImapStream for T {}
type Conn = Box<dyn ImapStream>;

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
    #[error("IMAP folder {folder:?}: {reason}")]
    Folder { folder: String, reason: String },
    #[error("IMAP {op} failed: {reason}")]
    Command { op: &'static str, reason: String },
    #[error("IMAP server did not answer {op} within {secs} s")]
    Timeout { op: &'static str, secs: u64 },
    #[error(transparent)]
    TlsConfig(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Case(#[from] crate::context::CaseError),
}

/// Describes an async-imap error without echoing server data: a parse
/// error may carry bytes of a message, which must not reach a log.
fn describe(e: &async_imap::error::Error) -> String {
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
fn server_text(s: &str) -> String {
    let text = s
        .split_once("info: Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(info, _)| info)
        .unwrap_or(s);
    text.chars().take(200).collect()
}

/// A greeting read error for logs: the kind only, since a parse failure
/// may carry the server's bytes.
fn greeting_error(e: &std::io::Error) -> String {
    format!("reading the greeting failed: {}", e.kind())
}

fn cmd_err(op: &'static str) -> impl FnOnce(async_imap::error::Error) -> IntakeError {
    move |e| IntakeError::Command {
        op,
        reason: describe(&e),
    }
}

/// Runs `fut` with the command timeout.
async fn timed<T>(
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

/// Connects, upgrades to TLS as configured, and logs in.
pub async fn connect(cfg: &Imap) -> Result<Session<Conn>, IntakeError> {
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
    let mut client: Client<Conn> = match cfg.tls {
        TlsMode::None => Client::new(Box::new(tcp)),
        TlsMode::Implicit => {
            let tls = timed(io, "TLS handshake", async {
                tls_connector()?
                    .connect(name()?, tcp)
                    .await
                    .map_err(|e| tls_err(e.to_string()))
            })
            .await?;
            Client::new(Box::new(tls))
        }
        TlsMode::Starttls => {
            let mut plain = Client::new(tcp);
            timed(io, "greeting", async {
                plain
                    .read_response()
                    .await
                    .map_err(|e| connect_err(greeting_error(&e)))?
                    .ok_or_else(|| connect_err("closed before greeting".into()))
            })
            .await?;
            timed(io, "STARTTLS", async {
                plain
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| tls_err(format!("STARTTLS refused: {}", describe(&e))))
            })
            .await?;
            let tcp = plain.into_inner();
            let tls = timed(io, "TLS handshake", async {
                tls_connector()?
                    .connect(name()?, tcp)
                    .await
                    .map_err(|e| tls_err(e.to_string()))
            })
            .await?;
            // No second greeting after STARTTLS.
            let client = Client::new(Box::new(tls) as Conn);
            return login(client, cfg).await;
        }
    };
    timed(io, "greeting", async {
        client
            .read_response()
            .await
            .map_err(|e| connect_err(greeting_error(&e)))?
            .ok_or_else(|| connect_err("closed before greeting".into()))
    })
    .await?;
    login(client, cfg).await
}

async fn login(client: Client<Conn>, cfg: &Imap) -> Result<Session<Conn>, IntakeError> {
    timed(cfg.io_timeout, "LOGIN", async {
        client
            .login(&cfg.username, &cfg.password)
            .await
            .map_err(|(e, _)| IntakeError::Login {
                user: cfg.username.clone(),
                reason: describe(&e),
            })
    })
    .await
}

/// Drops unsolicited responses we don't use, so the channel (bounded at
/// 100 in async-imap) never fills and silently drops.
fn drain(session: &mut Session<Conn>) {
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

/// When intake first synced `folder` (recorded the first time it is asked).
fn first_sync(
    conn: &rusqlite::Connection,
    folder: &str,
    now: chrono::DateTime<Utc>,
) -> Result<chrono::DateTime<Utc>, StoreError> {
    let key = format!("first_sync:{folder}");
    if let Some(t) = store::setting(conn, &key)?
        .as_deref()
        .and_then(crate::clock::parse_ts)
    {
        return Ok(t);
    }
    store::set_setting(conn, &key, &crate::clock::fmt_ts(now))?;
    Ok(now)
}

/// One fetched message, owned, ready for the blocking store thread.
#[derive(Debug)]
struct Fetched {
    uid: u32,
    size: u64,
    internal_date: Option<chrono::DateTime<Utc>>,
    /// The server's FETCH response, which owns the message bytes: copying
    /// them out cost one more copy of every message at the peak (a 27 MiB
    /// report was in memory four times while it was recorded).
    response: async_imap::types::Fetch,
    truncated: bool,
}

impl Fetched {
    fn raw(&self) -> &[u8] {
        self.response.body().unwrap_or_default()
    }
}

/// Largest sum of message sizes fetched in one round trip; keeps memory
/// bounded whatever the mailbox holds (two groups are in flight at most).
const BATCH_BYTES: u64 = 8 << 20;
/// How much of a message over `limits.max_message_size` is fetched and
/// stored: its first bytes, header included, by a partial FETCH. Fetching
/// `BODY[HEADER]` instead was unbounded: a 56 MB message that was nearly
/// all header was stored whole and sent on to handlers.
const OVERSIZED_PREFIX: u32 = 256 * 1024;
/// UIDs whose sizes are asked for before their bodies: the pipeline of
/// body fetches runs without a pause within a window (~40 bytes each).
const SIZE_WINDOW: usize = 10_000;
/// The first group of a window is fetched with nothing to overlap it: keep
/// it small so recording starts early.
const FIRST_GROUP: usize = 50;

/// Everything the intake loop needs.
#[derive(Clone)]
pub struct Intake {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub templates: Arc<Templates>,
    pub clock: Arc<dyn Clock>,
    pub outbox: Arc<Notify>,
    /// Woken when cases change, so deadline scheduling sees them.
    pub deadlines: Arc<Notify>,
    pub health: Health,
    /// Held while a backlog is recorded; the outbox waits on it.
    pub backlog: Arc<crate::gate::BacklogGate>,
}

impl Intake {
    /// Runs until `shutdown`, reconnecting as needed.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.session(&shutdown, &mut failures).await {
                Ok(()) => return,
                Err(e) => {
                    self.health
                        .failing(Component::Imap, self.clock.now(), &e.to_string())
                        .await;
                    // Store errors are not network trouble: say so loudly.
                    if matches!(e, IntakeError::Store(_) | IntakeError::Case(_)) {
                        tracing::error!(error = %e, "cannot record mail; will retry");
                    }
                    failures = failures.saturating_add(1);
                    let delay = reconnect_delay(failures);
                    tracing::debug!(error = %e, delay_ms = delay.as_millis() as u64, "IMAP reconnect scheduled");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// One connection's life: connect, then sync and wait, until error or shutdown.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        failures: &mut u32,
    ) -> Result<(), IntakeError> {
        let cfg = &self.cfg.imap;
        let io = cfg.io_timeout;
        let mut session = connect(cfg).await?;
        let caps = capabilities(&mut session, io).await?;
        let can_idle = cfg.idle && caps.idle;
        if let After::Move(target) = &cfg.after {
            // Best effort: the folder may already exist.
            let _ = timed(io, "CREATE", async {
                session.create(target).await.map_err(cmd_err("CREATE"))
            })
            .await;
        }
        let mailbox = open_folder(&mut session, cfg, false).await?;
        let uidvalidity = mailbox.uid_validity.ok_or_else(|| IntakeError::Folder {
            folder: cfg.folder.clone(),
            reason: "server gave no UIDVALIDITY".into(),
        })?;
        tracing::info!(host = %cfg.host, folder = %cfg.folder, idle = can_idle, messages = mailbox.exists, "IMAP connected");
        let moves = caps;
        // Mail recorded before a connection broke may have missed its
        // `after` action (it runs after the commit): catch up once per
        // connection.
        self.reconcile_after(&mut session, uidvalidity, moves)
            .await?;

        loop {
            self.sync(&mut session, uidvalidity, moves, shutdown)
                .await?;
            *failures = 0;
            self.health.ok(Component::Imap, self.clock.now()).await;
            if shutdown.is_cancelled() {
                let _ = timed(io, "LOGOUT", async {
                    session.logout().await.map_err(cmd_err("LOGOUT"))
                })
                .await;
                return Ok(());
            }
            let cycle = cfg.idle_timeout.min(cfg.poll_interval);
            if can_idle {
                session = self.idle(session, cycle, shutdown).await?;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(cfg.poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }

    /// IDLEs until the server reports something, `cycle` passes, or shutdown.
    async fn idle(
        &self,
        session: Session<Conn>,
        cycle: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Session<Conn>, IntakeError> {
        let io = self.cfg.imap.io_timeout;
        let mut handle = session.idle();
        timed(io, "IDLE", async {
            handle.init().await.map_err(cmd_err("IDLE"))
        })
        .await?;
        {
            let (fut, stop) = handle.wait_with_timeout(cycle);
            tokio::pin!(fut);
            let mut stop = Some(stop);
            let deadline = tokio::time::sleep(cycle);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    r = &mut fut => {
                        r.map_err(cmd_err("IDLE"))?;
                        break;
                    }
                    _ = &mut deadline, if stop.is_some() => { stop = None; }
                    _ = shutdown.cancelled(), if stop.is_some() => { stop = None; }
                }
            }
            drop(stop);
        }
        let mut session = timed(io, "DONE", async {
            handle.done().await.map_err(cmd_err("DONE"))
        })
        .await?;
        drain(&mut session);
        Ok(session)
    }

    /// Fetches and records every message above the last processed UID.
    async fn sync(
        &self,
        session: &mut Session<Conn>,
        uidvalidity: u32,
        moves: Caps,
        shutdown: &CancellationToken,
    ) -> Result<(), IntakeError> {
        let cfg = &self.cfg;
        let folder = cfg.imap.folder.clone();
        let io = cfg.imap.io_timeout;
        let f = folder.clone();
        let stored = self
            .db
            .call(move |s| store::folder_state(s.conn(), &f))
            .await?;
        let mut last_uid = match &stored {
            Some(st) if st.uidvalidity == uidvalidity => st.last_uid,
            Some(st) => {
                tracing::warn!(folder = %folder, old = st.uidvalidity, new = uidvalidity,
                    "UIDVALIDITY changed; rescanning the folder, duplicates are recognised by Message-ID");
                0
            }
            None => 0,
        };
        if stored
            .as_ref()
            .is_none_or(|st| st.uidvalidity != uidvalidity)
        {
            let (f, now) = (folder.clone(), self.clock.now());
            let st = FolderState {
                uidvalidity,
                last_uid,
            };
            self.db
                .call(move |s| store::set_folder_state(s.conn(), &f, &st, now))
                .await?;
        }

        loop {
            // Explicit window: `UID n:*` always matches the newest message
            // even when its UID is below n (RFC 3501 6.4.8), so filter.
            let query = format!("UID {}:*", last_uid.saturating_add(1));
            let found = timed(io, "UID SEARCH", async {
                session
                    .uid_search(&query)
                    .await
                    .map_err(cmd_err("UID SEARCH"))
            })
            .await?;
            drain(session);
            let mut uids: Vec<u32> = found.into_iter().filter(|u| *u > last_uid).collect();
            if uids.is_empty() {
                return Ok(());
            }
            uids.sort_unstable();
            // Sizes for a large window in one round trip, then groups
            // bounded by count and bytes. The next group's bodies are
            // fetched while the previous group is being recorded, so the
            // network and the disk overlap; the server copy is flagged only
            // after its group's commit.
            let batch = cfg.intake.batch_size.max(1) as usize;
            let _busy = (uids.len() > batch).then(|| self.backlog.hold());
            for window in uids.chunks(SIZE_WINDOW) {
                let sizes = self.fetch_sizes(session, window).await?;
                let mut groups = size_groups(window, &sizes, cfg.limits.max_message_size, batch);
                if groups.first().is_some_and(|g| g.len() > FIRST_GROUP) {
                    let rest = groups[0].split_off(FIRST_GROUP);
                    groups.insert(1, rest);
                }
                let mut groups = groups.into_iter();
                let mut pending = match groups.next() {
                    Some(g) => {
                        let f = self.fetch_bodies(session, &g, &sizes).await?;
                        Some((g, f))
                    }
                    None => None,
                };
                // The group committed last, still to be flagged or moved.
                // Its `imap.after` runs on the IMAP connection while the
                // next group is being recorded (and before that group's
                // successor is fetched), so the round trip no longer sits
                // between two commits: 20 serial STOREs for a 5,000 backlog.
                let mut committed: Option<Vec<u32>> = None;
                while let Some((group, fetched)) = pending.take() {
                    let max_uid = group.iter().copied().max().unwrap_or(last_uid);
                    let next_group = groups.next().filter(|_| !shutdown.is_cancelled());
                    let (recorded, next) =
                        tokio::join!(self.record(fetched, uidvalidity, max_uid), async {
                            if let Some(done) = committed.take() {
                                self.apply_after(session, &done, moves).await?;
                            }
                            match next_group {
                                Some(ng) => {
                                    let f = self.fetch_bodies(session, &ng, &sizes).await?;
                                    Ok::<_, IntakeError>(Some((ng, f)))
                                }
                                None => Ok(None),
                            }
                        });
                    recorded?;
                    // Recorded: flag it with the next round (a failure
                    // before then is repaired by `reconcile_after`).
                    committed = Some(group);
                    last_uid = last_uid.max(max_uid);
                    let next = next?;
                    if shutdown.is_cancelled() {
                        break;
                    }
                    pending = next;
                }
                if let Some(done) = committed.take() {
                    self.apply_after(session, &done, moves).await?;
                }
                if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }

    async fn fetch_sizes(
        &self,
        session: &mut Session<Conn>,
        uids: &[u32],
    ) -> Result<std::collections::HashMap<u32, (u64, Option<chrono::DateTime<Utc>>)>, IntakeError>
    {
        let io = self.cfg.imap.io_timeout;
        let mut out = std::collections::HashMap::new();
        // At most 1,000 UIDs per command: a set of scattered UIDs must stay
        // well under servers' command-line limits (Dovecot: 64 KiB).
        for chunk in uids.chunks(1000) {
            let set = uid_set(chunk);
            let mut stream = timed(io, "UID FETCH", async {
                session
                    .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE)")
                    .await
                    .map_err(cmd_err("UID FETCH"))
            })
            .await?;
            while let Some(item) = timed(io, "UID FETCH", async { Ok(stream.next().await) }).await?
            {
                let f = item.map_err(cmd_err("UID FETCH"))?;
                if let Some(uid) = f.uid {
                    out.insert(
                        uid,
                        (
                            f.size.unwrap_or(0) as u64,
                            f.internal_date().map(|d| d.with_timezone(&Utc)),
                        ),
                    );
                }
            }
        }
        drain(session);
        Ok(out)
    }

    async fn fetch_bodies(
        &self,
        session: &mut Session<Conn>,
        uids: &[u32],
        sizes: &std::collections::HashMap<u32, (u64, Option<chrono::DateTime<Utc>>)>,
    ) -> Result<Vec<Fetched>, IntakeError> {
        let io = self.cfg.imap.io_timeout;
        let max = self.cfg.limits.max_message_size;
        let (big, normal): (Vec<u32>, Vec<u32>) = uids
            .iter()
            .partition(|u| sizes.get(u).is_some_and(|(s, _)| *s > max));
        let mut out = Vec::with_capacity(uids.len());
        let prefix = format!("(UID BODY.PEEK[]<0.{OVERSIZED_PREFIX}>)");
        for (set, query, truncated) in [
            (normal, "(UID BODY.PEEK[])", false),
            (big, prefix.as_str(), true),
        ] {
            if set.is_empty() {
                continue;
            }
            let set_s = uid_set(&set);
            {
                let mut stream = timed(io, "UID FETCH", async {
                    session
                        .uid_fetch(&set_s, query)
                        .await
                        .map_err(cmd_err("UID FETCH"))
                })
                .await?;
                while let Some(item) =
                    timed(io, "UID FETCH", async { Ok(stream.next().await) }).await?
                {
                    let f = item.map_err(cmd_err("UID FETCH"))?;
                    let Some(uid) = f.uid else { continue };
                    if !set.contains(&uid) {
                        continue;
                    }
                    let Some(len) = f.body().map(<[u8]>::len) else {
                        continue;
                    };
                    let (size, internal_date) =
                        sizes.get(&uid).copied().unwrap_or((len as u64, None));
                    out.push(Fetched {
                        uid,
                        size,
                        internal_date,
                        response: f,
                        truncated,
                    });
                }
            }
            drain(session);
        }
        out.sort_by_key(|f| f.uid);
        Ok(out)
    }

    /// Records a group of fetched messages, behind the poison-message
    /// guard: the attempt is committed (crash-safe, without an fsync: see
    /// `Store::hint_transaction`) before any message is touched. A
    /// group that was being recorded when the daemon died is recorded one
    /// message at a time, and a message that was being recorded alone when
    /// it died again (a second death) is stored raw without being parsed,
    /// so no single message can stop intake for good.
    async fn record(
        &self,
        fetched: Vec<Fetched>,
        uidvalidity: u32,
        max_uid: u32,
    ) -> Result<(), IntakeError> {
        let folder = self.cfg.imap.folder.clone();
        let uids: Vec<u32> = fetched.iter().map(|f| f.uid).collect();
        let prior = self
            .db
            .call(move |s| {
                s.hint_transaction(|tx| {
                    let prior = store::intake_attempts(tx, &folder, uidvalidity, &uids)?;
                    if prior.iter().any(|a| *a > 0) {
                        return Ok(Some(prior));
                    }
                    store::count_intake_attempt(tx, &folder, uidvalidity, &uids, 0)?;
                    Ok(None)
                })
            })
            .await?;
        let Some(prior) = prior else {
            return self
                .record_group(fetched, uidvalidity, max_uid, false)
                .await;
        };
        tracing::warn!(
            count = fetched.len(),
            "the daemon stopped while recording these messages; recording them one at a time"
        );
        let last = fetched.len().saturating_sub(1);
        for (i, (m, prior)) in fetched.into_iter().zip(prior).enumerate() {
            let (folder, uid) = (self.cfg.imap.folder.clone(), m.uid);
            self.db
                .call(move |s| {
                    s.hint_transaction(|tx| {
                        store::count_intake_attempt(tx, &folder, uidvalidity, &[uid], prior)
                    })
                })
                .await?;
            let poisoned = prior >= 2;
            if poisoned {
                tracing::error!(
                    uid,
                    "processing this message stopped the daemon twice: storing it raw, unread"
                );
            }
            let upto = if i == last { max_uid } else { uid };
            self.record_group(vec![m], uidvalidity, upto, poisoned)
                .await?;
        }
        Ok(())
    }

    /// Records a group of fetched messages, the folder's new last UID and
    /// the end of their attempts in one transaction.
    async fn record_group(
        &self,
        fetched: Vec<Fetched>,
        uidvalidity: u32,
        max_uid: u32,
        poisoned: bool,
    ) -> Result<(), IntakeError> {
        let bytes: usize = fetched.iter().map(|m| m.raw().len()).sum();
        let cfg = self.cfg.clone();
        let templates = self.templates.clone();
        let clock = self.clock.clone();
        let folder = cfg.imap.folder.clone();
        let expected = max_uid;
        let outcomes = self
            .db
            .call(move |s| -> Result<Vec<(u32, Outcome)>, IntakeError> {
                let now = clock.now();
                let ctx = Context {
                    cfg: &cfg,
                    templates: &templates,
                    now,
                };
                let tx = s.transaction()?;
                // "Old" is measured from the folder's first sync, not from
                // now: reports that waited out an outage are not old.
                let first_sync = first_sync(&tx, &folder, now)?;
                let not_before = (!cfg.intake.backfill.is_zero()).then(|| {
                    chrono::Duration::from_std(cfg.intake.backfill)
                        .ok()
                        .and_then(|b| first_sync.checked_sub_signed(b))
                        .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
                });
                let mut outcomes = Vec::with_capacity(fetched.len());
                for m in &fetched {
                    let incoming = Incoming {
                        folder: &folder,
                        uidvalidity,
                        uid: m.uid,
                        internal_date: m.internal_date,
                        seen_at: now,
                        not_before,
                        raw: m.raw(),
                        size: m.size,
                        truncated: m.truncated,
                        poisoned,
                    };
                    outcomes.push((m.uid, cases::ingest(&tx, &ctx, &incoming)?));
                }
                // The UID FETCH completed OK: a UID of the group it did not
                // return was expunged meanwhile, so moving past it loses nothing.
                let new_last = expected;
                store::clear_intake_attempts(&tx, &folder, uidvalidity, new_last)?;
                store::set_folder_state(
                    &tx,
                    &folder,
                    &FolderState {
                        uidvalidity,
                        last_uid: new_last,
                    },
                    now,
                )?;
                crate::store::commit(tx, "committing received mail")?;
                Ok(outcomes)
            })
            .await?;
        crate::memory::trim_after(bytes);
        let mut wake = false;
        for (uid, o) in &outcomes {
            wake |= o.changed_cases();
            match o {
                Outcome::NewCase {
                    case_id,
                    ack_queued,
                } => {
                    tracing::info!(uid, case = %case_id, ack_queued, "new report: case opened")
                }
                Outcome::FollowUp { case_id } => {
                    tracing::info!(uid, case = %case_id, "follow-up attached")
                }
                Outcome::Robot { rule, case_id } => {
                    tracing::info!(
                        uid,
                        rule,
                        case = case_id.as_deref().unwrap_or("-"),
                        "auto-generated mail stored, not answered"
                    )
                }
                Outcome::Duplicate => tracing::info!(uid, "duplicate delivery ignored"),
                Outcome::HandlerWithoutCase => {
                    tracing::info!(uid, "handler mail naming no case: answered")
                }
                Outcome::Old => {
                    tracing::info!(uid, "older than intake.backfill: stored, not answered")
                }
            }
        }
        if wake {
            self.outbox.notify_one();
            self.deadlines.notify_one();
        }
        Ok(())
    }

    /// Applies `imap.after` to processed messages that still lack it
    /// (unseen ones for "seen", any left in the folder for "move:").
    async fn reconcile_after(
        &self,
        session: &mut Session<Conn>,
        uidvalidity: u32,
        moves: Caps,
    ) -> Result<(), IntakeError> {
        let criteria = match &self.cfg.imap.after {
            After::Keep => return Ok(()),
            After::Seen => "UNSEEN ",
            After::Move(_) => "",
        };
        let folder = self.cfg.imap.folder.clone();
        let stored = self
            .db
            .call(move |s| store::folder_state(s.conn(), &folder))
            .await?;
        let Some(st) = stored.filter(|st| st.uidvalidity == uidvalidity && st.last_uid > 0) else {
            return Ok(());
        };
        let query = format!("{criteria}UID 1:{}", st.last_uid);
        let found = timed(self.cfg.imap.io_timeout, "UID SEARCH", async {
            session
                .uid_search(&query)
                .await
                .map_err(cmd_err("UID SEARCH"))
        })
        .await?;
        drain(session);
        let mut uids: Vec<u32> = found.into_iter().filter(|u| *u <= st.last_uid).collect();
        if uids.is_empty() {
            return Ok(());
        }
        uids.sort_unstable();
        tracing::info!(
            count = uids.len(),
            "applying imap.after to mail recorded before a reconnect"
        );
        for chunk in uids.chunks(1000) {
            self.apply_after(session, chunk, moves).await?;
        }
        Ok(())
    }

    /// Flags or moves processed messages, as `imap.after` says. Runs after
    /// the commit; repeating it is harmless.
    async fn apply_after(
        &self,
        session: &mut Session<Conn>,
        uids: &[u32],
        moves: Caps,
    ) -> Result<(), IntakeError> {
        let io = self.cfg.imap.io_timeout;
        let set = uid_set(uids);
        match &self.cfg.imap.after {
            After::Keep => {}
            After::Seen => {
                add_flag(session, io, &set, "\\Seen").await?;
            }
            After::Move(target) => {
                if moves.can_move {
                    timed(io, "UID MOVE", async {
                        session
                            .uid_mv(&set, target)
                            .await
                            .map_err(cmd_err("UID MOVE"))
                    })
                    .await?;
                } else {
                    timed(io, "UID COPY", async {
                        session
                            .uid_copy(&set, target)
                            .await
                            .map_err(cmd_err("UID COPY"))
                    })
                    .await?;
                    add_flag(session, io, &set, "\\Deleted").await?;
                    if moves.can_uidplus {
                        timed(io, "UID EXPUNGE", async {
                            let s = session
                                .uid_expunge(&set)
                                .await
                                .map_err(cmd_err("UID EXPUNGE"))?;
                            s.collect::<Vec<_>>().await;
                            Ok(())
                        })
                        .await?;
                    }
                }
            }
        }
        drain(session);
        Ok(())
    }
}

/// `UID STORE set +FLAGS.SILENT (flag)`, reading the (empty) answer.
async fn add_flag(
    session: &mut Session<Conn>,
    io: Duration,
    set: &str,
    flag: &str,
) -> Result<(), IntakeError> {
    let query = format!("+FLAGS.SILENT ({flag})");
    timed(io, "UID STORE", async {
        let s = session
            .uid_store(set, &query)
            .await
            .map_err(cmd_err("UID STORE"))?;
        s.collect::<Vec<_>>().await;
        Ok(())
    })
    .await
}

/// The server capabilities intake uses.
#[derive(Debug, Clone, Copy)]
struct Caps {
    idle: bool,
    can_move: bool,
    can_uidplus: bool,
}

async fn capabilities(session: &mut Session<Conn>, io: Duration) -> Result<Caps, IntakeError> {
    let caps = timed(io, "CAPABILITY", async {
        session.capabilities().await.map_err(cmd_err("CAPABILITY"))
    })
    .await?;
    Ok(Caps {
        idle: caps.has_str("IDLE"),
        can_move: caps.has_str("MOVE"),
        can_uidplus: caps.has_str("UIDPLUS"),
    })
}

/// SELECTs (or, read-only, EXAMINEs) the configured folder.
async fn open_folder(
    session: &mut Session<Conn>,
    cfg: &Imap,
    read_only: bool,
) -> Result<async_imap::types::Mailbox, IntakeError> {
    let folder_err = |e: async_imap::error::Error| IntakeError::Folder {
        folder: cfg.folder.clone(),
        reason: describe(&e),
    };
    let mailbox = timed(cfg.io_timeout, "SELECT", async {
        if read_only {
            session.examine(&cfg.folder).await.map_err(folder_err)
        } else {
            session.select(&cfg.folder).await.map_err(folder_err)
        }
    })
    .await?;
    drain(session);
    Ok(mailbox)
}

/// Splits `uids` into groups whose summed size stays under [`BATCH_BYTES`]
/// (a single large message forms its own group). Oversized messages count
/// as header-only.
fn size_groups(
    uids: &[u32],
    sizes: &std::collections::HashMap<u32, (u64, Option<chrono::DateTime<Utc>>)>,
    max_message: u64,
    max_count: usize,
) -> Vec<Vec<u32>> {
    let mut groups = Vec::new();
    let mut cur = Vec::new();
    let mut cur_bytes = 0u64;
    for &uid in uids {
        let size = sizes.get(&uid).map(|(s, _)| *s).unwrap_or(0);
        let size = if size > max_message { 64 << 10 } else { size };
        if !cur.is_empty() && (cur_bytes + size > BATCH_BYTES || cur.len() >= max_count) {
            groups.push(std::mem::take(&mut cur));
            cur_bytes = 0;
        }
        cur.push(uid);
        cur_bytes += size;
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

/// 1 s, 2 s, 4 s … capped at 60 s, with up to 25% jitter.
pub fn reconnect_delay(failures: u32) -> Duration {
    let base =
        Duration::from_secs(1 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(60));
    base.mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.25))
}

/// Connects, logs in, selects the folder and logs out; for `check-config`.
pub async fn check(cfg: &Imap) -> Result<String, IntakeError> {
    let mut session = connect(cfg).await?;
    let io = cfg.io_timeout;
    let idle = capabilities(&mut session, io).await?.idle;
    let mailbox = open_folder(&mut session, cfg, true).await?;
    let _ = timed(io, "LOGOUT", async {
        session.logout().await.map_err(cmd_err("LOGOUT"))
    })
    .await;
    Ok(format!(
        "IMAP ok: logged in to {}:{} as {}, folder {:?} holds {} message(s), IDLE {}",
        cfg.host,
        cfg.port,
        cfg.username,
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
    fn size_groups_bound_memory() {
        let mut sizes = std::collections::HashMap::new();
        for u in 1..=10u32 {
            sizes.insert(u, (3 << 20, None));
        }
        sizes.insert(11, (100 << 20, None)); // oversized: header only
        let uids: Vec<u32> = (1..=11).collect();
        let g = size_groups(&uids, &sizes, 50 << 20, 100);
        assert!(g.iter().all(|g| g.len() <= 3));
        assert_eq!(g.concat(), uids);
        let small: Vec<u32> = (1..=250).collect();
        let g = size_groups(&small, &std::collections::HashMap::new(), 50 << 20, 100);
        assert_eq!(
            g.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100, 100, 50]
        );
    }

    #[test]
    fn reconnect_delay_is_capped() {
        assert!(reconnect_delay(1) < Duration::from_millis(1300));
        assert!(reconnect_delay(50) <= Duration::from_secs(75));
        assert!(reconnect_delay(50) >= Duration::from_secs(60));
    }
}
