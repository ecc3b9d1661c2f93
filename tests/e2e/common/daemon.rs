//! Running the real `secintake` binary in tests: start, SIGTERM, SIGKILL,
//! and the CLI's JSON output.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `secintake run`; killed (SIGKILL) on drop if still alive.
pub struct Daemon {
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `secintake --config CONFIG run`, logging to `log_dir/daemon-N.log`
    /// (appends a number so restarts keep earlier logs).
    pub fn start(config: &Path, log_dir: &Path) -> Daemon {
        Self::start_with_env(config, log_dir, &[])
    }

    /// [`Daemon::start`] with extra environment variables (e.g. the debug
    /// build's fault hook, `SECINTAKE_TEST_ABORT_ON`).
    pub fn start_with_env(config: &Path, log_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::start_with_args(config, log_dir, &["run"], env)
    }

    /// `secintake --config CONFIG ARGS…` (e.g. `run --adopt`), as
    /// [`Daemon::start_with_env`].
    pub fn start_with_args(
        config: &Path,
        log_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        Self::spawn(
            Command::new(super::secintake_bin()),
            config,
            log_dir,
            args,
            env,
        )
    }

    /// [`Daemon::start_with_env`] through `wrapper`, a command that runs
    /// the command line appended to it (secintake's path, then its
    /// arguments) and lives as long as it, e.g. `unshare … sh -c '…' sh`.
    /// Its stderr is the log; killing it must end the daemon.
    pub fn start_wrapped(
        mut wrapper: Command,
        config: &Path,
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        wrapper.arg(super::secintake_bin());
        Self::spawn(wrapper, config, log_dir, &["run"], env)
    }

    fn spawn(
        mut command: Command,
        config: &Path,
        log_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut n = 0;
        let log = loop {
            let p = log_dir.join(format!("daemon-{n}.log"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        let file = std::fs::File::create(&log).expect("create daemon log");
        let child = command
            .arg("--config")
            .arg(config)
            .args(args)
            .env("SECINTAKE_LOG", "secintake=debug,info")
            // Tests start daemons one after another on one mailbox, with
            // fresh state files, and SIGKILL them: a killed holder's lease
            // lapses in 2 s here, not 90 (a debug-build knob).
            .env("SECINTAKE_TEST_LEASE_EXPIRY_MS", "2000")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start secintake");
        Daemon {
            config: config.to_owned(),
            log,
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits up to `timeout` for exit; returns the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&c),
            rustix::process::Signal::TERM,
        );
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = c.try_wait().expect("wait daemon") {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "daemon did not exit within {timeout:?} after SIGTERM\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; returns
    /// its exit status, or `None` when it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.child.as_mut()?;
            if let Some(st) = c.try_wait().expect("wait daemon") {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon logs "secintake running": it has opened
    /// (created, migrated) its state file. Before that, a CLI call racing
    /// the first start can break the schema migration (see
    /// `resilience::status_during_first_start_does_not_kill_the_daemon`),
    /// which tests about other things should not run into. Panics, with
    /// the log, after `timeout`.
    pub fn wait_running(&self, timeout: Duration) {
        eventually(timeout, "the daemon to open its state", Some(self), || {
            self.log_text().contains("secintake running").then_some(())
        });
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `secintake --config CONFIG ARGS…`; returns (exit code, stdout, stderr).
pub fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(super::secintake_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run secintake");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `secintake … ARGS --json`, parsed; panics with stderr on failure.
pub fn cli_json(config: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (code, out, err) = cli(config, &a);
    assert_eq!(code, 0, "secintake {a:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from {a:?}: {e}\n{out}"))
}

/// `status --json`, or `None` before the daemon created its state file.
/// Exit 3 (a connection failing) still prints the status.
pub fn status(config: &Path) -> Option<serde_json::Value> {
    let (code, out, _) = cli(config, &["status", "--json"]);
    matches!(code, 0 | 3)
        .then(|| serde_json::from_str(&out).ok())
        .flatten()
}

/// `cases list --json`, or an empty list when no state file exists yet.
pub fn cases(config: &Path) -> Vec<serde_json::Value> {
    let (code, out, _) = cli(config, &["cases", "list", "--json"]);
    if code != 0 {
        return Vec::new();
    }
    serde_json::from_str::<Vec<serde_json::Value>>(&out).unwrap_or_default()
}

/// Polls `check` every 100 ms until it returns Some, or panics after `timeout`
/// with `what` and the daemon log.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    daemon: Option<&Daemon>,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                daemon.map(|d| d.log_text()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Message-ID (without brackets) rooting `case_id`'s handler thread,
/// read from the state file (it is random per case).
pub fn thread_root(db: &Path, case_id: &str) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the state file read-only");
    conn.query_row(
        "SELECT thread_root FROM cases WHERE id = ?1",
        [case_id],
        |r| r.get(0),
    )
    .unwrap_or_else(|e| panic!("no thread root for {case_id}: {e}"))
}
