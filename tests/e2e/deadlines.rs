//! End to end: deadlines, reminders, escalation, the daily digest and the
//! SLA report, with the real `secintake` binary against a real private
//! Dovecot + Postfix (tests/e2e/common).
//!
//! Why: deadlines.rs unit-tests the stage plan on paper; only the running
//! daemon shows that each stage's mail reaches the right mailboxes at the
//! right moment, exactly once, across a kill -9, and that a response (by
//! CLI or by an authenticated handler's own mail) stops the reminders.
//!
//! SLA durations are scaled to seconds (`respond = "8s"` …). Timing is
//! checked against the daemon's own timestamps (`received_at`, the
//! `reminders` rows, the events) with a ±2 s tolerance, and against the
//! wall-clock arrival of the mail. "Exactly once" is checked by stopping
//! the daemon after the stages of interest, then counting mail by subject,
//! `reminders` rows (read-only from the state file) and events.
//!
//! Each test has its own mail stack, state folder and daemon.

use crate::common;

use chrono::{DateTime, Utc};
use common::daemon::{cli, cli_json, eventually};
use common::world::{World, T};
use common::{header, subjects, TestConfig};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const SECURITY: &str = "security@example.org";
const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const LEAD: &str = "lead@example.org";
/// Tolerance on when a stage fires.
const TOL_MS: i64 = 2000;

// ------------------------------------------------------------- world --

impl World {
    /// Starts a stack and a daemon. `sla` is raw TOML put into the `[sla]`
    /// table (after the acknowledge/respond lines TestConfig writes).
    fn with_sla(tweak: impl FnOnce(&mut TestConfig), sla: &str) -> World {
        World::start(|c| {
            tweak(c);
            c.sla_extra = sla.to_owned();
        })
    }

    /// The `reminders` rows of a case, read-only from the state file.
    fn reminder_rows(&self, case_id: &str) -> Vec<ReminderRow> {
        reminder_rows(&self.db(), case_id)
    }
}

fn handlers(emails: &[&str]) -> Vec<(String, String)> {
    emails
        .iter()
        .map(|e| {
            let name = e.split('@').next().unwrap();
            (name.to_string(), e.to_string())
        })
        .collect()
}

// ----------------------------------------------------------- helpers --

/// A plain-text message dated now; returns it with its Message-ID (no
/// brackets).
fn mail(
    from: &str,
    to: &[&str],
    cc: &[&str],
    subject: &str,
    extra: &[String],
    body: &str,
) -> (Vec<u8>, String) {
    common::mail("dl", from, to, cc, subject, extra, body)
}

fn subject(m: &[u8]) -> String {
    header(m, "Subject").unwrap_or_default()
}

/// What the reminder template says when a stage is sent late.
const LATE: &str = "This reminder is late";

/// Pre-deadline reminders about `case_id` (any deadline kind).
const REMINDER: &str = "Reminder: ";
/// Escalations about `case_id`.
const OVERDUE: &str = "OVERDUE: ";

/// The messages about `case_id` whose subject says `marker`.
fn about<'a>(msgs: &'a [Vec<u8>], case_id: &str, marker: &str) -> Vec<&'a Vec<u8>> {
    let prefix = format!("[{case_id}] {marker}");
    msgs.iter()
        .filter(|m| subject(m).starts_with(&prefix))
        .collect()
}

fn count(msgs: &[Vec<u8>], case_id: &str, marker: &str) -> usize {
    about(msgs, case_id, marker).len()
}

/// The new-case notification every handler gets (the thread root).
const NEW_REPORT: &str = "New report: ";

/// Deadline mail about `case_id`: reminders, escalations, ack-stuck alerts.
fn deadline_mail(msgs: &[Vec<u8>], case_id: &str) -> usize {
    // Not deadline mail: the notification, and the confirmation a handler
    // gets for each of their own mails.
    const CONFIRMATIONS: &[&str] = &[
        "Direct answer recorded",
        "Relayed to the reporter",
        "Internal note recorded",
        "Nothing done",
        "Commands:",
    ];
    msgs.iter()
        .filter(|m| subject(m).contains(&format!("[{case_id}]")))
        .filter(|m| !subject(m).starts_with(&format!("[{case_id}] {NEW_REPORT}")))
        .filter(|m| {
            !CONFIRMATIONS
                .iter()
                .any(|c| subject(m).starts_with(&format!("[{case_id}] {c}")))
        })
        .count()
}

/// Asserts `msgs` hold nothing but the new-case notifications of `case_ids`
/// (at most one each) and `n` deadline mails.
fn assert_only(msgs: &[Vec<u8>], case_ids: &[&str], n: usize, ctx: &str) {
    let mut notes = 0;
    for id in case_ids {
        let c = count(msgs, id, NEW_REPORT);
        assert!(c <= 1, "{c} new-case notifications for {id}: {ctx}");
        notes += c;
    }
    assert_eq!(msgs.len(), notes + n, "nothing else: {ctx}");
}

/// The decoded text body.
fn body(m: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse(m)
        .and_then(|p| p.body_text(0).map(|s| s.into_owned()))
        .unwrap_or_default()
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad timestamp {s:?}: {e}"))
        .with_timezone(&Utc)
}

fn date_header(m: &[u8]) -> DateTime<Utc> {
    let d = header(m, "Date").expect("Date header");
    DateTime::parse_from_rfc2822(&d)
        .unwrap_or_else(|e| panic!("bad Date {d:?}: {e}"))
        .with_timezone(&Utc)
}

fn ms(d: chrono::Duration) -> i64 {
    d.num_milliseconds()
}

