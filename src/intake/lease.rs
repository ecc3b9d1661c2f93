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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_imap::types::Flag;
use futures::TryStreamExt;
use secintake_oauth2::TokenSource;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

mod beats;

use super::imap::{cmd_err, connect, drain, Conn};
use super::IntakeError;
use crate::config::Imap;
use crate::health::Health;
use beats::{Beats, Report};

/// The folder holding the lease's marker message.
pub const LEASE_FOLDER: &str = "SecintakeLease";
const HOLDER: &str = "$SecintakeHolder_";
const BEAT: &str = "$SecintakeBeat_";

/// How long a heartbeat holds the lease; a third of it between beats.
/// Debug builds take SECINTAKE_TEST_LEASE_EXPIRY_MS.
pub fn expiry() -> Duration {
    crate::clock::test_duration("SECINTAKE_TEST_LEASE_EXPIRY_MS", Duration::from_secs(90))
}

/// How long one heartbeat lets this instance act: two thirds of
/// [`expiry`], so that it stops reading mail a third of the expiry (30 s)
/// before another instance may take the mailbox, also when its beats
/// stall (a connection that died silently answers nothing until
/// `imap.io_timeout`). Counted from when the beat was taken. Another
/// host compares the beat's time with its own clock: the hosts' clocks
/// may differ by what is left of the margin, 15 s less a second (the
/// beat is written in whole seconds; [`record_margin`] is the rest).
pub fn valid_for() -> Duration {
    expiry() * 2 / 3
}

/// How much of the lease must be left to start recording a group of mail
/// (the write transaction; parsing and DKIM lookups come before the
/// check): 15 s, half the margin before another instance may start.
pub fn record_margin() -> Duration {
    expiry() / 6
}

/// How long one heartbeat attempt may take, on the kept session and again
/// on a new one: a silently dead connection is given up on well before
/// the lease lapses.
fn beat_deadline() -> Duration {
    (expiry() / 6).max(Duration::from_secs(5))
}

/// Whether this instance holds the mailbox; intake reads mail only while
/// it does, and the lease is given up only once intake has stopped.
#[derive(Debug, Default)]
pub struct LeaseState {
    /// Until when the last heartbeat lets this instance act.
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
    changed: Notify,
    /// Intake loops running (see [`LeaseState::reading`]).
    readers: AtomicUsize,
    readers_done: Notify,
}

impl LeaseState {
    /// Whether the lease is held now: a heartbeat went through less than
    /// [`valid_for`] ago and no other instance holds it.
    pub fn is_held(&self) -> bool {
        self.is_held_for(Duration::ZERO)
    }

    /// Whether the lease is held for at least `margin` more.
    pub fn is_held_for(&self, margin: Duration) -> bool {
        let until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|u| tokio::time::Instant::now() + margin < u)
    }

    /// Waits until the lease is held.
    pub async fn wait_held(&self) {
        loop {
            let notified = self.changed.notified();
            if self.is_held() {
                return;
            }
            // A lapse has no event of its own: look again at least
            // once a second.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Renews from `at`, when the heartbeat that renewed it was taken
    /// (before it was written), not when its answer came back.
    fn renew(&self, at: tokio::time::Instant) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(at + valid_for());
        self.changed.notify_waiters();
    }

    fn lose(&self) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.changed.notify_waiters();
    }

    /// Marks an intake loop as running until the guard is dropped: a
    /// clean stop gives the lease up only after every one has ended, so
    /// that the instance taking over never reads the message still in
    /// hand here.
    pub fn reading(self: &Arc<Self>) -> Reader {
        self.readers.fetch_add(1, Ordering::AcqRel);
        Reader(self.clone())
    }

    async fn readers_done(&self) {
        loop {
            let notified = self.readers_done.notified();
            if self.readers.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// See [`LeaseState::reading`].
#[derive(Debug)]
pub struct Reader(Arc<LeaseState>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::AcqRel);
        self.0.readers_done.notify_waiters();
    }
}

/// This instance's name in the lease: the host and a hash of the state
/// file's path, as a keyword may spell it.
pub fn instance_name(state_path: &std::path::Path) -> String {
    use sha2::Digest;
    // uname(2), not /proc/sys/kernel/hostname: the shipped unit's
    // ProcSubset=pid hides /proc/sys, and every host then had the same
    // name, so that two hosts on the default state path each took the
    // other's lease for their own.
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
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
    cfg: Imap,
    tokens: Option<Arc<TokenSource>>,
    /// This instance's name ([`instance_name`]).
    me: String,
    state: Arc<LeaseState>,
    /// With a new state file (no `--adopt`): the folder to look for mail
    /// handled before in, once the lease is held.
    fresh_check: Option<String>,
}

impl Lease {
    /// The lease of `cfg`'s mailbox; `check_fresh`: the state file is new
    /// and not adopted, so mail handled before refuses the start.
    pub fn new(
        cfg: &crate::config::Config,
        tokens: Option<Arc<TokenSource>>,
        state: Arc<LeaseState>,
        check_fresh: bool,
    ) -> Lease {
        Lease {
            cfg: cfg.imap.clone(),
            tokens,
            me: instance_name(&cfg.storage.path),
            state,
            fresh_check: check_fresh.then(|| cfg.imap.folder.clone()),
        }
    }

