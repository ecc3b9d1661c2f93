//! The header block read as bytes, without the parser: where it starts
//! (past a BOM, blank lines, an mbox `From ` line or a BSMTP envelope), the
//! trace fields that receiving servers prepend, and the content key that
//! leaves them out; also unfolding a raw field value and dropping its
//! RFC 5322 comments.

use sha2::{Digest, Sha256};

use super::parsed::{TraceField, MAX_HEADER_VALUE_BYTES};

/// How many leading lines may be skipped while looking for the header block.
const MAX_PREAMBLE_LINES: usize = 64;

/// At most this many top-level trace fields (Received,
/// Authentication-Results) are kept, in header order.
const MAX_TRACE_FIELDS: usize = 200;

/// Where the header block starts: skips a UTF-8 BOM, blank or whitespace-only
/// lines, an mbox `From ` separator line and a BSMTP envelope
/// (HELO/EHLO/MAIL FROM/RCPT TO ... DATA).
pub(super) fn header_block_start(raw: &[u8]) -> usize {
    let mut pos = 0;
    if raw.starts_with(b"\xEF\xBB\xBF") {
        pos = 3;
    }
    // BSMTP envelope: only when the very first line is an SMTP command.
    if starts_with_ci(&raw[pos..], b"HELO ") || starts_with_ci(&raw[pos..], b"EHLO ") {
        let mut p = pos;
        for _ in 0..MAX_PREAMBLE_LINES {
            let (line, next) = line_at(raw, p);
            p = next;
            if trim_ascii(line).eq_ignore_ascii_case(b"DATA") {
                pos = p;
                break;
            }
            if next >= raw.len() {
                break;
            }
        }
    }
    for _ in 0..MAX_PREAMBLE_LINES {
        if pos >= raw.len() {
            break;
        }
        let (line, next) = line_at(raw, pos);
        let blank = line.iter().all(|b| b.is_ascii_whitespace());
        let mbox_from = line.starts_with(b"From ") && is_mbox_from_line(line);
        if blank || mbox_from {
            pos = next;
        } else {
            break;
        }
    }
    pos
}

/// `From sender@example.com  Fri Dec  7 11:07:41 2001`: the token after
/// `From ` holds no colon (a header `From : x` would).
fn is_mbox_from_line(line: &[u8]) -> bool {
    let rest = &line[5..];
    let first = rest
        .split(|b| b.is_ascii_whitespace())
        .find(|t| !t.is_empty());
    matches!(first, Some(tok) if !tok.contains(&b':'))
}

fn line_at(raw: &[u8], pos: usize) -> (&[u8], usize) {
    match raw[pos..].iter().position(|&b| b == b'\n') {
        Some(n) => (&raw[pos..pos + n], pos + n + 1),
        None => (&raw[pos..], raw.len()),
    }
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

pub(super) fn trim_ascii(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// The top-level Received and Authentication-Results fields of `raw`, in
/// order, read straight from the header block (up to the first empty line).
pub(super) fn trace_fields(raw: &[u8]) -> Vec<TraceField> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() && out.len() < MAX_TRACE_FIELDS {
        // One field: its first line plus continuation lines.
        let start = pos;
        let (first, mut next) = line_at(raw, pos);
        if trim_ascii(first).is_empty() {
            break;
        }
        while next < raw.len() && matches!(raw[next], b' ' | b'\t') {
            next = line_at(raw, next).1;
        }
        pos = next;
        let field = &raw[start..next];
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            continue;
        };
        let name_raw = &field[..colon];
        let name: Vec<u8> = name_raw
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(u8::to_ascii_lowercase)
            .collect();
        let value = &field[colon + 1..];
        match name.as_slice() {
            b"received" => out.push(TraceField::Received {
                by: received_by(&unfold(value)),
            }),
            b"authentication-results" => out.push(TraceField::AuthResults {
                value: unfold(value),
                exact_name: name_raw.eq_ignore_ascii_case(b"authentication-results"),
            }),
            _ => {}
        }
    }
    out
}

/// The host of a Received field's `by` clause (RFC 5321 4.4), lowercased.
fn received_by(value: &str) -> Option<String> {
    let value = strip_comments(value);
    let mut words = value.split_whitespace();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case("by") {
            let host = words.next()?.trim_end_matches(';').to_ascii_lowercase();
            return (!host.is_empty()).then_some(host);
        }
    }
    None
}

