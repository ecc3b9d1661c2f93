//! End to end: handlers working cases from a real mail client.
//!
//! The real `secintake` binary runs against a private Dovecot + Postfix
//! (tests/e2e/common). Reports arrive over inbound SMTP; the handlers (Alice and
//! Bob) and the reporter answer with s-nail, a real command-line mail
//! client, replying to the very messages they received over IMAPS, so
//! In-Reply-To, References, subjects and quoting come from real client
//! behaviour, not from hand-made headers. Handler mail is submitted on the
//! stack's authenticated port, DKIM-signed there and verified on delivery
//! by OpenDKIM, which stamps a genuine `Authentication-Results:
//! mail.example.org; dkim=pass`; forged handler mail goes to the inbound
//! port like any stranger's (and one carries a hand-written verdict).
//!
//! Why: workflow.rs and commands.rs are unit-tested, but only the whole
//! loop shows that a handler's reply reaches the reporter in the reporter's
//! own thread without command lines or quoted text, that notes never leak,
//! that every command mail is answered, and that forged handler mail does
//! nothing.
//!
//! Each test has its own mail stack, state folder and daemon.

use crate::common;

use common::daemon::eventually;
use common::subjects;
use common::world::{World, T};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const SECURITY: &str = "security@example.org";
const COMMENT: &str = "security+comment@example.org";
const ANNOUNCE: &str = "announce@example.org";
const REPORTER: &str = "reporter@example.net";
const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
/// A verdict a forger writes into their own mail, naming the stack's
/// authserv-id: it arrives below the stack's Received field.
const FORGED_VERDICT: &str =
    "Authentication-Results: mail.example.org; dkim=pass header.d=example.org";
/// How long we wait for something that must NOT happen after the daemon
/// has processed its cause.
const SETTLE: Duration = Duration::from_secs(3);

// ------------------------------------------------------------- mail --

/// One received message, decoded with mail-parser.
#[derive(Debug, Clone)]
struct Mail {
    subject: String,
    from: String,
    from_name: String,
    to: String,
    cc: String,
    message_id: String,
    in_reply_to: Vec<String>,
    references: Vec<String>,
    body: String,
    auto_submitted: Option<String>,
    /// The message as received.
    raw: Vec<u8>,
}

impl AsRef<[u8]> for Mail {
    fn as_ref(&self) -> &[u8] {
        &self.raw
    }
}

fn ids(v: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    if let Some(list) = v.as_text_list() {
        list.iter().map(|s| s.to_string()).collect()
    } else {
        v.as_text().map(|s| vec![s.to_owned()]).unwrap_or_default()
    }
}

fn addrs(a: Option<&mail_parser::Address<'_>>) -> String {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address())
            .collect::<Vec<_>>()
            .join(" ")
    })
    .unwrap_or_default()
}

fn parse_mail(raw: &[u8]) -> Mail {
    let m = mail_parser::MessageParser::default()
        .parse(raw)
        .unwrap_or_else(|| panic!("unparsable mail:\n{}", String::from_utf8_lossy(raw)));
    let from = m.from().and_then(|a| a.first());
    Mail {
        subject: m.subject().unwrap_or_default().to_owned(),
        from: from
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_ascii_lowercase(),
        from_name: from.and_then(|a| a.name()).unwrap_or_default().to_owned(),
        to: addrs(m.to()),
        cc: addrs(m.cc()),
        message_id: m.message_id().unwrap_or_default().to_owned(),
        in_reply_to: ids(m.in_reply_to()),
        references: ids(m.references()),
        body: m
            .body_text(0)
            .map(|b| b.replace("\r\n", "\n"))
            .unwrap_or_default(),
        auto_submitted: common::header(raw, "Auto-Submitted"),
        raw: raw.to_vec(),
    }
}

// ------------------------------------------------------------ world --

impl World {
    /// Handlers Alice and Bob, handler mail authenticated by the stack's
    /// OpenDKIM (`mail.example.org`), the comment address and the announce
    /// list configured.
    fn team(round_robin: bool) -> World {
        // No CLI call before the daemon has opened (created, migrated) its
        // state file: a concurrent `cases list` on a brand-new file can make
        // the daemon exit with "database is locked" (reported daemon bug).
        World::start_ready(|cfg| {
            cfg.handlers = vec![("Alice".into(), ALICE.into()), ("Bob".into(), BOB.into())];
            if round_robin {
                cfg.assign = "round-robin".into();
            }
            cfg.mailbox_extra = format!("comment_address = \"{COMMENT}\"\n");
            cfg.extra = format!(
                "[handler_auth]\ntrusted_authserv_id = \"{}\"\n\n[announce]\nlist = \"{ANNOUNCE}\"\n",
                common::AUTHSERV_ID
            );
        })
    }

    /// `user`'s INBOX, decoded, in mailbox order.
    fn mails(&self, user: &str) -> Vec<Mail> {
        self.stack
            .fetch_all(user)
            .iter()
            .map(|r| parse_mail(r))
            .collect()
    }

