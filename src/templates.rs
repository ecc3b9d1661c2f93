//! Operator-editable templates for outgoing mail: every body secintake
//! sends (the letters are put together in `outgoing`).
//!
//! The shipped templates live in `config/templates/` and are compiled in as
//! defaults, so a bare install works. An operator who sets
//! `[templates] dir` gets those files instead; every template is loaded and
//! test-rendered at start, so a typo fails `check-config`, not the first
//! acknowledgement at 3 a.m. `config/templates/README.md` lists each
//! template's variables.

use minijinja::Environment;
use std::path::{Path, PathBuf};

/// The templates and their built-in defaults: one per letter, then the
/// parts several letters share or a letter repeats (see [`Templates::part`]).
/// `config/templates/README.md` lists each one's variables.
const BUILTIN: &[(&str, &str)] = &[
    (
        "acknowledgement.txt",
        include_str!("../config/templates/acknowledgement.txt"),
    ),
    (
        "reminder.txt",
        include_str!("../config/templates/reminder.txt"),
    ),
    ("digest.txt", include_str!("../config/templates/digest.txt")),
    (
        "notification.txt",
        include_str!("../config/templates/notification.txt"),
    ),
    ("alert.txt", include_str!("../config/templates/alert.txt")),
    ("update.txt", include_str!("../config/templates/update.txt")),
    (
        "advisory.txt",
        include_str!("../config/templates/advisory.txt"),
    ),
    (
        "recovery.txt",
        include_str!("../config/templates/recovery.txt"),
    ),
    (
        "follow-up.txt",
        include_str!("../config/templates/follow-up.txt"),
    ),
    ("forged.txt", include_str!("../config/templates/forged.txt")),
    (
        "held-acks.txt",
        include_str!("../config/templates/held-acks.txt"),
    ),
    ("note.txt", include_str!("../config/templates/note.txt")),
    (
        "confirmation.txt",
        include_str!("../config/templates/confirmation.txt"),
    ),
    (
        "team-copy.txt",
        include_str!("../config/templates/team-copy.txt"),
    ),
    ("relay.txt", include_str!("../config/templates/relay.txt")),
    (
        "no-case.txt",
        include_str!("../config/templates/no-case.txt"),
    ),
    ("footer.txt", include_str!("../config/templates/footer.txt")),
    (
        "reach-reporter.txt",
        include_str!("../config/templates/reach-reporter.txt"),
    ),
    (
        "not-attached.txt",
        include_str!("../config/templates/not-attached.txt"),
    ),
    (
        "next-step.txt",
        include_str!("../config/templates/next-step.txt"),
    ),
    (
        "digest-case.txt",
        include_str!("../config/templates/digest-case.txt"),
    ),
    (
        "greeting.txt",
        include_str!("../config/templates/greeting.txt"),
    ),
    (
        "facts-only.txt",
        include_str!("../config/templates/facts-only.txt"),
    ),
];

/// Templates a `[templates] dir` may lack (it was copied before they
/// existed): the built-in copy is used.
const ADDED_LATER: &[&str] = &[
    "update.txt",
    "advisory.txt",
    "follow-up.txt",
    "forged.txt",
    "held-acks.txt",
    "note.txt",
    "confirmation.txt",
    "team-copy.txt",
    "relay.txt",
    "no-case.txt",
    "footer.txt",
    "reach-reporter.txt",
    "not-attached.txt",
    "next-step.txt",
    "digest-case.txt",
    "greeting.txt",
    "facts-only.txt",
];

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {source}")]
    Syntax {
        name: String,
        source: minijinja::Error,
    },
}

