//! OpenPGP on the real stack (issue 10), with GnuPG as the reporters' and
//! handlers' tool: reports encrypted to the team key as mail clients build
//! them (PGP/MIME with protected headers, inline PGP, broken armor), and
//! what reaches whom in cleartext.
//!
//! The keys are fixtures (tests/fixtures/pgp, see its README): the team
//! key (with a passphrase), Rita the reporter, Alice the handler. Every
//! test gives gpg a home of its own, so nothing touches ~/.gnupg.

use crate::common;

use common::daemon::{cli, eventually};
use common::world::{World, T};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SECURITY: &str = "security@example.org";
const RITA: &str = "rita@example.net";
const ALICE: &str = "alice@example.org";
/// In every encrypted text below: it must never appear in cleartext mail
/// or in the daemon's log.
const CANARY: &str = "canary-7d1f";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pgp")
        .join(name)
}

/// A GnuPG home holding `keys` (fixture files), deleted on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn with(keys: &[&str]) -> Gpg {
        let home = tempfile::tempdir().unwrap();
        let g = Gpg { home };
        for k in keys {
            g.run(&["--import", fixture(k).to_str().unwrap()], None);
        }
        g
    }

    /// Runs gpg in batch mode; returns stdout. Panics, with stderr, when
    /// gpg fails (or is missing: scripts/install-deps.sh installs gnupg).
    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        use std::io::Write;
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--yes", "--trust-model", "always", "--no-tty"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run gpg ({e}): install gnupg (scripts/install-deps.sh)")
            });
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.unwrap_or_default()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `data` encrypted to `to`, signed by `from` when given, armored.
    fn encrypt(&self, data: &[u8], to: &str, from: Option<&str>) -> String {
        let mut args = vec!["--armor", "--encrypt", "-r", to];
        if let Some(f) = from {
            args.extend(["--sign", "-u", f]);
        }
        String::from_utf8(self.run(&args, Some(data))).unwrap()
    }
}

/// A PGP/MIME message (RFC 3156) as Thunderbird and Mutt build it: the
/// real subject inside, as a protected header, "..." outside.
fn pgp_mime(
    from: &str,
    to: &str,
    subject: &str,
    body: &str,
    gpg: &Gpg,
    signer: Option<&str>,
) -> Vec<u8> {
    let inner = format!(
        "Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n\
         Subject: {subject}\r\n\r\n{body}\r\n"
    );
    let armored = gpg.encrypt(inner.as_bytes(), SECURITY, signer);
    let mid = common::new_message_id("pgp");
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: ...\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <{mid}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc\"\r\n\r\n\
         This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
         --enc\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n\
         --enc\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n\
         {armored}\r\n--enc--\r\n"
    )
    .into_bytes()
}

impl World {
    /// The team key configured (with its passphrase file), Alice a handler
    /// whose mail the stack authenticates.
    fn pgp() -> World {
        World::start_ready(|cfg| {
            cfg.handlers = vec![("Alice".into(), ALICE.into())];
            cfg.extra = format!(
                "[handler_auth]\ntrusted_authserv_id = \"{}\"\n\n[pgp]\n\
                 secret_key_file = \"{}\"\npassphrase_file = \"{}\"\n\
                 sign_acknowledgements = true\n",
                common::AUTHSERV_ID,
                fixture("team.sec.asc").display(),
                fixture("team.pass").display(),
            );
        })
    }

    /// Waits for the case whose report came from `from`; returns its JSON.
    fn case_from(&self, from: &str, n: usize) -> Value {
        let cases = self.wait_cases(n);
        cases
            .into_iter()
            .find(|c| c["reporter"] == from)
            .unwrap_or_else(|| self.fail(&format!("no case from {from}")))
    }

    /// Waits until case `id` records the event `what`; returns the case.
    fn wait_event(&self, id: &str, what: &str) -> Value {
        eventually(T, &format!("{what:?} on {id}"), Some(&self.daemon), || {
            let v = self.show(id);
            let done = v["events"].as_array()?.iter().any(|e| e["what"] == what);
            done.then_some(v)
        })
    }
}