    /// Holds the lease until `shutdown`: takes it (waiting out another
    /// holder's expiry only when its heartbeat is already old), then
    /// renews it every third of [`expiry`], over one kept IMAP session.
    /// Ends with an error only when the new-state check finds mail
    /// handled before, which stops the daemon.
    /// `health` is told of each heartbeat's outcome, for `status`,
    /// `STATUS=`, the metrics and alerts.
    pub async fn run(self, health: Health, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Lease {
            cfg,
            tokens,
            me,
            state,
            mut fresh_check,
        } = self;
        let every = expiry() / 3;
        let mut beats = Beats {
            user: cfg.username.clone(),
            me,
            state,
            report: Report::start(health),
            failures: 0,
            refused_by: None,
            was_held: false,
        };
        let mut link = Link {
            cfg,
            tokens,
            session: None,
        };
        loop {
            // A beat in flight at shutdown is dropped (the lease is given
            // up or runs out either way).
            let beat = tokio::select! {
                beat = link.beat(&beats.me) => beat,
                _ = shutdown.cancelled() => {
                    link.session = None;
                    stop(&mut link, &beats.state, &beats.me).await;
                    return Ok(());
                }
            };
            let wait = match beat {
                Ok(Outcome::Held { at }) => {
                    if let Some(folder) = &fresh_check {
                        match link.handled_before(folder).await {
                            Ok(0) => fresh_check = None,
                            Ok(n) => {
                                link.release(&beats.me).await;
                                return Err(handled_before_error(n, folder, &beats.user));
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "cannot look for handled mail yet; retrying");
                                beats.failures = beats.failures.saturating_add(1);
                                let wait = super::reconnect_delay(beats.failures).min(every);
                                tokio::select! {
                                    _ = tokio::time::sleep(wait) => continue,
                                    _ = shutdown.cancelled() => return Ok(()),
                                }
                            }
                        }
                    }
                    beats.held(at);
                    every
                }
                Ok(Outcome::HeldBy { holder, ago }) => {
                    beats.held_by(holder, ago);
                    every
                }
                Err(e) => beats.failed(&e, every),
            };
            beats.note_lapse();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => {
                    stop(&mut link, &beats.state, &beats.me).await;
                    return Ok(());
                }
            }
        }
    }
}

/// At shutdown: the lease is given up only once intake has stopped, so
/// the message in hand is committed and flagged before another instance
/// may read it. If intake takes longer than 20 s (the daemon gives its
/// loops 30), the lease is left to run out instead.
async fn stop(link: &mut Link, state: &LeaseState, me: &str) {
    let stopped = tokio::time::timeout(Duration::from_secs(20), state.readers_done()).await;
    state.lose();
    if stopped.is_ok() {
        link.release(me).await;
    } else {
        tracing::info!("intake is still stopping: the lease is left to run out");
        link.logout().await;
    }
}

fn handled_before_error(n: usize, folder: &str, user: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the state file is new, but {n} message(s) in {folder:?} of {user} were handled by \
         secintake before (keyword {}): the state that answered them is gone. Restore it from \
         a backup (README: backups), or start once with `secintake run --adopt` to record that \
         mail without answering it",
        crate::cases::HANDLED_KEYWORD
    )
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

    /// One attempt: the beat's commands within [`beat_deadline`], since a
    /// kept connection that died silently would otherwise hold the beat
    /// up until `imap.io_timeout`, and the lease could lapse meanwhile. A
    /// new session's connect and login are bounded by their own timeouts
    /// and keep their errors (a refused login is one, slowed down on
    /// purpose by the server): counted against the deadline they made a
    /// slow refusal read as the lease's own failure.
    async fn try_beat(&mut self, me: &str) -> Result<Outcome, IntakeError> {
        let session = self.session().await?;
        let attempt = async {
            let result = beat_in(session, me).await;
            drain(session);
            result
        };
        let result = tokio::time::timeout(beat_deadline(), attempt)
            .await
            .unwrap_or_else(|_| {
                Err(IntakeError::Command {
                    op: "lease heartbeat",
                    reason: format!("no answer within {} s", beat_deadline().as_secs()),
                })
            });
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

    /// On a clean stop, gives the lease up at once (when this instance
    /// holds it), so that the next start (a restart, a host move) need
    /// not wait for it to expire: on the kept session, then once on a new
    /// one, within 5 s.
    async fn release(&mut self, me: &str) {
        let reused = self.session.is_some();
        let released = tokio::time::timeout(Duration::from_secs(5), async {
            match self.give_up(me).await {
                Err(e) if reused => {
                    tracing::debug!(error = %e, "the kept lease session failed; opening a new one");
                    self.session = None;
                    self.give_up(me).await
                }
                result => result,
            }
        })
        .await;
        match released {
            Ok(Ok(true)) => tracing::info!("the mailbox's lease given up"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "could not give the lease up; it expires"),
            Err(_) => tracing::debug!("giving the lease up took too long; it expires"),
        }
        self.logout().await;
    }

    /// Clears the marker's holder if it is `me`; whether it was.
    async fn give_up(&mut self, me: &str) -> Result<bool, IntakeError> {
        {
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
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }

    async fn logout(&mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        }
    }
}

enum Outcome {
    /// Held, by a heartbeat taken at `at`.
    Held {
        at: tokio::time::Instant,
    },
    HeldBy {
        holder: String,
        ago: u64,
    },
}

async fn beat_in(
    session: &mut async_imap::Session<Conn>,
    me: &str,
) -> Result<Outcome, IntakeError> {
    // The folder exists after the first start; CREATE only when SELECT
    // says no (an error of the connection itself ends the attempt).
    if let Err(e) = session.select(LEASE_FOLDER).await {
        if !matches!(e, async_imap::error::Error::No(_)) {
            return Err(cmd_err("SELECT lease folder")(e));
        }
        session
            .create(LEASE_FOLDER)
            .await
            .map_err(cmd_err("CREATE lease folder"))?;
        session
            .select(LEASE_FOLDER)
            .await
            .map_err(cmd_err("SELECT lease folder"))?;
    }
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
        let (now, at) = (now_secs(), tokio::time::Instant::now());
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
            return Ok(Outcome::Held { at });
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
