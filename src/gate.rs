//! The backlog gate: the one priority rule between the loops sharing the
//! state file. Intake holds it while it records a backlog; the outbox and
//! the scheduler defer their write transactions (for at most
//! [`BacklogGate::MAX_WAIT`]) while it is held.

use std::time::Duration;
use tokio::sync::Notify;

/// Lets intake have the state file to itself while it works through a
/// backlog: recording 5,000 waiting reports went from ~5,000/s alone to
/// ~2,000/s with the outbox committing its sends in between. The outbox
/// waits (at most [`BacklogGate::MAX_WAIT`] per round, so acknowledgements
/// are never starved) and then sends everything queued meanwhile.
#[derive(Debug, Default)]
pub struct BacklogGate {
    busy: std::sync::atomic::AtomicBool,
    idle: Notify,
}

impl BacklogGate {
    pub const MAX_WAIT: Duration = Duration::from_secs(10);

    /// Marks a backlog in progress until the guard is dropped.
    pub fn hold(&self) -> BusyGuard<'_> {
        self.set(true);
        BusyGuard(self)
    }

    fn set(&self, busy: bool) {
        self.busy.store(busy, std::sync::atomic::Ordering::SeqCst);
        if !busy {
            self.idle.notify_waiters();
        }
    }

    /// Whether a backlog is being recorded right now.
    pub fn is_busy(&self) -> bool {
        self.busy.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits while a backlog is being recorded, for at most `MAX_WAIT`.
    pub async fn wait_idle(&self) {
        let deadline = tokio::time::Instant::now() + Self::MAX_WAIT;
        while self.busy.load(std::sync::atomic::Ordering::SeqCst) {
            let idle = self.idle.notified();
            if !self.busy.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return;
            }
        }
    }
}

/// Holds the gate busy until dropped (however `sync` returns).
pub struct BusyGuard<'a>(&'a BacklogGate);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}
