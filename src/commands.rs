//! Commands by email, and the disclosure process they drive (pure, no I/O).
//!
//! A handler acts from their mail client: command lines at the very top of
//! a message, before any other text, one per line:
//!
//! ```text
//! /take
//! /severity high
//! /affected >= 2.0, < 2.4.3
//!
//! Thanks for the report, we can reproduce it…
//! ```
//!
//! [`parse`] splits them from the rest of the body (which is what gets
//! relayed, so a command line never reaches a reporter). The process is a
//! state machine ([`State`]); [`State::can_move_to`] is the one place that
//! knows which moves are legal.

use crate::model::{names, State};
use chrono::{DateTime, Utc};

/// One command line, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Take,
    Assign(String),
    State(State),
    Severity(String),
    Affected(String),
    FixedIn(String),
    Cve(String),
    Audit(String),
    Duplicate(String),
    /// `/merge <case id>`: this case (a stranger's mail naming that case)
    /// is folded into it as a co-finder's report; its sender is told.
    Merge(String),
    Reject(String),
    Responded,
    Close,
    /// `/announce`, `/announce dry-run` (handlers only), `/announce now`
    /// (even before the embargo date).
    Announce {
        dry_run: bool,
        now: bool,
    },
    Deadline {
        kind: String,
        due: DateTime<Utc>,
    },
    Embargo(DateTime<Utc>),
    /// `/quiet` (true) or `/quiet off`: no reporter updates for this case.
    Quiet(bool),
    /// `/show`: the case's facts, in the confirmation.
    Show,
    /// `/credit <how the reporter wants to be credited>`, or `none`.
    Credit(String),
    /// `/summary <one paragraph for the advisory>`.
    Summary(String),
    /// `/cleartext`: this mail's answer may go to the reporter of an
    /// encrypted report in cleartext, as no key of theirs is known.
    Cleartext,
}

/// The command names, for "unknown command" replies.
pub const KNOWN: &str =
    "/take, /assign <handler>, /state <state>, /severity critical|high|medium|low [CVSS vector], \
/affected <versions>, /fixed-in <versions>, /cve <CVE-id>, /audit <note>, /duplicate <case id>, \
/reject <reason>, /responded, /close, /announce [dry-run|now], /deadline fix <date>, \
/embargo <date>, /quiet [off], /show, /credit <name>|none, /summary <text>, /merge <case id>, \
/cleartext";

/// A handler's message, split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Each command line in order (as written), understood or why not.
    pub commands: Vec<(String, Result<Command, String>)>,
    /// The body without the command lines: what may be relayed.
    pub rest: String,
}

/// Splits the command lines at the top of `body` from the rest.
/// Whether `line` (trimmed) reads as a command: a `/` and a command word
/// `parse_line` knows, whatever its arguments. Used to refuse mail with
/// command lines below other text (they would otherwise be relayed).
pub fn is_command_line(line: &str) -> bool {
    line.starts_with('/') && !matches!(parse_line(line), Err(e) if e.starts_with(UNKNOWN))
}

/// How `parse_line` starts the error for a word that is no command.
const UNKNOWN: &str = "unknown command";

pub fn parse(body: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut lines = body.lines().peekable();
    // Blank lines before the first command do not end the command block.
    while lines.peek().is_some_and(|l| l.trim().is_empty()) {
        lines.next();
    }
    while let Some(line) = lines.peek() {
        let t = line.trim();
        if !t.starts_with('/') {
            break;
        }
        out.commands.push((t.to_owned(), parse_line(t)));
        lines.next();
    }
    let rest: Vec<&str> = lines.collect();
    out.rest = rest.join("\n").trim_start_matches(['\n', '\r']).to_owned();
    if body.ends_with('\n') && !out.rest.is_empty() {
        out.rest.push('\n');
    }
    out
}

