//! Health of the IMAP and SMTP connections, and when the alerts it causes
//! go out (their text: `outgoing::operations`).
//!
//! Nothing may be lost silently: when the mailbox cannot be read (or the
//! outbox cannot send) for longer than `limits.alert_after`, the handlers get
//! one email saying what fails, and one more when it recovers. The state is
//! kept in SQLite so a restart during an outage neither forgets the outage
//! nor alerts twice, and `secintake status` can show it.

mod lease;
mod second_path;

pub use lease::{LEASE, STANDBY};
pub use second_path::AlertRelay;

use crate::clock::{add, fmt_ts, parse_ts, Clock};
use crate::config::Config;
use crate::context::Context;
use crate::outgoing::operations::{self, Outage};
use crate::outgoing::{queue_outgoing, LetterError};
use crate::store::{self, Db, StoreError};
use crate::templates::Templates;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A connection whose health is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    Imap,
    Smtp,
    /// The mailbox's lease (`intake::lease`): failing while heartbeats
    /// fail and the lease has run out, so this instance reads no mail. A
    /// standby (another instance holds it) is not a failure.
    Lease,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Imap => "imap",
            Component::Smtp => "smtp",
            Component::Lease => lease::LEASE,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Component::Imap => "IMAP mailbox",
            Component::Smtp => "SMTP server (outgoing mail)",
            Component::Lease => "mailbox lease (one instance per mailbox; none reads mail)",
        }
    }
}

pub use crate::model::CREDENTIAL_REJECTED;

/// The component name of the state file in alerts (`alert.txt`).
pub const STORAGE: &str = "storage";
/// The alert's component when the state file was deleted or replaced
/// under the daemon, which then stops.
pub const STATE_LOST: &str = "state-lost";

/// How long intake and the outbox wait after a server refused the login:
/// long enough not to look like password guessing (providers lock an
/// account after a few failures a minute), short enough to pick up a fixed
/// password soon. Debug builds take SECINTAKE_TEST_CREDENTIAL_RETRY_MS, so
/// the tests need not wait five minutes.
pub fn credential_retry() -> Duration {
    crate::clock::test_duration(
        "SECINTAKE_TEST_CREDENTIAL_RETRY_MS",
        Duration::from_secs(300),
    )
}

/// How often `last_ok_at` is written while all is well.
const OK_WRITE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default)]
struct State {
    failing_since: Option<DateTime<Utc>>,
    /// The server refused our credential: alert at once, not after
    /// `alert_after` (waiting does not fix a revoked password).
    credential: bool,
    alerted: bool,
    last_error: Option<String>,
    last_ok_written: Option<DateTime<Utc>>,
}

/// Shared health tracker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    db: Db,
    cfg: Arc<Config>,
    templates: Arc<Templates>,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<HashMap<Component, State>>>,
    /// IMAP sessions that ended in an error, since start (metrics).
    reconnects: Arc<std::sync::atomic::AtomicU64>,
    /// Whether the state file takes writes (kept in memory only: it is
    /// the one place health could not be written to).
    storage: Arc<Mutex<StorageState>>,
    /// Wakes the outbox when an alert was queued.
    outbox: Arc<Notify>,
    /// Whether this instance holds the mailbox (`health::lease`).
    lease: Arc<Mutex<lease::LeaseHealth>>,
    /// `[alert_relay]`, when configured (`health::second_path`).
    relay: Option<Arc<dyn AlertRelay>>,
}

/// Which loop found the state file taking no writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Intake,
    Outbox,
}

#[derive(Debug, Default)]
struct StorageState {
    failing_since: Option<DateTime<Utc>>,
    /// The loops whose last write failed; the file counts as recovered
    /// when each has written again.
    failing: Vec<Writer>,
}

impl Health {
    /// Loads the persisted state.
    pub async fn load(
        db: Db,
        cfg: Arc<Config>,
        templates: Arc<Templates>,
        clock: Arc<dyn Clock>,
        outbox: Arc<Notify>,
        relay: Option<Arc<dyn AlertRelay>>,
    ) -> Result<Health, StoreError> {
        let rows = db
            .call(|s| -> Result<_, StoreError> {
                Ok([
                    store::health(s.conn(), "imap")?,
                    store::health(s.conn(), "smtp")?,
                ])
            })
            .await?;
        let mut map = HashMap::new();
        for (c, row) in [Component::Imap, Component::Smtp].into_iter().zip(rows) {
            map.insert(
                c,
                State {
                    failing_since: row.failing_since.as_deref().and_then(parse_ts),
                    credential: row
                        .last_error
                        .as_deref()
                        .is_some_and(|e| e.starts_with(CREDENTIAL_REJECTED)),
                    alerted: row.alerted,
                    last_error: row.last_error,
                    last_ok_written: None,
                },
            );
        }
        Ok(Health {
            db,
            cfg,
            templates,
            clock,
            state: Arc::new(Mutex::new(map)),
            storage: Arc::default(),
            reconnects: Arc::default(),
            outbox,
            lease: Arc::default(),
            relay,
        })
    }