/// The loaded set of templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates.
    pub fn builtin() -> Templates {
        Self::load(None).unwrap_or_else(|e| panic!("built-in templates are broken: {e}"))
    }

    /// Loads every template from `dir`, or the built-in ones when `None`.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // Plain-text mail: no HTML escaping.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(true);
        for (name, builtin) in BUILTIN {
            let source = match dir {
                None => (*builtin).to_owned(),
                Some(dir) => {
                    // A template added after a directory was copied from
                    // an older secintake falls back to the built-in one;
                    // the original set must all be there.
                    let path = dir.join(name);
                    match std::fs::read_to_string(&path) {
                        Err(e)
                            if e.kind() == std::io::ErrorKind::NotFound
                                && ADDED_LATER.contains(name) =>
                        {
                            (*builtin).to_owned()
                        }
                        read => read.map_err(|source| TemplateError::Read { path, source })?,
                    }
                }
            };
            env.add_template_owned(*name, source)
                .map_err(|source| TemplateError::Syntax {
                    name: name.to_string(),
                    source,
                })?;
        }
        let t = Templates { env };
        t.check()?;
        Ok(t)
    }

    /// Renders every template with sample values of every variable the
    /// code passes (and each branch: kinds, components, events, what a
    /// handler's mail did, deadline kinds), so an undefined variable or a
    /// filter error shows at start and in `check-config`, not when the
    /// first report arrives.
    fn check(&self) -> Result<(), TemplateError> {
        let mut samples = Vec::new();
        for (kind, component, flag) in [
            ("reminder", "imap", true),
            ("escalation", "smtp", false),
            ("ack-stuck", "imap", false),
            ("reminder", "storage", false),
            ("reminder", "state-lost", false),
        ] {
            samples.push(sample(kind, component, flag));
        }
        let base = || sample("reminder", "imap", true);
        for event in UPDATE_EVENTS {
            samples.push(minijinja::context! { event => event, ..base() });
        }
        for outcome in OUTCOMES {
            samples.push(minijinja::context! { outcome => outcome, ..base() });
        }
        for kind in DEADLINE_KINDS {
            samples.push(minijinja::context! { deadline_kind => kind, ..base() });
        }
        for (name, _) in BUILTIN {
            for ctx in &samples {
                self.render(name, ctx.clone())?;
            }
        }
        Ok(())
    }

    /// Renders template `name` with `ctx`.
    pub fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, TemplateError> {
        let syntax = |source| TemplateError::Syntax {
            name: name.to_owned(),
            source,
        };
        self.env
            .get_template(name)
            .map_err(syntax)?
            .render(ctx)
            .map_err(syntax)
    }

    /// Renders a part, a piece of text that goes into letters as the value
    /// of a variable (`footer.txt` is `footer`): like [`Templates::render`]
    /// without the file's final line break, so the part sits inside a
    /// line of the letter's template like any other value.
    pub fn part(&self, name: &str, ctx: minijinja::Value) -> Result<String, TemplateError> {
        let mut text = self.render(name, ctx)?;
        if text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }
}

/// What a handler's mail did, as `confirmation.txt` gets it (`outcome`).
pub const OUTCOMES: &[&str] = &["relayed", "note", "direct", "commands", "nothing"];

/// The deadline kinds `next-step.txt` is rendered for (`deadline_kind`).
pub const DEADLINE_KINDS: &[&str] = &["acknowledge", "respond", "fix", "embargo", "ack-queued"];

/// The `event`s the reporter update (`update.txt`) is rendered for.
pub const UPDATE_EVENTS: &[&str] = &[
    "confirmed",
    "rejected",
    "duplicate",
    "merged",
    "cve",
    "fix-ready",
    "scheduled",
    "announced",
    "closed",
];