fn parse_line(line: &str) -> Result<Command, String> {
    let (name, arg) = match line.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (line, ""),
    };
    let name = name.to_ascii_lowercase();
    let need = |what: &str| -> Result<String, String> {
        if arg.is_empty() {
            Err(format!("{name} needs an argument: {name} {what}"))
        } else {
            Ok(arg.chars().filter(|c| !c.is_control()).take(500).collect())
        }
    };
    let none = |cmd: Command| -> Result<Command, String> {
        if arg.is_empty() {
            Ok(cmd)
        } else {
            Err(format!("{name} takes no argument"))
        }
    };
    match name.as_str() {
        "/take" => none(Command::Take),
        "/assign" => need("<handler name or email>").map(Command::Assign),
        "/state" => {
            let s = need("<state>")?;
            State::parse(&s.to_ascii_lowercase())
                .map(Command::State)
                .ok_or_else(|| format!("unknown state {s:?}; states are {}", names(State::ALL)))
        }
        "/severity" => severity(&need("critical|high|medium|low [CVSS vector]")?),
        "/affected" => need("<versions or range>").map(Command::Affected),
        "/fixed-in" => need("<versions>").map(Command::FixedIn),
        "/cve" => {
            let id = need("<CVE-id>")?.to_ascii_uppercase();
            if valid_cve(&id) {
                Ok(Command::Cve(id))
            } else {
                Err(format!("{id:?} is not a CVE id like CVE-2026-12345"))
            }
        }
        "/audit" => need("<note on similar code checked>").map(Command::Audit),
        "/duplicate" | "/merge" => case_ref(&name, &need("<case id>")?),
        "/reject" => need("<reason>").map(Command::Reject),
        "/responded" => none(Command::Responded),
        "/close" => none(Command::Close),
        "/show" => none(Command::Show),
        "/cleartext" => none(Command::Cleartext),
        "/credit" => need("<name, as the reporter wants it> or none").map(Command::Credit),
        "/summary" => need("<one paragraph for the advisory>").map(Command::Summary),
        "/quiet" => match arg.to_ascii_lowercase().as_str() {
            "" | "on" => Ok(Command::Quiet(true)),
            "off" => Ok(Command::Quiet(false)),
            _ => Err(format!("{name} takes \"off\" or nothing")),
        },
        "/announce" => announce(arg),
        "/deadline" => deadline(&need("fix <date>")?),
        "/embargo" => date(&need("<date>")?).map(Command::Embargo),
        _ => Err(format!("{UNKNOWN} {name}; known commands: {KNOWN}")),
    }
}

/// `/severity <word> [CVSS vector]`. A CVSS vector may follow the word:
/// OSV records carry vectors only (`cases export --osv`), the advisory
/// shows both.
fn severity(s: &str) -> Result<Command, String> {
    let (word, vector) = match s.split_once(char::is_whitespace) {
        Some((w, v)) => (w.to_ascii_lowercase(), Some(v.trim())),
        None => (s.to_ascii_lowercase(), None),
    };
    if !["critical", "high", "medium", "low"].contains(&word.as_str()) {
        return Err(format!(
            "unknown severity {word:?}; use critical, high, medium or low, \
             optionally followed by a CVSS v3.x or v4.0 vector"
        ));
    }
    match vector {
        None => Ok(Command::Severity(word)),
        Some(v) if crate::osv::cvss_type(v).is_some() => {
            Ok(Command::Severity(format!("{word} {v}")))
        }
        Some(v) => Err(format!(
            "{v:?} is not a CVSS v3.x or v4.0 vector with every base metric, like \
             CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
        )),
    }
}

/// `/duplicate <case id>` or `/merge <case id>` (brackets allowed).
fn case_ref(name: &str, arg: &str) -> Result<Command, String> {
    let id = arg.to_ascii_uppercase();
    let id = id.trim_matches(|c| c == '[' || c == ']').to_owned();
    if crate::model::subject_tags(&format!("[{id}]")).is_empty() {
        Err(format!("{id:?} is not a case id like SEC-2026-0007"))
    } else if name == "/merge" {
        Ok(Command::Merge(id))
    } else {
        Ok(Command::Duplicate(id))
    }
}

/// `/announce`, `/announce dry-run` or `/announce now`.
fn announce(arg: &str) -> Result<Command, String> {
    let (dry_run, now) = match arg.to_ascii_lowercase().as_str() {
        "" => (false, false),
        "dry-run" => (true, false),
        "now" => (false, true),
        other => {
            return Err(format!(
                "/announce takes no argument, \"dry-run\" or \"now\", not {other:?}"
            ))
        }
    };
    Ok(Command::Announce { dry_run, now })
}

/// `/deadline fix <date>`.
fn deadline(a: &str) -> Result<Command, String> {
    let (kind, when) = a.split_once(char::is_whitespace).unwrap_or((a, ""));
    if kind != "fix" {
        return Err(format!(
            "/deadline sets the fix date: /deadline fix <date>, not {kind:?}"
        ));
    }
    Ok(Command::Deadline {
        kind: "fix".into(),
        due: date(when)?,
    })
}

fn date(s: &str) -> Result<DateTime<Utc>, String> {
    crate::clock::parse_date(s)
        .ok_or_else(|| format!("{s:?} is not a date: use {}", crate::clock::DATE_FORMS))
}