    fn with_state<R>(&self, c: Component, f: impl FnOnce(&mut State) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(g.entry(c).or_default())
    }

    /// The component works. Logs and notifies a recovery once.
    pub async fn ok(&self, c: Component, now: DateTime<Utc>) {
        let (recovered, write) = self.with_state(c, |st| {
            let recovered = st.failing_since.take().map(|since| (since, st.alerted));
            st.alerted = false;
            st.credential = false;
            st.last_error = None;
            let write = recovered.is_some()
                || st
                    .last_ok_written
                    .is_none_or(|t| add(t, OK_WRITE_INTERVAL) <= now);
            if write {
                st.last_ok_written = Some(now);
            }
            (recovered, write)
        });
        if let Some((since, _)) = recovered {
            tracing::info!(component = c.as_str(), failing_since = %fmt_ts(since), "connection recovered");
        }
        if !write {
            return;
        }
        let this = self.clone();
        let res = self
            .db
            .call(
                move |s| -> Result<Option<Vec<u8>>, crate::context::CaseError> {
                    let tx = s.transaction()?;
                    store::put_health(
                        &tx,
                        &store::Health {
                            component: c.as_str().into(),
                            last_ok_at: Some(fmt_ts(now)),
                            failing_since: None,
                            last_error: None,
                            alerted: false,
                        },
                    )?;
                    let mut notice = None;
                    if recovered.is_some() {
                        let stale = store::withdraw_stale_alerts(&tx, c.as_str())?;
                        if stale > 0 {
                            tracing::info!(
                                component = c.as_str(),
                                stale,
                                "unsent outage alerts withdrawn"
                            );
                        }
                    }
                    if let Some((since, true)) = recovered {
                        notice = this.queue_notice(&tx, c, true, since, None, now)?;
                    }
                    crate::store::commit(tx, "saving health")?;
                    Ok(notice)
                },
            )
            .await;
        match res {
            Err(e) => tracing::error!(component = c.as_str(), error = %e, "cannot record health"),
            Ok(notice) => {
                if matches!(recovered, Some((_, true))) {
                    self.outbox.notify_one();
                }
                if let Some(raw) = notice {
                    self.run_command(raw);
                }
            }
        }
    }

    /// The server refused our credential (IMAP `NO` to LOGIN, SMTP 535):
    /// recorded as failing with "credential rejected", logged at error,
    /// and the handlers are alerted at the next check, not after
    /// `alert_after`.
    pub async fn credential_rejected(&self, c: Component, now: DateTime<Utc>, error: &str) {
        let error = format!("{CREDENTIAL_REJECTED}: {error}");
        let first = self.with_state(c, |st| !std::mem::replace(&mut st.credential, true));
        if first {
            tracing::error!(component = c.as_str(), error = %loggable(&error),
                "the server refused the login: check the password or token; retrying slowly");
        }
        // Written even when an outage was already recorded, so `status`
        // names the refusal.
        self.fail(c, now, &error, first).await;
    }

    /// The component fails. Logs the first failure of an outage only.
    pub async fn failing(&self, c: Component, now: DateTime<Utc>, error: &str) {
        self.fail(c, now, error, false).await;
    }

    async fn fail(&self, c: Component, now: DateTime<Utc>, error: &str, write: bool) {
        let (first, credential) = self.with_state(c, |st| {
            st.last_error = Some(error.to_owned());
            if st.failing_since.is_none() {
                st.failing_since = Some(now);
                (true, st.credential)
            } else {
                (false, st.credential)
            }
        });
        if first && !credential {
            tracing::warn!(component = c.as_str(), error = %loggable(error),
                "connection failing; retrying quietly");
        }
        if first || write {
            let since = self.with_state(c, |st| st.failing_since.unwrap_or(now));
            let (since, err) = (fmt_ts(since), error.to_owned());
            let res = self
                .db
                .call(move |s| -> Result<(), StoreError> {
                    let mut h = store::health(s.conn(), c.as_str())?;
                    h.failing_since = Some(since);
                    h.last_error = Some(err);
                    store::put_health(s.conn(), &h)
                })
                .await;
            if let Err(e) = res {
                tracing::error!(component = c.as_str(), error = %e, "cannot record health");
            }
        }
    }

