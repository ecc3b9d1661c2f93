//! [`World`]: one test's private mail stack, state folder and running
//! daemon, with the waits and looks most end-to-end tests need.
//!
//! Why one type: the intake, deadline and workflow tests each had a World
//! of their own doing mostly the same; their differences are now the
//! config ([`World::start`]'s tweak, with [`TestConfig::mailbox_extra`] and
//! [`TestConfig::sla_extra`] for extra lines) and [`World::start_ready`].
//! What only one area needs stays in that area's module, as an `impl World`
//! block of its own there (the workflow tests' mail client, the deadline
//! tests' reminder rows).

use super::daemon::{cases, cli, cli_json, eventually, Daemon};
use super::oauth2::StackOptions;
use super::{subjects, MailStack, TestConfig};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How long any one expected thing may take.
pub const T: Duration = Duration::from_secs(20);

/// One test's world. Field order = drop order: the daemon dies before the
/// stack, and the state folder goes last.
pub struct World {
    pub daemon: Daemon,
    pub stack: MailStack,
    /// The config file the daemon and the CLI read.
    pub config: PathBuf,
    /// What [`World::config`] was written from.
    pub cfg: TestConfig,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Starts a stack and a daemon whose config is [`TestConfig::new`]'s
    /// after `tweak`. Returns once the daemon has created its state file,
    /// while it is still starting.
    pub fn start(tweak: impl FnOnce(&mut TestConfig)) -> World {
        World::start_with(&StackOptions::default(), tweak)
    }

    /// [`World::start`] on a stack started with `opts`, e.g.
    /// [`StackOptions::oauth2`]: then [`TestConfig::oauth2`] is the token
    /// server, for the tweak to point the daemon at.
    pub fn start_with(opts: &StackOptions, tweak: impl FnOnce(&mut TestConfig)) -> World {
        let stack = MailStack::start_with(opts);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = TestConfig::new(&stack, dir.path());
        tweak(&mut cfg);
        let config = dir.path().join("secintake.toml");
        cfg.write(&config);
        let daemon = Daemon::start(&config, dir.path());
        // The CLI reads the state file and, rightly, fails while there is
        // none: tests poll it (cases, robots) at once, so wait for the
        // daemon to create it (the CLI waits out its migration itself).
        let state = cfg.storage_path.clone();
        super::daemon::eventually(
            T,
            "the daemon to create its state file",
            Some(&daemon),
            || state.exists().then_some(()),
        );
        World {
            daemon,
            stack,
            config,
            cfg,
            dir,
        }
    }

    /// [`World::start`], then waits until the daemon has opened its state
    /// file (see [`Daemon::wait_running`]) and asserts it is alive.
    pub fn start_ready(tweak: impl FnOnce(&mut TestConfig)) -> World {
        World::start_ready_with(&StackOptions::default(), tweak)
    }

    /// [`World::start_ready`] on a stack started with `opts`.
    pub fn start_ready_with(opts: &StackOptions, tweak: impl FnOnce(&mut TestConfig)) -> World {
        let mut w = World::start_with(opts, tweak);
        w.daemon.wait_running(T);
        assert!(w.daemon.alive(), "daemon exited:\n{}", w.daemon.log_text());
        w
    }

    /// Rewrites the config after `tweak` (takes effect on restart).
    pub fn reconfigure(&mut self, tweak: impl FnOnce(&mut TestConfig)) {
        tweak(&mut self.cfg);
        self.cfg.write(&self.config);
    }

    /// Stops the daemon if it still runs (SIGKILL) and starts a new one.
    pub fn restart(&mut self) {
        // One daemon at a time: a second one on the same state file
        // refuses to start (its lock).
        if self.daemon.alive() {
            self.daemon.kill9();
        }
        self.daemon = Daemon::start(&self.config, self.dir.path());
    }

    /// The state file.
    pub fn db(&self) -> PathBuf {
        self.cfg.storage_path.clone()
    }

