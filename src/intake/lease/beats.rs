//! The heartbeats' outcomes: what each means for this instance (the
//! lease's state, the log) and for health, told through one ordered task.

use std::sync::Arc;
use std::time::Duration;

use super::{expiry, valid_for, LeaseState};
use crate::health::Health;
use crate::intake::IntakeError;

/// What the heartbeats found so far, and what follows from each.
pub(super) struct Beats {
    /// The mailbox's login, for the log lines.
    pub(super) user: String,
    pub(super) me: String,
    pub(super) state: Arc<LeaseState>,
    pub(super) report: Report,
    pub(super) failures: u32,
    /// The other instance last logged as holding the mailbox.
    pub(super) refused_by: Option<String>,
    /// Whether the last beat left the lease held, for the log lines.
    pub(super) was_held: bool,
}

impl Beats {
    pub(super) fn held(&mut self, at: tokio::time::Instant) {
        self.failures = 0;
        if !self.was_held {
            tracing::info!(instance = %self.me, "this instance holds the mailbox");
        }
        self.was_held = true;
        self.refused_by = None;
        self.state.renew(at);
        self.report.send(Event::Held);
    }

    pub(super) fn held_by(&mut self, holder: String, ago: u64) {
        self.failures = 0;
        if self.was_held {
            tracing::error!(holder = %holder, "another secintake instance took the mailbox: reading no more mail");
        }
        self.was_held = false;
        self.state.lose();
        self.report.send(Event::Standby(holder.clone(), ago));
        if self.refused_by.as_deref() != Some(holder.as_str()) {
            tracing::error!(
                "mailbox {}: another secintake instance ({holder}) holds it (heartbeat {ago} s \
                 ago); two instances would answer every report twice, so this one reads no mail \
                 and sends none it did not record; it takes over {} s after that instance's \
                 last heartbeat",
                self.user,
                expiry().as_secs()
            );
            self.refused_by = Some(holder);
        }
    }

    /// A failed beat; how long to wait for the next. The lease holds
    /// until its last beat's `valid_for` runs out; meanwhile even a
    /// refused login is retried as soon as any failure (it may be a
    /// server's passing refusal). After that, a refused login waits as
    /// intake's does (hammering it gets accounts locked), and the failure
    /// is health's to alert.
    pub(super) fn failed(&mut self, e: &IntakeError, every: Duration) -> Duration {
        self.failures = self.failures.saturating_add(1);
        tracing::debug!(error = %e, "lease heartbeat failed; retrying");
        let mut wait = crate::intake::reconnect_delay(self.failures).min(every);
        if self.state.is_held() {
            return wait;
        }
        if matches!(e, IntakeError::Credential { .. }) {
            wait = crate::health::credential_retry();
        }
        // A server that cannot be reached or refuses the login is intake's
        // failure too, alerted as IMAP's; the rest is the lease's own (no
        // CONDSTORE, a folder it may not create, beats that time out).
        let own = !matches!(
            e,
            IntakeError::Connect { .. }
                | IntakeError::Tls { .. }
                | IntakeError::Login { .. }
                | IntakeError::Credential { .. }
        );
        if own {
            self.report.send(Event::Failing(e.to_string()));
        }
        wait
    }

    /// Logs, once, that the lease ran out while beats failed.
    pub(super) fn note_lapse(&mut self) {
        if self.was_held && !self.state.is_held() {
            tracing::warn!(
                "no heartbeat of the mailbox's lease for {} s: reading no mail until one goes \
                 through (another instance may take the mailbox {} s after the last)",
                valid_for().as_secs(),
                expiry().as_secs()
            );
            self.was_held = false;
        }
    }
}

/// What a heartbeat found, for health (`status`, `STATUS=`, metrics,
/// alerts).
enum Event {
    Held,
    Standby(String, u64),
    Failing(String),
}

/// Hands [`Event`]s to health through one task, in order, without
/// holding the beats up: a health write may wait for intake's
/// transactions through a backlog. When writes fall behind, events are
/// dropped (the next beat sends another).
pub(super) struct Report(tokio::sync::mpsc::Sender<Event>);

impl Report {
    pub(super) fn start(health: Health) -> Report {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match event {
                    Event::Held => health.lease_held(valid_for()).await,
                    Event::Standby(holder, ago) => health.lease_standby(&holder, ago).await,
                    Event::Failing(error) => health.lease_failing(&error).await,
                }
            }
        });
        Report(tx)
    }

    fn send(&self, event: Event) {
        if self.0.try_send(event).is_err() {
            tracing::debug!("lease health writes are behind; one skipped");
        }
    }
}