fn valid_cve(id: &str) -> bool {
    let mut p = id.split('-');
    p.next() == Some("CVE")
        && p.next()
            .is_some_and(|y| y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()))
        && p.next()
            .is_some_and(|n| n.len() >= 4 && n.bytes().all(|b| b.is_ascii_digit()))
        && p.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_recognised_anywhere() {
        for l in [
            "/take",
            "/state confirmed",
            "/STATE bogus",
            "/cve",
            "/announce dry-run",
        ] {
            assert!(is_command_line(l), "{l}");
        }
        for l in [
            "/usr/bin/foo is affected",
            "/etc/passwd",
            "no slash",
            "/ take",
            "",
        ] {
            assert!(!is_command_line(l), "{l}");
        }
    }

    #[test]
    fn commands_at_the_top_are_split_from_the_text() {
        let p = parse("\n/take\n/severity HIGH\n\nThanks, we reproduced it.\n/not a command\n");
        let cmds: Vec<_> = p.commands.iter().map(|(_, c)| c.clone()).collect();
        assert_eq!(
            cmds,
            vec![Ok(Command::Take), Ok(Command::Severity("high".into()))]
        );
        assert_eq!(p.commands[1].0, "/severity HIGH");
        assert_eq!(p.rest, "Thanks, we reproduced it.\n/not a command\n");
    }

    #[test]
    fn text_first_means_no_commands() {
        let p = parse("Hello\n/take\n");
        assert!(p.commands.is_empty());
        assert_eq!(p.rest, "Hello\n/take\n");
    }

    #[test]
    fn every_error_says_what_is_expected() {
        for (line, needle) in [
            (
                "/frobnicate",
                "unknown command /frobnicate; known commands: /take",
            ),
            (
                "/state open",
                "unknown state \"open\"; states are new, acknowledged",
            ),
            ("/severity urgent", "use critical, high, medium or low"),
            (
                "/severity high CVSS:3.1/AV:N/AC:L",
                "\"CVSS:3.1/AV:N/AC:L\" is not a CVSS v3.x or v4.0 vector",
            ),
            ("/severity high soon", "\"soon\" is not a CVSS"),
            ("/cve 2026-1", "is not a CVE id"),
            ("/duplicate 42", "is not a case id"),
            ("/assign", "/assign needs an argument"),
            ("/take now", "/take takes no argument"),
            (
                "/announce please",
                "/announce takes no argument, \"dry-run\" or \"now\"",
            ),
            ("/deadline fix soon", "is not a date"),
            (
                "/deadline release 2026-12-01",
                "/deadline sets the fix date",
            ),
            ("/embargo", "/embargo needs an argument"),
            ("/quiet loudly", "/quiet takes \"off\" or nothing"),
            ("/show me", "/show takes no argument"),
        ] {
            let p = parse(line);
            let err = p.commands[0].1.clone().unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }

    #[test]
    fn arguments_are_kept() {
        let p = parse("/affected >= 2.0, < 2.4.3\n/cve cve-2026-12345\n/duplicate [SEC-2026-0001]\n/announce dry-run\n/deadline fix 2026-12-01\n");
        assert_eq!(p.commands.len(), 5);
        assert_eq!(
            p.commands[0].1,
            Ok(Command::Affected(">= 2.0, < 2.4.3".into()))
        );
        assert_eq!(p.commands[1].1, Ok(Command::Cve("CVE-2026-12345".into())));
        assert_eq!(
            p.commands[2].1,
            Ok(Command::Duplicate("SEC-2026-0001".into()))
        );
        assert_eq!(
            p.commands[3].1,
            Ok(Command::Announce {
                dry_run: true,
                now: false
            })
        );
        assert!(matches!(p.commands[4].1, Ok(Command::Deadline { .. })));
        // The word is lowercased; the vector is kept as written.
        let v = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N";
        assert_eq!(
            parse(&format!("/severity CRITICAL  {v}")).commands[0].1,
            Ok(Command::Severity(format!("critical {v}")))
        );
    }

    #[test]
    fn the_process_moves_only_forward_along_its_edges() {
        use State::*;
        assert!(New.can_move_to(Acknowledged));
        assert!(Acknowledged.can_move_to(Triage));
        assert!(Triage.can_move_to(Confirmed));
        assert!(Confirmed.can_move_to(Fixing));
        assert!(Fixing.can_move_to(FixReady));
        assert!(FixReady.can_move_to(Announced));
        assert!(Announced.can_move_to(Closed));
        assert!(!New.can_move_to(Announced));
        assert!(!Triage.can_move_to(FixReady));
        assert!(!Closed.can_move_to(Closed));
        assert_eq!(names(Fixing.next()), "fix-ready");
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(*s));
        }
    }
}
