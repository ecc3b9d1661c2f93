//! Handler mail trusted through ARC (RFC 8617, issue 11): a hop between
//! the handler and the mailbox (a list, a forwarder) recorded its verdict
//! and sealed it; `[handler_auth] arc_sealers` names the sealers whose
//! verdicts count. The sealer is dkimpy's `arcsign` (Debian's
//! python3-dkim); a real DNS server (dnsmasq) serves its keys; secintake
//! verifies the chain itself.

use crate::common;

use common::daemon::eventually;
use common::dns::Dns;
use common::world::{World, T};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SECURITY: &str = "security@example.org";
const ALICE: &str = "alice@example.org";
const LISTED: &str = "lists.example.net";
const UNLISTED: &str = "other.example.net";

/// An RSA key for `domain`'s sealer: the private key file and the TXT
/// record of `arc._domainkey.<domain>`.
fn sealer_key(dir: &Path, domain: &str) -> (PathBuf, (String, String)) {
    let key = dir.join(format!("{domain}.pem"));
    let ok = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl genrsa");
    let der = Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .stderr(Stdio::null())
        .output()
        .unwrap()
        .stdout;
    let p = base64(&der);
    (
        key,
        (
            format!("arc._domainkey.{domain}"),
            format!("v=DKIM1; k=rsa; p={p}"),
        ),
    )
}

fn base64(bytes: &[u8]) -> String {
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// `raw` as the sealer `domain` passes it on: its inbound server's
/// verdict (a DKIM pass for example.org) on top, then an ARC set.
fn sealed(raw: &[u8], domain: &str, key: &Path) -> Vec<u8> {
    let srv = format!("mx.{domain}");
    let mut input =
        format!("Authentication-Results: {srv}; dkim=pass header.d=example.org header.s=mail\r\n")
            .into_bytes();
    input.extend_from_slice(raw);
    let mut child = Command::new("arcsign")
        .args(["arc", domain])
        .arg(key)
        .arg(&srv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run arcsign ({e}): install python3-dkim"));
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("ARC-Seal:"),
        "arcsign sealed nothing: {out:?}"
    );
    out.stdout
}

#[test]
fn a_listed_sealers_verdict_acts_an_unlisted_or_altered_one_does_not() {
    let mut w = World::start_ready(|_| {});
    let (listed_key, listed_txt) = sealer_key(w.dir.path(), LISTED);
    let (unlisted_key, unlisted_txt) = sealer_key(w.dir.path(), UNLISTED);
    let mut records = Dns::for_stack(&w.stack.dir);
    records.push(listed_txt);
    records.push(unlisted_txt);
    let dns = Dns::start(w.dir.path(), &records);
    w.daemon.kill9();
    let addr = dns.addr.clone();
    w.reconfigure(|c| {
        c.extra =
            format!("[handler_auth]\narc_sealers = [\"{LISTED}\"]\ndns_servers = [\"{addr}\"]\n");
    });
    w.restart();
    w.daemon.wait_running(T);
    w.report("reporter@example.net", "Commands through a list");
    let id = w.wait_acked_cases(1)[0]["id"].as_str().unwrap().to_string();

    // Sealed by the listed sealer: the command acts.
    let raw = sealed(
        &w.threaded(&id, ALICE, "/severity low"),
        LISTED,
        &listed_key,
    );
    w.stack.save(SECURITY, "INBOX", &raw);
    eventually(T, "severity set through ARC", Some(&w.daemon), || {
        (w.show(&id)["severity"] == "low").then_some(())
    });

    // Sealed by a sealer that is not listed: forged.
    let raw = sealed(
        &w.threaded(&id, ALICE, "/severity critical"),
        UNLISTED,
        &unlisted_key,
    );
    w.stack.save(SECURITY, "INBOX", &raw);
    let forged = eventually(T, "the unlisted sealer refused", Some(&w.daemon), || {
        let f = w.forged_events(&id);
        (!f.is_empty()).then_some(f)
    });
    assert!(
        forged[0].contains("sealed by other.example.net, which is not in"),
        "{forged:?}"
    );

    // Sealed by the listed one, then changed: the chain no longer
    // verifies.
    let raw = sealed(
        &w.threaded(&id, ALICE, "/severity medium"),
        LISTED,
        &listed_key,
    );
    let altered = String::from_utf8_lossy(&raw).replace("/severity medium", "/severity high");
    w.stack.save(SECURITY, "INBOX", altered.as_bytes());
    eventually(T, "the altered mail refused", Some(&w.daemon), || {
        (w.forged_events(&id).len() >= 2).then_some(())
    });
    // Nothing but the ARC verdict could have made the first command act:
    // no trusted_authserv_id, no "dkim", no OpenPGP key.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.show(&id)["severity"], "low");
    let forged = w.forged_events(&id);
    assert!(forged[1].contains("ARC chain"), "{forged:?}");
}
