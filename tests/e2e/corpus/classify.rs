//! Runs `message::parse` and `classify::robot_rule` over the real-world corpus
//! in `tests/fixtures/corpus/` (396 messages from other people's mail
//! software, see its README.md and NOTICE.md) and checks each against the
//! category the manifest gives it:
//!
//! - `bounce/`, `auto-reply/`, `list/`: a robot, except [`KNOWN_MISSES`](super::KNOWN_MISSES);
//! - `new-report-like/`, `reply/`, `encrypted/`: a person, except
//!   [`KNOWN_FALSE_POSITIVES`](super::KNOWN_FALSE_POSITIVES);
//! - `encrypted/`: the `encrypted` flag set, except the signed-only messages
//!   in [`SIGNED_ONLY`]; elsewhere it is clear, except [`ALSO_ENCRYPTED`];
//! - everything, `malformed/` above all: no panic, a bounded parse time, and
//!   the content hash equal to SHA-256 of the file, every time.
//!
//! Each exception list must stay honest: an entry that no longer describes
//! what happens fails the test, so fixing a miss means deleting its entry.
//! Run with `--nocapture` for a table of counts per category and rule.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{
    corpus_dir, is_robot_category, listed, manifest, Entry, KNOWN_FALSE_POSITIVES, KNOWN_MISSES,
};

use secintake::mail::classify::{reply_address, robot_rule, RobotRule};
use secintake::mail::message::{parse, ParsedMessage};
use sha2::{Digest, Sha256};

/// Our own address in the corpus' `real-*` messages (the loopback test stack).
const OWN_ADDRESS: &str = "security@example.test";

/// Files in `encrypted/` that are signed but not encrypted.
const SIGNED_ONLY: &[(&str, &str)] = &[
    (
        "encrypted/chatmail-thunderbird_signed_unencrypted.eml",
        "PGP/MIME signed",
    ),
    (
        "encrypted/chatmail-unencrypted_signed_simple.eml",
        "PGP/MIME signed",
    ),
    (
        "encrypted/enmime-mime-signed.eml",
        "PGP signature in multipart/mixed",
    ),
    ("encrypted/flanker-signed.eml", "S/MIME signed"),
    ("encrypted/mikel-mail-sig_only_email.eml", "PGP/MIME signed"),
    ("encrypted/mimekit-thunderbird-signed.eml", "S/MIME signed"),
    (
        "encrypted/thunderbird-alice-signed.eml",
        "inline PGP clear-signed",
    ),
    (
        "encrypted/thunderbird-alice-utf.eml",
        "inline PGP clear-signed (the manifest note says partially encrypted, the file is not)",
    ),
    (
        "encrypted/thunderbird-alice.dsig.SHA256.multipart.bad.eml",
        "S/MIME detached, bad",
    ),
    (
        "encrypted/thunderbird-alice.dsig.SHA256.multipart.eml",
        "S/MIME detached",
    ),
    (
        "encrypted/thunderbird-alice.dsig.SHA256.multipart.in.mixed.with.header.eml",
        "S/MIME detached, wrapped by a list",
    ),
    (
        "encrypted/thunderbird-alice.sig.SHA256.opaque.eml",
        "S/MIME opaque signed-data",
    ),
    (
        "encrypted/thunderbird-bob-to-alice-signed-damaged-signature.eml",
        "PGP/MIME signed",
    ),
    (
        "encrypted/thunderbird-dual-signed-uncommon-content-type.eml",
        "PGP + S/MIME signed",
    ),
    (
        "encrypted/thunderbird-inline-signed-latin1.eml",
        "inline PGP clear-signed",
    ),
    (
        "encrypted/thunderbird-inline-signed-utf8.eml",
        "inline PGP clear-signed",
    ),
    (
        "encrypted/thunderbird-nested-sigs.eml",
        "nested S/MIME signatures",
    ),
    (
        "encrypted/thunderbird-signed-inline-indented.eml",
        "inline PGP clear-signed",
    ),
    (
        "encrypted/thunderbird-signed-with-mailman-footer.eml",
        "PGP/MIME signed + footer",
    ),
];

/// Encrypted messages filed outside `encrypted/`.
const ALSO_ENCRYPTED: &[(&str, &str)] = &[(
    "reply/chatmail-protonmail-mixed-up.eml",
    "ProtonMail PGP/MIME reply whose structure got mixed up: application/pgp-encrypted part",
)];

