//! One instance per mailbox (issue 12): two daemons on one mailbox, each
//! with its own state file (a host move, a test instance left running),
//! answered every report twice. The file lock cannot see that; the
//! mailbox can. A marker message in the folder [`LEASE_FOLDER`] carries
//! the holder's name and its last heartbeat as keywords, and every change
//! is a compare-and-set: `UID STORE … (UNCHANGEDSINCE modseq)` (RFC 7162
//! CONDSTORE) fails when another instance changed it since it was read.
//! Intake reads no mail until this instance holds the lease; a second
//! instance says, at error, which instance holds it, reads nothing, and
//! takes over once the holder's heartbeat is older than [`expiry`]. A
//! clean stop gives the lease up at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_imap::types::Flag;
use futures::TryStreamExt;
use secintake_oauth2::TokenSource;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::imap::{cmd_err, connect, drain, Conn};
use super::IntakeError;
use crate::config::Imap;
use crate::health::Health;

/// The folder holding the lease's marker message.
pub const LEASE_FOLDER: &str = "SecintakeLease";
const HOLDER: &str = "$SecintakeHolder_";
const BEAT: &str = "$SecintakeBeat_";

/// How long a heartbeat holds the lease; a third of it between beats.
pub fn expiry() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("SECINTAKE_TEST_LEASE_EXPIRY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_millis(ms);
    }
    Duration::from_secs(90)
}

/// Whether this instance holds the mailbox; intake waits for it.
#[derive(Debug, Default)]
pub struct LeaseState {
    held: AtomicBool,
    changed: Notify,
}