/// Every variable any template gets, with plausible values.
fn sample(kind: &str, component: &str, flag: bool) -> minijinja::Value {
    let commands = vec![
        minijinja::context! { line => "/take", ok => true, result => "primary handler is now Alice" },
        minijinja::context! { line => "/state nonsense", ok => false, result => "unknown state" },
    ];
    minijinja::context! {
        project => "Example", address => "security@example.org",
        policy_url => if flag { "https://example.org/security" } else { "" },
        comment_address => if flag { Some("security+comment@example.org") } else { None },
        case_id => "SEC-2026-0001", subject => "XSS in login", reporter => "r@example.net",
        from => "r@example.net", received_at => "2026-01-01T00:00:00.000Z",
        ack_due_at => "2026-01-03T00:00:00.000Z", respond_due_at => "2026-01-04T00:00:00.000Z",
        respond_within => "72 hours", acknowledge_within => "48 hours",
        primary => "Alice <alice@example.org>", encrypted => flag, decrypted => flag,
        unparsed => !flag,
        text => "report text\nsecond line", footer => "how to act",
        kind => kind, deadline => "response", due_at => "2026-01-04 00:00:00 UTC",
        overdue => !flag, gap => "4 hours", late => flag, fire_at => "2026-01-03 20:00:00 UTC",
        next_step => "reply", escalate_every => "12 hours",
        also => if flag { vec!["SEC-2026-0002"] } else { Vec::new() }, also_more => if flag { 3 } else { 0 },
        handler => "Alice", day => "2026-01-01", count => 1, cases => "SEC-2026-0001 …",
        greeting => "Good morning",
        unfiled => if flag { 2 } else { 0 },
        component => component, component_name => "IMAP mailbox",
        failing_since => "2026-01-01T00:00:00.000Z", failing_for => "15m",
        alert_after => "15 minutes", last_error => "connection refused", credential => flag,
        recovered_at => "2026-01-01T00:20:00.000Z", backlog => 0,
        event => "confirmed", reason => "needs admin rights", cve => "CVE-2026-12345",
        fix_date => if flag { "2026-02-01" } else { "" }, advisory => "[security] …",
        announce_date => "2026-02-08",
        summary => "A crafted header overflows the parser.", severity => if flag { "high" } else { "" },
        affected => "< 2.4", fixed_in => "2.4.1", credit => if flag { "Jane Doe" } else { "" },
        name => "Alice", why => "it was sent to the comment address", state => "triage",
        outcome => "relayed", relayed => flag, reach_reporter => "To answer the reporter: …",
        files => if flag { vec!["fix.patch (text/x-patch, 120 bytes)"] } else { vec![] },
        commands => if flag { commands } else { vec![] },
        size => 12_000_000, deadline_kind => "respond", what => "note", report => flag,
        hour => if flag { 9 } else { 21 },
        next_deadline => if flag { Some("respond due 2026-01-04T00:00:00.000Z") } else { None },
    }
}

/// A duration as people write it in a policy: "48 hours", "15 minutes".
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let unit = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    if secs > 0 && secs.is_multiple_of(3600) {
        unit(secs / 3600, "hour")
    } else if secs > 0 && secs.is_multiple_of(60) {
        unit(secs / 60, "minute")
    } else {
        unit(secs, "second")
    }
}

