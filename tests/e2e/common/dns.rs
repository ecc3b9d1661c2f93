//! A real DNS server for the tests: Debian's dnsmasq on a loopback port,
//! answering only the TXT records the test gives it (the stack's DKIM
//! public keys, DMARC policies). Installed by scripts/install-deps.sh
//! (dnsmasq-base); killed on drop.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Dns {
    child: Child,
    /// "127.0.0.1:<port>", for `[handler_auth] dns_servers`.
    pub addr: String,
}

impl Dns {
    /// Serves `records` (name, TXT value) on a free loopback UDP port.
    pub fn start(dir: &Path, records: &[(String, String)]) -> Dns {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        let mut cmd = Command::new("/usr/sbin/dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--log-facility=-",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
        for (name, value) in records {
            // One TXT record, split into strings of at most 255 bytes.
            let chunks: Vec<String> = value
                .as_bytes()
                .chunks(200)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            cmd.arg(format!("--txt-record={name},{}", chunks.join(",")));
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dnsmasq ({e}): install dnsmasq-base (scripts/install-deps.sh)")
            });
        // Ready when it answers on its port.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if UdpSocket::bind(format!("127.0.0.1:{port}")).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Dns {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    /// The stack's DKIM keys as TXT records, and `p=reject` DMARC policies.
    pub fn for_stack(stack_dir: &Path) -> Vec<(String, String)> {
        let keys = std::fs::read_to_string(stack_dir.join("dkim/public-keys"))
            .expect("the stack's DKIM public keys");
        let mut out: Vec<(String, String)> = keys
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for d in ["example.org", "example.net"] {
            out.push((format!("_dmarc.{d}"), "v=DMARC1; p=reject".into()));
        }
        out
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
