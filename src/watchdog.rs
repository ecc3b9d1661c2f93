//! systemd's watchdog and `STATUS=` line (issue 12): a loop that asks the
//! store worker, the one every other loop goes through, for a count of
//! open cases and waiting mail, and tells systemd `WATCHDOG=1` only when
//! it answered in time. A daemon whose store is wedged (a transaction that
//! never ends, a worker that died) stops pinging, and systemd restarts it
//! after `WatchdogSec=`. A state file that takes no writes answers reads:
//! the daemon is paused by design then, not hung, and keeps pinging.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::store::{self, Db, StoreError};

/// Without a watchdog, how often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(30);

/// Runs until `shutdown`; does nothing but refresh `STATUS=` when
/// systemd set no `WATCHDOG_USEC`.
pub async fn run(db: Db, health: Health, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec);
    // Twice per period, as sd_watchdog_enabled(3) advises.
    let every = if watchdog {
        Duration::from_micros(usec / 2).max(Duration::from_millis(100))
    } else {
        STATUS_EVERY
    };
    loop {
        let answer = tokio::time::timeout(every, db.call(counts)).await;
        match answer {
            Ok(Ok((open, waiting))) => {
                let line = format!(
                    "{open} open case(s); {waiting} mail(s) waiting; {}",
                    health.summary()
                );
                notify(&line, watchdog);
            }
            Ok(Err(e)) => {
                notify(&format!("cannot read the state file: {e}"), watchdog);
            }
            Err(_) => {
                tracing::error!(
                    waited_ms = every.as_millis() as u64,
                    "the state file's worker did not answer: not telling systemd the daemon is alive"
                );
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

fn counts(s: &mut store::Store) -> Result<(i64, u64), StoreError> {
    let open = store::count_not_closed(s.conn())?;
    let (waiting, _) = store::outbox_backlog(s.conn())?;
    Ok((open, waiting))
}

fn notify(status: &str, watchdog: bool) {
    let mut states = vec![sd_notify::NotifyState::Status(status)];
    if watchdog {
        states.push(sd_notify::NotifyState::Watchdog);
    }
    let _ = sd_notify::notify(false, &states);
}
