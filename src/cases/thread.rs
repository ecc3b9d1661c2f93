//! Which case a message belongs to: by its In-Reply-To and References,
//! by a case tag in its subject (only for the case's participants), or,
//! for a bounce, by the Message-IDs it quotes.

use crate::context::Context;
use crate::mail::message::{self, ParsedMessage};
use crate::model::subject_tags;
use crate::store::{self, StoreError};
use rusqlite::Connection;

/// The case `p` joins, if any; and a case it threads into without being
/// allowed to join it, if any.
pub(super) fn case_of(
    conn: &Connection,
    ctx: &Context<'_>,
    p: &ParsedMessage,
) -> Result<(Option<String>, Option<String>), StoreError> {
    // A case belongs to its participants: the reporter and the handlers
    // (a handler's address is checked for forgery below). Anyone else who
    // threads into a case, by Message-ID or by its tag, opens a new case
    // that names the one referred to, and never joins it.
    let from = p.from.as_ref().map(|a| a.email.as_str());
    let handler_address = from.is_some_and(|f| ctx.cfg.handler(f).is_some());
    let participant = |c: &str| -> Result<bool, StoreError> {
        Ok(handler_address || from.map_or(Ok(false), |f| store::takes_part(conn, c, f))?)
    };
    let mut refers_to = None;
    let mut case_id = thread_by_headers(conn, p)?;
    if let Some(c) = &case_id {
        if !participant(c)? {
            refers_to = case_id.take();
        }
    }
    if case_id.is_none() {
        for tag in p.subject.as_deref().map(subject_tags).unwrap_or_default() {
            if store::case(conn, &tag)?.is_none() {
                continue;
            }
            if participant(&tag)? {
                case_id = Some(tag);
                break;
            }
            refers_to.get_or_insert(tag);
        }
    }
    Ok((case_id, refers_to))
}

/// The case a robot's mail (an out-of-office, a bounce) is about: by its
/// headers, or else by the Message-IDs a bounce quotes.
pub(super) fn case_of_robot(
    conn: &Connection,
    p: &ParsedMessage,
    raw: &[u8],
) -> Result<Option<String>, StoreError> {
    let mut case_id = thread_by_headers(conn, p)?;
    if case_id.is_none() {
        for mid in embedded_message_ids(raw) {
            if let Some(c) = store::case_of_message_id(conn, &mid)? {
                case_id = Some(c);
                break;
            }
        }
    }
    Ok(case_id)
}

/// Message-IDs quoted inside a message's body: a bounce returns our
/// acknowledgement's headers (message/rfc822 or text/rfc822-headers) and
/// that is how it finds its case.
pub fn embedded_message_ids(raw: &[u8]) -> Vec<String> {
    const SCAN_LIMIT: usize = 1 << 20;
    let raw = &raw[..raw.len().min(SCAN_LIMIT)];
    let body_start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    let body = String::from_utf8_lossy(&raw[body_start..]);
    let mut out = Vec::new();
    for line in body.lines() {
        let l = line.trim_start_matches('>').trim_start();
        // `get`, not slicing: byte 11 may fall inside a multi-byte
        // character (a Japanese bounce crashed intake this way).
        if l.get(..11)
            .is_some_and(|h| h.eq_ignore_ascii_case("message-id:"))
        {
            out.extend(message::message_id_list(&l[11..]));
        }
        if out.len() >= 20 {
            break;
        }
    }
    out
}

/// The case a message threads into by its headers (In-Reply-To, then
/// References, newest first).
fn thread_by_headers(conn: &Connection, p: &ParsedMessage) -> Result<Option<String>, StoreError> {
    for mid in p.in_reply_to.iter().chain(p.references.iter().rev()) {
        if let Some(c) = store::case_of_message_id(conn, mid)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tags_are_strict() {
        assert_eq!(
            subject_tags("Re: bug [SEC-2026-0007] and [SEC-2026-12345]"),
            vec!["SEC-2026-0007", "SEC-2026-12345"]
        );
        assert!(subject_tags("[SEC-26-0007] [SEC-2026-07] [SEC-2026-0007x] [SEC-").is_empty());
    }

    #[test]
    fn non_ascii_body_lines_do_not_panic() {
        let raw = "From: x@y\r\n\r\n連絡しようとしたグループ\r\nMessage-ID: <a@b>\r\n".as_bytes();
        assert_eq!(embedded_message_ids(raw), vec!["a@b"]);
    }

    #[test]
    fn finds_message_ids_quoted_in_a_bounce() {
        let raw = b"From: MAILER-DAEMON@x\r\nMessage-ID: <bounce@x>\r\n\r\nbody\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <ack.SEC-2026-0001.1@example.org>\r\n";
        assert_eq!(
            embedded_message_ids(raw),
            vec!["ack.SEC-2026-0001.1@example.org"]
        );
    }
}