    /// Queues an alert (`recovered` false) or recovery notice to every
    /// handler.
    fn queue_notice(
        &self,
        conn: &rusqlite::Connection,
        c: Component,
        recovered: bool,
        failing_since: DateTime<Utc>,
        last_error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<u8>>, crate::context::CaseError> {
        let cfg = &*self.cfg;
        if cfg.handlers.is_empty() && cfg.alerts.command.is_empty() {
            return Ok(None);
        }
        let (backlog, _) = store::outbox_backlog(conn)?;
        let ctx = Context {
            cfg,
            templates: &self.templates,
            now,
        };
        let outage = Outage {
            component: c.as_str(),
            component_name: c.describe(),
            failing_since,
            last_error,
            backlog,
        };
        let Some(letter) = outage_letter(&ctx, outage, recovered)? else {
            return Ok(None);
        };
        if !cfg.handlers.is_empty() {
            queue_outgoing(conn, &ctx, &letter)?;
        }
        Ok(Some(letter.out.raw))
    }

    /// `writer` could not write the state file (a full disk, a read-only
    /// file): logged at error and alerted at once through `[alerts]
    /// command` (mail to the handlers would have to be written there
    /// first), once per outage. The loops stay up and retry.
    pub async fn storage_failing(&self, writer: Writer, now: DateTime<Utc>, error: &str) {
        let first = {
            let mut st = self.storage.lock().unwrap_or_else(|e| e.into_inner());
            if !st.failing.contains(&writer) {
                st.failing.push(writer);
            }
            let first = st.failing_since.is_none();
            st.failing_since.get_or_insert(now);
            first
        };
        if !first {
            return;
        }
        tracing::error!(error = %error,
            "the state file takes no writes: reports are not recorded and no mail is sent \
             (none goes out that could not be recorded) until it does; retrying");
        if let Some(raw) = self
            .storage_notice(STORAGE, false, now, Some(error), now)
            .await
        {
            self.second_paths(raw, STORAGE);
        }
    }

    /// `writer` wrote the state file. Once every loop that failed has, the
    /// handlers get the recovery notice, by mail and `[alerts] command`.
    pub async fn storage_ok(&self, writer: Writer, now: DateTime<Utc>) {
        let recovered = {
            let mut st = self.storage.lock().unwrap_or_else(|e| e.into_inner());
            st.failing.retain(|w| *w != writer);
            if st.failing.is_empty() {
                st.failing_since.take()
            } else {
                None
            }
        };
        let Some(since) = recovered else { return };
        tracing::info!(failing_since = %fmt_ts(since), "the state file takes writes again");
        if let Some(raw) = self.storage_notice(STORAGE, true, since, None, now).await {
            self.run_command(raw);
        }
        self.outbox.notify_one();
    }

    /// An IMAP session ended in an error (for the metrics).
    pub fn reconnected(&self) {
        self.reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// IMAP sessions that ended in an error since start.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether each part fails now: imap, smtp, storage, lease.
    pub fn failing_parts(&self) -> [(&'static str, bool); 4] {
        let failing = |c: Component| self.with_state(c, |st| st.failing_since.is_some());
        let storage = self
            .storage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failing_since
            .is_some();
        [
            ("imap", failing(Component::Imap)),
            ("smtp", failing(Component::Smtp)),
            ("storage", storage),
            ("lease", failing(Component::Lease)),
        ]
    }

    /// One line of health for systemd's `STATUS=`: each part "ok" or
    /// what fails.
    pub fn summary(&self) -> String {
        let part = |c: Component| {
            self.with_state(c, |st| match (&st.failing_since, st.credential) {
                (None, _) => "ok".to_string(),
                (Some(_), true) => "credential rejected".to_string(),
                (Some(since), false) => format!("FAILING since {}", fmt_ts(*since)),
            })
        };
        let storage = {
            let st = self.storage.lock().unwrap_or_else(|e| e.into_inner());
            match st.failing_since {
                None => "ok".to_string(),
                Some(since) => format!("FAILING since {}", fmt_ts(since)),
            }
        };
        let standby = match self.standby_for() {
            Some(holder) => format!("; STANDBY: {holder} holds the mailbox"),
            None if self.with_state(Component::Lease, |st| st.failing_since.is_some()) => {
                format!("; mailbox lease {}", part(Component::Lease))
            }
            None => String::new(),
        };
        format!(
            "imap {}; smtp {}; state file {storage}{standby}",
            part(Component::Imap),
            part(Component::Smtp)
        )
    }

    /// The state file is gone or replaced and the daemon is about to stop:
    /// the alert goes through `[alerts] command` now, and is waited for
    /// (at most [`second_path::COMMAND_TIMEOUT`]), since the daemon ends right after.
    pub async fn state_lost(&self, error: &str) {
        let now = self.clock.now();
        if let Some(raw) = self
            .storage_notice(STATE_LOST, false, now, Some(error), now)
            .await
        {
            self.second_paths_now(raw, STATE_LOST).await;
        }
    }

    /// Whether `writer`'s last write of the state file failed.
    pub fn storage_failed_for(&self, writer: Writer) -> bool {
        let st = self.storage.lock().unwrap_or_else(|e| e.into_inner());
        st.failing.contains(&writer)
    }

    /// The storage alert or recovery notice for `[alerts] command`; the
    /// recovery notice is also queued to the handlers (the file takes
    /// writes again).
    async fn storage_notice(
        &self,
        component: &'static str,
        recovered: bool,
        since: DateTime<Utc>,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Vec<u8>> {
        let (this, error) = (self.clone(), error.map(str::to_owned));
        let res = self
            .db
            .call(
                move |s| -> Result<Option<Vec<u8>>, crate::context::CaseError> {
                    let cfg = &*this.cfg;
                    let backlog = store::outbox_backlog(s.conn()).map(|(n, _)| n).unwrap_or(0);
                    let ctx = Context {
                        cfg,
                        templates: &this.templates,
                        now,
                    };
                    let outage = Outage {
                        component,
                        component_name: "state file",
                        failing_since: since,
                        last_error: error.as_deref(),
                        backlog,
                    };
                    let Some(letter) = outage_letter(&ctx, outage, recovered)? else {
                        return Ok(None);
                    };
                    if recovered && !cfg.handlers.is_empty() {
                        let tx = s.transaction()?;
                        queue_outgoing(&tx, &ctx, &letter)?;
                        crate::store::commit(tx, "queueing the storage recovery notice")?;
                    }
                    Ok(Some(letter.out.raw))
                },
            )
            .await;
        res.unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot build the storage notice");
            None
        })
    }

    /// Sends the alert for every component failing longer than
    /// `alert_after` and not yet alerted.
    async fn check(&self) {
        let now = self.clock.now();
        let after = self.cfg.limits.alert_after;
        for c in [Component::Imap, Component::Smtp, Component::Lease] {
            let due = self.with_state(c, |st| match st.failing_since {
                Some(since) if !st.alerted && (st.credential || add(since, after) <= now) => {
                    Some((since, st.last_error.clone()))
                }
                _ => None,
            });
            let Some((since, err)) = due else { continue };
            let this = self.clone();
            let res = self
                .db
                .call(
                    move |s| -> Result<Option<Vec<u8>>, crate::context::CaseError> {
                        let tx = s.transaction()?;
                        let mut h = store::health(&tx, c.as_str())?;
                        if h.alerted {
                            return Ok(None);
                        }
                        h.alerted = true;
                        h.failing_since = Some(fmt_ts(since));
                        h.last_error = err.clone();
                        store::put_health(&tx, &h)?;
                        let notice =
                            this.queue_notice(&tx, c, false, since, err.as_deref(), now)?;
                        crate::store::commit(tx, "queueing an alert")?;
                        Ok(notice)
                    },
                )
                .await;
            match res {
                Ok(notice) => {
                    if let Some(raw) = notice {
                        self.second_paths(raw, c.as_str());
                    }
                    self.with_state(c, |st| st.alerted = true);
                    tracing::error!(component = c.as_str(), failing_since = %fmt_ts(since),
                        "failing longer than limits.alert_after; handlers alerted");
                    self.outbox.notify_one();
                }
                Err(e) => tracing::error!(error = %e, "cannot queue alert"),
            }
        }
    }

    /// Checks for due alerts once a second until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            self.check().await;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// The outage alert (or, `recovered`, the recovery notice) for `outage`,
/// to every handler; None when it cannot be composed (logged).
fn outage_letter(
    ctx: &Context<'_>,
    outage: Outage<'_>,
    recovered: bool,
) -> Result<Option<crate::outgoing::Letter>, crate::context::CaseError> {
    let to = ctx.cfg.handlers.iter().map(|h| h.email.clone()).collect();
    let letter = if recovered {
        operations::recovery_notice(ctx, to, outage)
    } else {
        operations::outage_alert(ctx, to, outage)
    };
    match letter {
        Ok(letter) => Ok(Some(letter)),
        Err(LetterError::Template(e)) => Err(e.into()),
        Err(LetterError::Compose(e)) => {
            tracing::error!(error = %e, "cannot build alert mail");
            Ok(None)
        }
    }
}

/// An SMTP error for a log line: the server's reply text is left out
/// (content filters may quote the message; recipients are named), only the
/// code stays; the whole text is kept on the case and in `status`.
pub fn loggable(error: &str) -> &str {
    if error.starts_with("permanent error") || error.starts_with("transient error") {
        error.split(": ").next().unwrap_or(error)
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_smtp_errors_keep_the_code_only() {
        assert_eq!(
            loggable("permanent error (554): 5.7.1 rejected: contains 'secret exploit'"),
            "permanent error (554)"
        );
        assert_eq!(
            loggable("Connection error: refused"),
            "Connection error: refused"
        );
    }
}