/// Sleeps until the wall clock reaches `t`.
fn sleep_until(t: DateTime<Utc>) {
    let left = t - Utc::now();
    if let Ok(d) = left.to_std() {
        std::thread::sleep(d);
    }
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn events_named(case: &Value, what: &str) -> Vec<Value> {
    case["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["what"] == what)
        .collect()
}

fn deadline<'a>(case: &'a Value, kind: &str) -> &'a Value {
    case["deadlines"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["kind"] == kind))
        .unwrap_or_else(|| panic!("case has no {kind} deadline: {case:#}"))
}

#[derive(Debug, Clone)]
struct ReminderRow {
    deadline: String,
    stage: i64,
    kind: String,
    late: bool,
    fire_at: DateTime<Utc>,
    sent_at: DateTime<Utc>,
}

fn reminder_rows(db: &Path, case_id: &str) -> Vec<ReminderRow> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open state file read-only");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut st = conn
        .prepare(
            "SELECT d.kind, r.stage, r.kind, r.late, r.fire_at, r.sent_at
             FROM reminders r JOIN deadlines d ON d.id = r.deadline
             WHERE d.case_id = ?1 ORDER BY r.id",
        )
        .expect("query reminders");
    let rows = st
        .query_map([case_id], |r| {
            Ok(ReminderRow {
                deadline: r.get(0)?,
                stage: r.get(1)?,
                kind: r.get(2)?,
                late: r.get::<_, i64>(3)? != 0,
                fire_at: ts(&r.get::<_, String>(4)?),
                sent_at: ts(&r.get::<_, String>(5)?),
            })
        })
        .expect("query reminders");
    rows.collect::<Result<_, _>>().expect("read reminders")
}

/// Checks the headers every reminder/escalation carries.
fn assert_reminder_headers(m: &[u8], case_id: &str, to: &[&str]) {
    let h = |n: &str| header(m, n).unwrap_or_else(|| panic!("no {n} in {}", subject(m)));
    let root = h("In-Reply-To");
    assert!(
        root.starts_with(&format!("<case.{case_id}.")) && root.ends_with("@example.org>"),
        "In-Reply-To of {} is not the case's thread root: {root}",
        subject(m)
    );
    assert!(
        h("References").split_whitespace().any(|r| r == root),
        "References of {}: {}",
        subject(m),
        h("References")
    );
    assert_eq!(h("Auto-Submitted"), "auto-generated");
    assert!(h("From").contains(SECURITY), "From: {}", h("From"));
    let to_header = h("To");
    for addr in to {
        assert!(to_header.contains(addr), "To: {to_header} lacks {addr}");
    }
}

/// `[sla]` lines for the reminder tests.
fn sla_lines(remind_before: &str, escalate_every: &str, extra: &str) -> String {
    format!("remind_before = [{remind_before:?}]\nescalate_every = {escalate_every:?}\n{extra}")
}

// --------------------------------------------------------------- tests --

#[test]
fn reminders_arrive_once_at_the_right_moments() {
    let mut w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "8s".into();
            c.handlers = handlers(&[ALICE, BOB]);
        },
        &sla_lines("4s", "4s", ""),
    );
    w.report("reporter@example.net", "RCE in the template engine");
    let case = w.wait_acked_cases(1).remove(0);
    let id = case["id"].as_str().unwrap().to_string();
    let received = ts(case["received_at"].as_str().unwrap());
    assert_eq!(
        ts(case["respond_due_at"].as_str().unwrap()) - received,
        secs(8)
    );

    // Reminder at +4 s, escalations at +8 s and +12 s.
    for (marker, n, at) in [(REMINDER, 1, 4), (OVERDUE, 1, 8), (OVERDUE, 2, 12)] {
        for user in [ALICE, BOB] {
            w.wait_mail(user, T, |m| count(m, &id, marker) >= n);
            let now = Utc::now();
            let late = ms(now - (received + secs(at)));
            eprintln!("{user}: {marker}#{n} seen at +{} ms", ms(now - received));
            // Arrival is observed by polling, so only an upper bound here
            // (the Date headers and the reminders rows bound both sides).
            assert!(
                late <= TOL_MS + 1500,
                "{user}: {marker}#{n} arrived {late} ms after +{at}s\n{}",
                w.log()
            );
        }
    }
    // Stop before the next escalation (+16 s) so the counts are final.
    assert!(
        Utc::now() < received + secs(15),
        "too slow to check the counts"
    );
    w.daemon.terminate(T);

    for user in [ALICE, BOB] {
        let msgs = w.stack.fetch_all(user);
        let ctx = format!("{user}'s INBOX:\n{}\n{}", subjects(&msgs), w.log());
        assert_eq!(count(&msgs, &id, REMINDER), 1, "{ctx}");
        assert_eq!(count(&msgs, &id, OVERDUE), 2, "{ctx}");
        assert_only(&msgs, &[&id], 3, &ctx);
        // The reminders thread under the new-case notification, if any.
        for n in about(&msgs, &id, NEW_REPORT) {
            assert_eq!(
                header(n, "Message-ID"),
                Some(format!("<{}>", common::daemon::thread_root(&w.db(), &id))),
                "{ctx}"
            );
        }
        let reminder = about(&msgs, &id, REMINDER)[0];
        assert!(
            subject(reminder).starts_with(&format!(
                "[{id}] Reminder: response to the reporter due in "
            )),
            "{}",
            subject(reminder)
        );
        assert!(
            !body(reminder).contains(LATE),
            "an on-time reminder must not say late:\n{}",
            body(reminder)
        );
        for (m, at) in std::iter::once((reminder, 4))
            .chain(about(&msgs, &id, OVERDUE).into_iter().zip([8, 12]))
        {
            assert_reminder_headers(m, &id, &[ALICE, BOB]);
            // Date has whole seconds (truncated): within the tolerance.
            let off = ms(date_header(m) - (received + secs(at)));
            assert!(
                (-TOL_MS - 1000..=TOL_MS).contains(&off),
                "{}: Date is {off} ms off +{at}s",
                subject(m)
            );
        }
        for m in about(&msgs, &id, OVERDUE) {
            assert!(
                subject(m).starts_with(&format!(
                    "[{id}] OVERDUE: response to the reporter was due "
                )),
                "{}",
                subject(m)
            );
        }
    }

    // The record: stages 0, 1, 2 once each, on time, none late.
    let rows = w.reminder_rows(&id);
    let got: Vec<(String, i64, String, bool)> = rows
        .iter()
        .map(|r| (r.deadline.clone(), r.stage, r.kind.clone(), r.late))
        .collect();
    let want: Vec<(String, i64, String, bool)> = vec![
        ("respond".into(), 0, "reminder".into(), false),
        ("respond".into(), 1, "escalation".into(), false),
        ("respond".into(), 2, "escalation".into(), false),
    ];
    assert_eq!(got, want, "reminders rows: {rows:#?}");
    for (r, at) in rows.iter().zip([4, 8, 12]) {
        assert_eq!(r.fire_at, received + secs(at), "{r:?}");
        let lag = ms(r.sent_at - r.fire_at);
        assert!(
            (0..=TOL_MS).contains(&lag),
            "stage {} fired {lag} ms late",
            r.stage
        );
    }
    let shown = w.show(&id);
    assert_eq!(events_named(&shown, "reminder sent").len(), 1, "{shown:#}");
    assert_eq!(
        events_named(&shown, "escalation sent").len(),
        2,
        "{shown:#}"
    );
    let d = deadline(&shown, "respond");
    assert!(d["met_at"].is_null());
    assert_eq!(d["stage"], 3);
    assert_eq!(
        ts(d["next_at"].as_str().unwrap()),
        received + secs(16),
        "next escalation: {d}"
    );

    // The reminder planned 4 s before the deadline says so, although it is
    // composed a few milliseconds after its planned moment (with
    // remind_before = "4h" the same must read "4 hours").
    for user in [ALICE, BOB] {
        let msgs = w.stack.fetch_all(user);
        assert_eq!(
            subject(about(&msgs, &id, REMINDER)[0]),
            format!("[{id}] Reminder: response to the reporter due in 4 seconds"),
            "{user}"
        );
    }
}