    /// Waits until `user`'s INBOX holds at least `n` messages matching
    /// `pred`; returns those.
    fn wait_matching(
        &self,
        user: &str,
        what: &str,
        n: usize,
        pred: impl Fn(&Mail) -> bool,
    ) -> Vec<Mail> {
        let mut last = Vec::new();
        let deadline = std::time::Instant::now() + T;
        loop {
            if let Ok(raw) = self.stack.try_fetch_folder(user, "INBOX") {
                last = raw.iter().map(|r| parse_mail(r)).collect::<Vec<_>>();
                let hits: Vec<Mail> = last.iter().filter(|m| pred(m)).cloned().collect();
                if hits.len() >= n {
                    return hits;
                }
            }
            if std::time::Instant::now() > deadline {
                self.fail(&format!(
                    "timed out waiting for {n} × {what} in {user}'s INBOX; it holds:\n{}",
                    subjects(&last)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The one message matching `pred` in `user`'s INBOX (waits for it).
    fn wait_one(&self, user: &str, what: &str, pred: impl Fn(&Mail) -> bool) -> Mail {
        self.wait_matching(user, what, 1, pred).pop().unwrap()
    }

    /// Waits until `id` has at least `n` events whose `what` is `what`.
    fn wait_events(&self, id: &str, what: &str, n: usize) -> Value {
        eventually(
            T,
            &format!("{n} \"{what}\" event(s) on {id}"),
            Some(&self.daemon),
            || {
                let v = self.show(id);
                (events(&v, what).len() >= n).then_some(v)
            },
        )
    }

    /// A report from `from` over inbound SMTP; waits for its case and the
    /// acknowledgement. Returns (case id, report Message-ID, the ack).
    fn open_case(&self, from: &str, subject: &str, body: &str) -> (String, String, Mail) {
        let before = self.cases().len();
        let raw = common::simple_message(from, SECURITY, subject, body);
        let mid = parse_mail(&raw).message_id;
        self.stack.send_raw(from, &[SECURITY], &raw);
        let cases = eventually(T, "a new case", Some(&self.daemon), || {
            let c = self.cases();
            (c.len() > before).then_some(c)
        });
        let case = cases
            .iter()
            .find(|c| c["subject"] == subject)
            .unwrap_or_else(|| self.fail(&format!("no case for {subject:?}: {cases:?}")));
        let id = case["id"].as_str().unwrap().to_owned();
        let ack = self.wait_one(from, "the acknowledgement", |m| {
            m.in_reply_to.contains(&mid) && m.subject.contains(&id)
        });
        (id, mid, ack)
    }

    /// Runs s-nail as `user` on its own IMAPS INBOX with `script` on stdin.
    /// `authenticated`: submit on the authenticated port (the mail is
    /// DKIM-signed and gets a genuine pass); otherwise send it to the
    /// inbound port without logging in, as a forger would.
    fn snail(&self, user: &str, authenticated: bool, settings: &[String], script: &str) {
        let enc = user.replace('@', "%40");
        let pw = &self.stack.password;
        let mut cmd = Command::new("s-nail");
        cmd.env("MAILRC", "/dev/null")
            .env("HOME", self.dir.path())
            .args([
                "-n",
                "-#",
                "-S",
                "v15-compat",
                "-S",
                "sendwait",
                "-S",
                "hold",
            ])
            .args(["-S", "nosave"])
            .arg("-S")
            .arg(format!("tls-ca-file={}", self.stack.ca_file.display()))
            .arg("-S")
            .arg(format!("from={user}"))
            // What most users configure: quote with "> ".
            .args(["-S", "indentprefix=> "]);
        if authenticated {
            cmd.arg("-S")
                .arg(format!(
                    "mta=smtp://{enc}:{pw}@localhost:{}",
                    self.stack.submission_port
                ))
                .args(["-S", "smtp-use-starttls"]);
        } else {
            cmd.arg("-S")
                .arg(format!("mta=smtp://localhost:{}", self.stack.smtp_port))
                .args(["-S", "smtp-auth=none"]);
        }
        for v in settings {
            cmd.arg("-S").arg(v);
        }
        cmd.arg("-f").arg(format!(
            "imaps://{enc}:{pw}@localhost:{}/INBOX",
            self.stack.imaps_port
        ));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run s-nail");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .expect("write to s-nail");
        let out = child.wait_with_output().expect("wait for s-nail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lower = stderr.to_ascii_lowercase();
        if !out.status.success() || lower.contains("error") || lower.contains("not sent") {
            self.fail(&format!(
                "s-nail as {user} failed ({}):\nscript:\n{script}\nstdout:\n{}\nstderr:\n{stderr}",
                out.status,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }

    /// `user` replies with s-nail (`Reply`: to the sender only) to the
    /// message `mid` in their INBOX. `body` is typed first (top-posting);
    /// with `quote` the original follows, quoted the way s-nail does (`~Q`).
    fn reply(&self, user: &str, authenticated: bool, mid: &str, body: &str, quote: Quote) {
        self.reply_with(user, authenticated, &[], mid, body, quote);
    }

    /// [`World::reply`] with extra s-nail settings (e.g. a `customhdr`).
    fn reply_with(
        &self,
        user: &str,
        authenticated: bool,
        extra: &[String],
        mid: &str,
        body: &str,
        quote: Quote,
    ) {
        let mails = self.mails(user);
        let n = mails
            .iter()
            .position(|m| m.message_id == mid)
            .unwrap_or_else(|| self.fail(&format!("{user} has no message <{mid}>")))
            + 1;
        let mut script = match quote {
            Quote::Below => format!("Reply {n}\n~Q\n\n{body}\n"),
            _ => format!("Reply {n}\n{body}\n"),
        };
        let mut settings = extra.to_vec();
        match quote {
            Quote::No | Quote::Below => {}
            Quote::SNail => script.push_str("\n~Q\n"),
            Quote::Compact => {
                script.push_str("\n~Q\n");
                settings.push("quote-inject-head=%f wrote:\n".to_owned());
            }
        }
        script.push_str("~.\nquit\n");
        self.snail(user, authenticated, &settings, &script);
    }

    /// `user` writes a new message with s-nail.
    fn compose(
        &self,
        user: &str,
        authenticated: bool,
        to: &str,
        cc: Option<&str>,
        subject: &str,
        body: &str,
    ) {
        let mut script = format!("mail {to}\n~s {subject}\n");
        if let Some(cc) = cc {
            script.push_str(&format!("~c {cc}\n"));
        }
        script.push_str(&format!("{body}\n~.\nquit\n"));
        self.snail(user, authenticated, &[], &script);
    }

    /// Alice replies to `mid` with `body` (commands first); waits for the
    /// command reply to that mail and returns it.
    fn commands(&self, user: &str, case: &str, mid: &str, body: &str) -> Mail {
        let prefix = format!("[{case}] Commands:");
        let before = self
            .mails(user)
            .iter()
            .filter(|m| m.subject.starts_with(&prefix))
            .count();
        self.reply(user, true, mid, body, Quote::No);
        let mut got = self.wait_matching(user, "a command reply", before + 1, |m| {
            m.subject.starts_with(&prefix)
        });
        let r = got.pop().unwrap();
        // It answers the mail just sent: In-Reply-To names a message of
        // the case from the handler.
        let show = self.show(case);
        let theirs: Vec<&str> = show["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == "in" && m["from"] == user)
            .filter_map(|m| m["message_id"].as_str())
            .collect();
        assert_eq!(
            r.in_reply_to.len(),
            1,
            "command reply without In-Reply-To: {r:?}"
        );
        assert_eq!(
            Some(&r.in_reply_to[0].as_str()),
            theirs.last(),
            "the command reply answers the handler's latest mail"
        );
        assert_eq!(r.to, user, "command replies go to the issuer only");
        r
    }
}

/// How a reply quotes the message it answers (below the new text).
#[derive(Debug, Clone, Copy)]
enum Quote {
    No,
    /// s-nail's default attribution: `"Name" <addr> wrote:`, a blank
    /// line, then the quoted lines.
    SNail,
    /// The attribution line directly above the quoted lines (Thunderbird
    /// style).
    Compact,
    /// s-nail's quote first, the text below it (bottom-posting).
    Below,
}

/// Events of a `cases show --json` value whose `what` is `what`.
fn events<'a>(show: &'a Value, what: &str) -> Vec<&'a Value> {
    show["events"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["what"] == what).collect())
        .unwrap_or_default()
}

/// Asserts that `show`'s events contain, in this order, each (actor, what,
/// detail substring).
fn assert_timeline(show: &Value, expected: &[(&str, &str, &str)]) {
    let evs = show["events"].as_array().expect("events");
    let mut i = 0;
    for (actor, what, detail) in expected {
        let found = evs[i..].iter().position(|e| {
            e["actor"] == *actor
                && e["what"] == *what
                && e["detail"].as_str().unwrap_or("").contains(detail)
        });
        match found {
            Some(k) => i += k + 1,
            None => panic!(
                "no event ({actor}, {what}, …{detail}…) after event #{i}; timeline:\n{}",
                serde_json::to_string_pretty(evs).unwrap()
            ),
        }
    }
}

fn quiet() {
    std::thread::sleep(SETTLE);
}

// ------------------------------------------------------------ tests --

#[test]
fn full_case_by_email() {
    let w = World::team(false);
    let subject = "Heap overflow in the config parser";
    let (id, report_mid, ack) = w.open_case(
        REPORTER,
        subject,
        "Long keys overflow a stack buffer. SECRET-REPORT-DETAIL-42\nPoC attached.",
    );
    assert_eq!(ack.subject, format!("Re: {subject} [{id}]"));

    // Both handlers get the notification, the root of the case's thread.
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    let note_subject = format!("[{id}] New report: {subject}");
    for h in [ALICE, BOB] {
        let n = w.wait_one(h, "the notification", |m| m.subject == note_subject);
        assert_eq!(n.message_id, root);
        assert!(n.body.contains("SECRET-REPORT-DETAIL-42"), "{n:?}");
    }
    w.wait_state(&id, "acknowledged");

    // Alice takes the case and answers, replying to the notification with a
    // real client that quotes the original below her text.
    let first = w.commands(
        ALICE,
        &id,
        &root,
        "/take\n\nThanks for the report, we reproduced it.\nWe are working on a fix.",
    );
    // (w.commands replies without quoting; the quoted variant follows.)
    assert_eq!(first.subject, format!("[{id}] Commands: done"), "{first:?}");
    assert!(
        first
            .body
            .contains("/take\n  done: primary handler is now Alice <alice@example.org>"),
        "{}",
        first.body
    );
    let relay = w.wait_one(REPORTER, "the relayed answer", |m| {
        m.from_name.contains(" via ")
    });
    assert_eq!(relay.from, SECURITY);
    assert_eq!(relay.from_name, "Alice via Example security");
    assert_eq!(
        relay.auto_submitted, None,
        "a handler's answer is not auto-generated"
    );
    assert_eq!(relay.subject, ack.subject, "same subject as the ack");
    assert_eq!(relay.in_reply_to, vec![report_mid.clone()]);
    assert!(
        relay.references.contains(&report_mid) && relay.references.contains(&ack.message_id),
        "References link the report and the ack: {:?}",
        relay.references
    );
    assert_eq!(
        relay.body.trim(),
        "Thanks for the report, we reproduced it.\nWe are working on a fix."
    );
    w.wait_state(&id, "triage");

    // A second answer, this time with the original quoted below it under
    // an attribution line (Thunderbird style; s-nail's own default is in
    // `quoted_reply_relays_only_the_new_text`): only the new text goes out.
    w.reply(
        ALICE,
        true,
        &root,
        "A fix is planned for 2.4.1.",
        Quote::Compact,
    );
    let relays = w.wait_matching(REPORTER, "a second relayed answer", 2, |m| {
        m.from_name.contains(" via ")
    });
    let second = &relays[1];
    assert_eq!(second.subject, ack.subject);
    assert!(
        second.references.contains(&report_mid) && second.references.contains(&ack.message_id),
        "{:?}",
        second.references
    );
    assert!(
        second.references.contains(&relay.message_id),
        "the second answer threads under the first one: {:?}",
        second.references
    );
    assert!(
        !second.body.contains("SECRET-REPORT-DETAIL-42"),
        "quoted text relayed to the reporter:\n{}",
        second.body
    );
    assert_eq!(
        second.body.trim(),
        "A fix is planned for 2.4.1.",
        "only the new text is relayed (no quote, no attribution line)"
    );

    // Commands, step by step, each a reply to the previous command reply.
    let steps: &[(&str, &[&str])] = &[
        (
            "/state confirmed",
            &["/state confirmed\n  done: state triage → confirmed"],
        ),
        (
            "/severity high\n/affected < 2.4\n/audit checked parser X",
            &[
                "/severity high\n  done: severity set: high",
                "/affected < 2.4\n  done: affected versions set: < 2.4",
                "/audit checked parser X\n  done: audit note recorded: checked parser X",
            ],
        ),
        (
            "/state fixing",
            &["/state fixing\n  done: state confirmed → fixing"],
        ),
    ];
    let mut last = first.message_id.clone();
    for (body, lines) in steps {
        let r = w.commands(ALICE, &id, &last, body);
        assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
        for l in *lines {
            assert!(r.body.contains(l), "{l:?} missing from:\n{}", r.body);
        }
        last = r.message_id;
    }

    // An internal note by mail to the comment address: Bob gets it, the
    // reporter never does, Alice gets no copy of her own note.
    w.compose(
        ALICE,
        true,
        COMMENT,
        None,
        &format!("[{id}] internal"),
        "INTERNAL-NOTE-7: the same bug is in the legacy parser.",
    );
    let note = w.wait_one(BOB, "the note", |m| {
        m.subject == format!("[{id}] Note from Alice")
    });
    assert!(note.body.contains("INTERNAL-NOTE-7"), "{}", note.body);
    w.wait_events(&id, "note", 1);

    let steps: &[(&str, &[&str])] = &[(
        "/fixed-in 2.4.1\n/cve CVE-2026-12345\n/state fix-ready",
        &[
            "/fixed-in 2.4.1\n  done: fixed in: 2.4.1",
            "/cve CVE-2026-12345\n  done: CVE assigned: CVE-2026-12345",
            "/state fix-ready\n  done: state fixing → fix-ready",
        ],
    )];
    for (body, lines) in steps {
        let r = w.commands(ALICE, &id, &last, body);
        assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
        for l in *lines {
            assert!(r.body.contains(l), "{l:?} missing from:\n{}", r.body);
        }
        last = r.message_id;
    }

    // The advisory: a dry run to the handlers, then the real thing.
    let title = "Example 2.4.1 fixes a heap overflow in the config parser (CVE-2026-12345)";
    let advisory = format!(
        "{title}\n\nVersions before 2.4 are affected; upgrade to 2.4.1.\nCredit: the reporter."
    );
    let r = w.commands(
        ALICE,
        &id,
        &last,
        &format!("/announce dry-run\n\n{advisory}"),
    );
    assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
    assert!(r.body.contains("dry run"), "{}", r.body);
    last = r.message_id;
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    for h in [ALICE, BOB] {
        // Marked, and threaded in the case: it cannot pass for the real one.
        let a = w.wait_one(h, "the dry-run advisory", |m| {
            m.subject == format!("[DRY RUN] [security] {title}")
        });
        assert_eq!(a.in_reply_to, vec![root.clone()]);
        assert!(
            a.body.contains("Versions before 2.4 are affected"),
            "{}",
            a.body
        );
        assert!(!a.body.contains("/announce"), "{}", a.body);
    }
    assert_eq!(w.show(&id)["state"], "fix-ready");

    // An embargo agreed with the reporter holds: /announce is refused
    // before its date unless it says /announce now.
    let r = w.commands(ALICE, &id, &last, "/embargo 2099-01-01");
    assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
    let r = w.commands(
        ALICE,
        &id,
        &r.message_id,
        &format!("/announce\n\n{advisory}"),
    );
    assert!(
        r.body.contains("the embargo lasts until 2099-01-01"),
        "{}",
        r.body
    );
    assert_eq!(w.show(&id)["state"], "fix-ready");
    let r = w.commands(
        ALICE,
        &id,
        &r.message_id,
        &format!("/announce now\n\n{advisory}"),
    );
    assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
    last = r.message_id;
    let a = w.wait_one(ANNOUNCE, "the advisory", |m| {
        m.subject == format!("[security] {title}")
    });
    assert_eq!(a.from, SECURITY);
    assert!(a.body.contains("upgrade to 2.4.1"), "{}", a.body);
    assert!(!a.body.contains("/announce"), "{}", a.body);
    w.wait_state(&id, "announced");

    let r = w.commands(ALICE, &id, &last, "/close");
    assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
    assert!(
        r.body.contains("/close\n  done: state announced → closed"),
        "{}",
        r.body
    );
    w.wait_state(&id, "closed");

    // What each mailbox holds.
    w.wait_outbox_empty();
    quiet();
    let all = w.mails(REPORTER);
    // Besides them, one update per change the reporter is told about
    // (issue 8): confirmed, CVE, fix-ready, scheduled (the embargo date),
    // announced (with the advisory), closed.
    let (updates, rep): (Vec<Mail>, Vec<Mail>) = all
        .iter()
        .cloned()
        .partition(|m| m.message_id.starts_with("update."));
    let said = |needle: &str| updates.iter().filter(|m| m.body.contains(needle)).count();
    assert_eq!(updates.len(), 6, "{}", subjects(&all));
    assert_eq!(said("we plan to announce the issue you reported"), 1);
    assert_eq!(said("we have confirmed the issue"), 1);
    assert_eq!(said("has been assigned CVE-2026-12345"), 1);
    assert_eq!(said("a fix for the issue you reported"), 1);
    assert_eq!(said("upgrade to 2.4.1"), 1, "the advisory");
    assert_eq!(said("we have closed case"), 1);
    assert_eq!(
        rep.len(),
        3,
        "the reporter holds exactly the ack and the two answers:\n{}",
        subjects(&rep)
    );
    assert_eq!(rep[0].message_id, ack.message_id);
    for m in rep.iter().chain(updates.iter()) {
        assert_eq!(m.subject, ack.subject);
        for leak in [
            "/take",
            "/state",
            "/severity",
            "/announce",
            "INTERNAL-NOTE-7",
            "Commands:",
            "done:",
        ] {
            assert!(
                !m.body.contains(leak),
                "{leak:?} reached the reporter:\n{}",
                m.body
            );
        }
    }
    let ann = w.mails(ANNOUNCE);
    assert_eq!(
        ann.len(),
        1,
        "one advisory on the list:\n{}",
        subjects(&ann)
    );
    // Besides the team copies of what Alice did (issue 8):
    let all_bob = w.mails(BOB);
    let (copies, bob): (Vec<Mail>, Vec<Mail>) = all_bob
        .iter()
        .cloned()
        .partition(|m| m.subject.ends_with("Alice: what was done"));
    assert!(
        copies
            .iter()
            .any(|m| m.body.contains("Alice answered the reporter")),
        "{}",
        subjects(&all_bob)
    );
    assert_eq!(
        bob.len(),
        3,
        "Bob holds the notification, Alice's note and the dry run:\n{}",
        subjects(&bob)
    );
    let alice = w.mails(ALICE);
    assert!(
        !alice.iter().any(|m| m.subject.contains("Note from")),
        "Alice got a copy of her own note:\n{}",
        subjects(&alice)
    );
    let cmd_replies = alice
        .iter()
        .filter(|m| m.subject.contains("] Commands:"))
        .count();
    assert_eq!(
        cmd_replies,
        10,
        "one command reply per command mail (8, plus /embargo and the refused /announce):\n{}",
        subjects(&alice)
    );

    // The case and its timeline.
    let show = w.show(&id);
    assert_eq!(show["state"], "closed");
    assert_eq!(show["primary_handler"], ALICE);
    assert_eq!(show["severity"], "high");
    assert_eq!(show["affected"], "< 2.4");
    assert_eq!(show["fixed_in"], "2.4.1");
    assert_eq!(show["cve"], "CVE-2026-12345");
    assert!(show["duplicate_of"].is_null());
    assert!(show["responded_at"].is_string(), "{show}");
    assert_timeline(
        &show,
        &[
            ("secintake", "case opened", ""),
            ("secintake", "state changed", "new → acknowledged"),
            (ALICE, "primary handler set", ALICE),
            (ALICE, "state changed", "acknowledged → triage"),
            (ALICE, "response relayed to the reporter", ""),
            (ALICE, "reply relayed to the reporter", ""),
            (ALICE, "state changed", "triage → confirmed"),
            (ALICE, "severity set", "high"),
            (ALICE, "affected versions set", "< 2.4"),
            (ALICE, "audit note", "checked parser X"),
            (ALICE, "state changed", "confirmed → fixing"),
            (ALICE, "note", "INTERNAL-NOTE-7"),
            (ALICE, "fixed in", "2.4.1"),
            (ALICE, "CVE assigned", "CVE-2026-12345"),
            (ALICE, "state changed", "fixing → fix-ready"),
            (ALICE, "announcement dry run", title),
            (ALICE, "state changed", "fix-ready → announced"),
            (ALICE, "announced", ANNOUNCE),
            (ALICE, "state changed", "announced → closed"),
        ],
    );
    let respond = show["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "respond")
        .cloned()
        .expect("respond deadline");
    assert!(respond["met_at"].is_string(), "{respond}");
    let kinds: Vec<&str> = show["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "out")
        .filter_map(|m| m["kind"].as_str())
        .collect();
    for k in [
        "ack",
        "notification",
        "relay",
        "command-reply",
        "note",
        "announce",
    ] {
        assert!(kinds.contains(&k), "no outgoing {k} in {kinds:?}");
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "relay").count(),
        2,
        "{kinds:?}"
    );
}

/// s-nail's default reply quoting puts a blank line between the attribution
/// line and the quoted lines (`quote-inject-head` = `%f wrote:\n\n`).
#[test]
fn quoted_reply_relays_only_the_new_text() {
    let w = World::team(false);
    let (id, _, ack) = w.open_case(
        REPORTER,
        "Timing leak in token check",
        "Compare is not constant time. SECRET-REPORT-DETAIL-43",
    );
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");

    // Commands only, the notification quoted below them: nothing may reach
    // the reporter, and it is no response.
    w.reply(ALICE, true, &root, "/take\n/severity medium", Quote::SNail);
    w.wait_events(&id, "severity set", 1);
    w.wait_outbox_empty();
    quiet();
    let rep = w.mails(REPORTER);
    assert_eq!(
        rep.len(),
        1,
        "a command-only reply relayed something to the reporter:\n{}",
        rep.iter()
            .skip(1)
            .map(|m| m.body.clone())
            .collect::<Vec<_>>()
            .join("\n----\n")
    );
    assert!(w.show(&id)["responded_at"].is_null());

    // Text and quote: only the text is relayed.
    w.reply(ALICE, true, &root, "We can reproduce it.", Quote::SNail);
    let relay = w.wait_one(REPORTER, "the relayed answer", |m| {
        m.from_name.contains(" via ")
    });
    assert_eq!(relay.subject, ack.subject);
    assert!(
        !relay.body.contains("SECRET-REPORT-DETAIL-43"),
        "{}",
        relay.body
    );
    assert_eq!(
        relay.body.trim(),
        "We can reproduce it.",
        "the attribution line of the quote was relayed"
    );

    // An advisory preview with the quote below it: the attribution line
    // must not end up in the advisory.
    w.reply(
        ALICE,
        true,
        &root,
        "/announce dry-run\n\nTiming leak fixed in 3.1\n\nUpgrade to 3.1.",
        Quote::SNail,
    );
    let a = w.wait_one(BOB, "the dry-run advisory", |m| {
        m.subject == "[DRY RUN] [security] Timing leak fixed in 3.1"
    });
    // The handler's text, then the case's facts from advisory.txt, and
    // nothing of the quote.
    assert!(
        a.body
            .trim()
            .starts_with("Upgrade to 3.1.\n\nSeverity:  medium"),
        "{}",
        a.body
    );
    assert!(
        !a.body.contains("wrote:") && !a.body.lines().any(|l| l.starts_with('>')),
        "quote residue in the advisory: {}",
        a.body
    );
}

#[test]
fn reporter_follow_up_goes_to_primary() {
    let w = World::team(true);
    let reporter2 = "reporter2@example.net";
    let (id1, _, ack1) = w.open_case(REPORTER, "SQL injection in search", "Details 1.");
    let (id2, _, ack2) = w.open_case(reporter2, "Path traversal in upload", "Details 2.");
    let c1 = w.wait_state(&id1, "triage");
    let c2 = w.wait_state(&id2, "triage");
    assert_eq!(
        c1["primary_handler"], ALICE,
        "round-robin starts with the first handler"
    );
    assert_eq!(
        c2["primary_handler"], BOB,
        "round-robin: the second case goes to Bob"
    );

    // Each reporter answers their acknowledgement with s-nail.
    w.reply(
        REPORTER,
        false,
        &ack1.message_id,
        "FOLLOWUP-ONE: more details.",
        Quote::SNail,
    );
    w.reply(
        reporter2,
        false,
        &ack2.message_id,
        "FOLLOWUP-TWO: another PoC.",
        Quote::SNail,
    );

    let f1 = w.wait_one(ALICE, "the follow-up", |m| {
        m.subject
            .starts_with(&format!("[{id1}] Follow-up from {REPORTER}"))
    });
    assert!(f1.body.contains("FOLLOWUP-ONE"), "{}", f1.body);
    assert_eq!(
        f1.in_reply_to,
        vec![common::daemon::thread_root(
            &w.dir.path().join("state.db"),
            &id1
        )]
    );
    let f2 = w.wait_one(BOB, "the follow-up", |m| {
        m.subject
            .starts_with(&format!("[{id2}] Follow-up from {reporter2}"))
    });
    assert!(f2.body.contains("FOLLOWUP-TWO"), "{}", f2.body);

    w.wait_outbox_empty();
    quiet();
    for (h, other) in [(ALICE, &id2), (BOB, &id1)] {
        let got = w.mails(h);
        assert!(
            !got.iter()
                .any(|m| m.subject.starts_with(&format!("[{other}] Follow-up"))),
            "{h} got the other primary's follow-up:\n{}",
            subjects(&got)
        );
        // The two notifications and their own follow-up, nothing else.
        assert_eq!(got.len(), 3, "{h}:\n{}", subjects(&got));
    }
    // Reporters got nothing but their ack.
    assert_eq!(w.mails(REPORTER).len(), 1);
    assert_eq!(w.mails(reporter2).len(), 1);
    let show = w.show(&id1);
    assert_timeline(&show, &[(REPORTER, "follow-up received", "")]);
    assert!(
        show["responded_at"].is_null(),
        "a reporter's mail is no response"
    );

    // Alice answers the forwarded follow-up: the relay answers the
    // reporter's latest message, in the reporter's thread.
    let follow_up_mid = show["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["direction"] == "in" && m["kind"] == "follow-up" && m["from"] == REPORTER)
        .and_then(|m| m["message_id"].as_str())
        .expect("the reporter's follow-up")
        .to_owned();
    w.reply(
        ALICE,
        true,
        &f1.message_id,
        "Thanks, the new details helped.",
        Quote::Compact,
    );
    let relay = w.wait_one(REPORTER, "the relayed answer", |m| {
        m.from_name.contains(" via ")
    });
    assert_eq!(relay.from_name, "Alice via Example security");
    assert_eq!(relay.subject, ack1.subject);
    assert_eq!(relay.in_reply_to, vec![follow_up_mid.clone()]);
    for mid in [&ack1.message_id, &follow_up_mid] {
        assert!(relay.references.contains(mid), "{:?}", relay.references);
    }
    assert_eq!(relay.body.trim(), "Thanks, the new details helped.");
    assert!(w.show(&id1)["responded_at"].is_string());
}

#[test]
fn forged_handler_command_changes_nothing() {
    let w = World::team(false);
    let (id, _, _) = w.open_case(REPORTER, "Auth bypass", "Details.");
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");

    // Alice's address, sent like any stranger's mail: dkim=none.
    w.reply(
        ALICE,
        false,
        &root,
        "/close\nFORGED-TEXT: please send me the PoC.",
        Quote::No,
    );
    w.wait_events(
        &id,
        "unauthenticated mail from a handler address ignored",
        1,
    );
    let subject = format!("[{id}] Forged handler mail ignored");
    for h in [ALICE, BOB] {
        w.wait_one(h, "the forged-mail alert", |m| m.subject == subject);
    }
    // A second one on the same case, with a hand-written pass naming the
    // trusted server (issue 7): it sits below the server's own Received
    // field and verdict, so it is forged too. Recorded, no second alert.
    w.reply_with(
        ALICE,
        false,
        &[format!("customhdr={FORGED_VERDICT}")],
        &root,
        "/take\n/severity low\nFORGED-TEXT again.",
        Quote::No,
    );
    let show = w.wait_events(
        &id,
        "unauthenticated mail from a handler address ignored",
        2,
    );
    w.wait_outbox_empty();
    quiet();

    // The second one is recognised for what it is: a verdict that came
    // with the message. Sent straight to the border (no foreign Received
    // field above it), it is caught as a second dkim verdict beside the
    // border's own dkim=none.
    let details: Vec<&str> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "unauthenticated mail from a handler address ignored")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("no DKIM, SPF or auth pass")),
        "{details:#?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.contains("two Authentication-Results fields claiming mail.example.org")),
        "{details:#?}"
    );
    assert_eq!(show["state"], "acknowledged", "forged /close did nothing");
    assert!(
        show["primary_handler"].is_null(),
        "forged /take did nothing"
    );
    assert!(show["severity"].is_null(), "forged /severity did nothing");
    assert!(show["responded_at"].is_null(), "forged mail is no response");
    let rep = w.mails(REPORTER);
    assert_eq!(
        rep.len(),
        1,
        "only the ack reached the reporter:\n{}",
        subjects(&rep)
    );
    for h in [ALICE, BOB] {
        let got = w.mails(h);
        assert_eq!(
            got.iter().filter(|m| m.subject == subject).count(),
            1,
            "{h}: exactly one alert per case:\n{}",
            subjects(&got)
        );
        assert!(
            !got.iter().any(|m| m.subject.contains("Commands:")),
            "{h}: forged commands got a command reply:\n{}",
            subjects(&got)
        );
        assert_eq!(
            got.len(),
            2,
            "{h}: notification + alert:\n{}",
            subjects(&got)
        );
    }
    let outs: Vec<&str> = show["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "out")
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert!(
        !outs.contains(&"relay") && !outs.contains(&"command-reply"),
        "{outs:?}"
    );
}

#[test]
fn every_command_error_path_replies() {
    let w = World::team(false);
    let (id, _, _) = w.open_case(REPORTER, "CSRF on settings", "Details.");
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");
    let r = w.commands(ALICE, &id, &root, "/take");
    assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
    w.wait_state(&id, "triage");

    let r = w.commands(
        ALICE,
        &id,
        &r.message_id,
        "/frobnicate\n/state nonsense\n/state fixing\n/severity urgent\n/cve bogus\n\
         /duplicate SEC-2099-9999\n/assign nobody\n/take extra-arg",
    );
    assert_eq!(
        r.subject,
        format!("[{id}] Commands: 8 error(s)"),
        "{}",
        r.body
    );
    for expected in [
        "/frobnicate\n  ERROR: unknown command /frobnicate; known commands: /take, /assign <handler>, /state <state>",
        "/state nonsense\n  ERROR: unknown state \"nonsense\"; states are new, acknowledged, triage, confirmed, rejected, duplicate, fixing, fix-ready, announced, closed",
        "/state fixing\n  ERROR: cannot move from triage to fixing; from triage the case can go to: confirmed, rejected, duplicate",
        "/severity urgent\n  ERROR: unknown severity \"urgent\"; use critical, high, medium or low",
        "/cve bogus\n  ERROR: \"BOGUS\" is not a CVE id like CVE-2026-12345",
        "/duplicate SEC-2099-9999\n  ERROR: no case SEC-2099-9999; see `secintake cases list`",
        "/assign nobody\n  ERROR: unknown handler \"nobody\"; handlers are: Alice <alice@example.org>, Bob <bob@example.org>",
        "/take extra-arg\n  ERROR: /take takes no argument",
    ] {
        assert!(r.body.contains(expected), "{expected:?} missing from:\n{}", r.body);
    }
    assert!(
        r.body.contains(&format!("{id} is now in state \"triage\"")),
        "{}",
        r.body
    );
    assert!(!r.body.contains("done:"), "{}", r.body);

    let r = w.commands(
        ALICE,
        &id,
        &r.message_id,
        "/announce\n\nEarly advisory title\n\nShould not go out.",
    );
    assert_eq!(
        r.subject,
        format!("[{id}] Commands: 1 error(s)"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!(
            "/announce\n  ERROR: /announce needs state fix-ready; {id} is triage (use /announce dry-run to preview)"
        )),
        "{}",
        r.body
    );

    let r = w.commands(ALICE, &id, &r.message_id, "/announce dry-run");
    assert_eq!(
        r.subject,
        format!("[{id}] Commands: 1 error(s)"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("/announce dry-run\n  ERROR: no advisory: write it below the /announce line (its first line becomes the subject), or set /summary <text> first"),
        "{}",
        r.body
    );

    w.wait_outbox_empty();
    quiet();
    let show = w.show(&id);
    assert_eq!(show["state"], "triage");
    assert_eq!(show["primary_handler"], ALICE);
    for f in ["severity", "cve", "duplicate_of", "responded_at"] {
        assert!(show[f].is_null(), "{f} changed: {show}");
    }
    assert_eq!(
        w.mails(REPORTER).len(),
        1,
        "only the ack reached the reporter"
    );
    assert!(w.mails(ANNOUNCE).is_empty(), "nothing was announced");
    // Bob holds the notification, and the team copy of the one command
    // that changed something (/take) — no copy of an error.
    let bob = w.mails(BOB);
    let copies: Vec<&Mail> = bob
        .iter()
        .filter(|m| m.subject.ends_with("Alice: what was done"))
        .collect();
    assert_eq!(bob.len() - copies.len(), 1, "{}", subjects(&bob));
    assert!(
        copies.iter().all(|m| !m.body.contains("ERROR")),
        "{}",
        subjects(&bob)
    );
}

#[test]
fn direct_reply_with_cc_is_the_response() {
    let w = World::team(false);
    let subject = "Open redirect on login";
    let (id, _, ack) = w.open_case(REPORTER, subject, "Details.");
    w.wait_state(&id, "acknowledged");

    // Alice writes to the reporter herself, the mailbox in Cc.
    w.compose(
        ALICE,
        true,
        REPORTER,
        Some(SECURITY),
        &ack.subject,
        "DIRECT-ANSWER: confirmed, fix next week.",
    );
    let show = w.wait_events(&id, "response sent to the reporter", 1);
    assert!(show["responded_at"].is_string(), "{show}");
    assert_timeline(
        &show,
        &[(
            ALICE,
            "response sent to the reporter",
            "directly, with the mailbox in Cc",
        )],
    );
    let respond = show["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "respond")
        .cloned()
        .expect("respond deadline");
    assert!(respond["met_at"].is_string(), "{respond}");

    w.wait_outbox_empty();
    quiet();
    let rep = w.mails(REPORTER);
    assert_eq!(
        rep.len(),
        2,
        "the ack and Alice's own mail:\n{}",
        subjects(&rep)
    );
    assert_eq!(rep[1].from, ALICE);
    assert_eq!(rep[1].cc, SECURITY);
    assert_eq!(
        rep.iter()
            .filter(|m| m.body.contains("DIRECT-ANSWER"))
            .count(),
        1,
        "exactly one copy"
    );
    let outs: Vec<&str> = show["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "out")
        .filter_map(|m| m["kind"].as_str())
        .collect();
    let show = w.show(&id);
    let outs_now: Vec<&str> = show["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "out")
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(outs, outs_now);
    assert!(!outs_now.contains(&"relay"), "{outs_now:?}");
}

/// `secintake … ARGS` as local user `user` (the actor is `cli:<user>`).
fn cli_as(config: &Path, user: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::secintake_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("SUDO_USER")
        .env("USER", user)
        .output()
        .expect("run secintake");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_mirrors() {
    let w = World::team(false);
    let cfg = &w.config;
    let (id, _, _) = w.open_case(REPORTER, "XXE in importer", "Details.");
    w.wait_state(&id, "acknowledged");
    let actor = "cli:carol";

    let (code, out, err) = cli_as(cfg, "carol", &["cases", "assign", &id, "bob"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("primary handler is now Bob <bob@example.org>"),
        "{out}"
    );
    let (code, out, err) = cli_as(cfg, "carol", &["cases", "assign", &id, "nobody"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("unknown handler \"nobody\""), "{err}");

    let (code, out, err) = cli_as(cfg, "carol", &["cases", "state", &id, "confirmed"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("triage → confirmed"), "{out}");
    let (code, _, err) = cli_as(cfg, "carol", &["cases", "state", &id, "nonsense"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown state \"nonsense\""), "{err}");
    let (code, _, err) = cli_as(cfg, "carol", &["cases", "state", &id, "announced"]);
    assert_eq!(code, 1);
    assert!(err.contains("use /announce"), "{err}");

    let (code, out, err) = cli_as(
        cfg,
        "carol",
        &["cases", "note", &id, "CLI-NOTE-5: ask upstream"],
    );
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = cli_as(cfg, "carol", &["cases", "close", &id]);
    assert_eq!(code, 1, "closing a confirmed case is illegal: {out}{err}");
    assert!(
        err.contains("cannot move from confirmed to closed; from confirmed the case can go to: fixing, rejected, duplicate"),
        "{err}"
    );

    // The note reaches every handler (the CLI user is none of them), never
    // the reporter.
    for h in [ALICE, BOB] {
        let n = w.wait_one(h, "the CLI note", |m| {
            m.subject.starts_with(&format!("[{id}] Note from"))
        });
        assert!(n.body.contains("CLI-NOTE-5"), "{}", n.body);
    }

    let show = w.show(&id);
    assert_eq!(show["state"], "confirmed");
    assert_eq!(show["primary_handler"], BOB);
    assert_timeline(
        &show,
        &[
            (actor, "primary handler set", BOB),
            (actor, "state changed", "acknowledged → triage"),
            (actor, "state changed", "triage → confirmed"),
            (actor, "note", "CLI-NOTE-5"),
        ],
    );

    // A legal close: Alice marks it a duplicate by mail, the CLI closes it.
    let (other, _, _) = w.open_case("someone@example.net", "XXE in importer, again", "Same.");
    let other_case_id = other.clone();
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    let r = w.commands(ALICE, &id, &root, &format!("/duplicate {other}"));
    assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
    w.wait_state(&id, "duplicate");
    let (code, out, err) = cli_as(cfg, "carol", &["cases", "close", &id]);
    assert_eq!(code, 0, "{out}{err}");
    let show = w.wait_state(&id, "closed");
    assert_eq!(show["duplicate_of"], other.as_str());
    assert_timeline(
        &show,
        &[
            (ALICE, "state changed", "confirmed → duplicate"),
            (ALICE, "duplicate of", &other),
            (actor, "state changed", "duplicate → closed"),
        ],
    );

    w.wait_outbox_empty();
    quiet();
    let rep = w.mails(REPORTER);
    // The ack, and one update per change the reporter is told about
    // (issue 8): confirmed (by the CLI), duplicate (by mail), closed.
    let (updates, other): (Vec<&Mail>, Vec<&Mail>) = rep
        .iter()
        .partition(|m| m.message_id.starts_with("update."));
    assert_eq!(
        other.len(),
        1,
        "only the ack besides updates:\n{}",
        subjects(&rep)
    );
    let said = |needle: &str| updates.iter().filter(|m| m.body.contains(needle)).count();
    assert_eq!(updates.len(), 3, "{}", subjects(&rep));
    assert_eq!(said("we have confirmed the issue"), 1);
    assert_eq!(said("already reported"), 1);
    assert_eq!(said("we have closed case"), 1);
    // The duplicate update never names the other case or its reporter.
    assert!(updates
        .iter()
        .all(|m| !m.body.contains(&other_case_id) && !m.body.contains("someone@")));
}

/// A reply to internal mail (here Bob answering Alice's note copy) stays
/// internal: it becomes a note, and the reporter gets nothing.
#[test]
fn reply_to_a_note_stays_internal() {
    let w = World::team(false);
    let (id, _mid, _ack) = w.open_case(REPORTER, "SSRF in webhook", "Details of the SSRF.");
    w.compose(
        ALICE,
        true,
        COMMENT,
        None,
        &format!("[{id}] internal"),
        "NOTE-ONE: looks like the fetcher follows redirects.",
    );
    let note = w.wait_one(BOB, "Alice's note", |m| {
        m.subject == format!("[{id}] Note from Alice")
    });
    w.reply(
        BOB,
        true,
        &note.message_id,
        "NOTE-TWO: yes, and it resolves internal hosts.",
        Quote::SNail,
    );
    let copy = w.wait_one(ALICE, "Bob's answer as a note", |m| {
        m.subject == format!("[{id}] Note from Bob")
    });
    assert!(copy.body.contains("NOTE-TWO"), "{}", copy.body);
    assert!(!copy.body.contains("NOTE-ONE"), "quote kept: {}", copy.body);
    w.wait_events(&id, "note", 2);
    w.wait_outbox_empty();
    std::thread::sleep(SETTLE);
    let reporter = w.mails(REPORTER);
    assert_eq!(
        reporter.len(),
        1,
        "only the acknowledgement:\n{}",
        subjects(&reporter)
    );
    assert!(w.show(&id)["responded_at"].is_null());
}

/// Issue 8, "fail closed, and always say what happened", with mail written
/// by s-nail: a greeting before the commands, a mail to another handler
/// with security@ in Cc, a note sent to the comment address only as Bcc,
/// and a reply that repeats internal lines without quote marks each reach
/// the reporter with nothing; every one gets a confirmation saying why; a
/// plain answer is relayed and confirmed with its exact text.
#[test]
fn the_handler_channel_fails_closed_and_confirms() {
    let w = World::team(false);
    let (id, _, _ack) = w.open_case(REPORTER, "CSRF in settings", "The form lacks a token.");
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    let notification = w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");

    // 1. A line to a colleague, then commands: nothing runs, nothing goes out.
    w.reply(
        ALICE,
        true,
        &root,
        "GREETING-LEAK: Bob, I can take this one since you're busy.\n/take\n/severity critical",
        Quote::No,
    );
    let c = w.wait_one(ALICE, "the refusal", |m| {
        m.subject == format!("[{id}] Nothing done")
    });
    assert!(c.body.contains("Commands go at the very top"), "{}", c.body);
    assert!(c.body.contains("/take"), "{}", c.body);
    assert!(
        c.body.contains(SECURITY),
        "no way to the reporter: {}",
        c.body
    );
    let shown = w.show(&id);
    assert!(shown["primary_handler"].is_null() && shown["severity"].is_null());

    // 2. To Bob, security@ in Cc: internal, Bob gets the note copy too.
    w.compose(
        ALICE,
        true,
        BOB,
        Some(SECURITY),
        &format!("Re: [{id}] bounty?"),
        "BETWEEN-US: should we pay a bounty for this one?",
    );
    let c = w.wait_one(ALICE, "the note confirmation", |m| {
        m.subject == format!("[{id}] Internal note recorded")
    });
    assert!(
        c.body.contains("another handler (bob@example.org)"),
        "{}",
        c.body
    );
    assert!(c.body.contains("BETWEEN-US"), "{}", c.body);
    w.wait_one(BOB, "the note copy", |m| {
        m.subject == format!("[{id}] Note from Alice") && m.body.contains("BETWEEN-US")
    });

    // 3. The comment address only as a Bcc.
    let script = format!(
        "mail {ALICE}\n~s [{id}] for the record\n~b {COMMENT}\nBCC-NOTE: reproduced on 2.3.\n~.\nquit\n"
    );
    w.snail(ALICE, true, &[], &script);
    let c = w.wait_matching(ALICE, "the Bcc note confirmation", 2, |m| {
        m.subject == format!("[{id}] Internal note recorded")
    });
    assert!(c.iter().any(|m| m.body.contains("BCC-NOTE")), "{c:#?}");

    // 4. Internal lines pasted without quote marks (an Outlook-style quote
    // the cutter does not know): the leak guard holds the whole text back.
    let footer = notification
        .body
        .lines()
        .find(|l| l.contains("Commands go at the very top of your mail"))
        .expect("footer line in the notification")
        .to_owned();
    w.reply(
        ALICE,
        true,
        &root,
        &format!("PASTED-LEAK: see below.\n\n{footer}"),
        Quote::No,
    );
    let c = w.wait_matching(ALICE, "the leak refusal", 2, |m| {
        m.subject == format!("[{id}] Nothing done")
    });
    assert!(
        c.iter()
            .any(|m| m.body.contains("internal mail about this case")),
        "{c:#?}"
    );

    // 5. Written between quoted lines of the notification: not relayed.
    let first_line = notification
        .body
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .to_owned();
    let n = w
        .mails(ALICE)
        .iter()
        .position(|m| m.message_id == root)
        .unwrap()
        + 1;
    let script =
        format!("Reply {n}\n> {first_line}\nINLINE-ANSWER: yes.\n> {first_line}\n~.\nquit\n");
    w.snail(ALICE, true, &[], &script);
    let c = w.wait_matching(ALICE, "the inline refusal", 3, |m| {
        m.subject == format!("[{id}] Nothing done")
    });
    assert!(
        c.iter().any(|m| m.body.contains("between quoted lines")),
        "{c:#?}"
    );

    // 6. Bottom-posted: the text below the quote is relayed.
    w.reply(
        ALICE,
        true,
        &root,
        "BOTTOM-ANSWER: fixed in 2.4.1.",
        Quote::Below,
    );
    let c = w.wait_one(ALICE, "the bottom-post confirmation", |m| {
        m.subject == format!("[{id}] Relayed to the reporter")
    });
    assert!(
        c.body.contains("| BOTTOM-ANSWER: fixed in 2.4.1."),
        "{}",
        c.body
    );
    w.wait_matching(REPORTER, "the bottom-posted relay", 2, |_| true);

    // 7. A plain answer is relayed, and the confirmation quotes it.
    w.reply(
        ALICE,
        true,
        &root,
        "PLAIN-ANSWER: thanks, we confirmed it.",
        Quote::SNail,
    );
    let c = w.wait_matching(ALICE, "the relay confirmation", 2, |m| {
        m.subject == format!("[{id}] Relayed to the reporter")
    });
    assert!(
        c.iter()
            .any(|m| m.body.contains("| PLAIN-ANSWER: thanks, we confirmed it.")),
        "{c:#?}"
    );
    let relayed = w.wait_matching(REPORTER, "the relays", 3, |_| true);
    w.wait_outbox_empty();
    quiet();
    let reporter = w.mails(REPORTER);
    assert_eq!(reporter.len(), 3, "{}", subjects(&reporter));
    assert!(relayed.iter().any(|m| m.body.contains("BOTTOM-ANSWER")));
    for leak in [
        "GREETING-LEAK",
        "BETWEEN-US",
        "BCC-NOTE",
        "PASTED-LEAK",
        "INLINE-ANSWER",
        "/take",
    ] {
        assert!(
            !relayed.iter().any(|m| m.body.contains(leak)),
            "{leak} reached the reporter"
        );
    }
}

/// Issue 8: a Gmail-style HTML-only reply quoting the notification relayed
/// the notification's internal text. Now the quote container is dropped:
/// the reporter gets the handler's new text only, and the handler a
/// confirmation with that text.
#[test]
fn html_only_reply_relays_only_the_new_text() {
    let w = World::team(false);
    let (id, _, _) = w.open_case(
        REPORTER,
        "Open redirect",
        "The next= parameter is not checked.",
    );
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    let notification = w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");
    let quoted: String = notification
        .body
        .lines()
        .map(|l| format!("{l}<br>\r\n"))
        .collect();
    let raw = format!(
        "From: Alice <{ALICE}>\r\nTo: {SECURITY}\r\nSubject: Re: {}\r\n\
         Message-ID: <html-reply.{}@example.org>\r\nIn-Reply-To: <{root}>\r\n\
         References: <{root}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n\
         <div dir=\"ltr\">HTML-ANSWER: we reproduced it and are working on a fix.</div><br>\r\n\
         <div class=\"gmail_quote\"><div dir=\"ltr\" class=\"gmail_attr\">On Tue, Example \
         security &lt;{SECURITY}&gt; wrote:<br></div>\r\n\
         <blockquote class=\"gmail_quote\">\r\n{quoted}</blockquote></div>\r\n",
        notification.subject,
        std::process::id()
    );
    w.stack.submit(ALICE, ALICE, &[SECURITY], raw.as_bytes());
    let c = w.wait_one(ALICE, "the relay confirmation", |m| {
        m.subject == format!("[{id}] Relayed to the reporter")
    });
    assert!(c.body.contains("HTML-ANSWER"), "{}", c.body);
    let relayed = w.wait_matching(REPORTER, "the relay", 2, |_| true);
    let relay = relayed
        .iter()
        .find(|m| m.body.contains("HTML-ANSWER"))
        .expect("the relay");
    for line in notification.body.lines().filter(|l| l.trim().len() >= 20) {
        assert!(
            !relay.body.contains(line.trim()),
            "a notification line reached the reporter: {line:?}\n{}",
            relay.body
        );
    }
}

/// Issue 8, "reporters kept informed": `/reject <reason>` tells the
/// reporter, with the reason, in their own thread, and counts as the
/// response; `/quiet` stops such updates for a case, and the handler's
/// confirmation says whether the reporter was told.
#[test]
fn reporters_are_told_with_the_reason_unless_quiet() {
    let w = World::team(false);
    let (id1, _, ack1) = w.open_case(REPORTER, "Crash in the CLI", "It crashes on --foo.");
    let (id2, _, _) = w.open_case("quiet@example.net", "Odd header", "X-Foo is echoed.");
    let db = w.dir.path().join("state.db");
    let (root1, root2) = (
        common::daemon::thread_root(&db, &id1),
        common::daemon::thread_root(&db, &id2),
    );
    w.wait_one(ALICE, "notification 1", |m| m.message_id == root1);
    w.wait_one(ALICE, "notification 2", |m| m.message_id == root2);
    w.wait_state(&id2, "acknowledged");

    let r = w.commands(
        ALICE,
        &id1,
        &root1,
        "/reject REJECT-REASON: a local crash on bad input is not a vulnerability",
    );
    assert!(
        r.body.contains("the reporter was told (rejected)"),
        "{}",
        r.body
    );
    let got = w.wait_matching(REPORTER, "the rejection", 2, |_| true);
    let update = got
        .iter()
        .find(|m| m.message_id.starts_with("update."))
        .expect("an update");
    assert!(update.body.contains("REJECT-REASON"), "{}", update.body);
    assert_eq!(update.subject, ack1.subject);
    assert!(update.references.contains(&ack1.message_id), "{update:?}");
    assert!(w.show(&id1)["responded_at"].is_string());

    let r = w.commands(
        ALICE,
        &id2,
        &root2,
        "/quiet\n/state triage\n/state confirmed",
    );
    assert!(r.body.contains("the reporter was not told"), "{}", r.body);
    w.wait_outbox_empty();
    quiet();
    assert_eq!(w.mails("quiet@example.net").len(), 1, "only the ack");
}

/// Issue 8: `/show` answers with the case's facts, and what one handler
/// does (a relay, a state change) is copied to the others, threaded in the
/// case; a copy answered stays internal.
#[test]
fn show_and_team_copies() {
    let w = World::team(false);
    let (id, _, _) = w.open_case(REPORTER, "Path traversal", "../../etc/passwd works.");
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");
    let r = w.commands(
        ALICE,
        &id,
        &root,
        "/take\n/severity high\n/show\n\nTEAM-RELAY: thanks, we are on it.",
    );
    assert!(r.body.contains("the facts of"), "{}", r.body);
    assert!(r.body.contains("severity high"), "{}", r.body);
    assert!(r.body.contains("deadline respond"), "{}", r.body);
    let copy = w.wait_one(BOB, "the team copy", |m| {
        m.subject == format!("[{id}] Alice: what was done")
    });
    assert!(copy.body.contains("| TEAM-RELAY"), "{}", copy.body);
    assert!(copy.body.contains("/severity high"), "{}", copy.body);
    assert!(!copy.body.contains("/show"), "{}", copy.body);
    assert!(copy.references.contains(&root), "{copy:?}");
    // Bob answering the copy writes an internal note, not to the reporter.
    w.reply(
        BOB,
        true,
        &copy.message_id,
        "TEAM-ANSWER: nice.",
        Quote::SNail,
    );
    w.wait_one(ALICE, "Bob's note", |m| {
        m.subject == format!("[{id}] Note from Bob") && m.body.contains("TEAM-ANSWER")
    });
    w.wait_outbox_empty();
    quiet();
    assert!(!w
        .mails(REPORTER)
        .iter()
        .any(|m| m.body.contains("TEAM-ANSWER")));
}

/// Issue 8: a reply with `fix.patch` attached lost the attachment. Now the
/// patch goes to the reporter with the relayed text, and the confirmation
/// lists it.
#[test]
fn a_patch_attached_to_a_reply_reaches_the_reporter() {
    let w = World::team(false);
    let (id, _, _) = w.open_case(REPORTER, "Integer overflow", "len * 2 overflows.");
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    let notification = w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");
    let raw = format!(
        "From: Alice <{ALICE}>\r\nTo: {SECURITY}\r\nSubject: Re: {}\r\n\
         Message-ID: <patch-reply.{}@example.org>\r\nIn-Reply-To: <{root}>\r\n\
         References: <{root}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         PATCH-TEXT: could you test the attached fix?\r\n\
         --b\r\nContent-Type: text/x-patch; name=\"fix.patch\"\r\n\
         Content-Disposition: attachment; filename=\"fix.patch\"\r\n\r\n\
         --- a/len.c\r\n+++ b/len.c\r\n-len * 2\r\n+checked_mul(len, 2)\r\n--b--\r\n",
        notification.subject,
        std::process::id()
    );
    w.stack.submit(ALICE, ALICE, &[SECURITY], raw.as_bytes());
    let c = w.wait_one(ALICE, "the relay confirmation", |m| {
        m.subject == format!("[{id}] Relayed to the reporter")
    });
    assert!(
        c.body.contains("attached: fix.patch (text/x-patch"),
        "{}",
        c.body
    );
    w.wait_matching(REPORTER, "the relay", 1, |m| m.body.contains("PATCH-TEXT"));
    let raw_relay = w
        .stack
        .fetch_all(REPORTER)
        .into_iter()
        .find(|r| r.windows(10).any(|x| x == b"PATCH-TEXT"))
        .expect("raw relay");
    let text = String::from_utf8_lossy(&raw_relay);
    assert!(text.contains("fix.patch"), "{text}");
    assert!(text.contains("checked_mul"), "{text}");
}

/// Issue 8: every internal mail of a case (notification, note copy,
/// confirmation, team copy) fed back as a reply in four forms — `>`
/// quoted, Outlook-style, Gmail-style HTML, and pasted without any quote
/// mark — and the reporter receives none of their lines.
#[test]
fn no_line_of_internal_mail_reaches_the_reporter() {
    let w = World::team(false);
    let report_body = "The upload form writes to ../ paths.";
    let (id, _, _) = w.open_case(REPORTER, "Upload path traversal", report_body);
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    let notification = w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");
    // A note from Bob, a command of Alice's (confirmation), a command of
    // Bob's (team copy to Alice).
    w.compose(
        BOB,
        true,
        COMMENT,
        None,
        &format!("[{id}] internal"),
        "NOTE: the fix needs a canonical path check first.",
    );
    let note = w.wait_one(ALICE, "Bob's note", |m| {
        m.subject == format!("[{id}] Note from Bob")
    });
    let conf = w.commands(ALICE, &id, &root, "/severity low");
    w.reply(
        BOB,
        true,
        &root,
        "/audit checked the other upload handlers too",
        Quote::No,
    );
    let copy = w.wait_one(ALICE, "Bob's team copy", |m| {
        m.subject == format!("[{id}] Bob: what was done")
    });
    let internal = [&notification, &note, &conf, &copy];

    let mut n = 0;
    for m in internal {
        for form in ["plain", "outlook", "html", "pasted"] {
            n += 1;
            let new = format!("Answer {n}.");
            let (ctype, body) = match form {
                "plain" => (
                    "text/plain",
                    format!("{new}\r\n\r\nOn Tue, security wrote:\r\n{}", m.body.lines().map(|l| format!("> {l}\r\n")).collect::<String>()),
                ),
                "outlook" => (
                    "text/plain",
                    format!("{new}\r\n\r\n________________________________\r\nFrom: Example security\r\nSent: Tuesday\r\n{}", m.body.replace('\n', "\r\n")),
                ),
                "html" => (
                    "text/html",
                    format!("<div>{new}</div><div class=\"gmail_quote\"><blockquote class=\"gmail_quote\">{}</blockquote></div>", m.body.lines().map(|l| format!("{l}<br>\r\n")).collect::<String>()),
                ),
                _ => ("text/plain", format!("{new}\r\n\r\n{}", m.body.replace('\n', "\r\n"))),
            };
            let raw = format!(
                "From: Alice <{ALICE}>\r\nTo: {SECURITY}\r\nSubject: Re: [{id}] New report\r\n\
                 Message-ID: <leak-{n}.{}@example.org>\r\nIn-Reply-To: <{root}>\r\n\
                 References: <{root}>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: {ctype}; charset=utf-8\r\n\r\n{body}\r\n",
                std::process::id()
            );
            w.stack.submit(ALICE, ALICE, &[SECURITY], raw.as_bytes());
        }
    }
    // Each of the n mails is confirmed one way or another.
    w.wait_matching(ALICE, "a confirmation per mail", n, |m| {
        m.subject == format!("[{id}] Relayed to the reporter")
            || m.subject == format!("[{id}] Nothing done")
    });
    w.wait_outbox_empty();
    quiet();
    let to_reporter: String = w
        .mails(REPORTER)
        .iter()
        .filter(|m| !m.message_id.starts_with("ack."))
        .map(|m| m.body.clone())
        .collect();
    assert!(to_reporter.contains("Answer 1."), "nothing relayed at all");
    let mut leaked = Vec::new();
    for m in internal {
        for line in m.body.lines().map(str::trim).filter(|l| l.len() >= 20) {
            if !report_body.contains(line) && to_reporter.contains(line) {
                leaked.push(line.to_owned());
            }
        }
    }
    assert!(
        leaked.is_empty(),
        "internal lines reached the reporter: {leaked:#?}"
    );
}

/// Issue 8, "the advisory from the case's facts": the reporter says how to
/// be credited in a reply to the acknowledgement; `/summary` and the
/// facts (severity, versions, CVE) make the advisory that `/announce`
/// without text drafts; list and reporter get it.
#[test]
fn the_advisory_is_drafted_from_the_cases_facts() {
    let w = World::team(false);
    let (id, _, ack) = w.open_case(
        REPORTER,
        "Stack overflow in the YAML loader",
        "Deep nesting crashes it.",
    );
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");
    w.reply(
        REPORTER,
        false,
        &ack.message_id,
        "Please credit me.\nCredit: Jane Doe (ACME Labs)",
        Quote::SNail,
    );
    w.wait_events(&id, "credit set", 1);
    let r = w.commands(
        ALICE,
        &id,
        &root,
        "/take\n/state confirmed\n/severity high\n/affected < 3.2\n/fixed-in 3.2.1\n\
         /cve CVE-2026-40001\n/summary SUMMARY-LINE: deeply nested YAML overflows the stack.\n\
         /state fixing\n/state fix-ready\n/announce",
    );
    assert_eq!(r.subject, format!("[{id}] Commands: done"), "{}", r.body);
    let a = w.wait_one(ANNOUNCE, "the drafted advisory", |m| {
        m.subject == "[security] Stack overflow in the YAML loader"
    });
    for needle in [
        "SUMMARY-LINE: deeply nested YAML overflows the stack.",
        "Severity:  high",
        "Affected:  < 3.2",
        "Fixed in:  3.2.1",
        "CVE:       CVE-2026-40001",
        "Credit:    Jane Doe (ACME Labs)",
    ] {
        assert!(a.body.contains(needle), "{needle:?} missing:\n{}", a.body);
    }
    let told = w.wait_matching(REPORTER, "the announced update", 1, |m| {
        m.message_id.starts_with("update.") && m.body.contains("SUMMARY-LINE")
    });
    assert!(
        told[0].body.contains("has been announced"),
        "{}",
        told[0].body
    );
}

/// Issue 8: a stranger's mail naming an existing case opens its own case,
/// whose notification names that case; `/merge <case>` folds it in as a
/// co-finder's report and tells its sender.
#[test]
fn a_co_finder_is_merged_and_told() {
    let w = World::team(false);
    let (a, _, _) = w.open_case(
        REPORTER,
        "SSRF via webhook URL",
        "Internal hosts are reachable.",
    );
    let finder = "cofinder@example.net";
    let (b, _, _) = w.open_case(
        finder,
        &format!("Also found [{a}]"),
        "Same SSRF, via redirects.",
    );
    let root_b = common::daemon::thread_root(&w.dir.path().join("state.db"), &b);
    let note_b = w.wait_one(ALICE, "B's notification", |m| m.message_id == root_b);
    assert!(
        note_b.body.contains(&format!("threads into {a}")),
        "{}",
        note_b.body
    );
    w.wait_state(&b, "acknowledged");
    let r = w.commands(ALICE, &b, &root_b, &format!("/merge {a}"));
    assert!(
        r.body.contains("the reporter was told (merged)"),
        "{}",
        r.body
    );
    let told = w.wait_matching(finder, "the merge update", 1, |m| {
        m.message_id.starts_with("update.")
    });
    assert!(told[0].body.contains("merged it there"), "{}", told[0].body);
    assert!(!told[0].body.contains(REPORTER), "{}", told[0].body);
    let show_a = w.show(&a);
    assert!(
        events(&show_a, "co-finder merged")
            .iter()
            .any(|e| e["detail"].as_str().unwrap_or("").contains(finder)),
        "{show_a:#}"
    );
    assert_eq!(w.show(&b)["duplicate_of"], a.as_str());
}

/// Issue 8: an inline reply between the reporter's quoted lines relays the
/// handler's answers with the reporter's lines kept as context; a quoted
/// line from anything else (the notification) stops it.
#[test]
fn inline_answers_keep_the_reporters_lines_as_context() {
    let w = World::team(false);
    let (id, _, _) = w.open_case(
        REPORTER,
        "Crash on long input",
        "The parser crashes on long input.\nIs version 2.3 affected as well?",
    );
    let root = common::daemon::thread_root(&w.dir.path().join("state.db"), &id);
    w.wait_one(ALICE, "the notification", |m| m.message_id == root);
    w.wait_state(&id, "acknowledged");
    let reply = |n: u32, body: &str| {
        let raw = format!(
            "From: Alice <{ALICE}>\r\nTo: {SECURITY}\r\nSubject: Re: [{id}] New report\r\n\
             Message-ID: <inline-{n}.{}@example.org>\r\nIn-Reply-To: <{root}>\r\n\
             References: <{root}>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
            std::process::id()
        );
        w.stack.submit(ALICE, ALICE, &[SECURITY], raw.as_bytes());
    };
    reply(
        1,
        "Reporter wrote:\r\n> The parser crashes on long input.\r\nINLINE-ONE: we can reproduce it.\r\n\
         > Is version 2.3 affected as well?\r\nINLINE-TWO: yes, 2.3 too.\r\n",
    );
    let c = w.wait_one(ALICE, "the relay confirmation", |m| {
        m.subject == format!("[{id}] Relayed to the reporter")
    });
    assert!(c.body.contains("INLINE-TWO"), "{}", c.body);
    let got = w.wait_matching(REPORTER, "the inline relay", 1, |m| {
        m.body.contains("INLINE-ONE")
    });
    let body = &got[0].body;
    assert!(
        body.contains("> The parser crashes on long input."),
        "{body}"
    );
    assert!(body.contains("INLINE-TWO: yes, 2.3 too."), "{body}");
    assert!(!body.contains("wrote:"), "{body}");

    // A quoted line of the notification's own text stops it.
    reply(
        2,
        &format!(
            "> Case {id} was opened for this report.\r\nINLINE-THREE: hm.\r\n\
             > The parser crashes on long input.\r\nINLINE-FOUR: yes.\r\n"
        ),
    );
    let c = w.wait_one(ALICE, "the refusal", |m| {
        m.subject == format!("[{id}] Nothing done")
    });
    assert!(c.body.contains("between quoted lines"), "{}", c.body);
    w.wait_outbox_empty();
    quiet();
    assert!(!w
        .mails(REPORTER)
        .iter()
        .any(|m| m.body.contains("INLINE-THREE")));
}
