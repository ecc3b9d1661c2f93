//! The daemon under systemd (issue 12): the notify protocol it speaks
//! (READY=1, STATUS= with one line of health, WATCHDOG=1 while its state
//! file's worker answers), read from a real notify socket; its log as
//! native journal entries, read from a real systemd-journald; and the
//! shipped unit's exposure score.

use crate::common;

use common::daemon::{eventually, Daemon};
use common::world::{World, T};
use serde_json::Value;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn it_tells_systemd_it_is_ready_how_it_is_and_that_it_lives() {
    let mut w = World::start_ready(|_| {});
    w.report("r@example.net", "Counted in STATUS=");
    w.wait_acked_cases(1);
    w.daemon.terminate(T);
    let sock_path = w.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sock_env = sock_path.to_string_lossy().into_owned();
    // systemd names the watched process in WATCHDOG_PID: the shell's pid,
    // which exec hands on to the daemon.
    let mut d = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" --config \"$1\" run")
        .arg(common::secintake_bin())
        .arg(&w.config)
        .env("NOTIFY_SOCKET", &sock_env)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(4) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &d.id().to_string()])
        .status();
    let stop = Instant::now();
    while stop.elapsed() < T {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        if d.try_wait().ok().flatten().is_some() {
            break;
        }
    }
    let _ = d.kill();
    let _ = d.wait();
    let all = got.join("\n");
    assert!(all.contains("READY=1"), "{all}");
    let status = got
        .iter()
        .flat_map(|m| m.lines())
        .find(|l| l.starts_with("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS=: {all}"));
    assert!(
        status.contains("1 open case(s)")
            && status.contains("imap ok")
            && status.contains("state file ok"),
        "{status}"
    );
    // Twice a period of 1 s, for 4 s.
    let pings = all.matches("WATCHDOG=1").count();
    assert!(pings >= 5, "{pings} pings: {all}");
    assert!(all.contains("STOPPING=1"), "{all}");
}

#[test]
fn the_shipped_unit_exposure_score_is_1_2_or_less() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/security-score.sh"))
        .output()
        .expect("run scripts/security-score.sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let score: f64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no score: {text}"));
    assert!(score <= 1.2, "exposure {score}:\n{text}");
}

/// Runs `"$@"` with its stderr on a stream into a private systemd-journald
/// and JOURNAL_STREAM naming that stream, as systemd does for a service.
/// Run by `unshare --mount --pid --fork`: the tmpfs on /run (journald's
/// sockets and files) is seen by nothing outside, and every process in the
/// namespace dies with the shell, its init. journald keeps its journal in
/// $1, the test's folder mounted on /run/log/journal, for journalctl
/// outside. Before the daemon, one CLI command that fails (a config that
/// does not exist): the error line `main` prints last.
const IN_JOURNAL_NAMESPACE: &str = r#"
set -eu
dir=$1; shift
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/journald.conf.d /run/log/journal
mount --bind "$dir" /run/log/journal
printf '[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\nForwardToWall=no\nRateLimitBurst=0\n' \
    >/run/systemd/journald.conf.d/test.conf
SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-journald &
tries=0
until [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 500 ] || { echo "systemd-journald did not start" >&2; exit 1; }
    sleep 0.02
done
systemd-cat --identifier=secintake sh -c '
    export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"
    "$1" --config /nonexistent/secintake.toml status
    exec "$@"' sh "$@" || true
wait
"#;

/// The private journal's entries (`journalctl -o json`), none before
/// journald has written its file.
fn journal_entries(dir: &Path) -> Vec<Value> {
    let out = Command::new("journalctl")
        .arg(format!("--directory={}", dir.display()))
        .args(["--output=json", "--no-pager"])
        .output()
        .expect("run journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or_default()
}

/// Issue 12: when stderr is the journal, events are native journal
/// entries: the error at PRIORITY=3 with its fields, info at 6, no `<N>`
/// or colour in MESSAGE, and the cap on other crates holds there too (no
/// password, however loud SECINTAKE_LOG asks async-imap to be).
#[test]
fn under_journald_events_are_native_journal_entries() {
    const WRONG: &str = "Wr0ng-journal-pw-5e1f";
    // Started with the right password, then stopped and given the wrong
    // one: a first daemon that recorded the refusal itself would make the
    // next one load it as known and not log it again.
    let mut w = World::start_ready(|_| {});
    w.daemon.kill9();
    w.reconfigure(|c| c.imap_password = WRONG.into());
    let journal = tempfile::tempdir().unwrap();
    let mut wrapper = Command::new("unshare");
    wrapper
        .args(["--mount", "--propagation", "private"])
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .args(["sh", "-c", IN_JOURNAL_NAMESPACE, "sh"])
        .arg(journal.path());
    let loud = "trace,async_imap::imap_stream=trace,async_imap=trace,imap_proto=trace,\
                lettre::transport::smtp=trace,rustls=trace,tokio_rustls=trace";
    let d = Daemon::start_wrapped(wrapper, &w.config, w.dir.path(), &[("SECINTAKE_LOG", loud)]);
    let entries = eventually(T, "the CLI's error and the refused login", Some(&d), || {
        let e = journal_entries(journal.path());
        let has = |needle: &str| e.iter().any(|e| field(e, "MESSAGE").contains(needle));
        (has("/nonexistent/secintake.toml") && has("the server refused the login")).then_some(e)
    });
    let text = entries
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let find = |needle: &str| {
        entries
            .iter()
            .find(|e| field(e, "MESSAGE").contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} entry in\n{text}"))
    };
    let refused = find("the server refused the login");
    assert_eq!(field(refused, "PRIORITY"), "3", "{refused}");
    assert_eq!(field(refused, "_TRANSPORT"), "journal", "{refused}");
    assert_eq!(
        field(refused, "SYSLOG_IDENTIFIER"),
        "secintake",
        "{refused}"
    );
    assert!(
        field(refused, "TARGET").starts_with("secintake::"),
        "{refused}"
    );
    assert_eq!(field(refused, "COMPONENT"), "imap", "{refused}");
    assert!(!field(refused, "ERROR").is_empty(), "{refused}");
    let running = find("secintake running");
    assert_eq!(field(running, "PRIORITY"), "6", "{running}");
    assert_eq!(field(running, "_TRANSPORT"), "journal", "{running}");
    assert_eq!(field(running, "MAILBOX"), w.cfg.address, "{running}");
    // main's last line, through the stream: `<3>` read as its priority.
    let failed = find("/nonexistent/secintake.toml");
    assert_eq!(field(failed, "PRIORITY"), "3", "{failed}");
    assert!(
        field(failed, "MESSAGE").starts_with("secintake: "),
        "{failed}"
    );
    for e in entries
        .iter()
        .filter(|e| field(e, "SYSLOG_IDENTIFIER") == "secintake")
    {
        let message = field(e, "MESSAGE");
        assert!(!message.starts_with('<'), "a priority prefix: {e}");
        assert!(!message.contains('\u{1b}'), "colour codes: {e}");
        let ours = field(e, "TARGET").starts_with("secintake");
        assert!(
            ours || field(e, "PRIORITY") < "7",
            "another crate's debug: {e}"
        );
    }
    assert!(
        !text.contains(WRONG),
        "the password in the journal:\n{text}"
    );
    assert!(
        !text.contains(&w.stack.password),
        "a password in the journal"
    );
    drop(d);
}