impl LeaseState {
    /// Waits until the lease is held.
    pub async fn wait_held(&self) {
        loop {
            let notified = self.changed.notified();
            if self.held.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn set(&self, held: bool) {
        self.held.store(held, Ordering::Release);
        self.changed.notify_waiters();
    }
}

/// This instance's name in the lease: the host and a hash of the state
/// file's path, as a keyword may spell it.
pub fn instance_name(state_path: &std::path::Path) -> String {
    use sha2::Digest;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let hash = sha2::Sha256::digest(state_path.as_os_str().as_encoded_bytes());
    format!("{host}_{}", &hex::encode(hash)[..8])
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The lease task's parts (see [`Lease::run`]).
pub struct Lease {
    pub cfg: Imap,
    pub tokens: Option<Arc<TokenSource>>,
    /// This instance's name ([`instance_name`]).
    pub me: String,
    pub state: Arc<LeaseState>,
    /// With a new state file (no `--adopt`): the folder to look for mail
    /// handled before in, once the lease is held.
    pub fresh_check: Option<String>,
    /// Told of each heartbeat's outcome, for `status`, `STATUS=` and the
    /// metrics.
    pub health: Health,
}

impl Lease {
    /// Holds the lease until `shutdown`: takes it (waiting out another
    /// holder's expiry only when its heartbeat is already old), then
    /// renews it every third of [`expiry`], over one kept IMAP session.
    /// Ends with an error only when the new-state check finds mail
    /// handled before, which stops the daemon.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Lease {
            cfg,
            tokens,
            me,
            state,
            mut fresh_check,
            health,
        } = self;
        let every = expiry() / 3;
        let mut link = Link {
            cfg: cfg.clone(),
            tokens,
            session: None,
        };
        let mut failures = 0u32;
        let mut refused_by: Option<String> = None;
        loop {
            let mut wait = every;
            match link.beat(&me).await {
                Ok(Outcome::Held) => {
                    failures = 0;
                    if let Some(folder) = &fresh_check {
                        match link.handled_before(folder).await {
                            Ok(0) => fresh_check = None,
                            Ok(n) => {
                                link.release(&me).await;
                                anyhow::bail!(
                                    "the state file is new, but {n} message(s) in {folder:?} of \
                                     {} were handled by secintake before (keyword {}): the state \
                                     that answered them is gone. Restore it from a backup \
                                     (README: backups), or start once with `secintake run \
                                     --adopt` to record that mail without answering it",
                                    cfg.username,
                                    crate::cases::HANDLED_KEYWORD
                                );
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "cannot look for handled mail yet; retrying");
                                failures = failures.saturating_add(1);
                                wait = super::reconnect_delay(failures).min(every);
                                tokio::select! {
                                    _ = tokio::time::sleep(wait) => continue,
                                    _ = shutdown.cancelled() => return Ok(()),
                                }
                            }
                        }
                    }
                    if !state.held.load(Ordering::Acquire) {
                        tracing::info!(instance = %me, "this instance holds the mailbox");
                    }
                    refused_by = None;
                    state.set(true);
                    health.lease_held().await;
                }
                Ok(Outcome::HeldBy { holder, ago }) => {
                    failures = 0;
                    if state.held.load(Ordering::Acquire) {
                        tracing::error!(holder = %holder, "another secintake instance took the mailbox: reading no more mail");
                    }
                    state.set(false);
                    health.lease_standby(&holder, ago).await;
                    if refused_by.as_deref() != Some(holder.as_str()) {
                        tracing::error!(
                            "mailbox {}: another secintake instance ({holder}) holds it \
                             (heartbeat {ago} s ago); two instances would answer every report \
                             twice, so this one reads no mail and sends none it did not record; \
                             it takes over {} s after that instance's last heartbeat",
                            cfg.username,
                            expiry().as_secs()
                        );
                        refused_by = Some(holder);
                    }
                }
                Err(e @ IntakeError::Credential { .. }) => {
                    // Intake reports a refused login; not hammering it here.
                    tracing::debug!(error = %e, "lease: login refused; retrying slowly");
                    wait = crate::health::credential_retry();
                }
                Err(e) => {
                    // The server cannot be asked: keep what we have; intake
                    // cannot read mail meanwhile either.
                    failures = failures.saturating_add(1);
                    tracing::debug!(error = %e, "lease heartbeat failed; retrying");
                    wait = super::reconnect_delay(failures).min(every);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {
                    if state.held.load(Ordering::Acquire) {
                        link.release(&me).await;
                    } else {
                        link.logout().await;
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// The lease's own IMAP session, kept between heartbeats: a new login
/// every 30 s was 2,880 logins a day in the provider's log, for nothing.
/// It is dropped on any error and opened again on the next beat; a kept
/// session the server closed meanwhile gets one retry on a new one.
struct Link {
    cfg: Imap,
    tokens: Option<Arc<TokenSource>>,
    session: Option<async_imap::Session<Conn>>,
}

impl Link {
    async fn session(&mut self) -> Result<&mut async_imap::Session<Conn>, IntakeError> {
        let session = match self.session.take() {
            Some(s) => s,
            None => connect(&self.cfg, self.tokens.as_deref()).await?,
        };
        Ok(self.session.insert(session))
    }

    /// One heartbeat: reads the marker, and takes or renews the lease
    /// with a compare-and-set unless another instance's heartbeat is
    /// fresh.
    async fn beat(&mut self, me: &str) -> Result<Outcome, IntakeError> {
        let reused = self.session.is_some();
        match self.try_beat(me).await {
            Err(e) if reused => {
                tracing::debug!(error = %e, "the kept lease session failed; opening a new one");
                self.try_beat(me).await
            }
            result => result,
        }
    }

    async fn try_beat(&mut self, me: &str) -> Result<Outcome, IntakeError> {
        let session = self.session().await?;
        let result = beat_in(session, me).await;
        drain(session);
        if result.is_err() {
            self.session = None;
        }
        result
    }

    /// How many messages of `folder` carry the handled keyword.
    async fn handled_before(&mut self, folder: &str) -> Result<usize, IntakeError> {
        let session = self.session().await?;
        let found = async {
            session.examine(folder).await.map_err(cmd_err("EXAMINE"))?;
            session
                .uid_search(format!("KEYWORD {}", crate::cases::HANDLED_KEYWORD))
                .await
                .map_err(cmd_err("UID SEARCH KEYWORD"))
        }
        .await;
        if found.is_err() {
            self.session = None;
        }
        Ok(found?.len())
    }

    /// On a clean stop, gives the lease up at once, so that the next
    /// start (a restart, a host move) need not wait for it to expire.
    async fn release(&mut self, me: &str) {
        let give_up = async {
            let session = self.session().await?;
            session
                .select(LEASE_FOLDER)
                .await
                .map_err(cmd_err("SELECT lease folder"))?;
            if let Some(uid) = marker(session).await? {
                let (holder, _, modseq) = read(session, uid).await?;
                if holder.as_deref() == Some(me) {
                    session
                        .uid_store(
                            uid.to_string(),
                            format!("(UNCHANGEDSINCE {modseq}) FLAGS.SILENT (\\Seen)"),
                        )
                        .await
                        .map_err(cmd_err("UID STORE lease"))?
                        .try_collect::<Vec<_>>()
                        .await
                        .map_err(cmd_err("UID STORE lease"))?;
                }
            }
            Ok::<_, IntakeError>(())
        };
        match tokio::time::timeout(Duration::from_secs(5), give_up).await {
            Ok(Ok(())) => tracing::info!("the mailbox's lease given up"),
            Ok(Err(e)) => tracing::debug!(error = %e, "could not give the lease up; it expires"),
            Err(_) => tracing::debug!("giving the lease up took too long; it expires"),
        }
        self.logout().await;
    }

    async fn logout(&mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        }
    }
}

enum Outcome {
    Held,
    HeldBy { holder: String, ago: u64 },
}

async fn beat_in(
    session: &mut async_imap::Session<Conn>,
    me: &str,
) -> Result<Outcome, IntakeError> {
    // Best effort: it exists after the first start.
    let _ = session.create(LEASE_FOLDER).await;
    session
        .select(LEASE_FOLDER)
        .await
        .map_err(cmd_err("SELECT lease folder"))?;
    let uid = match marker(session).await? {
        Some(uid) => uid,
        None => {
            let text = "From: secintake\r\nSubject: secintake lease (do not delete)\r\n\r\n\
                        secintake keeps the name of the instance that reads this mailbox here.\r\n";
            session
                .append(LEASE_FOLDER, Some("(\\Seen)"), None, text)
                .await
                .map_err(cmd_err("APPEND lease marker"))?;
            marker(session).await?.ok_or(IntakeError::Command {
                op: "APPEND lease marker",
                reason: "the marker is not there after APPEND".into(),
            })?
        }
    };
    for _ in 0..3 {
        let (holder, beat_at, modseq) = read(session, uid).await?;
        let now = now_secs();
        if let Some(h) = holder.as_deref().filter(|h| *h != me) {
            let ago = now.saturating_sub(beat_at);
            if Duration::from_secs(ago) < expiry() {
                return Ok(Outcome::HeldBy {
                    holder: h.to_string(),
                    ago,
                });
            }
        }
        let query =
            format!("(UNCHANGEDSINCE {modseq}) FLAGS.SILENT (\\Seen {HOLDER}{me} {BEAT}{now})");
        session
            .uid_store(uid.to_string(), &query)
            .await
            .map_err(cmd_err("UID STORE lease"))?
            .try_collect::<Vec<_>>()
            .await
            .map_err(cmd_err("UID STORE lease"))?;
        let (holder, beat_at, _) = read(session, uid).await?;
        if holder.as_deref() == Some(me) && beat_at == now {
            drain(session);
            return Ok(Outcome::Held);
        }
        // Another instance changed it between our read and our store.
    }
    let (holder, beat_at, _) = read(session, uid).await?;
    Ok(Outcome::HeldBy {
        holder: holder.unwrap_or_else(|| "unknown".into()),
        ago: now_secs().saturating_sub(beat_at),
    })
}

/// The marker's UID: the lowest in the folder.
async fn marker(session: &mut async_imap::Session<Conn>) -> Result<Option<u32>, IntakeError> {
    let uids = session
        .uid_search("ALL")
        .await
        .map_err(cmd_err("UID SEARCH lease"))?;
    Ok(uids.into_iter().min())
}

/// The marker's holder, last heartbeat (Unix seconds) and MODSEQ.
async fn read(
    session: &mut async_imap::Session<Conn>,
    uid: u32,
) -> Result<(Option<String>, u64, u64), IntakeError> {
    let fetched: Vec<_> = session
        .uid_fetch(uid.to_string(), "(UID FLAGS MODSEQ)")
        .await
        .map_err(cmd_err("UID FETCH lease"))?
        .try_collect()
        .await
        .map_err(cmd_err("UID FETCH lease"))?;
    let f = fetched
        .iter()
        .find(|f| f.uid == Some(uid))
        .ok_or(IntakeError::Command {
            op: "UID FETCH lease",
            reason: "the marker is gone".into(),
        })?;
    let mut holder = None;
    let mut beat_at = 0;
    for flag in f.flags() {
        if let Flag::Custom(k) = flag {
            if let Some(h) = k.strip_prefix(HOLDER) {
                holder = Some(h.to_string());
            } else if let Some(t) = k.strip_prefix(BEAT) {
                beat_at = t.parse().unwrap_or(0);
            }
        }
    }
    let modseq = f.modseq.ok_or(IntakeError::Command {
        op: "UID FETCH lease",
        reason: "the server gave no MODSEQ (CONDSTORE, RFC 7162, is needed)".into(),
    })?;
    Ok((holder, beat_at, modseq))
}
