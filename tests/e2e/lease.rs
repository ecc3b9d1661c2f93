//! The mailbox lease when its connection dies silently (issue 12; found
//! in review): a holder whose heartbeats stall must stop reading mail
//! before another instance may take the mailbox over. The lease's
//! session used to be kept open with nothing to bound a stalled beat,
//! and intake asked for the lease only when its own session began: the
//! holder went on answering while the standby took over, and a report
//! was acknowledged twice.

use crate::common;

use common::daemon::{eventually, Daemon};
use common::world::{World, T};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A plaintext IMAP relay between the daemon and Dovecot that can make
/// the lease's connections (those naming the lease folder) go silent:
/// open, but nothing gets through either way, as behind a NAT entry that
/// was dropped.
struct Proxy {
    port: u16,
    stall: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stall = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stall.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let (Ok(client), Ok(server)) =
                    (client, TcpStream::connect(("127.0.0.1", upstream)))
                else {
                    continue;
                };
                let lease = Arc::new(AtomicBool::new(false));
                pump(&client, &server, &lease, &s, true);
                pump(&server, &client, &lease, &s, false);
            }
        });
        Proxy { port, stall, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` on a thread of its own; a client's stream is
/// `inspect`ed for the lease folder's name.
fn pump(
    from: &TcpStream,
    to: &TcpStream,
    lease: &Arc<AtomicBool>,
    stall: &Arc<AtomicBool>,
    inspect: bool,
) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    let (lease, stall) = (lease.clone(), stall.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if inspect && buf[..n].windows(14).any(|w| w == b"SecintakeLease") {
                lease.store(true, Ordering::SeqCst);
            }
            if lease.load(Ordering::SeqCst) && stall.load(Ordering::SeqCst) {
                continue;
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[test]
fn a_holder_whose_lease_connection_goes_silent_stops_before_another_takes_over() {
    let mut proxy = None;
    let mut w = World::start_ready(|c| {
        c.alert_after = "3s".into();
        let p = Proxy::start(c.imap_port);
        c.imap_port = p.port;
        c.imap_tls = "none".into();
        proxy = Some(p);
    });
    let proxy = proxy.unwrap();
    w.report("first@example.net", "Before the stall");
    w.wait_acked_cases(1);

    // The standby: same mailbox, reached directly, its own state file.
    let other = tempfile::tempdir().unwrap();
    let mut cfg = w.cfg.clone();
    cfg.imap_port = w.stack.imap_port;
    cfg.imap_tls = "starttls".into();
    cfg.storage_path = other.path().join("other.db");
    let other_config = other.path().join("other.toml");
    cfg.write(&other_config);
    let mut standby =
        Daemon::start_with_args(&other_config, other.path(), &["run", "--adopt"], &[]);
    eventually(T, "the standby", Some(&standby), || {
        standby
            .log_text()
            .contains("another secintake instance")
            .then_some(())
    });

    proxy.stall.store(true, Ordering::SeqCst);
    eventually(
        T,
        "the holder noticing its lease lapse",
        Some(&w.daemon),
        || {
            w.log()
                .contains("no heartbeat of the mailbox's lease")
                .then_some(())
        },
    );
    eventually(T, "the takeover", Some(&standby), || {
        standby
            .log_text()
            .contains("this instance holds the mailbox")
            .then_some(())
    });
    let reporters: Vec<String> = (0..10).map(|i| format!("s{i}@example.net")).collect();
    for r in &reporters {
        w.report(r, "After the takeover");
    }
    for r in &reporters {
        eventually(T, &format!("{r}'s acknowledgement"), Some(&standby), || {
            (!w.message_ids(r).is_empty()).then_some(())
        });
    }
    // Whatever the old holder might still send has time to land.
    std::thread::sleep(Duration::from_secs(3));
    for r in &reporters {
        let got = w.message_ids(r);
        assert_eq!(got.len(), 1, "{r} got {got:?}\n---- holder\n{}", w.log());
    }
    assert_eq!(
        w.cases().len(),
        1,
        "the old holder recorded reports after its lease lapsed"
    );
    // The old holder says so: its lease is a failing part (status exit 3)
    // and, after limits.alert_after, the handlers are alerted.
    let (code, out, _) = common::daemon::cli(&w.config, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 3, "{out}");
    assert!(st["lease"]["failing_since"].is_string(), "{out}");
    let (_, text, _) = common::daemon::cli(&w.config, &["status"]);
    assert!(
        text.contains("mailbox lease  FAILING since") && text.contains("no answer within"),
        "{text}"
    );
    let alert = eventually(T, "the lease alert", Some(&w.daemon), || {
        w.stack
            .fetch_all("alice@example.org")
            .into_iter()
            .find(|m| {
                common::header(m, "Subject").is_some_and(|s| s.contains("ALERT"))
                    && String::from_utf8_lossy(m).contains("mailbox lease")
            })
    });
    assert!(String::from_utf8_lossy(&alert).contains("no answer within"));
    assert!(w.daemon.alive(), "{}", w.log());
    standby.terminate(T);
}