/// A measured span of time, rounded for people: "40 seconds",
/// "12 minutes", "3 hours 59 minutes", "2 days 4 hours".
pub fn human_span(millis: u64) -> String {
    let unit = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let secs = (millis + 500) / 1000;
    if secs < 120 {
        return unit(secs, "second");
    }
    let mins = (secs + 30) / 60;
    if mins < 120 {
        return unit(mins, "minute");
    }
    let (h, m) = (mins / 60, mins % 60);
    if h < 48 {
        return if m == 0 {
            unit(h, "hour")
        } else {
            format!("{} {}", unit(h, "hour"), unit(m, "minute"))
        };
    }
    let (d, h) = (h / 24, h % 24);
    if h == 0 {
        unit(d, "day")
    } else {
        format!("{} {}", unit(d, "day"), unit(h, "hour"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_rounded_for_people() {
        assert_eq!(human_span(3_990), "4 seconds");
        assert_eq!(human_span(14_399_000), "4 hours");
        assert_eq!(human_span(14_000_000), "3 hours 53 minutes");
        assert_eq!(human_span(45_296_000), "12 hours 35 minutes");
        assert_eq!(human_span(3 * 86_400_000 + 7_200_000), "3 days 2 hours");
        assert_eq!(human_span(90_000), "90 seconds");
        assert_eq!(human_span(600_000), "10 minutes");
    }

    #[test]
    fn durations_read_like_a_policy() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_secs(72 * 3600)), "72 hours");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(900)), "15 minutes");
        assert_eq!(human_duration(Duration::from_secs(8)), "8 seconds");
    }

    #[test]
    fn builtin_acknowledgement_renders() {
        let t = Templates::builtin();
        let out = t
            .render(
                "acknowledgement.txt",
                minijinja::context! {
                    project => "Example", case_id => "SEC-2026-0001",
                    policy_url => "https://example.org/security", address => "security@example.org",
                    respond_within => "72 hours", respond_due_at => "2026-01-04 00:00 UTC",
                },
            )
            .unwrap();
        assert!(out.contains("case SEC-2026-0001"));
        assert!(out.contains("within 72 hours"));
    }

    /// The `"name.txt"` literals in `text`.
    fn txt_literals(text: &str) -> Vec<String> {
        text.split('"')
            .filter(|w| {
                w.ends_with(".txt")
                    && w.len() > 4
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-' || c == '.')
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_template_the_code_renders_is_built_in_and_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let t = Templates::builtin();
        let mut sources = vec![root.join("src")];
        let mut used = Vec::new();
        while let Some(p) = sources.pop() {
            if p.is_dir() {
                sources.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                // Letters are built in `outgoing` only.
                if p.starts_with(root.join("src/outgoing")) {
                    used.extend(txt_literals(&text));
                } else if !p.ends_with("templates.rs") {
                    assert!(
                        !text.contains("templates.render(") && !text.contains("templates.part("),
                        "{} renders a template: build the letter in src/outgoing/",
                        p.display()
                    );
                }
            }
        }
        for name in ["notification.txt", "confirmation.txt", "next-step.txt"] {
            assert!(used.iter().any(|u| u == name), "{name} not found in src/");
        }
        for name in &used {
            assert!(t.env.get_template(name).is_ok(), "{name} is not built in");
        }
        // Every shipped file is built in, and both READMEs describe it.
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let dir = root.join("config/templates");
        let listing = std::fs::read_to_string(dir.join("README.md")).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if !name.ends_with(".txt") {
                continue;
            }
            assert!(
                BUILTIN.iter().any(|(n, _)| *n == name),
                "{name} is not built in"
            );
            assert!(
                listing.contains(&format!("`{name}`")),
                "{name} missing from config/templates/README.md"
            );
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} missing from README.md"
            );
        }
    }

    #[test]
    fn a_part_loses_its_final_line_break_only() {
        let t = Templates::builtin();
        let ctx = minijinja::context! { hour => 9 };
        assert_eq!(
            t.render("greeting.txt", ctx.clone()).unwrap(),
            "Good morning\n"
        );
        assert_eq!(t.part("greeting.txt", ctx).unwrap(), "Good morning");
    }

    #[test]
    fn an_older_template_dir_gets_the_newer_templates_built_in() {
        let dir = tempfile::tempdir().unwrap();
        for (name, source) in BUILTIN {
            if !ADDED_LATER.contains(name) {
                std::fs::write(dir.path().join(name), source).unwrap();
            }
        }
        let t = Templates::load(Some(dir.path())).unwrap();
        let out = t.render("no-case.txt", minijinja::context! {}).unwrap();
        assert!(out.starts_with("secintake could not tell"), "{out}");
    }

    #[test]
    fn missing_variable_is_an_error_not_a_blank() {
        let t = Templates::builtin();
        let err = t
            .render("acknowledgement.txt", minijinja::context! {})
            .unwrap_err();
        assert!(err.to_string().contains("acknowledgement.txt"), "{err}");
    }

    #[test]
    fn operator_dir_overrides_and_names_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("acknowledgement.txt"), "{err}");
        for (name, _) in BUILTIN {
            std::fs::write(dir.path().join(name), "custom {{ case_id }}").unwrap();
        }
        // A typo in a variable name is caught at load, naming the template.
        std::fs::write(dir.path().join("digest.txt"), "{{ cases_typo }}").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("digest.txt"), "{err}");
        std::fs::write(dir.path().join("digest.txt"), "{{ cases }}").unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let out = t
            .render(
                "acknowledgement.txt",
                minijinja::context! { case_id => "X" },
            )
            .unwrap();
        assert_eq!(out, "custom X");
    }
}