#[test]
fn restart_in_the_middle_sends_each_once() {
    let mut w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "8s".into();
            c.handlers = handlers(&[ALICE, BOB]);
        },
        &sla_lines("4s", "4s", ""),
    );
    w.report("reporter@example.net", "Auth bypass in the admin API");
    let case = w.wait_acked_cases(1).remove(0);
    let id = case["id"].as_str().unwrap().to_string();
    let received = ts(case["received_at"].as_str().unwrap());

    w.wait_mail(ALICE, T, |m| count(m, &id, REMINDER) == 1);
    w.wait_outbox_empty();
    w.daemon.kill9();
    let killed_at = Utc::now();
    eprintln!("killed at +{} ms", ms(killed_at - received));
    assert!(
        killed_at < received + secs(8),
        "the reminder came too late to kill the daemon before the deadline"
    );

    // Down through the deadline (+8 s) and one escalation period (+12 s).
    sleep_until(received + secs(13));
    w.restart();
    let restarted = Utc::now();

    // One late escalation, at once.
    let msgs = w.wait_mail(ALICE, T, |m| count(m, &id, OVERDUE) >= 1);
    let late_arrival = Utc::now();
    assert!(
        ms(late_arrival - restarted) <= 5000,
        "the late escalation took {} ms after the restart\n{}",
        ms(late_arrival - restarted),
        w.log()
    );
    let first = about(&msgs, &id, OVERDUE)[0];
    let text = body(first);
    assert!(
        text.contains(LATE),
        "the late escalation must say it is late:\n{text}"
    );
    assert_reminder_headers(first, &id, &[ALICE, BOB]);

    // Then the schedule goes on: the next escalation at +16 s, on time.
    w.wait_mail(ALICE, T, |m| count(m, &id, OVERDUE) >= 2);
    let next_arrival = Utc::now();
    assert!(
        ms(next_arrival - (received + secs(16))) <= TOL_MS + 1500,
        "the next escalation arrived at +{} ms\n{}",
        ms(next_arrival - received),
        w.log()
    );
    assert!(
        Utc::now() < received + secs(19),
        "too slow to check the counts"
    );
    w.daemon.terminate(T);

    for user in [ALICE, BOB] {
        let msgs = w.stack.fetch_all(user);
        let ctx = format!("{user}'s INBOX:\n{}\n{}", subjects(&msgs), w.log());
        assert_eq!(count(&msgs, &id, REMINDER), 1, "no second reminder: {ctx}");
        assert_eq!(count(&msgs, &id, OVERDUE), 2, "{ctx}");
        assert_only(&msgs, &[&id], 3, &ctx);
        let overdue = about(&msgs, &id, OVERDUE);
        assert!(body(overdue[0]).contains(LATE), "{ctx}");
        assert!(
            !body(overdue[1]).contains(LATE),
            "the on-time escalation after the restart must not say late:\n{}",
            body(overdue[1])
        );
    }

    // Stage 0 on time, stage 1 (+8 s) skipped, stage 2 (+12 s) late, stage 3 (+16 s) on time.
    let rows = w.reminder_rows(&id);
    let got: Vec<(i64, String, bool)> = rows
        .iter()
        .map(|r| (r.stage, r.kind.clone(), r.late))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "reminder".to_string(), false),
            (2, "escalation".to_string(), true),
            (3, "escalation".to_string(), false),
        ],
        "{rows:#?}"
    );
    assert_eq!(rows[1].fire_at, received + secs(12));
    assert_eq!(rows[2].fire_at, received + secs(16));
    let shown = w.show(&id);
    assert_eq!(events_named(&shown, "reminder sent").len(), 1);
    let esc = events_named(&shown, "escalation sent");
    assert_eq!(esc.len(), 2, "{shown:#}");
    assert!(
        esc[0]["detail"].as_str().unwrap_or("").contains("(late: "),
        "{}",
        esc[0]
    );
}