impl World {
    /// Alice's cleartext answer in the case's thread, submitted on the
    /// authenticated port (the stack's verdict makes it hers).
    fn alice_answers(&self, id: &str, body: &str) {
        let answer = self.threaded(id, ALICE, body);
        self.stack.submit(ALICE, ALICE, &[SECURITY], &answer);
    }
}

/// A message as text, quoted-printable soft line breaks joined (long
/// lines of a letter are wrapped in transit).
fn text(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).replace("=\r\n", "")
}

#[test]
fn an_encrypted_report_is_read_but_its_text_reaches_nobody_in_cleartext() {
    let w = World::pgp();
    let rita = Gpg::with(&["team.pub.asc", "reporter.sec.asc"]);
    let subject = "Heap overflow in the PNG decoder";
    let body = format!("The chunk length is trusted. {CANARY}\n\nSteps: open crash.png");
    let raw = pgp_mime(RITA, SECURITY, subject, &body, &rita, Some(RITA));
    w.stack.send_raw(RITA, &[SECURITY], &raw);

    // The case carries the real subject, locally; mail shows the outer one.
    let case = w.case_from(RITA, 1);
    let id = case["id"].as_str().unwrap().to_string();
    assert_eq!(case["subject"], "...");
    let shown = w.show(&id);
    assert_eq!(shown["encrypted"], true);
    assert_eq!(shown["protected_subject"], subject);
    let report_text = w.cli_ok(&["cases", "show", &id, "--text"]);
    assert!(
        report_text.contains(CANARY),
        "decrypted text: {report_text}"
    );
    assert!(report_text.contains("Steps: open crash.png"));
    w.wait_state(&id, "acknowledged");

    // Alice (no key configured) gets the facts, not the text; Rita's
    // acknowledgement quotes nothing of the report.
    let alice = w.wait_mailbox(ALICE, 1);
    let note = text(&alice[0]);
    assert!(
        !note.contains(CANARY),
        "cleartext notification leaks: {note}"
    );
    assert!(
        !note.contains(subject),
        "the protected subject leaks: {note}"
    );
    assert!(note.contains("not sent in cleartext"), "{note}");
    assert!(
        note.contains(&format!("secintake cases show {id} --text")),
        "{note}"
    );
    let ack_raw = w.wait_mailbox(RITA, 1).remove(0);
    let ack = text(&ack_raw);
    assert!(!ack.contains(CANARY) && !ack.contains(subject), "{ack}");
    // Signed (sign_acknowledgements), and gpg agrees.
    let status = gpg_verify_mime(&Gpg::with(&["team.pub.asc"]), &ack_raw);
    assert!(status.contains("GOODSIG"), "{status}\n{ack}");

    // A handler's cleartext answer is not relayed to the reporter of an
    // encrypted report: the handler is told why, the reporter gets nothing.
    w.alice_answers(&id, "Thanks, we can reproduce it and are working on a fix.");
    let v = w.wait_event(&id, "reply not relayed");
    let why = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["what"] == "reply not relayed")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("the report was encrypted"), "{why}");
    w.wait_outbox_empty();
    w.assert_mailbox(RITA, 1);

    // `/cleartext`: this one answer goes unencrypted, under the outer
    // subject (the real one stays protected).
    w.alice_answers(&id, "/cleartext\n\nPlease send us your public key.");
    w.wait_event(&id, "response relayed to the reporter");
    let mails = w.wait_mailbox(RITA, 2);
    let relay = mails
        .iter()
        .map(|m| text(m))
        .find(|m| m.contains("Please send us your public key."))
        .unwrap_or_else(|| panic!("no cleartext relay"));
    assert!(
        !relay.contains(subject) && !relay.contains(CANARY),
        "{relay}"
    );

    // Nothing decrypted in the log (the daemon logs at debug).
    let log = w.log();
    assert!(!log.contains(CANARY), "the log holds decrypted text");
    assert!(
        !log.contains(subject),
        "the log holds the protected subject"
    );
}

