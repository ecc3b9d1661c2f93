//! The daemon under systemd (issue 12): the notify protocol it speaks
//! (READY=1, STATUS= with one line of health, WATCHDOG=1 while its state
//! file's worker answers), read from a real notify socket; and the
//! shipped unit's exposure score.

use crate::common;

use common::world::{World, T};
use std::os::unix::net::UnixDatagram;
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
