//! The real-world corpus (`tests/fixtures/corpus`, 396 messages from other
//! people's mail software): message by message through `parse` and the
//! robot rules ([`classify`]), and as one backlog through the running
//! daemon ([`daemon`]).

mod classify;
mod daemon;

use std::path::{Path, PathBuf};

/// Robots that no safe rule recognizes: with these, the per-sender
/// acknowledgement limit has to stop a loop. (path, why); both the
/// classifier test and the daemon test allow these.
const KNOWN_MISSES: &[(&str, &str)] = &[
    (
        "bounce/flufl-simple_20.eml",
        "gateway NDR sent as a person's 'RE: ...' reply; only the body says 'could not be delivered'",
    ),
    (
        "bounce/sisimai-lhost-sendmail-14.eml",
        "a person forwarding a bounce ('Fwd: Returned mail'), same shape as reply/sisimai-make-test-36",
    ),
];

/// People (per the manifest) that a rule takes for robots.
const KNOWN_FALSE_POSITIVES: &[(&str, &str)] = &[(
    "new-report-like/mikel-mail-raw_email_trailing_dot.eml",
    "forum notification From noreply@rubyforge.org; the corpus calls it a robot with no standard marker",
)];

/// One line of `MANIFEST.tsv`.
struct Entry {
    /// Relative to [`corpus_dir`], under a folder named after the category.
    path: String,
    category: String,
}

/// `tests/fixtures/corpus` (also a seed source of the fuzz test).
pub(crate) fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// Every entry of `MANIFEST.tsv`, in its order.
fn manifest() -> Vec<Entry> {
    let text = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    let mut lines = text.lines();
    let header = lines.next().expect("manifest header");
    assert!(header.starts_with("path\tcategory\t"), "{header}");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let path = cols.next().unwrap().to_string();
            let category = cols.next().expect("category column").to_string();
            assert!(
                path.starts_with(&format!("{category}/")),
                "{path} vs {category}"
            );
            Entry { path, category }
        })
        .collect()
}

/// Whether `path` is one of the (path, why) entries of `list`.
fn listed(list: &[(&str, &str)], path: &str) -> bool {
    list.iter().any(|(p, _)| *p == path)
}

/// Whether the manifest's category `c` is robots (`Some(true)`), people
/// (`Some(false)`) or either (`malformed`).
fn is_robot_category(c: &str) -> Option<bool> {
    match c {
        "bounce" | "auto-reply" | "list" => Some(true),
        "new-report-like" | "reply" | "encrypted" => Some(false),
        "malformed" => None,
        other => panic!("unknown category {other}"),
    }
}