    /// Panics with `what`, the daemon log and the servers' logs.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n---- daemon log\n{}\n{}",
            self.daemon.log_text(),
            self.stack.logs()
        )
    }

    /// For failure messages: the daemon log.
    pub fn log(&self) -> String {
        format!("---- daemon log\n{}", self.daemon.log_text())
    }

    // ------------------------------------------------------------ mail --

    /// Sends `raw` to the project's address over the inbound SMTP port.
    pub fn deliver(&self, envelope_from: &str, raw: &[u8]) {
        self.stack
            .send_raw(envelope_from, &[self.cfg.address.as_str()], raw);
    }

    /// A plain-text mail from `from` threaded under case `id`'s
    /// notification (In-Reply-To and References its root), as a handler's
    /// reply is; not sent.
    pub fn threaded(&self, id: &str, from: &str, body: &str) -> Vec<u8> {
        let root = super::daemon::thread_root(&self.db(), id);
        super::text_mail(
            "reply",
            from,
            &self.cfg.address,
            &format!("Re: [{id}] New report"),
            &[
                &format!("In-Reply-To: <{root}>"),
                &format!("References: <{root}>"),
            ],
            body,
        )
        .0
    }

    /// Sends a report (plain text, dated now) to the project's address
    /// over inbound SMTP; returns its Message-ID.
    pub fn report(&self, from: &str, subject: &str) -> String {
        let (raw, mid) = super::mail(
            "report",
            from,
            &[self.cfg.address.as_str()],
            &[],
            subject,
            &[],
            "Steps to reproduce: ...",
        );
        self.deliver(from, &raw);
        mid
    }

    /// Waits until `user`'s INBOX satisfies `done`; returns the messages.
    pub fn wait_mail(
        &self,
        user: &str,
        timeout: Duration,
        done: impl Fn(&[Vec<u8>]) -> bool,
    ) -> Vec<Vec<u8>> {
        self.stack.wait_for(user, done, timeout)
    }

    /// Waits until `user`'s INBOX holds `n` messages; asserts it holds no
    /// more, returns them.
    pub fn wait_mailbox(&self, user: &str, n: usize) -> Vec<Vec<u8>> {
        self.stack.wait_for(user, |m| m.len() >= n, T);
        let got = self.stack.fetch_all(user);
        assert_eq!(
            got.len(),
            n,
            "{user} holds {} message(s), expected {n}:\n{}",
            got.len(),
            subjects(&got)
        );
        got
    }

    /// The Message-ID of every message in `user`'s INBOX now, one entry
    /// per message (so a mail received twice shows twice; one without a
    /// Message-ID shows as "").
    pub fn message_ids(&self, user: &str) -> Vec<String> {
        self.stack
            .fetch_all(user)
            .iter()
            .map(|m| super::header(m, "Message-ID").unwrap_or_default())
            .collect()
    }

    /// Asserts `user`'s INBOX holds exactly `n` messages now.
    pub fn assert_mailbox(&self, user: &str, n: usize) -> Vec<Vec<u8>> {
        let got = self.stack.fetch_all(user);
        assert_eq!(
            got.len(),
            n,
            "{user} holds {} message(s), expected {n}:\n{}\n{}",
            got.len(),
            subjects(&got),
            self.log()
        );
        got
    }

    // ------------------------------------------------------------- CLI --

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let (code, out, err) = cli(&self.config, args);
        assert_eq!(code, 0, "secintake {args:?} failed: {err}\n{out}");
        out
    }

    /// `status --json`, or None before the daemon created its state file.
    pub fn status(&self) -> Option<Value> {
        super::daemon::status(&self.config)
    }

    /// The highest INBOX UID the daemon has committed (0 before any).
    pub fn last_uid(&self) -> u64 {
        self.status()
            .and_then(|s| s["last_uid"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until the daemon has processed (committed) INBOX UID `uid`.
    pub fn wait_processed(&self, uid: u64) {
        eventually(T, &format!("last_uid >= {uid}"), Some(&self.daemon), || {
            (self.last_uid() >= uid).then_some(())
        });
    }

    /// Waits until the outbox has nothing left to send.
    pub fn wait_outbox_empty(&self) {
        eventually(T, "an empty outbox", Some(&self.daemon), || {
            self.status()
                .filter(|s| s["outbox"]["backlog"].as_u64() == Some(0))
                .map(|_| ())
        });
    }

    /// `cases list --json` (empty before the state file exists).
    pub fn cases(&self) -> Vec<Value> {
        cases(&self.config)
    }

    /// Waits for exactly `n` cases and returns them.
    pub fn wait_cases(&self, n: usize) -> Vec<Value> {
        eventually(T, &format!("{n} case(s)"), Some(&self.daemon), || {
            let c = self.cases();
            (c.len() == n).then_some(c)
        })
    }

    /// Waits for exactly `n` cases, each acknowledged (the ack accepted by
    /// SMTP), and returns them.
    pub fn wait_acked_cases(&self, n: usize) -> Vec<Value> {
        eventually(
            T,
            &format!("{n} acknowledged case(s)"),
            Some(&self.daemon),
            || {
                let c = self.cases();
                (c.len() == n && c.iter().all(|c| c["acknowledged_at"].is_string())).then_some(c)
            },
        )
    }

    /// The reasons recorded for mail from a handler address that was not
    /// believed (forged, or not proven), oldest first.
    pub fn forged_events(&self, id: &str) -> Vec<String> {
        self.show(id)["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter(|e| e["what"] == "unauthenticated mail from a handler address ignored")
            .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// `cases show ID --json`.
    pub fn show(&self, id: &str) -> Value {
        cli_json(&self.config, &["cases", "show", id])
    }

    /// Waits until case `id` is in `state`; returns `cases show`.
    pub fn wait_state(&self, id: &str, state: &str) -> Value {
        eventually(
            T,
            &format!("{id} in state {state}"),
            Some(&self.daemon),
            || {
                let v = self.show(id);
                (v["state"] == state).then_some(v)
            },
        )
    }

    /// `mail list --robots --json`.
    pub fn robots(&self) -> Vec<Value> {
        let v = cli_json(&self.config, &["mail", "list", "--robots"]);
        v.as_array().cloned().unwrap_or_default()
    }
}
