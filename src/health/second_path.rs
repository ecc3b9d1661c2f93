//! The second paths of alerts and recovery notices, beside mail queued to
//! the handlers: `[alerts] command` (every one of them) and
//! `[alert_relay]` (the alerts about the parts whose failure stops that
//! mail: the SMTP server and the state file; a recovery notice goes out
//! by the first relay, which then works again, so the relay would bring
//! it twice). The journal gets each at error from the caller.

use super::{Health, STATE_LOST, STORAGE};
use futures::future::BoxFuture;
use std::time::Duration;

/// Sends a letter through `[alert_relay]`. The outbox module implements
/// it (nothing else speaks SMTP) and the daemon hands it to
/// [`Health::load`].
pub trait AlertRelay: Send + Sync + std::fmt::Debug {
    /// One attempt over a new session; the error says what failed,
    /// without the server's text.
    fn send(&self, raw: Vec<u8>, to: Vec<String>) -> BoxFuture<'static, Result<(), String>>;
}

/// How long `[alerts] command` may take before it is killed.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts through `[alert_relay]` per letter, this far apart: a relay
/// that blinks while the first one is down still gets the alert through.
const RELAY_ATTEMPTS: u32 = 3;
const RELAY_RETRY: Duration = Duration::from_secs(10);

impl Health {
    /// Hands an alert about `part` ("imap", "smtp", "storage",
    /// "state-lost") to the second paths, in the background.
    pub(super) fn second_paths(&self, raw: Vec<u8>, part: &str) {
        if let Some(run) = self.relay_send(raw.clone(), part, RELAY_ATTEMPTS) {
            tokio::spawn(run);
        }
        if let Some(run) = self.command(raw) {
            tokio::spawn(run);
        }
    }

    /// Hands a recovery notice to `[alerts] command`, in the background.
    pub(super) fn run_command(&self, raw: Vec<u8>) {
        if let Some(run) = self.command(raw) {
            tokio::spawn(run);
        }
    }

    /// [`Health::second_paths`] waited for, one relay attempt: the daemon
    /// is about to stop.
    pub(super) async fn second_paths_now(&self, raw: Vec<u8>, part: &str) {
        let relay = self.relay_send(raw.clone(), part, 1);
        let command = self.command(raw);
        // The daemon is stopping: as long as the command may take, no
        // more (one relay attempt is a connect, a session and a send,
        // each up to `alert_relay.timeout`).
        let relay = async {
            if let Some(run) = relay {
                if tokio::time::timeout(COMMAND_TIMEOUT, run).await.is_err() {
                    tracing::error!(
                        "[alert_relay] took too long; the alert is in the journal only"
                    );
                }
            }
        };
        let command = async {
            if let Some(run) = command {
                run.await;
            }
        };
        tokio::join!(relay, command);
    }

    /// The letter sent through `[alert_relay]` to the handlers, as a
    /// future; None without a relay, without handlers, or for a part
    /// whose letters the first relay carries (IMAP: SMTP still works, and
    /// the handlers would get each alert twice).
    fn relay_send(
        &self,
        raw: Vec<u8>,
        part: &str,
        attempts: u32,
    ) -> Option<impl std::future::Future<Output = ()> + use<>> {
        let relay = self.relay.clone()?;
        if ![crate::health::Component::Smtp.as_str(), STORAGE, STATE_LOST].contains(&part) {
            return None;
        }
        let to: Vec<String> = self.cfg.handlers.iter().map(|h| h.email.clone()).collect();
        if to.is_empty() {
            return None;
        }
        let part = part.to_owned();
        Some(async move {
            for attempt in 1..=attempts {
                match relay.send(raw.clone(), to.clone()).await {
                    Ok(()) => {
                        tracing::info!(part = %part, "alert sent through [alert_relay]");
                        return;
                    }
                    Err(e) if attempt < attempts => {
                        tracing::warn!(part = %part, error = %e, "[alert_relay] failed; retrying");
                        tokio::time::sleep(RELAY_RETRY).await;
                    }
                    Err(e) => {
                        tracing::error!(part = %part, error = %e, "[alert_relay] failed; the alert is in the journal only");
                    }
                }
            }
        })
    }

    /// `[alerts] command` run with `raw` on its standard input, as a future
    /// (None when no command is configured). At most [`COMMAND_TIMEOUT`].
    fn command(&self, raw: Vec<u8>) -> Option<impl std::future::Future<Output = ()> + use<>> {
        let (program, args) = self.cfg.alerts.command.split_first()?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let program = program.clone();
        Some(async move {
            let run = async {
                let mut child = cmd.spawn()?;
                if let Some(mut stdin) = child.stdin.take() {
                    use tokio::io::AsyncWriteExt;
                    stdin.write_all(&raw).await?;
                }
                child.wait().await
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
                Ok(Ok(status)) if status.success() => {
                    tracing::info!(program = %program, "alert handed to [alerts] command")
                }
                Ok(Ok(status)) => {
                    tracing::error!(program = %program, %status, "[alerts] command failed")
                }
                Ok(Err(e)) => {
                    tracing::error!(program = %program, error = %e, "[alerts] command could not run")
                }
                Err(_) => {
                    tracing::error!(program = %program, "[alerts] command took too long; killed")
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{parse_ts, ManualClock};
    use crate::config::Config;
    use crate::store::{Db, Store};
    use crate::templates::Templates;
    use std::sync::{Arc, Mutex};

    /// Records what it was asked to send (a unit test's stand-in for the
    /// outbox's relay; the e2e test sends through a real second stack).
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Vec<String>>>);

    impl AlertRelay for Recorder {
        fn send(&self, _raw: Vec<u8>, to: Vec<String>) -> BoxFuture<'static, Result<(), String>> {
            self.0.lock().unwrap().push(to);
            Box::pin(async { Ok(()) })
        }
    }

    #[tokio::test]
    async fn only_alerts_about_smtp_and_the_state_file_take_the_relay() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::new(Store::open(&dir.path().join("s.db")).unwrap());
        let cfg = Config::example();
        let handlers: Vec<String> = cfg.handlers.iter().map(|h| h.email.clone()).collect();
        assert!(!handlers.is_empty());
        let recorder = Arc::new(Recorder::default());
        let health = Health::load(
            db,
            Arc::new(cfg),
            Arc::new(Templates::builtin()),
            Arc::new(ManualClock::new(parse_ts("2026-03-01T12:00:00Z").unwrap())),
            Arc::new(tokio::sync::Notify::new()),
            Some(recorder.clone()),
        )
        .await
        .unwrap();
        for part in ["imap", "smtp", STORAGE] {
            health.second_paths(b"alert".to_vec(), part);
        }
        health.run_command(b"recovered".to_vec());
        health.second_paths_now(b"lost".to_vec(), STATE_LOST).await;
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sent = recorder.0.lock().unwrap().clone();
        assert_eq!(sent, vec![handlers.clone(); 3], "smtp, storage, state-lost");
    }
}