/// Field names that receiving servers prepend to a message on its way in
/// (lowercase; `arc-`, `x-spam-` and `x-rspamd-` are prefixes).
const TRACE_NAMES: &[&str] = &[
    "received",
    "return-path",
    "delivered-to",
    "x-original-to",
    "authentication-results",
    "received-spf",
    "x-received",
];
const TRACE_PREFIXES: &[&str] = &["arc-", "x-spam-", "x-rspamd-", "x-virus-"];

/// See [`ParsedMessage::content_key`](super::parsed::ParsedMessage::content_key):
/// the hash of everything from the first top-level field that is not a
/// trace field on.
pub(super) fn content_key(raw: &[u8]) -> String {
    let mut pos = header_block_start(raw);
    while pos < raw.len() {
        let (first, mut next) = line_at(raw, pos);
        let Some(colon) = first.iter().position(|&b| b == b':') else {
            break;
        };
        let name = String::from_utf8_lossy(trim_ascii(&first[..colon])).to_ascii_lowercase();
        let trace = TRACE_NAMES.contains(&name.as_str())
            || TRACE_PREFIXES.iter().any(|p| name.starts_with(p));
        if !trace {
            break;
        }
        while next < raw.len() && matches!(raw[next], b' ' | b'\t') {
            next = line_at(raw, next).1;
        }
        pos = next;
    }
    hex::encode(Sha256::digest(&raw[pos..]))
}

/// Unfolds a raw header value: CR/LF removed, runs of whitespace collapsed to
/// one space, trimmed, capped at [`MAX_HEADER_VALUE_BYTES`].
pub(super) fn unfold(value: &[u8]) -> String {
    let value = &value[..value.len().min(MAX_HEADER_VALUE_BYTES)];
    let text = String::from_utf8_lossy(value);
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

pub(super) fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::message::{parse, unparsed, ParsedMessage};

    fn p(s: &str) -> ParsedMessage {
        parse(s.as_bytes())
    }

    #[test]
    fn content_key_ignores_what_receivers_prepend() {
        let body = "From: a@example.net\r\nMessage-ID: <x@y>\r\nSubject: s\r\n\r\nhello\r\n";
        let a = parse(body.as_bytes());
        let b = parse(
            format!(
                "Return-Path: <a@example.net>\r\nDelivered-To: security+comment@example.org\r\n\
                 Received: from x\r\n\tby mx.example.org; Mon, 1 Jan 2026\r\n\
                 ARC-Seal: i=1; a=rsa-sha256\r\n{body}"
            )
            .as_bytes(),
        );
        assert_eq!(a.content_key, b.content_key);
        assert_ne!(a.content_hash, b.content_hash);
        let other = parse(body.replace("hello", "hellO").as_bytes());
        assert_ne!(a.content_key, other.content_key);
        assert_eq!(unparsed(body.as_bytes()).content_key, a.content_key);
    }

    #[test]
    fn trace_fields_keep_order_and_obsolete_names() {
        let m = p(
            "Received: from a by mx.example.org (Postfix) with ESMTP; Mon, 1 Jan 2026\r\n\
                   Authentication-Results: mx.example.org; dkim=none\r\n\
                   Received: from x (by evil) by\r\n relay.example.net; x\r\n\
                   Authentication-Results : mx.example.org; dkim=pass header.d=example.org\r\n\
                   From: a@example.org\r\n\r\nReceived: by body.example\r\n",
        );
        assert_eq!(
            m.trace,
            vec![
                TraceField::Received {
                    by: Some("mx.example.org".into())
                },
                TraceField::AuthResults {
                    value: "mx.example.org; dkim=none".into(),
                    exact_name: true
                },
                TraceField::Received {
                    by: Some("relay.example.net".into())
                },
                TraceField::AuthResults {
                    value: "mx.example.org; dkim=pass header.d=example.org".into(),
                    exact_name: false
                },
            ]
        );
    }

    #[test]
    fn preamble_is_skipped() {
        for prefix in [
            "\u{feff}",
            "\n  \n",
            "From sender@example.com  Fri Dec  7 11:07:41 2001\n",
            "HELO example.com\nMAIL FROM:<s@example.com>\nRCPT TO:<r@example.com>\nDATA\n",
        ] {
            let m = p(&format!("{prefix}From: a@b.c\nSubject: s\n\nbody\n"));
            assert!(m.parsed_ok, "{prefix:?}");
            assert_eq!(
                m.from.map(|a| a.email).as_deref(),
                Some("a@b.c"),
                "{prefix:?}"
            );
        }
        // `From :` (obsolete syntax) is a header, not an mbox separator.
        let m = p("From : a@b.c\nSubject: s\n\nbody\n");
        assert_eq!(m.from.map(|a| a.email).as_deref(), Some("a@b.c"));
    }
}
