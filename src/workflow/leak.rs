//! The leak guard: what of a case's mail is internal (only handlers saw
//! it) and what the reporter wrote, so that nothing internal, nor the
//! unfixed report, leaves with a relay or an advisory.

use crate::mail::quote::collapsed;
use crate::model::Direction;
use crate::model::MessageKind;
use crate::store::{self, CaseRow, StoreError};
use rusqlite::Connection;

/// The normalised, non-trivial lines of the internal mail about `case`
/// (notification, notes, confirmations, reminders, alerts), without the
/// reporter's own words (which the notification quotes and which may go
/// back to them).
fn internal_lines(
    conn: &Connection,
    cfg: &crate::config::Config,
    case: &CaseRow,
) -> Result<std::collections::HashSet<String>, StoreError> {
    Ok(case_lines(conn, cfg, case)?.internal)
}

/// The lines of a case's mail, by whose words they are.
pub(super) struct CaseLines {
    /// Leak keys of internal mail, without the reporter's words.
    internal: std::collections::HashSet<String>,
    /// Every non-blank line the reporter wrote, whitespace collapsed.
    pub(super) reporters_all: std::collections::HashSet<String>,
}

pub(super) fn case_lines(
    conn: &Connection,
    cfg: &crate::config::Config,
    case: &CaseRow,
) -> Result<CaseLines, StoreError> {
    use std::collections::HashSet;
    let mut internal = HashSet::new();
    let mut reporters_all = HashSet::new();
    for m in store::messages_of_case(conn, &case.id)? {
        let from_reporter = m.direction == Direction::In
            && (m.kind == MessageKind::Report || m.from.is_some() && m.from == case.reporter);
        let internal_mail = m.direction == Direction::Out && m.kind.is_internal();
        if !from_reporter && !internal_mail {
            continue;
        }
        let text = stored_text(conn, cfg, &m)?;
        if from_reporter {
            reporters_all.extend(text.lines().filter_map(collapsed));
        } else {
            internal.extend(text.lines().filter_map(leak_key));
        }
    }
    internal.retain(|l| !reporters_all.contains(l));
    Ok(CaseLines {
        internal,
        reporters_all,
    })
}

/// The readable text of a stored message (read within the parser's
/// window; never re-parsed when it failed to parse on arrival).
pub fn stored_text(
    conn: &Connection,
    cfg: &crate::config::Config,
    m: &store::MessageRow,
) -> Result<String, StoreError> {
    let max = crate::mail::message::MAX_PARSE_BYTES;
    Ok(match store::message_prefix(conn, m.id, max)? {
        Some((_, raw, _)) => crate::mail::decrypt::read(&raw, m.parsed_ok, cfg)
            .text_body
            .unwrap_or_default(),
        None => String::new(),
    })
}

/// A line as the leak guard compares it: quote markers and surrounding
/// space removed, inner whitespace collapsed; `None` for lines too short
/// to tell anything ("Thanks,", "--", a date).
fn leak_key(line: &str) -> Option<String> {
    collapsed(line).filter(|t| t.chars().count() >= 20)
}

/// The lines of `text` that internal mail said too.
fn leaked_lines(text: &str, internal: &std::collections::HashSet<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in text.lines().filter_map(leak_key) {
        if internal.contains(&key) && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// The leak guard: why `text` (and its text attachments) must not go to
/// the reporter, if it must not: it repeats lines of the internal mail
/// about the case, however they were quoted (`>` lines are cut before
/// this; Outlook blocks, HTML quotes and pasted text are not always
/// recognisable).
pub(super) fn leak(
    conn: &Connection,
    cfg: &crate::config::Config,
    case: &CaseRow,
    text: &str,
    files: &[crate::mail::message::Attachment],
) -> Result<Option<String>, StoreError> {
    let internal = internal_lines(conn, cfg, case)?;
    let mut leaked = leaked_lines(text, &internal);
    for f in files.iter().filter(|f| f.content_type.starts_with("text/")) {
        for l in leaked_lines(&String::from_utf8_lossy(&f.bytes), &internal) {
            if !leaked.contains(&l) {
                leaked.push(l);
            }
        }
    }
    Ok((!leaked.is_empty()).then(|| {
        format!(
            "it contains {} line(s) of internal mail about this case: {}",
            leaked.len(),
            leaked
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }))
}

/// A line of the case's report (40 characters or more) that `text`
/// repeats: a last guard against publishing the report with an advisory.
pub(super) fn quotes_the_report(
    conn: &Connection,
    cfg: &crate::config::Config,
    case: &CaseRow,
    text: &str,
) -> Result<Option<String>, StoreError> {
    for m in store::messages_of_case(conn, &case.id)? {
        if m.kind != MessageKind::Report {
            continue;
        }
        let report = stored_text(conn, cfg, &m)?;
        for line in report
            .lines()
            .map(str::trim)
            .filter(|l| l.chars().count() >= 40)
        {
            if text.contains(line) {
                return Ok(Some(line.to_owned()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leak_guard_matches_lines_however_they_were_quoted() {
        let internal: std::collections::HashSet<String> = [
            "Primary handler: Alice <alice@example.org>",
            "Respond by 2026-12-04T10:00:00Z (the policy promises 72 hours)",
        ]
        .iter()
        .filter_map(|l| leak_key(l))
        .collect();
        let reply = "We are looking into it.\n\
                     >   Primary handler:   Alice <alice@example.org>\n\
                     | Respond by 2026-12-04T10:00:00Z (the policy promises 72 hours)\n\
                     Thanks,\n";
        assert_eq!(
            leaked_lines(reply, &internal),
            vec![
                "Primary handler: Alice <alice@example.org>".to_string(),
                "Respond by 2026-12-04T10:00:00Z (the policy promises 72 hours)".to_string()
            ]
        );
        assert!(leaked_lines("We are looking into it.\nThanks,", &internal).is_empty());
        // Short lines tell nothing and are never compared.
        assert_eq!(leak_key("Thanks,"), None);
    }
}
