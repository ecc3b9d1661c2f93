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
//! - the socket has read and write timeouts (`imap.io_timeout`, set once
//!   in `imap::Conn`; async-imap has none and a half-open TCP connection
//!   would hang forever), off only while IDLE waits; any error drops the
//!   connection and we reconnect with capped, jittered exponential backoff,
//!   logging the state change once.

mod after;
mod fetch;
mod imap;
pub mod lease;
mod record;

use fetch::{size_groups, FIRST_GROUP, SIZE_WINDOW};
use imap::{capabilities, cmd_err, drain, idle_reads, open_folder, timed, uid_search, Caps, Conn};
pub use imap::{check, connect, reconnect_delay, IntakeError};

use crate::clock::Clock;
use crate::config::{After, Config};
use crate::health::{Component, Health, Writer};
use crate::store::{self, Db, FolderState};
use crate::templates::Templates;
use async_imap::Session;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
    /// The server marks it handled by secintake.
    handled_before: bool,
}

impl Fetched {
    fn raw(&self) -> &[u8] {
        self.response.body().unwrap_or_default()
    }
}

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
    /// The folder this loop watches: `imap.folder`, or one of the others
    /// (`imap.folders`, the `\Junk` folder), one loop and connection each.
    pub folder: String,
    /// `[handler_auth] accept = ["dkim"]`: checks handler mail's DKIM
    /// signature through DNS before it is recorded.
    pub dkim: Option<Arc<crate::dkim::Verifier>>,
    /// `imap.auth = "oauth2"`: the access tokens to log in with.
    pub tokens: Option<Arc<secintake_oauth2::TokenSource>>,
    /// Mail is read only while this instance holds the mailbox.
    pub lease: Arc<lease::LeaseState>,
}

/// While the state file takes no writes, how often intake tries again.
const STORAGE_RETRY: Duration = Duration::from_secs(5);