#[test]
fn an_encrypted_handler_reply_runs_its_commands() {
    let w = World::pgp();
    let raw = common::simple_message(RITA, SECURITY, "Plain report", "Cleartext details.");
    w.stack.send_raw(RITA, &[SECURITY], &raw);
    let id = w.case_from(RITA, 1)["id"].as_str().unwrap().to_string();
    w.wait_state(&id, "acknowledged");

    // Alice answers encrypted to the team key (her client would), threaded
    // under the notification; the stack authenticates her as always.
    let alice = Gpg::with(&["team.pub.asc", "alice.sec.asc"]);
    let root = common::daemon::thread_root(&w.db(), &id);
    let inner = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n/severity high\r\n/state triage\r\n{CANARY}\r\n");
    let armored = alice.encrypt(inner.as_bytes(), SECURITY, Some(ALICE));
    let mid = common::new_message_id("enc-cmd");
    let mail = format!(
        "From: {ALICE}\r\nTo: {SECURITY}\r\nSubject: Re: [{id}] New report\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{mid}>\r\n\
         In-Reply-To: <{root}>\r\nReferences: <{root}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n\
         --e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --e\r\nContent-Type: application/octet-stream\r\n\r\n{armored}\r\n--e--\r\n"
    );
    w.stack.submit(ALICE, ALICE, &[SECURITY], mail.as_bytes());
    let v = w.wait_state(&id, "triage");
    assert_eq!(v["severity"], "high");
    assert!(!w.log().contains(CANARY), "the log holds decrypted text");
}

