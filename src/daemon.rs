//! The daemon: four long-lived loops sharing one state file.
//!
//! intake (IMAP) → SQLite → outbox (SMTP), plus the health monitor and the
//! deadline scheduler. They coordinate through SQLite and `Notify` wake-ups, never through in-memory
//! queues alone, so a crash loses nothing. One shutdown token is passed
//! down; each loop finishes the message in hand and returns.

use crate::clock::Clock;
use crate::config::Config;
use crate::health::Health;
use crate::intake::Intake;
use crate::store::{Db, Store};
use crate::templates::Templates;
use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long loops get to finish after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the daemon until `shutdown` is cancelled or a loop fails fatally.
pub async fn run(
    cfg: Config,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    adopt: bool,
) -> anyhow::Result<()> {
    let templates = Arc::new(Templates::load(cfg.templates.dir.as_deref())?);
    state_not_lost(&cfg)?;
    let store = open_state(&cfg, clock.now()).await?;
    // Held until the daemon exits (dropped with this frame).
    let _lock = lock_state(&cfg)?;
    let identity = file_identity(&cfg.storage.path)?;
    // A state file that has recorded nothing yet: on a mailbox secintake
    // handled before, that is a lost or forgotten state, not a first start.
    let fresh = store.is_fresh()?;
    let db = Db::new(store);
    let cfg = Arc::new(cfg);
    let outbox_wake = Arc::new(Notify::new());
    let health = Health::load(
        db.clone(),
        cfg.clone(),
        templates.clone(),
        clock.clone(),
        outbox_wake.clone(),
        alert_relay(&cfg),
    )
    .await?;

    let deadline_wake = Arc::new(Notify::new());
    let backlog = Arc::new(crate::gate::BacklogGate::default());
    let tokens = cfg.token_source();
    let lease = Arc::new(crate::intake::lease::LeaseState::default());
    let intake = Intake {
        lease: lease.clone(),
        folder: cfg.imap.folder.clone(),
        dkim: dkim_verifier(&cfg)?,
        tokens: tokens.clone(),
        db: db.clone(),
        cfg: cfg.clone(),
        templates: templates.clone(),
        clock: clock.clone(),
        outbox: outbox_wake.clone(),
        deadlines: deadline_wake.clone(),
        health: health.clone(),
        backlog: backlog.clone(),
    };
    let scheduler = crate::scheduler::Scheduler {
        db: db.clone(),
        cfg: cfg.clone(),
        templates: templates.clone(),
        clock: clock.clone(),
        outbox: outbox_wake.clone(),
        wake: deadline_wake,
        backlog: backlog.clone(),
        retention_at: Arc::default(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    let lease = crate::intake::lease::Lease::new(&cfg, tokens.clone(), lease, fresh && !adopt);
    tasks.spawn(lease.run(health.clone(), shutdown.clone()));
    spawn_intakes(&mut tasks, intake, &shutdown);
    let t = shutdown.clone();
    let (odb, osmtp, oclock, owake, ohealth) = (
        db.clone(),
        crate::outbox::Relay {
            section: crate::outbox::Section::Smtp,
            cfg: cfg.smtp.clone(),
            tokens,
        },
        clock.clone(),
        outbox_wake.clone(),
        health.clone(),
    );
    tasks.spawn(async move {
        crate::outbox::run(odb, osmtp, oclock, owake, ohealth, backlog, t)
            .await
            .context("outbox")
    });
    spawn_observers(&mut tasks, &cfg, &db, &clock, health.clone(), &shutdown).await?;
    let (t, state_path) = (shutdown.clone(), cfg.storage.path.clone());
    tasks.spawn(watch_state(state_path, identity, health.clone(), t));
    let t = shutdown.clone();
    tasks.spawn(async move {
        scheduler.run(t).await;
        Ok(())
    });
    // Wake the outbox once at start: mail queued before a crash is due.
    outbox_wake.notify_one();

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(mailbox = %cfg.mailbox.address, state = %cfg.storage.path.display(), "secintake running");

    let result = until_shutdown(&mut tasks, &shutdown).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: finishing the message in hand");
    drain(tasks).await;
    tracing::info!("stopped");
    result
}

/// The loops that watch the others: health (alerts), systemd's watchdog
/// and `STATUS=`, and the metrics endpoint when `[metrics] listen` is set.
async fn spawn_observers(
    tasks: &mut Loops,
    cfg: &Config,
    db: &Db,
    clock: &Arc<dyn Clock>,
    health: Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    tasks.spawn(crate::watchdog::run(
        db.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("metrics.listen {addr}: cannot listen"))?;
        tasks.spawn(crate::metrics::serve(
            listener,
            db.clone(),
            clock.clone(),
            health.clone(),
            shutdown.clone(),
        ));
    }
    let t = shutdown.clone();
    tasks.spawn(async move {
        health.run(t).await;
        Ok(())
    });
    Ok(())
}

/// The DKIM and ARC verifier `[handler_auth] accept = ["dkim"]` and
/// `arc_sealers` ask for.
fn dkim_verifier(cfg: &Config) -> anyhow::Result<Option<Arc<crate::dkim::Verifier>>> {
    if !cfg.handler_auth.accept_dkim && cfg.handler_auth.arc_sealers.is_empty() {
        return Ok(None);
    }
    let v = crate::dkim::Verifier::new(&cfg.handler_auth.dns_servers)
        .map_err(|e| anyhow::anyhow!("handler_auth.accept = dkim: {e}"))?;
    Ok(Some(Arc::new(v)))
}

type Loops = tokio::task::JoinSet<anyhow::Result<()>>;

/// One intake loop and connection per watched folder: IDLE watches one
/// folder per connection (RFC 2177), and a folder's failure (one that does
/// not exist, say) does not hold up the others.
fn spawn_intakes(tasks: &mut Loops, intake: Intake, shutdown: &CancellationToken) {
    for folder in &intake.cfg.imap.more_folders {
        let more = Intake {
            folder: folder.clone(),
            ..intake.clone()
        };
        let t = shutdown.clone();
        tasks.spawn(async move {
            more.run(t).await;
            Ok(())
        });
    }
    if intake.cfg.imap.junk_auto {
        let junk = intake.clone();
        let t = shutdown.clone();
        tasks.spawn(async move {
            junk.run_junk(t).await;
            Ok(())
        });
    }
    let t = shutdown.clone();
    tasks.spawn(async move {
        intake.run(t).await;
        Ok(())
    });
}

/// Waits for shutdown, or for a loop to end on its own, which is fatal
/// (and then asks the others to stop).
async fn until_shutdown(tasks: &mut Loops, shutdown: &CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        // Shutdown first: once it is requested the loops end on purpose,
        // and that must not read as a loop dying.
        biased;
        _ = shutdown.cancelled() => Ok(()),
        Some(r) = tasks.join_next() => {
            shutdown.cancel();
            match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("a daemon loop stopped unexpectedly")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("a daemon loop crashed: {e}")),
            }
        }
    }
}