/// Generous per-file bound (debug build, loaded CI); the whole corpus parses
/// in well under a second on a laptop.
const MAX_PARSE_TIME: Duration = Duration::from_secs(10);

struct Outcome {
    entry: Entry,
    parsed: ParsedMessage,
    rule: Option<RobotRule>,
    elapsed: Duration,
}

#[test]
fn corpus_is_complete() {
    let entries = manifest();
    assert_eq!(entries.len(), 396, "manifest rows");
    let mut on_disk = Vec::new();
    for dir in std::fs::read_dir(corpus_dir()).unwrap() {
        let dir = dir.unwrap();
        if dir.file_type().unwrap().is_dir() {
            for f in std::fs::read_dir(dir.path()).unwrap() {
                let f = f.unwrap();
                on_disk.push(format!(
                    "{}/{}",
                    dir.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                ));
            }
        }
    }
    on_disk.sort();
    let mut in_manifest: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
    in_manifest.sort();
    assert_eq!(on_disk, in_manifest, "files on disk vs MANIFEST.tsv");
    for list in [
        KNOWN_MISSES,
        KNOWN_FALSE_POSITIVES,
        SIGNED_ONLY,
        ALSO_ENCRYPTED,
    ] {
        for (p, reason) in list {
            assert!(
                in_manifest.iter().any(|m| m == p),
                "{p} is not in the manifest"
            );
            assert!(!reason.is_empty(), "{p} needs a reason");
        }
    }
}