#[test]
fn response_before_reminder_means_no_reminder() {
    let w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "10s".into();
            c.handlers = handlers(&[ALICE, BOB]);
            c.extra = format!(
                "[handler_auth]\ntrusted_authserv_id = \"{}\"\n",
                common::AUTHSERV_ID
            );
        },
        &sla_lines("6s", "4s", ""),
    );
    let (ra, rb, rc) = (
        "reporter-a@example.net",
        "reporter-b@example.net",
        "reporter-c@example.net",
    );
    w.report(ra, "Report A: answered via the CLI");
    let mid_b = w.report(rb, "Report B: answered by mail");
    let mid_c = w.report(rc, "Report C: forged answer");
    let all = w.wait_acked_cases(3);
    let by = |r: &str| -> Value {
        all.iter()
            .find(|c| c["reporter"] == r)
            .unwrap_or_else(|| panic!("no case from {r}: {all:#?}"))
            .clone()
    };
    let (a, b, c) = (by(ra), by(rb), by(rc));
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let (ida, idb, idc) = (id(&a), id(&b), id(&c));
    let received = |v: &Value| ts(v["received_at"].as_str().unwrap());
    let first_reminder = [&a, &b, &c].iter().map(|v| received(v)).min().unwrap() + secs(4);

    // A: the operator records the response.
    w.cli_ok(&["cases", "responded", &ida]);
    // B: Alice answers the reporter directly, security@ in Cc, submitted on
    // the authenticated port: DKIM-signed, and verified by the stack's
    // border (a genuine Authentication-Results pass).
    let (reply_b, _) = mail(
        ALICE,
        &[rb],
        &[SECURITY],
        &format!("Re: Report B: answered by mail [{idb}]"),
        &[
            format!("In-Reply-To: <{mid_b}>"),
            format!("References: <{mid_b}>"),
        ],
        "Thanks, we confirmed the issue; details below.",
    );
    w.stack.submit(ALICE, ALICE, &[rb, SECURITY], &reply_b);
    // C: the same, but nothing proves it is Alice.
    let (reply_c, _) = mail(
        ALICE,
        &[rc],
        &[SECURITY],
        &format!("Re: Report C: forged answer [{idc}]"),
        &[
            format!("In-Reply-To: <{mid_c}>"),
            format!("References: <{mid_c}>"),
        ],
        "Not a bug, closing.",
    );
    w.stack.send_raw(ALICE, &[rc, SECURITY], &reply_c);

    // Both replies processed before the first reminder is due.
    eventually(T, "both handler replies attached", Some(&w.daemon), || {
        let sb = w.show(&idb);
        let sc = w.show(&idc);
        let n = |s: &Value| {
            events_named(s, "follow-up received")
                .iter()
                .filter(|e| e["actor"] == ALICE)
                .count()
        };
        (n(&sb) == 1 && n(&sc) == 1).then_some(())
    });
    let done = Utc::now();
    assert!(
        done < first_reminder,
        "the responses took until {} ms after the first reminder was due",
        ms(done - first_reminder)
    );

    // C gets its reminder (+4 s) and escalation (+10 s); wait past +12 s.
    w.wait_mail(ALICE, T, |m| count(m, &idc, OVERDUE) >= 1);
    let latest = [&a, &b, &c].iter().map(|v| received(v)).max().unwrap();
    sleep_until(latest + secs(12) + chrono::Duration::milliseconds(500));
    w.wait_outbox_empty();

    for user in [ALICE, BOB] {
        let msgs = w.stack.fetch_all(user);
        let ctx = format!("{user}'s INBOX:\n{}\n{}", subjects(&msgs), w.log());
        assert_eq!(deadline_mail(&msgs, &ida), 0, "A was answered: {ctx}");
        assert_eq!(deadline_mail(&msgs, &idb), 0, "B was answered: {ctx}");
        assert_eq!(count(&msgs, &idc, REMINDER), 1, "C was not: {ctx}");
        assert!(count(&msgs, &idc, OVERDUE) >= 1, "C was not: {ctx}");
    }
    assert!(w.reminder_rows(&ida).is_empty());
    assert!(w.reminder_rows(&idb).is_empty());

    // A: met by the CLI.
    let sa = w.show(&ida);
    assert!(sa["responded_at"].is_string(), "{sa:#}");
    let d = deadline(&sa, "respond");
    assert!(d["met_at"].is_string() && d["next_at"].is_null(), "{d}");
    assert!(
        d["met_how"]
            .as_str()
            .unwrap_or("")
            .starts_with("marked by cli:"),
        "{d}"
    );
    assert!(ts(d["met_at"].as_str().unwrap()) <= ts(d["due_at"].as_str().unwrap()));

    // B: met by Alice's authenticated reply.
    let sb = w.show(&idb);
    assert!(sb["responded_at"].is_string(), "{sb:#}");
    let d = deadline(&sb, "respond");
    assert!(d["met_at"].is_string() && d["next_at"].is_null(), "{d}");
    assert_eq!(d["met_how"], format!("reply by {ALICE}"), "{d}");
    let ev = events_named(&sb, "response sent to the reporter");
    assert_eq!(ev.len(), 1, "{sb:#}");
    assert_eq!(ev[0]["actor"], ALICE);
    assert!(events_named(&sb, "unauthenticated mail from a handler address ignored").is_empty());

    // C: the forged reply changed nothing.
    let sc = w.show(&idc);
    assert!(sc["responded_at"].is_null(), "{sc:#}");
    let d = deadline(&sc, "respond");
    assert!(d["met_at"].is_null(), "{d}");
    assert_eq!(
        events_named(&sc, "unauthenticated mail from a handler address ignored").len(),
        1,
        "{sc:#}"
    );
    assert!(events_named(&sc, "response sent to the reporter").is_empty());
    assert!(!events_named(&sc, "reminder sent").is_empty());
    assert!(!events_named(&sc, "escalation sent").is_empty());

    // The SLA report agrees.
    let sla = cli_json(&w.config, &["sla"]);
    let status = |id: &str| -> String {
        sla["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["respond"]["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status(&ida), "met");
    assert_eq!(status(&idb), "met");
    assert_eq!(status(&idc), "missed");
}

