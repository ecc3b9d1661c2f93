//! Handler mail trusted by its DKIM signature, which secintake verifies
//! itself through DNS (`[handler_auth] accept = ["dkim"]`, issue 11): the
//! one proof besides an OpenPGP signature that works on any provider. The
//! stack's OpenDKIM signs mail submitted on its submission port; a real
//! DNS server (dnsmasq) serves its public keys; the stack's own
//! Authentication-Results are not accepted here, so only secintake's own
//! check can make a handler.

use crate::common;

use common::daemon::eventually;
use common::dns::Dns;
use common::world::{World, T};
use std::time::Duration;

const SECURITY: &str = "security@example.org";
const ALICE: &str = "alice@example.org";

/// A World whose handler mail counts only with a DKIM signature secintake
/// verified through `dns`.
fn dkim_world() -> (World, Dns) {
    let mut w = World::start_ready(|_| {});
    let dns = Dns::start(w.dir.path(), &Dns::for_stack(&w.stack.dir));
    w.daemon.kill9();
    let addr = dns.addr.clone();
    w.reconfigure(|c| {
        c.extra = format!("[handler_auth]\naccept = [\"dkim\"]\ndns_servers = [\"{addr}\"]\n");
    });
    w.restart();
    w.daemon.wait_running(T);
    (w, dns)
}

/// Alice's command mail threaded under case `id`'s notification.
fn command(w: &World, id: &str, body: &str) -> Vec<u8> {
    w.threaded(id, ALICE, body)
}

#[test]
fn a_dkim_signed_handler_command_acts_unsigned_or_altered_ones_do_not() {
    let (w, _dns) = dkim_world();
    w.report("reporter@example.net", "Signed commands only");
    let id = w.wait_acked_cases(1)[0]["id"].as_str().unwrap().to_string();

    // Submitted: OpenDKIM signs it with example.org's key.
    w.stack.submit(
        ALICE,
        ALICE,
        &[SECURITY],
        &command(&w, &id, "/severity low"),
    );
    eventually(
        T,
        "severity set by a signed command",
        Some(&w.daemon),
        || (w.show(&id)["severity"] == "low").then_some(()),
    );

    // Unsigned, over the inbound port: refused and alerted.
    w.stack
        .send_raw(ALICE, &[SECURITY], &command(&w, &id, "/severity critical"));
    let forged = eventually(T, "the unsigned command refused", Some(&w.daemon), || {
        let f = w.forged_events(&id);
        (!f.is_empty()).then_some(f)
    });
    assert!(
        forged[0].contains("no DKIM signature") || forged[0].contains("no valid DKIM signature"),
        "{forged:?}"
    );

    // Signed, then altered on the way: the signature no longer verifies.
    let carol = "carol@example.org";
    w.stack.submit(
        ALICE,
        ALICE,
        &[carol],
        &command(&w, &id, "/severity medium"),
    );
    let signed = w.wait_mail(carol, T, |m| !m.is_empty()).remove(0);
    let text = String::from_utf8_lossy(&signed).into_owned();
    assert!(
        text.contains("DKIM-Signature:"),
        "the stack did not sign: {text}"
    );
    let altered = text.replace("/severity medium", "/severity high");
    w.stack.save(SECURITY, "INBOX", altered.as_bytes());
    let forged = eventually(T, "the altered command refused", Some(&w.daemon), || {
        let f = w.forged_events(&id);
        (f.len() >= 2).then_some(f)
    });
    assert!(forged[1].contains("does not verify"), "{forged:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(w.show(&id)["severity"], "low");
}