#[test]
fn inline_pgp_and_broken_armor_both_open_cases_and_intake_goes_on() {
    let w = World::pgp();
    let rita = Gpg::with(&["team.pub.asc", "reporter.sec.asc"]);
    let armored = rita.encrypt(
        format!("Inline secret: {CANARY}\n").as_bytes(),
        SECURITY,
        None,
    );
    let quoted: String = armored.lines().map(|l| format!("> {l}\n")).collect();
    let inline = common::simple_message(
        RITA,
        SECURITY,
        "Inline encrypted report",
        &format!("Hello team,\n{quoted}Regards, Rita"),
    );
    w.stack.send_raw(RITA, &[SECURITY], &inline);

    let half = &armored[..armored.len() / 2];
    let broken = common::simple_message(
        "bob@example.net",
        SECURITY,
        "Truncated armor",
        &format!("{half}\n-----END PGP MESSAGE-----\n"),
    );
    w.stack.send_raw("bob@example.net", &[SECURITY], &broken);
    // Encrypted to another key: the team cannot read it.
    let other = std::fs::read_to_string(fixture("to-other.asc")).unwrap();
    let not_ours = common::simple_message("dave@example.net", SECURITY, "Not for you", &other);
    w.stack.send_raw("dave@example.net", &[SECURITY], &not_ours);
    let after = common::simple_message("carol@example.net", SECURITY, "Cleartext after", "plain");
    w.stack.send_raw("carol@example.net", &[SECURITY], &after);

    let cases = w.wait_cases(4);
    let id_of = |from: &str| {
        cases.iter().find(|c| c["reporter"] == from).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let inline_text = w.cli_ok(&["cases", "show", &id_of(RITA), "--text"]);
    assert!(
        inline_text.contains(&format!("Inline secret: {CANARY}")),
        "{inline_text}"
    );
    assert!(inline_text.contains("Hello team,") && inline_text.contains("Regards, Rita"));

    // The broken one: a case all the same, and the handler is told why.
    let broken_id = id_of("bob@example.net");
    w.wait_state(&broken_id, "acknowledged");
    let mails = w.wait_mail(ALICE, T, |m| m.len() >= 4);
    for id in [broken_id, id_of("dave@example.net")] {
        let note = mails
            .iter()
            .map(|m| text(m))
            .find(|m| m.contains(&format!("[{id}] New report")))
            .unwrap();
        assert!(note.contains("could not decrypt it"), "{note}");
    }
    assert!(mails.iter().all(|m| !text(m).contains(CANARY)));
    let (code, out, err) = cli(&w.config, &["cases", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Cleartext after"), "{out}");
}

/// gpg's status lines for a PGP/MIME signed message (RFC 3156 section 5):
/// the first part exactly as it stands, against the second.
fn gpg_verify_mime(gpg: &Gpg, raw: &[u8]) -> String {
    // Exactly as delivered: the signature covers the encoded bytes.
    let msg = String::from_utf8_lossy(raw);
    let b = msg
        .split("boundary=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("not multipart: {msg}"));
    let delim = format!("\r\n--{b}\r\n");
    let first = msg.find(&format!("--{b}\r\n")).unwrap() + b.len() + 4;
    let rest = &msg[first..];
    let end = rest.find(&delim).unwrap();
    let entity = &rest[..end];
    let sig_part = &rest[end + delim.len()..];
    let sig = &sig_part[sig_part.find("-----BEGIN PGP SIGNATURE-----").unwrap()..];
    let dir = tempfile::tempdir().unwrap();
    let (e, s) = (dir.path().join("entity"), dir.path().join("sig.asc"));
    std::fs::write(&e, entity).unwrap();
    std::fs::write(&s, sig).unwrap();
    let status = dir.path().join("status");
    gpg.run(
        &[
            "--status-file",
            status.to_str().unwrap(),
            "--verify",
            s.to_str().unwrap(),
            e.to_str().unwrap(),
        ],
        None,
    );
    std::fs::read_to_string(status).unwrap()
}

/// A World where Alice has a key (`pgp_key`) and Bob has none.
fn keyed_world(extra_auth: &str) -> World {
    World::start_ready(|cfg| {
        cfg.handlers = vec![];
        cfg.extra = format!(
            "[handler_auth]\ntrusted_authserv_id = \"{}\"\n{extra_auth}\n\n[pgp]\n\
             secret_key_file = \"{}\"\npassphrase_file = \"{}\"\n\n\
             [[handlers]]\nname = \"Alice\"\nemail = \"{ALICE}\"\npgp_key = \"{}\"\n\n\
             [[handlers]]\nname = \"Bob\"\nemail = \"{BOB}\"\n",
            common::AUTHSERV_ID,
            fixture("team.sec.asc").display(),
            fixture("team.pass").display(),
            fixture("alice.pub.asc").display(),
        );
    })
}

const BOB: &str = "bob@example.org";

/// The text of a PGP/MIME message decrypted by `gpg`, with gpg's status
/// (signature) lines.
fn gpg_open(gpg: &Gpg, raw: &[u8]) -> (String, String) {
    let msg = text(raw);
    let start = msg
        .find("-----BEGIN PGP MESSAGE-----")
        .unwrap_or_else(|| panic!("not encrypted: {msg}"));
    let end = msg.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    let armored = msg[start..end].replace("\r\n", "\n");
    let status = tempfile::NamedTempFile::new().unwrap();
    let out = gpg.run(
        &[
            "--status-file",
            status.path().to_str().unwrap(),
            "--decrypt",
        ],
        Some(armored.as_bytes()),
    );
    (text(&out), std::fs::read_to_string(status.path()).unwrap())
}

#[test]
fn keyed_handlers_get_the_report_sealed_and_the_reporter_is_answered_encrypted() {
    let w = keyed_world("");
    let rita = Gpg::with(&["team.pub.asc", "reporter.sec.asc"]);
    let rita_key = std::fs::read_to_string(fixture("reporter.pub.asc")).unwrap();
    // Thunderbird's shape: the sender's key attached inside the encryption.
    let subject = "Auth bypass in the admin API";
    let inner = format!(
        "Content-Type: multipart/mixed; boundary=\"in\"; protected-headers=\"v1\"\r\n\
         Subject: {subject}\r\n\r\n--in\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         The token check is skipped. {CANARY}\r\n--in\r\n\
         Content-Type: application/pgp-keys; name=\"OpenPGP_0xRITA.asc\"\r\n\
         Content-Disposition: attachment; filename=\"OpenPGP_0xRITA.asc\"\r\n\r\n{rita_key}\r\n--in--\r\n"
    );
    let armored = rita.encrypt(inner.as_bytes(), SECURITY, Some(RITA));
    let raw = format!(
        "From: {RITA}\r\nTo: {SECURITY}\r\nSubject: ...\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <{}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n\
         --e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
         --e\r\nContent-Type: application/octet-stream\r\n\r\n{armored}\r\n--e--\r\n",
        common::new_message_id("pgp")
    );
    w.stack.send_raw(RITA, &[SECURITY], raw.as_bytes());
    let id = w.case_from(RITA, 1)["id"].as_str().unwrap().to_string();
    let shown = w.wait_event(&id, "reporter key");
    let rita_fp = {
        let g = Gpg::with(&["reporter.pub.asc"]);
        let out = text(&g.run(&["--with-colons", "--fingerprint", RITA], None));
        out.lines()
            .find(|l| l.starts_with("fpr:"))
            .unwrap()
            .split(':')
            .nth(9)
            .unwrap()
            .to_string()
    };
    assert_eq!(shown["reporter_key"], rita_fp.as_str());

    // Alice's notification is sealed: gpg decrypts it with her key, the
    // team signed it, and it carries the report and the real subject.
    let alice_gpg = Gpg::with(&["alice.sec.asc", "team.pub.asc"]);
    let note = w.wait_mailbox(ALICE, 1).remove(0);
    assert!(
        !text(&note).contains(CANARY),
        "sealed mail leaks: {}",
        text(&note)
    );
    assert!(text(&note).contains("Subject: ..."), "{}", text(&note));
    let (inside, status) = gpg_open(&alice_gpg, &note);
    assert!(inside.contains(CANARY), "{inside}");
    assert!(
        inside.contains(&format!("Subject: [{id}] New report: {subject}")),
        "{inside}"
    );
    assert!(
        status.contains("GOODSIG"),
        "not signed by the team: {status}"
    );
    // Bob has no key: the facts.
    let bob = text(&w.wait_mailbox(BOB, 1)[0]);
    assert!(!bob.contains(CANARY) && !bob.contains(subject), "{bob}");
    assert!(bob.contains("not sent in cleartext"), "{bob}");

    // Alice answers in cleartext from her client (authenticated by the
    // stack); the reporter gets it encrypted to her attached key.
    w.alice_answers(&id, "We can reproduce it; a fix is on its way.");
    w.wait_event(&id, "response relayed to the reporter");
    let mails = w.wait_mailbox(RITA, 2);
    let relay = mails
        .iter()
        .find(|m| text(m).contains("multipart/encrypted"))
        .unwrap_or_else(|| panic!("no encrypted relay: {}", text(&mails[1])));
    assert!(!text(relay).contains("fix is on its way"));
    let (inside, status) = gpg_open(&rita, relay);
    assert!(inside.contains("a fix is on its way"), "{inside}");
    assert!(
        inside.contains(subject),
        "the real subject inside: {inside}"
    );
    assert!(status.contains("GOODSIG"), "{status}");
    assert!(!w.log().contains(CANARY));
}

/// A PGP/MIME signed message (RFC 3156 section 5) from `from`, signed by
/// `gpg`'s key `signer`, sent over plain inbound SMTP: no server verdict
/// authenticates it.
fn signed_mail(
    gpg: &Gpg,
    from: &str,
    signer: &str,
    subject: &str,
    headers: &str,
    body: &str,
) -> Vec<u8> {
    let entity = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n");
    let sig = text(&gpg.run(
        &["--armor", "--detach-sign", "-u", signer],
        Some(entity.as_bytes()),
    ));
    format!(
        "From: {from}\r\nTo: {SECURITY}\r\nSubject: {subject}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <{}>\r\n{headers}MIME-Version: 1.0\r\n\
         Content-Type: multipart/signed; micalg=pgp-sha256; protocol=\"application/pgp-signature\"; boundary=\"s\"\r\n\r\n\
         --s\r\n{entity}\r\n--s\r\nContent-Type: application/pgp-signature; name=\"signature.asc\"\r\n\r\n{sig}\r\n--s--\r\n",
        common::new_message_id("signed")
    )
    .into_bytes()
}

#[test]
fn a_handler_signature_authenticates_and_another_key_is_forged() {
    // Only the signature counts here: the stack's verdicts are ignored.
    let w = keyed_world("accept = [\"pgp-signature\"]");
    let raw = common::simple_message(RITA, SECURITY, "Plain report", "Cleartext details.");
    w.stack.send_raw(RITA, &[SECURITY], &raw);
    let id = w.case_from(RITA, 1)["id"].as_str().unwrap().to_string();
    let root = common::daemon::thread_root(&w.db(), &id);
    let thread = format!("In-Reply-To: <{root}>\r\nReferences: <{root}>\r\n");
    let alice = Gpg::with(&["alice.sec.asc"]);
    let mail = signed_mail(
        &alice,
        ALICE,
        ALICE,
        &format!("Re: [{id}] New report"),
        &thread,
        "/severity low",
    );
    w.stack.send_raw(ALICE, &[SECURITY], &mail);
    eventually(
        T,
        "severity set by a signed command",
        Some(&w.daemon),
        || (w.show(&id)["severity"] == "low").then_some(()),
    );

    // Mallory signs as Alice with her own key: refused, handlers alerted.
    let mallory = Gpg::with(&["other.sec.asc"]);
    let other_uid = "mallory@example.com";
    let forged = signed_mail(
        &mallory,
        ALICE,
        other_uid,
        &format!("Re: [{id}] New report"),
        &thread,
        "/severity critical",
    );
    w.stack.send_raw(ALICE, &[SECURITY], &forged);
    let v = w.wait_event(&id, "unauthenticated mail from a handler address ignored");
    assert_eq!(v["severity"], "low");
    let ev = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["what"] == "unauthenticated mail from a handler address ignored")
        .unwrap()["detail"]
        .to_string();
    assert!(ev.contains("not alice@example.org's pgp_key"), "{ev}");
}

#[test]
fn security_txt_is_signed_by_the_team_key_and_has_rfc_9116_fields() {
    let w = World::pgp();
    let out = w.cli_ok(&["security-txt", "--sign", "--languages", "en, de"]);
    assert!(
        out.starts_with("-----BEGIN PGP SIGNED MESSAGE-----"),
        "{out}"
    );
    let gpg = Gpg::with(&["team.pub.asc"]);
    let status = tempfile::NamedTempFile::new().unwrap();
    gpg.run(
        &["--status-file", status.path().to_str().unwrap(), "--verify"],
        Some(out.as_bytes()),
    );
    let status = std::fs::read_to_string(status.path()).unwrap();
    assert!(status.contains("GOODSIG"), "{status}");
    // RFC 9116: Contact and Expires are required, Expires once, in the
    // future; every line a known field.
    let plain = w.cli_ok(&["security-txt"]);
    let fields: Vec<(&str, &str)> = plain
        .lines()
        .map(|l| {
            l.split_once(": ")
                .unwrap_or_else(|| panic!("not a field: {l:?}"))
        })
        .collect();
    let known = [
        "Contact",
        "Expires",
        "Encryption",
        "Policy",
        "Preferred-Languages",
    ];
    assert!(fields.iter().all(|(k, _)| known.contains(k)), "{plain}");
    assert_eq!(fields.iter().filter(|(k, _)| *k == "Expires").count(), 1);
    assert!(fields.contains(&("Contact", "mailto:security@example.org")));
    let expires = fields.iter().find(|(k, _)| *k == "Expires").unwrap().1;
    let expires: chrono::DateTime<chrono::Utc> = expires.parse().unwrap();
    assert!(expires > chrono::Utc::now());
    let enc = fields.iter().find(|(k, _)| *k == "Encryption").unwrap().1;
    assert!(enc.starts_with("openpgp4fpr:"), "{enc}");
    let key = w.cli_ok(&["pgp", "export-key"]);
    assert!(
        key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{key}"
    );
}