#[test]
fn corpus_parses_and_classifies() {
    let own = [OWN_ADDRESS.to_string()];
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for entry in manifest() {
        let raw = std::fs::read(corpus_dir().join(&entry.path)).expect(&entry.path);
        let t = Instant::now();
        let parsed = parse(&raw);
        let rule = robot_rule(&parsed, &own);
        let _ = reply_address(&parsed);
        let elapsed = t.elapsed();
        outcomes.push(Outcome {
            entry,
            parsed,
            rule,
            elapsed,
        });
        // Hash of the raw bytes, stable across runs.
        let o = outcomes.last().unwrap();
        assert_eq!(
            o.parsed.content_hash,
            hex::encode(Sha256::digest(&raw)),
            "{}",
            o.entry.path
        );
        assert_eq!(
            parse(&raw).content_hash,
            o.parsed.content_hash,
            "{}",
            o.entry.path
        );
    }
    let total = started.elapsed();

    let mut failures = Vec::new();
    for o in &outcomes {
        let path = o.entry.path.as_str();
        if o.elapsed > MAX_PARSE_TIME {
            failures.push(format!("{path}: parse took {:?}", o.elapsed));
        }
        match is_robot_category(&o.entry.category) {
            Some(true) => match (o.rule.is_some(), listed(KNOWN_MISSES, path)) {
                (false, false) => failures.push(format!("{path}: robot not recognized")),
                (true, true) => failures.push(format!(
                    "{path}: now recognized ({}): remove it from KNOWN_MISSES",
                    o.rule.unwrap()
                )),
                _ => {}
            },
            Some(false) => match (o.rule, listed(KNOWN_FALSE_POSITIVES, path)) {
                (Some(rule), false) => {
                    failures.push(format!("{path}: person taken for a robot ({rule})"))
                }
                (None, true) => failures.push(format!(
                    "{path}: now a person: remove it from KNOWN_FALSE_POSITIVES"
                )),
                _ => {}
            },
            None => {}
        }
        let want_encrypted = if o.entry.category == "encrypted" {
            !listed(SIGNED_ONLY, path)
        } else {
            listed(ALSO_ENCRYPTED, path)
        };
        if o.parsed.encrypted != want_encrypted {
            failures.push(format!(
                "{path}: encrypted = {}, expected {want_encrypted}",
                o.parsed.encrypted
            ));
        }
        if o.entry.category != "malformed" && !o.parsed.parsed_ok {
            failures.push(format!("{path}: not parsed"));
        }
    }
    // Spot checks of the README's hard cases.
    let rule_of = |p: &str| {
        outcomes
            .iter()
            .find(|o| o.entry.path == p)
            .unwrap_or_else(|| panic!("{p}"))
            .rule
    };
    for person in [
        "reply/sisimai-make-test-36.eml",
        "new-report-like/spamassassin-004.eml",
        "new-report-like/spamscope-mail_test_15.eml",
    ] {
        assert_eq!(rule_of(person), None, "{person}");
    }
    assert_eq!(
        rule_of("bounce/real-postfix-dsn-1.eml"),
        Some(RobotRule::AutoSubmitted)
    );

    print_summary(&outcomes, total);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn print_summary(outcomes: &[Outcome], total: Duration) {
    let mut table: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut columns: Vec<&str> = vec!["person"];
    columns.extend(RobotRule::ALL.iter().map(RobotRule::as_str));
    for o in outcomes {
        let col = o.rule.map_or("person", |r| r.as_str());
        *table
            .entry(o.entry.category.as_str())
            .or_default()
            .entry(col)
            .or_default() += 1;
    }
    let used: Vec<&str> = columns
        .into_iter()
        .filter(|c| table.values().any(|row| row.contains_key(c)))
        .collect();
    println!("\ncorpus: {} messages in {total:?}", outcomes.len());
    print!("{:<16}{:>6}", "category", "total");
    for c in &used {
        print!("{:>w$}", c, w = c.len().max(5) + 2);
    }
    println!();
    for (cat, row) in &table {
        print!("{cat:<16}{:>6}", row.values().sum::<usize>());
        for c in &used {
            let n = row.get(c).copied().unwrap_or(0);
            print!("{:>w$}", n, w = c.len().max(5) + 2);
        }
        println!();
    }
    let unparsed: Vec<_> = outcomes
        .iter()
        .filter(|o| !o.parsed.parsed_ok)
        .map(|o| o.entry.path.as_str())
        .collect();
    let encrypted = outcomes.iter().filter(|o| o.parsed.encrypted).count();
    let replyable = outcomes
        .iter()
        .filter(|o| reply_address(&o.parsed).is_some())
        .count();
    println!("encrypted: {encrypted}, with a usable reply address: {replyable}");
    println!("not parsed ({}): {}", unparsed.len(), unparsed.join(", "));
    let mut slow: Vec<_> = outcomes.iter().collect();
    slow.sort_by_key(|o| std::cmp::Reverse(o.elapsed));
    for o in slow.iter().take(3) {
        println!("slowest: {:?} {}", o.elapsed, o.entry.path);
    }
    for (p, why) in KNOWN_MISSES {
        println!("known miss: {p}: {why}");
    }
    for (p, why) in KNOWN_FALSE_POSITIVES {
        println!("known false positive: {p}: {why}");
    }
}

/// Truncated copies of every small corpus message (cut mid-header, mid-part,
/// mid-boundary) must parse without taking the caller down, and quickly.
/// Panics that `parse` catches inside mail-parser are counted and printed.
#[test]
fn truncated_messages_never_escape_parse() {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;
    static CAUGHT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        /// Set on this test's thread: the other tests' panics are not ours.
        static COUNTING: Cell<bool> = const { Cell::new(false) };
    }
    fn count(_: &std::panic::PanicHookInfo<'_>) -> bool {
        if COUNTING.with(Cell::get) {
            CAUGHT.fetch_add(1, Ordering::Relaxed);
        }
        false // printed as before
    }
    static ONCE: Once = Once::new();
    ONCE.call_once(|| crate::common::panic_hook::add(count));
    COUNTING.with(|c| c.set(true));
    let started = Instant::now();
    let mut parses = 0;
    for entry in manifest() {
        let raw = std::fs::read(corpus_dir().join(&entry.path)).expect(&entry.path);
        if raw.len() > 128 * 1024 {
            continue;
        }
        for k in 1..8 {
            let cut = &raw[..raw.len() * k / 8];
            let t = Instant::now();
            let m = parse(cut);
            assert!(
                t.elapsed() < MAX_PARSE_TIME,
                "{} cut at {}",
                entry.path,
                cut.len()
            );
            assert_eq!(m.content_hash, hex::encode(Sha256::digest(cut)));
            parses += 1;
        }
    }
    println!(
        "truncations: {parses} parses in {:?}, panics caught inside parse: {}",
        started.elapsed(),
        CAUGHT.load(Ordering::Relaxed)
    );
}