impl Intake {
    /// `junk = "auto"`: finds the server's `\Junk` folder (retrying while
    /// the server cannot be reached), then watches it like any other,
    /// until `shutdown`. A server without one is said once, at warn.
    pub async fn run_junk(mut self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let found = loop {
            match imap::find_junk(&self.cfg.imap, self.tokens.as_deref()).await {
                Ok(found) => break found,
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(error = %e, "finding the junk folder failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(reconnect_delay(failures)) => {}
                    }
                }
            }
        };
        let imap = &self.cfg.imap;
        let watched = |f: &str| {
            crate::config::same_folder(f, &imap.folder)
                || imap
                    .more_folders
                    .iter()
                    .any(|m| crate::config::same_folder(f, m))
        };
        match found {
            Some(f) if !watched(&f) => {
                tracing::info!(folder = %f, "imap.junk = auto: watching the junk folder");
                self.folder = f;
                self.run(shutdown).await;
            }
            Some(_) => shutdown.cancelled().await,
            None => {
                tracing::warn!("imap.junk = auto: the server marks no folder \\Junk; none watched");
                shutdown.cancelled().await;
            }
        }
    }

    /// Runs until `shutdown`, reconnecting as needed.
    pub async fn run(self, shutdown: CancellationToken) {
        // The lease is given up only after this ends (`LeaseState::reading`).
        let _reading = self.lease.reading();
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.session(&shutdown, &mut failures).await {
                Ok(()) => return,
                Err(IntakeError::LeaseLost) => {
                    // A new session waits for the lease (see `session`).
                    tracing::info!(folder = %self.folder, "reading no mail until this instance holds the mailbox again");
                }
                Err(e @ IntakeError::Credential { .. }) => {
                    self.health
                        .credential_rejected(Component::Imap, self.clock.now(), &e.to_string())
                        .await;
                    // Hammering a refused login gets accounts locked out.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(crate::health::credential_retry()) => {}
                    }
                }
                Err(e) => {
                    self.health.reconnected();
                    failures = failures.saturating_add(1);
                    let mut delay = reconnect_delay(failures);
                    if matches!(e, IntakeError::Store(_) | IntakeError::Case(_)) {
                        // The state file, not the mailbox: say so loudly,
                        // and look again soon (it is back when space is
                        // freed, not after a network backoff).
                        tracing::error!(error = %e, "cannot record mail; will retry");
                        self.health
                            .storage_failing(Writer::Intake, self.clock.now(), &e.to_string())
                            .await;
                        delay = delay.min(STORAGE_RETRY);
                    } else {
                        self.health
                            .failing(Component::Imap, self.clock.now(), &e.to_string())
                            .await;
                    }
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
        let mut session = connect(cfg, self.tokens.as_deref()).await?;
        let caps = capabilities(&mut session).await?;
        let can_idle = cfg.idle && caps.idle;
        if let After::Move(target) = &cfg.after {
            // Best effort: the folder may already exist.
            let _ = session.create(target).await;
        }
        let mailbox = open_folder(&mut session, &self.folder, false).await?;
        let uidvalidity = mailbox.uid_validity.ok_or_else(|| IntakeError::Folder {
            folder: self.folder.clone(),
            reason: "server gave no UIDVALIDITY".into(),
        })?;
        tracing::info!(host = %cfg.host, folder = %self.folder, idle = can_idle, messages = mailbox.exists, "IMAP connected");
        // No mail is read before this instance holds the mailbox.
        tokio::select! {
            _ = self.lease.wait_held() => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        // The handled keyword needs a server that lets clients create
        // keywords (`\*` in PERMANENTFLAGS).
        let moves = Caps {
            keywords: mailbox
                .permanent_flags
                .iter()
                .any(|f| matches!(f, async_imap::types::Flag::MayCreate)),
            ..caps
        };
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
            self.health
                .storage_ok(Writer::Intake, self.clock.now())
                .await;
            if shutdown.is_cancelled() {
                let _ = session.logout().await;
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
        mut session: Session<Conn>,
        cycle: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Session<Conn>, IntakeError> {
        let io = self.cfg.imap.io_timeout;
        idle_reads(&mut session, None);
        let mut handle = session.idle();
        timed(io, "IDLE", async {
            handle.init().await.map_err(cmd_err("IDLE"))
        })
        .await?;
        {
            let (fut, stop) = handle.wait_with_timeout(cycle);
            tokio::pin!(fut);
            // `wait_with_timeout` ends the IDLE after `cycle` itself;
            // shutdown ends it early by dropping `stop`.
            let mut stop = Some(stop);
            loop {
                tokio::select! {
                    r = &mut fut => {
                        r.map_err(cmd_err("IDLE"))?;
                        break;
                    }
                    _ = shutdown.cancelled(), if stop.is_some() => { stop = None; }
                }
            }
            drop(stop);
        }
        let mut session = timed(io, "DONE", async {
            handle.done().await.map_err(cmd_err("DONE"))
        })
        .await?;
        idle_reads(&mut session, Some(io));
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
        let mut last_uid = self.start_uid(uidvalidity).await?;
        loop {
            self.still_held()?;
            let query = format!("UID {}:*", last_uid.saturating_add(1));
            let uids = uid_search(session, &query, |u| u > last_uid).await?;
            if uids.is_empty() {
                return Ok(());
            }
            let batch = self.cfg.intake.batch_size.max(1) as usize;
            let _busy = (uids.len() > batch).then(|| self.backlog.hold());
            for window in uids.chunks(SIZE_WINDOW) {
                last_uid = self
                    .sync_window(session, window, uidvalidity, last_uid, moves, shutdown)
                    .await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }

    /// Whether this instance may still record mail: its lease may have
    /// run out (heartbeats failing) or been taken since the session began,
    /// and another instance may then read the same mail. Asked before
    /// each sync and right before each group's write transaction
    /// (`record_group`), with [`lease::record_margin`] to spare; the
    /// lease stops a third of its expiry early, so a group in hand is
    /// done well before another instance can start. A LeaseLost there
    /// leaves nothing unflagged: the group before it had its
    /// `imap.after` beside that group's recording (see `sync_window`).
    pub(super) fn still_held(&self) -> Result<(), IntakeError> {
        if self.lease.is_held_for(lease::record_margin()) {
            Ok(())
        } else {
            Err(IntakeError::LeaseLost)
        }
    }

    /// The folder's last processed UID, after noting a UIDVALIDITY change
    /// (or a first sync) in the state file.
    async fn start_uid(&self, uidvalidity: u32) -> Result<u32, IntakeError> {
        let folder = self.folder.clone();
        let f = folder.clone();
        let stored = self
            .db
            .call(move |s| store::folder_state(s.conn(), &f))
            .await?;
        let last_uid = match &stored {
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
        Ok(last_uid)
    }

    /// Records one window of UIDs: sizes in one round trip, then groups
    /// bounded by count and bytes. The next group's bodies are fetched
    /// while the previous group is being recorded, so the network and the
    /// disk overlap; the server copy is flagged only after its group's
    /// commit. Returns the new last processed UID.
    async fn sync_window(
        &self,
        session: &mut Session<Conn>,
        window: &[u32],
        uidvalidity: u32,
        mut last_uid: u32,
        moves: Caps,
        shutdown: &CancellationToken,
    ) -> Result<u32, IntakeError> {
        let cfg = &self.cfg;
        let batch = cfg.intake.batch_size.max(1) as usize;
        let (sizes, handled) = self.fetch_sizes(session, window).await?;
        let mut groups = size_groups(window, &sizes, cfg.limits.max_message_size, batch);
        if groups.first().is_some_and(|g| g.len() > FIRST_GROUP) {
            let rest = groups[0].split_off(FIRST_GROUP);
            groups.insert(1, rest);
        }
        let mut groups = groups.into_iter();
        let mut pending = match groups.next() {
            Some(g) => {
                let f = self.fetch_bodies(session, &g, &sizes, &handled).await?;
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
                            let f = self.fetch_bodies(session, &ng, &sizes, &handled).await?;
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
        Ok(last_uid)
    }
}
