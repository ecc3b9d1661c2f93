//! The real binary against real configurations: what an operator sees on
//! the terminal when the config is wrong, and what `check-config` says
//! about a live (or broken) mail system.
//!
//! Why: tests/e2e/config_errors.rs checks the messages at the library level;
//! this checks that the binary prints exactly that one line on stderr (no
//! log noise, no backtrace), exits 1, and that `check-config` really logs
//! in to both servers.

use crate::common;

use common::daemon::cli;
// BASE: a valid config needing no files besides itself.
use crate::config_errors::BASE;
use common::{write_config, MailStack};
use std::path::{Path, PathBuf};

fn write(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("secintake.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Runs `secintake --config PATH ARGS`, asserts exit code 1 and exactly
/// one stderr line `secintake: config error…` containing every `needle`;
/// returns that line.
fn assert_config_error(path: &Path, args: &[&str], needles: &[&str]) -> String {
    let (code, out, err) = cli(path, args);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(code, 1, "exit code for {args:?}; stderr: {err}");
    assert_eq!(
        lines.len(),
        1,
        "want one stderr line for {args:?}, got: {err:?}"
    );
    let line = lines[0];
    assert!(
        line.starts_with("secintake: config error"),
        "unexpected stderr: {line}"
    );
    for n in needles {
        assert!(line.contains(n), "{line:?} lacks {n:?}");
    }
    assert!(
        out.trim().is_empty(),
        "nothing belongs on stdout when the config is invalid: {out}"
    );
    line.to_string()
}

#[test]
fn base_config_is_valid_for_offline_commands() {
    // Sanity check for the error tests below: BASE itself loads (the
    // command then fails on the missing state file, not on the config).
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), BASE);
    let (code, _, err) = cli(&path, &["status"]);
    assert_eq!(code, 1);
    assert!(!err.contains("config error"), "{err}");
    assert!(err.contains("no state file yet"), "{err}");
}

#[test]
fn unknown_key_is_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &BASE.replace("host = \"imap.example.org\"", "hots = \"imap.example.org\""),
    );
    // The daemon refuses to start, and the other commands say the same.
    for args in [&["run"][..], &["check-config"], &["status", "--json"]] {
        let line = assert_config_error(&path, args, &["unknown key \"imap.hots\"", "host"]);
        assert_eq!(
            line,
            format!(
                "secintake: config error in {}: unknown key \"imap.hots\" (expected one of: host, port, \
                 tls, ca_file, username, auth, password, password_file, folder, folders, junk, idle, \
                 poll_interval, idle_timeout, io_timeout, after)",
                path.display()
            )
        );
    }
}

#[test]
fn plaintext_to_remote_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &BASE.replace("[imap]\n", "[imap]\ntls = \"none\"\n"),
    );
    assert_config_error(
        &path,
        &["run"],
        &[
            "imap.tls = \"none\"",
            "loopback",
            "imap.host is \"imap.example.org\"",
        ],
    );
}

#[test]
fn missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let line = assert_config_error(&path, &["check-config"], &[]);
    assert_eq!(
        line,
        format!(
            "secintake: config error: cannot read {}: No such file or directory",
            path.display()
        )
    );
}

#[test]
fn bad_duration_names_key_value_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!("{BASE}\n[limits]\nalert_after = \"15 minutes please\"\n"),
    );
    assert_config_error(
        &path,
        &["run"],
        &[
            "limits.alert_after = \"15 minutes please\"",
            "expected a duration like \"60s\"",
        ],
    );
}

#[test]
fn help_lists_the_commands() {
    let (code, out, err) = cli(Path::new("/nonexistent/secintake.toml"), &["--help"]);
    assert_eq!(code, 0, "{err}");
    for cmd in ["run", "check-config", "status", "cases", "mail"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "--help does not list {cmd}:\n{out}"
        );
    }
}

#[test]
fn check_config_against_live_stack() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &stack, |_| {});
    let (code, out, err) = cli(&path, &["check-config"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("config ok: security@example.org"), "{out}");
    assert!(out.contains("IMAP ok"), "{out}");
    assert!(out.contains("SMTP ok"), "{out}");
    assert!(out.contains("logged in"), "{out}");
    assert!(!out.contains("FAILED"), "{out}");

    // Wrong IMAP password: IMAP login is named, SMTP still checked.
    let path = write_config(dir.path(), &stack, |c| {
        c.imap_password = "wrong-password".into();
    });
    let (code, out, err) = cli(&path, &["check-config"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let imap = out
        .lines()
        .find(|l| l.starts_with("IMAP FAILED"))
        .unwrap_or_else(|| panic!("no IMAP FAILED line:\n{out}"));
    assert!(
        imap.contains("login") && imap.contains("security@example.org"),
        "{imap}"
    );
    assert!(
        !out.contains("wrong-password"),
        "password leaked into output:\n{out}"
    );
    assert!(out.contains("SMTP ok"), "{out}");
}

#[test]
fn check_config_with_smtp_down() {
    let stack = MailStack::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &stack, |_| {});
    stack.stop_smtp();
    let started = std::time::Instant::now();
    let (code, out, err) = cli(&path, &["check-config"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("IMAP ok"), "{out}");
    let smtp = out
        .lines()
        .find(|l| l.starts_with("SMTP FAILED"))
        .unwrap_or_else(|| panic!("no SMTP FAILED line:\n{out}"));
    assert!(
        smtp.contains(&format!("127.0.0.1:{}", stack.submission_port)),
        "{smtp}"
    );
    // Connection refused is immediate: no waiting for smtp.timeout.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// Issue 7: check-config says what the border MTA must do for handler mail
/// to be believed, and warns about a password other users can read.
#[test]
fn check_config_states_the_border_requirements() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secintake.toml");
    let toml = format!(
        "{BASE}\n[handler_auth]\ntrusted_authserv_id = \"mx.example.org\"\nborder_hosts = [\"lmtp.example.org\"]\n"
    );
    std::fs::write(&path, toml).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out, err) = cli(&path, &["check-config", "--offline"]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "remove Authentication-Results fields claiming mx.example.org",
        "mx.example.org, lmtp.example.org",
        "holds imap.password and other users can read it (mode 640)",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }
}

/// Issue 12: commands that contact no server run beside a systemd unit
/// whose LoadCredential= files only the unit can read: a password file
/// that cannot be read does not stop `status`, `cases` or `backup`; `run`
/// and `check-config` still say exactly what is missing.
#[test]
fn offline_commands_run_without_the_server_secrets() {
    let w = crate::common::world::World::start_ready(|_| {});
    w.report("reporter@example.net", "Seen before the secrets went away");
    w.wait_acked_cases(1);
    let text = std::fs::read_to_string(&w.config).unwrap();
    let gone = "/run/credentials/secintake.service/imap-password";
    let moved = text.replacen(
        "password = \"secret\"",
        &format!("password_file = \"{gone}\""),
        1,
    );
    assert_ne!(moved, text, "the test config names the IMAP password");
    let config = w.dir.path().join("credentials.toml");
    std::fs::write(&config, moved).unwrap();
    let (code, out, err) = cli(&config, &["status", "--json"]);
    assert!(matches!(code, 0 | 3), "status: {err}");
    assert!(out.contains("\"open_cases\": 1"), "{out}");
    let (code, out, err) = cli(&config, &["cases", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Seen before the secrets went away"), "{out}");
    let (code, _, err) = cli(&config, &["check-config", "--offline"]);
    assert_eq!(code, 1);
    assert!(err.contains(gone), "{err}");
}
