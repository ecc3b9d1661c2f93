//! Whether this instance holds the mailbox (issue 12's lease, kept by
//! `intake::lease`), as health: for `secintake status` (a row in the
//! state file, component [`LEASE`]), systemd's `STATUS=` line and the
//! metrics. A second instance used to say so only in its log.

use super::{Component, Health};
use crate::clock::fmt_ts;
use crate::store;
use chrono::{DateTime, Utc};

/// The health row's component name for the mailbox's lease.
pub const LEASE: &str = "lease";

/// How the row's `last_error` begins while another instance holds the
/// mailbox (a standby); any other error is the lease failing.
pub const STANDBY: &str = "another secintake instance holds the mailbox";

/// The lease as this instance last saw it.
#[derive(Debug, Default)]
pub(super) struct LeaseHealth {
    /// When this instance last renewed the lease.
    held_at: Option<DateTime<Utc>>,
    /// Until when that renewal lets it act (`intake::lease`).
    held_until: Option<DateTime<Utc>>,
    /// Since when, and by whom, it has been kept out (standby).
    standby: Option<(DateTime<Utc>, String)>,
}

impl Health {
    /// A heartbeat renewed this instance's lease, for `valid_for`: the
    /// row says so (as [`Health::ok`] writes it, with the recovery notice
    /// when the lease had failed and was alerted).
    pub async fn lease_held(&self, valid_for: std::time::Duration) {
        let now = self.clock.now();
        let was_standby = {
            let mut l = self.lease.lock().unwrap_or_else(|e| e.into_inner());
            l.held_at = Some(now);
            l.held_until = Some(crate::clock::add(now, valid_for));
            l.standby.take().is_some()
        };
        if was_standby {
            tracing::info!("this instance now holds the mailbox (the other one's lease ended)");
        }
        self.ok(Component::Lease, now).await;
    }

    /// Heartbeats fail and the lease has run out: this instance reads no
    /// mail. A failing part, alerted after `limits.alert_after` (mail
    /// stopped with nobody told, before).
    pub async fn lease_failing(&self, error: &str) {
        let now = self.clock.now();
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held_until = None;
        self.failing(Component::Lease, now, error).await;
    }

    /// Another instance holds the mailbox (its heartbeat `ago` seconds
    /// old): this one is a standby and reads no mail.
    pub async fn lease_standby(&self, holder: &str, ago: u64) {
        let now = self.clock.now();
        let (since, held_at) = {
            let mut l = self.lease.lock().unwrap_or_else(|e| e.into_inner());
            let since = match &l.standby {
                Some((since, _)) => *since,
                None => now,
            };
            l.standby = Some((since, holder.to_owned()));
            l.held_until = None;
            (since, l.held_at)
        };
        // The next renewal writes its row at once (`ok` writes at most
        // every 10 s otherwise), so that STANDBY does not outlive it.
        self.with_state(Component::Lease, |st| st.last_ok_written = None);
        self.put_lease(store::Health {
            component: LEASE.into(),
            last_ok_at: held_at.map(fmt_ts),
            failing_since: Some(fmt_ts(since)),
            last_error: Some(format!(
                "{STANDBY}: {holder} (heartbeat {ago} s ago); this one reads no mail until \
                 that lease ends"
            )),
            alerted: false,
        })
        .await;
    }

    /// Whether this instance holds the mailbox now: not before its first
    /// heartbeat, nor once the last one has run out (beats failing), nor
    /// while another instance holds it.
    pub fn holds_mailbox(&self) -> bool {
        let now = self.clock.now();
        let l = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        l.held_until.is_some_and(|t| now < t) && l.standby.is_none()
    }

    /// The instance that keeps this one out, if any.
    pub(super) fn standby_for(&self) -> Option<String> {
        let l = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        l.standby.as_ref().map(|(_, holder)| holder.clone())
    }

    /// Records the row for `status`. A failed write is left to the loops
    /// that write the state file all the time: they notice and alert.
    async fn put_lease(&self, row: store::Health) {
        let res = self
            .db
            .call(move |s| store::put_health(s.conn(), &row))
            .await;
        if let Err(e) = res {
            tracing::debug!(error = %e, "cannot record the lease's state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{parse_ts, ManualClock};
    use crate::config::Config;
    use crate::store::{Db, Store};
    use crate::templates::Templates;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_standby_shows_in_the_row_the_summary_and_ends_when_the_lease_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(&dir.path().join("s.db")).unwrap());
        let clock = ManualClock::new(parse_ts("2026-03-01T12:00:00Z").unwrap());
        let health = Health::load(
            db.clone(),
            Arc::new(Config::example()),
            Arc::new(Templates::builtin()),
            Arc::new(clock.clone()),
            Arc::new(tokio::sync::Notify::new()),
            None,
        )
        .await
        .unwrap();
        let row = || {
            let db = db.clone();
            async move { db.call(|s| store::health(s.conn(), LEASE)).await.unwrap() }
        };
        assert!(!health.holds_mailbox(), "nothing held before a heartbeat");
        assert!(row().await.last_ok_at.is_none());

        health.lease_standby("hostb_1234abcd", 12).await;
        clock.advance(std::time::Duration::from_secs(30));
        health.lease_standby("hostb_1234abcd", 42).await;
        let r = row().await;
        assert_eq!(r.failing_since.as_deref(), Some("2026-03-01T12:00:00.000Z"));
        assert!(r
            .last_error
            .unwrap()
            .contains("hostb_1234abcd (heartbeat 42 s ago)"));
        assert!(!health.holds_mailbox());
        assert!(
            health
                .summary()
                .ends_with("; STANDBY: hostb_1234abcd holds the mailbox"),
            "{}",
            health.summary()
        );

        health.lease_held(std::time::Duration::from_secs(60)).await;
        let r = row().await;
        assert_eq!(r.failing_since, None);
        assert_eq!(r.last_ok_at.as_deref(), Some("2026-03-01T12:00:30.000Z"));
        assert!(health.holds_mailbox());
        assert!(!health.summary().contains("STANDBY"));
        // Beats failing: the lease runs out by itself, and is a failing
        // part once the lease task says so.
        clock.advance(std::time::Duration::from_secs(61));
        assert!(!health.holds_mailbox(), "held past its last beat");
        health
            .lease_failing("IMAP lease heartbeat failed: no answer")
            .await;
        assert!(health.failing_parts().contains(&("lease", true)));
        assert!(
            health.summary().contains("mailbox lease FAILING since"),
            "{}",
            health.summary()
        );
        assert!(row().await.failing_since.is_some());
        health.lease_held(std::time::Duration::from_secs(60)).await;
        assert!(health.failing_parts().contains(&("lease", false)));
        assert_eq!(row().await.failing_since, None);
    }
}