#[test]
fn overdue_escalates_to_everyone_including_escalate_to() {
    let mut w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "8s".into();
            c.handlers = handlers(&[ALICE, BOB]);
        },
        &sla_lines("4s", "4s", &format!("escalate_to = [{LEAD:?}]\n")),
    );
    w.report("reporter@example.net", "Path traversal in uploads");
    let case = w.wait_acked_cases(1).remove(0);
    let id = case["id"].as_str().unwrap().to_string();
    let received = ts(case["received_at"].as_str().unwrap());

    w.wait_mail(ALICE, T, |m| count(m, &id, REMINDER) == 1);
    w.wait_mail(LEAD, T, |m| count(m, &id, OVERDUE) >= 1);
    w.wait_mail(ALICE, T, |m| count(m, &id, OVERDUE) >= 1);
    w.wait_mail(BOB, T, |m| count(m, &id, OVERDUE) >= 1);
    assert!(
        Utc::now() < received + secs(11),
        "too slow to check the counts"
    );
    w.daemon.terminate(T);

    let lead = w.stack.fetch_all(LEAD);
    let ctx = format!("lead's INBOX:\n{}\n{}", subjects(&lead), w.log());
    assert_eq!(
        count(&lead, &id, REMINDER),
        0,
        "no reminder for lead: {ctx}"
    );
    assert_eq!(count(&lead, &id, OVERDUE), 1, "{ctx}");
    assert_eq!(lead.len(), 1, "nothing else: {ctx}");
    assert_reminder_headers(&lead[0], &id, &[ALICE, BOB, LEAD]);
    for user in [ALICE, BOB] {
        let msgs = w.stack.fetch_all(user);
        let ctx = format!("{user}'s INBOX:\n{}\n{}", subjects(&msgs), w.log());
        assert_eq!(count(&msgs, &id, REMINDER), 1, "{ctx}");
        assert_eq!(count(&msgs, &id, OVERDUE), 1, "{ctx}");
        let reminder = about(&msgs, &id, REMINDER)[0];
        let to = header(reminder, "To").unwrap_or_default();
        assert!(
            !to.contains(LEAD),
            "the reminder must not name escalate_to: {to}"
        );
        assert_reminder_headers(reminder, &id, &[ALICE, BOB]);
        assert_reminder_headers(about(&msgs, &id, OVERDUE)[0], &id, &[ALICE, BOB, LEAD]);
    }
}

