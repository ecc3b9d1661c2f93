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
) -> anyhow::Result<()> {
    let templates = Arc::new(Templates::load(cfg.templates.dir.as_deref())?);
    let store = open_state(&cfg).await?;
    // Held until the daemon exits (dropped with this frame).
    let _lock = lock_state(&cfg)?;
    let db = Db::new(store);
    let cfg = Arc::new(cfg);
    let outbox_wake = Arc::new(Notify::new());
    let health = Health::load(
        db.clone(),
        cfg.clone(),
        templates.clone(),
        clock.clone(),
        outbox_wake.clone(),
    )
    .await?;

    let deadline_wake = Arc::new(Notify::new());
    let backlog = Arc::new(crate::gate::BacklogGate::default());
    let dkim = if cfg.handler_auth.accept_dkim {
        let v = crate::dkim::Verifier::new(&cfg.handler_auth.dns_servers)
            .map_err(|e| anyhow::anyhow!("handler_auth.accept = dkim: {e}"))?;
        Some(Arc::new(v))
    } else {
        None
    };
    let intake = Intake {
        folder: cfg.imap.folder.clone(),
        dkim,
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
    };
    let mut tasks = tokio::task::JoinSet::new();
    // One loop and one connection per watched folder: IDLE watches one
    // folder per connection (RFC 2177), and a folder's failure (one that
    // does not exist, say) does not hold up the others.
    for folder in &cfg.imap.more_folders {
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
    if cfg.imap.junk_auto {
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
    let t = shutdown.clone();
    let (odb, osmtp, oclock, owake, ohealth) = (
        db.clone(),
        cfg.smtp.clone(),
        clock.clone(),
        outbox_wake.clone(),
        health.clone(),
    );
    tasks.spawn(async move {
        crate::outbox::run(odb, osmtp, oclock, owake, ohealth, backlog, t)
            .await
            .context("outbox")
    });
    let t = shutdown.clone();
    tasks.spawn(async move {
        health.run(t).await;
        Ok(())
    });
    let t = shutdown.clone();
    tasks.spawn(async move {
        scheduler.run(t).await;
        Ok(())
    });
    // Wake the outbox once at start: mail queued before a crash is due.
    outbox_wake.notify_one();

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(mailbox = %cfg.mailbox.address, state = %cfg.storage.path.display(), "secintake running");

    let mut result = Ok(());
    tokio::select! {
        // Shutdown first: once it is requested the loops end on purpose,
        // and that must not read as a loop dying.
        biased;
        _ = shutdown.cancelled() => {}
        Some(r) = tasks.join_next() => {
            // A loop ended on its own: that is fatal.
            result = match r {
                Ok(Ok(())) => Err(anyhow::anyhow!("a daemon loop stopped unexpectedly")),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("a daemon loop crashed: {e}")),
            };
            shutdown.cancel();
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down: finishing the message in hand");
    drain(tasks).await;
    tracing::info!("stopped");
    result
}

/// Takes the state file's daemon lock (`<storage.path>.lock`, 0600), or
/// says which daemon holds it: two daemons on one state file both sent
/// every acknowledgement (issue 12). The kernel drops the lock when the
/// process dies, so a SIGKILL leaves nothing stale. CLI commands do not
/// take it: they run beside the daemon.
fn lock_state(cfg: &Config) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut path = cfg.storage.path.clone().into_os_string();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
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
async fn open_state(cfg: &Config) -> anyhow::Result<Store> {
    if let Some(parent) = cfg.storage.path.parent() {
        if !parent.as_os_str().is_empty() && !parent.exists() {
            anyhow::bail!(
                "storage.path {}: folder {} does not exist",
                cfg.storage.path.display(),
                parent.display()
            );
        }
    }
    let path = cfg.storage.path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .context("opening the state file")??;
    Ok(store)
}

/// Lets the loops finish the message in hand, for at most
/// [`SHUTDOWN_GRACE`]; then they are dropped (aborted).
async fn drain(mut tasks: tokio::task::JoinSet<anyhow::Result<()>>) {
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