/// The lock file's path: `<storage.path>.lock`.
fn lock_path(cfg: &Config) -> std::path::PathBuf {
    let mut path = cfg.storage.path.clone().into_os_string();
    path.push(".lock");
    std::path::PathBuf::from(path)
}

/// Refuses to start on a state file that is gone or empty after a daemon
/// used it (its lock file stays): starting afresh would answer every
/// message in the mailbox again. A deleted state file once re-opened 60
/// reports under re-used case ids; a zero-length one re-acknowledged 40
/// (issue 12). The lock file is made only after the first start has
/// created and migrated the state, so a first start is never refused.
fn state_not_lost(cfg: &Config) -> anyhow::Result<()> {
    let path = &cfg.storage.path;
    if !lock_path(cfg).exists() {
        return Ok(());
    }
    let why = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "is gone",
        Ok(m) if m.len() == 0 => "is empty",
        _ => return Ok(()),
    };
    anyhow::bail!(
        "storage.path {}: the state file {why}, but a daemon used it before ({} exists): \
         restore it from a backup (secintake backup), or, to start afresh and answer every \
         message in the mailbox again, delete {}",
        path.display(),
        lock_path(cfg).display(),
        lock_path(cfg).display()
    )
}

/// The (device, inode) of `path`, to notice the state file replaced.
fn file_identity(path: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| format!("storage.path {}", path.display()))?;
    Ok((m.dev(), m.ino()))
}