/// Expected outcome of one deadline, computed from `cases list` timestamps.
fn expect_outcome(
    received: DateTime<Utc>,
    due: DateTime<Utc>,
    done: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (&'static str, Option<i64>) {
    let status = match done {
        Some(d) if d <= due => "met",
        Some(_) => "missed",
        None if now > due => "missed",
        None => "pending",
    };
    // Whole seconds, rounded down.
    let seconds = done.map(|d| ms(d - received).div_euclid(1000));
    (status, seconds)
}

/// Independent totals: counts, median (mean of the middle two, rounded
/// down, for an even count) and nearest-rank 90th percentile.
fn expect_totals(outcomes: &[(&str, Option<i64>)]) -> Value {
    let n = |s: &str| outcomes.iter().filter(|o| o.0 == s).count();
    let mut v: Vec<i64> = outcomes.iter().filter_map(|o| o.1).collect();
    v.sort_unstable();
    let median = match v.len() {
        0 => None,
        l if l % 2 == 1 => Some(v[l / 2]),
        l => Some((v[l / 2 - 1] + v[l / 2]).div_euclid(2)),
    };
    let p90 = if v.is_empty() {
        None
    } else {
        // Smallest value with at least 90 % of the values at or below it.
        let rank = (9 * v.len()).div_ceil(10).max(1);
        Some(v[rank - 1])
    };
    serde_json::json!({
        "met": n("met"),
        "missed": n("missed"),
        "pending": n("pending"),
        "waived": 0,
        "median_seconds": median,
        "p90_seconds": p90,
    })
}

#[test]
fn sla_json_matches_timestamps() {
    let w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "6s".into();
            c.handlers = handlers(&[ALICE]);
        },
        &sla_lines("1s", "1h", ""),
    );
    // First batch: A answered in time, B answered late, X never.
    w.report("a@example.net", "A");
    w.report("b@example.net", "B");
    w.report("x@example.net", "X");
    let first = w.wait_acked_cases(3);
    let id_of = |cases: &[Value], r: &str| -> String {
        cases
            .iter()
            .find(|c| c["reporter"] == r)
            .and_then(|c| c["id"].as_str())
            .unwrap_or_else(|| panic!("no case from {r}"))
            .to_string()
    };
    let (ida, idb, idx) = (
        id_of(&first, "a@example.net"),
        id_of(&first, "b@example.net"),
        id_of(&first, "x@example.net"),
    );
    w.cli_ok(&["cases", "responded", &ida]);
    let b_received = ts(
        first.iter().find(|c| c["id"] == idb.as_str()).unwrap()["received_at"]
            .as_str()
            .unwrap(),
    );
    sleep_until(b_received + secs(7));
    w.cli_ok(&["cases", "responded", &idb]);

    // Second batch: C and D answered in time (at different moments), E pending.
    w.report("c@example.net", "C");
    w.report("d@example.net", "D");
    w.report("e@example.net", "E");
    let all = w.wait_acked_cases(6);
    let (idc, idd, ide) = (
        id_of(&all, "c@example.net"),
        id_of(&all, "d@example.net"),
        id_of(&all, "e@example.net"),
    );
    std::thread::sleep(Duration::from_millis(1200));
    w.cli_ok(&["cases", "responded", &idc]);
    std::thread::sleep(Duration::from_millis(1500));
    w.cli_ok(&["cases", "responded", &idd]);

    let before = Utc::now();
    let report = cli_json(&w.config, &["sla"]);
    let listed = w.cases();
    let after = Utc::now();
    let generated = ts(report["generated_at"].as_str().expect("generated_at"));
    assert!(before - chrono::Duration::milliseconds(5) <= generated && generated <= after);
    assert!(report["since"].is_null());
    let rcases = report["cases"].as_array().expect("cases").clone();
    assert_eq!(rcases.len(), 6, "{report:#}");

    let mut ack_outcomes = Vec::new();
    let mut resp_outcomes = Vec::new();
    for c in &listed {
        let id = c["id"].as_str().unwrap();
        let r = rcases
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} missing from the report"));
        assert_eq!(r["received_at"], c["received_at"], "{id}");
        let received = ts(c["received_at"].as_str().unwrap());
        let opt = |k: &str| c[k].as_str().map(ts);
        for (kind, due_key, done_key, acc) in [
            (
                "acknowledge",
                "ack_due_at",
                "acknowledged_at",
                &mut ack_outcomes,
            ),
            (
                "respond",
                "respond_due_at",
                "responded_at",
                &mut resp_outcomes,
            ),
        ] {
            let due = ts(c[due_key].as_str().unwrap());
            let done = opt(done_key);
            let (status, seconds) = expect_outcome(received, due, done, generated);
            let o = &r[kind];
            assert_eq!(o["status"], status, "{id} {kind}: {o}\ncase: {c}");
            assert_eq!(o["seconds"], serde_json::json!(seconds), "{id} {kind}: {o}");
            assert_eq!(o["due_at"], c[due_key], "{id} {kind}");
            assert_eq!(o["done_at"], c[done_key], "{id} {kind}");
            acc.push((status, seconds));
        }
    }

    // The statuses the scenario was built for.
    let st = |id: &str, kind: &str| -> String {
        rcases.iter().find(|r| r["id"] == id).unwrap()[kind]["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for id in [&ida, &idb, &idx, &idc, &idd, &ide] {
        assert_eq!(st(id, "acknowledge"), "met", "{id}");
    }
    assert_eq!(st(&ida, "respond"), "met");
    assert_eq!(st(&idb, "respond"), "missed");
    assert_eq!(st(&idx, "respond"), "missed");
    assert_eq!(st(&idc, "respond"), "met");
    assert_eq!(st(&idd, "respond"), "met");
    assert_eq!(st(&ide, "respond"), "pending");
    let b = rcases.iter().find(|r| r["id"] == idb.as_str()).unwrap();
    assert!(b["respond"]["seconds"].as_i64().unwrap() >= 7, "{b}");

    assert_eq!(
        report["acknowledge"],
        expect_totals(&ack_outcomes),
        "{report:#}"
    );
    assert_eq!(
        report["respond"],
        expect_totals(&resp_outcomes),
        "{report:#}"
    );
    // Four responses: an even count, so the median is a mean.
    assert_eq!(resp_outcomes.iter().filter(|o| o.1.is_some()).count(), 4);

    // --since keeps only the second batch.
    let c_received = all.iter().find(|c| c["id"] == idc.as_str()).unwrap()["received_at"]
        .as_str()
        .unwrap()
        .to_string();
    let second_batch_start = [&idc, &idd, &ide]
        .iter()
        .map(|id| {
            ts(
                all.iter().find(|c| c["id"] == id.as_str()).unwrap()["received_at"]
                    .as_str()
                    .unwrap(),
            )
        })
        .min()
        .unwrap();
    let since = second_batch_start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let part = cli_json(&w.config, &["sla", "--since", &since]);
    let mut ids: Vec<&str> = part["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want = vec![idc.as_str(), idd.as_str(), ide.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want, "--since {since} (C received {c_received})");
    assert_eq!(ts(part["since"].as_str().unwrap()), second_batch_start);
    assert_eq!(part["respond"]["met"], 2);
    assert_eq!(part["respond"]["pending"], 1);
}

#[test]
fn fix_deadline_via_cli() {
    let mut w = World::with_sla(
        |c| {
            c.handlers = handlers(&[ALICE]);
        },
        &sla_lines("3s", "3s", ""),
    );
    w.report("reporter@example.net", "Memory disclosure in the parser");
    let case = w.wait_acked_cases(1).remove(0);
    let id = case["id"].as_str().unwrap().to_string();

    let due_s = (Utc::now() + secs(6)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let due = ts(&due_s);
    let out = w.cli_ok(&["cases", "deadline", &id, "fix", &due_s]);
    eprintln!("{}", out.trim());
    let shown = w.show(&id);
    let d = deadline(&shown, "fix");
    assert_eq!(ts(d["due_at"].as_str().unwrap()), due, "{d}");
    assert_eq!(d["stage"], 0, "{d}");
    assert_eq!(ts(d["next_at"].as_str().unwrap()), due - secs(3), "{d}");

    // The reminder at due - 3 s. Wait for any mail about the fix deadline
    // (long enough to see a late one), then check it was the reminder, on time.
    let msgs = w.wait_mail(ALICE, Duration::from_secs(35), |m| {
        about(m, &id, "")
            .iter()
            .any(|m| subject(m).contains(" fix "))
    });
    let arrived = Utc::now();
    let fix: Vec<&Vec<u8>> = about(&msgs, &id, "")
        .into_iter()
        .filter(|m| subject(m).contains(" fix "))
        .collect();
    let ctx = format!(
        "arrived at due{:+} ms; alice's INBOX:\n{}\n{}",
        ms(arrived - due),
        subjects(&msgs),
        w.log()
    );
    assert!(
        subject(fix[0]).starts_with(&format!("[{id}] Reminder: fix due in ")),
        "expected the fix reminder: {ctx}"
    );
    assert!(
        ms(arrived - (due - secs(3))) <= TOL_MS + 1500,
        "the fix reminder is late: {ctx}"
    );
    assert_reminder_headers(fix[0], &id, &[ALICE]);

    // Fixed: no escalation follows.
    w.cli_ok(&["cases", "met", &id, "fix"]);
    let shown = w.show(&id);
    let d = deadline(&shown, "fix");
    assert!(d["met_at"].is_string() && d["next_at"].is_null(), "{d}");
    assert!(d["met_how"]
        .as_str()
        .unwrap_or("")
        .starts_with("marked by cli:"));
    assert_eq!(events_named(&shown, "fix deadline met").len(), 1);
    assert_eq!(events_named(&shown, "fix deadline set").len(), 1);
    sleep_until(due + secs(7));
    w.daemon.terminate(T);
    let msgs = w.stack.fetch_all(ALICE);
    let fix: Vec<&Vec<u8>> = about(&msgs, &id, "")
        .into_iter()
        .filter(|m| subject(m).contains(" fix "))
        .collect();
    assert_eq!(
        fix.len(),
        1,
        "only the reminder:\n{}\n{}",
        subjects(&msgs),
        w.log()
    );
    let rows: Vec<ReminderRow> = w
        .reminder_rows(&id)
        .into_iter()
        .filter(|r| r.deadline == "fix")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!((rows[0].stage, rows[0].late), (0, false), "{rows:#?}");
}

#[test]
fn digest_once_a_day() {
    let mut w = World::with_sla(
        |c| {
            c.handlers = handlers(&[ALICE, BOB]);
        },
        "timezone = \"UTC\"\n",
    );
    w.report("reporter@example.net", "XXE in the importer");
    let case = w.wait_acked_cases(1).remove(0);
    let id = case["id"].as_str().unwrap().to_string();
    // A report a forwarder stamped as auto-generated: filed without a case,
    // and the digest says so.
    let (robot, _) = mail(
        "forwarder@example.net",
        &[SECURITY],
        &[],
        "Fwd: RCE in the updater",
        &["Auto-Submitted: auto-generated".to_string()],
        "forwarded report",
    );
    w.stack
        .send_raw("forwarder@example.net", &[SECURITY], &robot);
    eventually(T, "the robot filed", Some(&w.daemon), || {
        let (code, out, _) = cli(&w.config, &["mail", "list", "--robots", "--json"]);
        (code == 0 && out.contains("forwarder@example.net")).then_some(())
    });
    w.wait_outbox_empty();
    w.daemon.terminate(T);

    // Digest at the current minute (not about to roll over).
    let mut now = Utc::now();
    if now.format("%S").to_string().parse::<u32>().unwrap() >= 50 {
        let next = now + secs(61 - now.format("%S").to_string().parse::<i64>().unwrap());
        sleep_until(next);
        now = Utc::now();
    }
    let at = now.format("%H:%M").to_string();
    let day = now.format("%Y-%m-%d").to_string();
    w.reconfigure(|c| c.sla_extra = format!("timezone = \"UTC\"\ndigest_at = \"{at}\"\n"));
    w.restart();

    let want = format!("[secintake] 1 open case(s) on {day}");
    for user in [ALICE, BOB] {
        w.wait_mail(user, T, |m| m.iter().any(|m| subject(m) == want));
    }
    w.wait_outbox_empty();
    w.daemon.terminate(T);
    w.restart();
    // Give the restarted daemon time to start its scheduler (it looks at
    // once) and to send anything it queued.
    std::thread::sleep(Duration::from_secs(4));
    w.wait_outbox_empty();
    w.daemon.terminate(T);

    for user in [ALICE, BOB] {
        let msgs = w.stack.fetch_all(user);
        let digests: Vec<&Vec<u8>> = msgs
            .iter()
            .filter(|m| subject(m).starts_with("[secintake] "))
            .collect();
        let ctx = format!("{user}'s INBOX:\n{}\n{}", subjects(&msgs), w.log());
        assert_eq!(digests.len(), 1, "one digest a day: {ctx}");
        let d = digests[0];
        assert_eq!(subject(d), want, "{ctx}");
        assert!(body(d).contains(&id), "the digest lists {id}:\n{}", body(d));
        assert!(
            body(d).contains("1 message(s) arrived in the last day that opened no case"),
            "the digest points at mail without a case:\n{}",
            body(d)
        );
        assert_eq!(
            header(d, "Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        let to = header(d, "To").unwrap_or_default();
        assert!(to.contains(user), "digest To: {to}");
    }
}

/// With a primary handler (round-robin), the reminder goes to them alone;
/// the escalation after the deadline goes to every handler.
#[test]
fn reminder_goes_to_the_primary_handler_escalation_to_all() {
    let mut w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "8s".into();
            c.handlers = handlers(&[ALICE, BOB]);
            c.assign = "round-robin".into();
        },
        &sla_lines("4s", "30s", ""),
    );
    w.report("reporter@example.net", "Auth bypass in admin API");
    let case = w.wait_acked_cases(1).remove(0);
    let id = case["id"].as_str().unwrap().to_string();
    assert_eq!(case["primary_handler"].as_str(), Some(ALICE), "{case:#}");

    w.wait_mail(ALICE, T, |m| count(m, &id, REMINDER) == 1);
    w.wait_mail(BOB, T, |m| count(m, &id, OVERDUE) == 1);
    w.wait_mail(ALICE, T, |m| count(m, &id, OVERDUE) == 1);
    w.daemon.terminate(T);

    let alice = w.stack.fetch_all(ALICE);
    let bob = w.stack.fetch_all(BOB);
    let ctx = format!(
        "alice:\n{}\nbob:\n{}\n{}",
        subjects(&alice),
        subjects(&bob),
        w.log()
    );
    assert_eq!(count(&alice, &id, REMINDER), 1, "{ctx}");
    assert_reminder_headers(about(&alice, &id, REMINDER)[0], &id, &[ALICE]);
    assert_eq!(count(&bob, &id, REMINDER), 0, "bob is not primary: {ctx}");
    assert_reminder_headers(about(&bob, &id, OVERDUE)[0], &id, &[ALICE, BOB]);
}

/// Issue 8, "deadlines that follow the state": a rejected case stops its
/// reminders and escalations at once (a rejected case once sent a handler
/// 69 mails in 18 minutes), and a deadline date in the past is refused.
#[test]
fn rejected_cases_stop_reminding_and_past_dates_are_refused() {
    let w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "8s".into();
            c.handlers = handlers(&[ALICE]);
            c.extra = format!(
                "[handler_auth]\ntrusted_authserv_id = \"{}\"\n",
                common::AUTHSERV_ID
            );
        },
        &sla_lines("4s", "3s", ""),
    );
    let (rr, rk) = ("reporter-r@example.net", "reporter-k@example.net");
    w.report(rr, "Report R: rejected");
    w.report(rk, "Report K: kept");
    let all = w.wait_acked_cases(2);
    let id_of = |r: &str| {
        all.iter()
            .find(|c| c["reporter"] == r)
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (idr, idk) = (id_of(rr), id_of(rk));
    let db = w.dir.path().join("state.db");
    let root = common::daemon::thread_root(&db, &idr);
    let (cmd, _) = mail(
        ALICE,
        &[SECURITY],
        &[],
        &format!("Re: [{idr}] New report: Report R: rejected"),
        &[
            format!("In-Reply-To: <{root}>"),
            format!("References: <{root}>"),
        ],
        "/reject not a vulnerability: the endpoint needs admin rights\n/deadline fix 2001-01-01",
    );
    w.stack.submit(ALICE, ALICE, &[SECURITY], &cmd);
    let reply = w.wait_mail(ALICE, T, |m| count(m, &idr, "Commands:") >= 1);
    let reply = about(&reply, &idr, "Commands:")[0].clone();
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(text.contains("is in the past"), "{text}");

    // K is overdue 8 s after receipt and escalates every 3 s; wait for two
    // escalations of K, then R must have had none of it.
    w.wait_mail(ALICE, Duration::from_secs(30), |m| {
        count(m, &idk, OVERDUE) >= 2
    });
    let msgs = w.stack.fetch_all(ALICE);
    assert_eq!(count(&msgs, &idr, REMINDER), 0, "{}", subjects(&msgs));
    assert_eq!(count(&msgs, &idr, OVERDUE), 0, "{}", subjects(&msgs));
    let shown = w.show(&idr);
    assert_eq!(shown["state"], "rejected");
    let deadlines = shown["deadlines"].as_array().unwrap();
    assert!(
        deadlines
            .iter()
            .filter(|d| d["kind"] == "respond")
            .all(|d| d["met_how"] == "waived: case rejected"),
        "{deadlines:#?}"
    );
}

/// Issue 8: replying to a reminder once filed an internal note while the
/// deadline passed unnoticed. It is still an internal note (a reminder is
/// internal mail), but the handler is told so, and the reminder itself
/// says how to reach the reporter.
#[test]
fn a_reply_to_a_reminder_is_a_confirmed_internal_note() {
    let w = World::with_sla(
        |c| {
            c.acknowledge = "30s".into();
            c.respond = "30s".into();
            c.handlers = handlers(&[ALICE]);
            c.extra = format!(
                "[handler_auth]\ntrusted_authserv_id = \"{}\"\n",
                common::AUTHSERV_ID
            );
        },
        &sla_lines("26s", "30s", ""),
    );
    w.report("reporter@example.net", "Weak session ids");
    let case = w.wait_acked_cases(1).remove(0);
    let id = case["id"].as_str().unwrap().to_string();
    let msgs = w.wait_mail(ALICE, T, |m| count(m, &id, REMINDER) == 1);
    let reminder = about(&msgs, &id, REMINDER)[0].clone();
    let text = secintake::mail::message::parse(&reminder)
        .text_body
        .unwrap_or_default();
    assert!(text.contains("To answer the reporter"), "{text}");
    let mid = common::header(&reminder, "Message-ID").unwrap();
    let (reply, _) = mail(
        ALICE,
        &[SECURITY],
        &[],
        &format!("Re: [{id}] Reminder"),
        &[format!("In-Reply-To: {mid}"), format!("References: {mid}")],
        "REMINDER-REPLY: the session ids come from rand().",
    );
    w.stack.submit(ALICE, ALICE, &[SECURITY], &reply);
    let got = w.wait_mail(ALICE, T, |m| count(m, &id, "Internal note recorded") == 1);
    let conf = secintake::mail::message::parse(about(&got, &id, "Internal note recorded")[0])
        .text_body
        .unwrap_or_default();
    assert!(conf.contains("internal mail"), "{conf}");
    assert!(conf.contains("To answer the reporter"), "{conf}");
    assert!(!w
        .stack
        .fetch_all("reporter@example.net")
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains("REMINDER-REPLY")));
}