/// Ends the daemon with an error when the state file is deleted, replaced
/// or emptied under it: writes would go to a file nobody will read again
/// (issue 12: 60 reports were recorded into a deleted file). Checked every
/// [`STATE_CHECK_EVERY`].
async fn watch_state(
    path: std::path::PathBuf,
    identity: (u64, u64),
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(STATE_CHECK_EVERY) => {}
        }
        let now = std::fs::metadata(&path);
        let why = match &now {
            Err(_) => Some("was deleted"),
            Ok(m) if (m.dev(), m.ino()) != identity => Some("was replaced by another file"),
            Ok(m) if m.len() == 0 => Some("was emptied"),
            Ok(_) => None,
        };
        if let Some(why) = why {
            let error = format!(
                "the state file {} {why} while the daemon ran: stopping before anything else \
                 is recorded into a file nobody reads",
                path.display()
            );
            // The handlers learn it through [alerts] command before the
            // daemon ends (mail would be queued into the lost file).
            health.state_lost(&error).await;
            anyhow::bail!("{error}");
        }
    }
}

/// How often [`watch_state`] looks at the state file.
const STATE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// `[alert_relay]`, for the alerts that must not depend on `[smtp]`.
fn alert_relay(cfg: &Config) -> Option<Arc<dyn crate::health::AlertRelay>> {
    let relay = cfg.alerts.relay.clone()?;
    Some(Arc::new(crate::outbox::SecondRelay::new(
        relay,
        cfg.mailbox.address.clone(),
    )))
}

/// Takes the state file's daemon lock (`<storage.path>.lock`, 0600), or
/// says which daemon holds it: two daemons on one state file both sent
/// every acknowledgement (issue 12). The kernel drops the lock when the
/// process dies, so a SIGKILL leaves nothing stale. CLI commands do not
/// take it: they run beside the daemon.
pub(crate) fn lock_state(cfg: &Config) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = lock_path(cfg);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("storage.path: cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // The holder's pid, for the message a second daemon prints.
            file.set_len(0)?;
            file.rewind()?;
            write!(file, "{}", std::process::id())?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            anyhow::bail!(
                "another secintake daemon (pid {}) is running on the state file {}: two \
                 daemons would send every letter twice",
                pid.trim(),
                cfg.storage.path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Opens (creating and migrating) the state file `storage.path` names.
async fn open_state(cfg: &Config, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Store> {
    if let Some(parent) = cfg.storage.path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            anyhow::bail!(
                "storage.path {}: folder {} does not exist",
                cfg.storage.path.display(),
                parent.display()
            );
        }
    }
    if std::fs::metadata(&cfg.storage.path).is_ok_and(|m| m.len() == 0) {
        anyhow::bail!(
            "storage.path {}: the state file is empty (0 bytes), which is no state: restore it \
             from a backup (secintake backup), or delete it to start afresh",
            cfg.storage.path.display()
        );
    }
    let path = cfg.storage.path.clone();
    let store = tokio::task::spawn_blocking(move || -> anyhow::Result<Store> {
        let mut store = Store::open(&path)?;
        // Before READY: a corrupt file ("database disk image is malformed"
        // on every message, forever, with a healthy status) or one that
        // takes no writes (READY, then failing on every reconnect) is
        // refused here, with the reason.
        if let Some(problem) = store.quick_check()? {
            anyhow::bail!(
                "storage.path {}: the state file is damaged ({problem}): restore it from a \
                 backup (secintake backup)",
                path.display()
            );
        }
        match crate::store::probe_write(&mut store, now) {
            Ok(()) => {}
            // A full disk passes when space is freed: start, and let the
            // loops wait for it (paused, alerted, seen in status) rather
            // than have the unit restart the daemon every few seconds.
            Err(e) if e.is_disk_full() => {
                tracing::error!(error = %e, "the state file's disk is full: starting paused");
            }
            Err(e) => anyhow::bail!(
                "storage.path {}: the state file takes no writes ({e}): fix its permissions \
                 or mount",
                path.display()
            ),
        }
        Ok(store)
    })
    .await
    .context("opening the state file")??;
    Ok(store)
}

/// Lets the loops finish the message in hand, for at most
/// [`SHUTDOWN_GRACE`]; then they are dropped (aborted).
async fn drain(mut tasks: Loops) {
    let drain = async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::error!(error = %format!("{e:#}"), "loop ended with an error");
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            "loops did not stop within {} s; exiting anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}
