//! The header fields of a [`ParsedMessage`], read from mail-parser's tree:
//! top-level fields with a well-formed name only, the first occurrence of a
//! single-valued field, every occurrence (capped) of a list-like one.

use mail_parser::{Header, HeaderValue, Message, MimeHeaders};

use super::body::{cap_string, is_encrypted, text_body, MAX_NESTED_TEXT_DEPTH};
use super::encrypted::offered_keys;
use super::parsed::{Address, ParsedMessage, MAX_HEADER_VALUE_BYTES, MAX_REPEATED_VALUES};
use super::raw::{strip_comments, trace_fields, trim_ascii, unfold};

/// Normalizes one Message-ID: the first `<...>` token without the brackets,
/// else the whole trimmed value; whitespace inside is removed. `None` when
/// nothing is left.
pub fn normalize_message_id(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = match (s.find('<'), s.find('>')) {
        (Some(open), _) => {
            let rest = &s[open + 1..];
            match rest.find('>') {
                Some(close) => &rest[..close],
                None => rest,
            }
        }
        (None, Some(close)) => &s[..close],
        (None, None) => s,
    };
    let id: String = inner
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Parses an In-Reply-To / References style list into Message-IDs without
/// `<>`, in order, duplicates removed. Bracketed ids win; when there are none,
/// bare whitespace- or comma-separated tokens holding an `@` are taken
/// (legacy software omits the brackets). Phrases and comments are ignored.
pub fn message_id_list(raw_header: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    let push = |id: Option<String>, ids: &mut Vec<String>| {
        if let Some(id) = id {
            if ids.len() < MAX_REPEATED_VALUES && !ids.contains(&id) {
                ids.push(id);
            }
        }
    };
    let mut rest = raw_header;
    let mut bracketed = false;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        bracketed = true;
        push(normalize_message_id(&after[..close]), &mut ids);
        rest = &after[close + 1..];
    }
    if !bracketed {
        let without_comments = strip_comments(raw_header);
        for token in without_comments.split(|c: char| c.is_whitespace() || c == ',') {
            if token.contains('@') && !token.contains('"') {
                push(normalize_message_id(token), &mut ids);
            }
        }
    }
    ids
}

/// One top-level header field whose name is well formed.
struct Field<'m, 'x> {
    /// Lowercased field name as written (trailing whitespace before the colon
    /// removed, obsolete RFC 822 syntax).
    name: String,
    header: &'m Header<'x>,
    /// Raw value: unfolded, lossily decoded, trimmed, capped.
    raw: String,
}

fn top_fields<'m, 'x>(msg: &'m Message<'x>) -> Vec<Field<'m, 'x>> {
    let raw = msg.raw_message.as_ref();
    let Some(root) = msg.parts.first() else {
        return Vec::new();
    };
    root.headers
        .iter()
        .filter_map(|h| {
            let name_end = (h.offset_start as usize).saturating_sub(1);
            let name = raw.get(h.offset_field as usize..name_end)?;
            let name = trim_ascii(name);
            let well_formed =
                !name.is_empty() && name.iter().all(|&b| b.is_ascii_graphic() && b != b':');
            if !well_formed {
                return None;
            }
            let value = raw.get(h.offset_start as usize..h.offset_end as usize)?;
            Some(Field {
                name: String::from_utf8_lossy(name).to_ascii_lowercase(),
                header: h,
                raw: unfold(value),
            })
        })
        .collect()
}

/// `<Foo@Example.COM>` or `foo@example.com (comment)` -> `foo@example.com`;
/// `<>` -> `""`.
fn bare_address(raw: &str) -> String {
    let s = strip_comments(raw);
    let s = s.trim();
    let inner = match (s.find('<'), s.rfind('>')) {
        (Some(open), Some(close)) if close > open => &s[open + 1..close],
        _ => s,
    };
    inner.trim().to_lowercase()
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

fn addresses(value: &HeaderValue<'_>) -> Vec<Address> {
    let Some(list) = value.as_address() else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| {
            let email = a.address.as_deref().map(str::trim).unwrap_or_default();
            let email = email.trim_matches(|c| c == '<' || c == '>').to_lowercase();
            if email.is_empty() {
                return None;
            }
            Some(Address {
                name: a.name.as_deref().and_then(non_empty),
                email,
            })
        })
        .take(MAX_REPEATED_VALUES)
        .collect()
}

fn x_autoreply_marker(name: &str, raw: &str) -> bool {
    match name {
        "x-autoreply" | "x-autorespond" | "x-autoresponder" | "x-auto-reply" => {
            !raw.trim().eq_ignore_ascii_case("no")
        }
        "x-auto-response-suppress" => raw
            .split([',', ' ', ';'])
            .any(|v| ["all", "oof", "autoreply"].contains(&v.trim().to_ascii_lowercase().as_str())),
        "x-ms-exchange-message-is-ndr" => true,
        // Challenge-response systems asking the sender to prove they are human.
        "x-bluebottle-request" => true,
        _ => false,
    }
}

const LIST_HEADERS: &[&str] = &[
    "list-post",
    "list-help",
    "list-subscribe",
    "list-owner",
    "list-archive",
    "mailing-list",
    "x-mailing-list",
    "x-ml-name",
    "x-mlserver",
];

pub(super) fn convert(msg: &Message<'_>) -> Option<ParsedMessage> {
    let fields = top_fields(msg);
    if fields.is_empty() {
        return None;
    }
    let mut pm = ParsedMessage {
        parsed_ok: true,
        ..ParsedMessage::default()
    };
    let first = |name: &str| fields.iter().find(|f| f.name == name);
    let first_raw = |name: &str| first(name).and_then(|f| non_empty(&f.raw));

    pm.message_id = first("message-id").and_then(|f| normalize_message_id(&f.raw));
    pm.in_reply_to = first("in-reply-to")
        .map(|f| message_id_list(&f.raw))
        .unwrap_or_default();
    pm.references = first("references")
        .map(|f| message_id_list(&f.raw))
        .unwrap_or_default();
    let first_address =
        |name: &str| first(name).and_then(|f| addresses(&f.header.value).into_iter().next());
    pm.from = first_address("from");
    pm.from_raw = first_raw("from");
    pm.sender = first_address("sender");
    pm.reply_to = first_address("reply-to");
    for f in &fields {
        match f.name.as_str() {
            "to" => pm.to.extend(addresses(&f.header.value)),
            "cc" => pm.cc.extend(addresses(&f.header.value)),
            "delivered-to" if pm.delivered_to.len() < MAX_REPEATED_VALUES => {
                if let Some(a) = non_empty(&bare_address(&f.raw)) {
                    pm.delivered_to.push(a);
                }
            }
            "x-original-to" if pm.x_original_to.len() < MAX_REPEATED_VALUES => {
                if let Some(a) = non_empty(&bare_address(&f.raw)) {
                    pm.x_original_to.push(a);
                }
            }
            "authentication-results" if pm.authentication_results.len() < MAX_REPEATED_VALUES => {
                pm.authentication_results.push(f.raw.clone());
            }
            name if LIST_HEADERS.contains(&name) && !pm.list_headers.iter().any(|n| n == name) => {
                pm.list_headers.push(name.to_string());
            }
            name => {
                if x_autoreply_marker(name, &f.raw) {
                    pm.x_autoreply = true;
                }
            }
        }
    }
    pm.to.truncate(MAX_REPEATED_VALUES);
    pm.cc.truncate(MAX_REPEATED_VALUES);
    pm.return_path = first("return-path").map(|f| bare_address(&f.raw));
    pm.subject = first("subject")
        .and_then(|f| f.header.value.as_text())
        .and_then(non_empty)
        .map(|s| cap_string(s, MAX_HEADER_VALUE_BYTES));
    pm.date = first("date")
        .and_then(|f| f.header.value.as_datetime())
        .filter(|d| d.is_valid())
        .and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0));
    pm.auto_submitted = first_raw("auto-submitted");
    pm.precedence = first_raw("precedence");
    pm.list_id = first_raw("list-id");
    pm.list_unsubscribe = first_raw("list-unsubscribe");

    if let Some(ct) = msg.content_type() {
        let ctype = ct.ctype().trim().to_ascii_lowercase();
        let subtype = ct.subtype().unwrap_or("").trim().to_ascii_lowercase();
        if !ctype.is_empty() {
            pm.content_type = Some(if subtype.is_empty() {
                ctype.clone()
            } else {
                format!("{ctype}/{subtype}")
            });
        }
        if ctype == "multipart" && subtype == "report" {
            pm.report_type = ct
                .attribute("report-type")
                .and_then(non_empty)
                .map(|s| s.to_ascii_lowercase());
        }
    }
    pm.trace = trace_fields(msg.raw_message.as_ref());
    pm.text_body = text_body(msg, MAX_NESTED_TEXT_DEPTH);
    pm.encrypted = is_encrypted(msg);
    pm.offered_keys = offered_keys(msg, first_raw("autocrypt").as_deref());
    Some(pm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::message::parse;

    fn p(s: &str) -> ParsedMessage {
        parse(s.as_bytes())
    }

    #[test]
    fn basic_fields() {
        let m = p("From: \"Alice Example\" <Alice@Example.ORG>\r\n\
                   To: sec@project.org, Bob <bob@x.org>\r\n\
                   Cc: team: c1@x.org, c2@x.org;\r\n\
                   Subject: =?utf-8?q?Heap_overflow_in_=C3=A9?=\r\n\
                   Message-ID: < abc@host >\r\n\
                   In-Reply-To: <one@h> (comment)\r\n\
                   References: <zero@h>\r\n <one@h>\r\n\
                   Date: Tue, 1 Jul 2003 10:52:37 +0200\r\n\
                   Return-Path: <Bounce@Example.org>\r\n\
                   Delivered-To: Security@Project.org\r\n\
                   Authentication-Results: mx; dkim=pass\r\n\
                   Authentication-Results: mx2; spf=fail\r\n\
                   \r\n\
                   Details here.\r\n");
        assert!(m.parsed_ok);
        let from = m.from.unwrap();
        assert_eq!(from.email, "alice@example.org");
        assert_eq!(from.name.as_deref(), Some("Alice Example"));
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.cc.len(), 2);
        assert_eq!(m.subject.as_deref(), Some("Heap overflow in é"));
        assert_eq!(m.message_id.as_deref(), Some("abc@host"));
        assert_eq!(m.in_reply_to, vec!["one@h"]);
        assert_eq!(m.references, vec!["zero@h", "one@h"]);
        assert_eq!(m.date.unwrap().to_rfc3339(), "2003-07-01T08:52:37+00:00");
        assert_eq!(m.return_path.as_deref(), Some("bounce@example.org"));
        assert_eq!(m.delivered_to, vec!["security@project.org"]);
        assert_eq!(m.authentication_results.len(), 2);
        assert_eq!(m.text_body.as_deref().map(str::trim), Some("Details here."));
        assert!(!m.encrypted);
        assert_eq!(m.content_hash.len(), 64);
    }

    #[test]
    fn null_return_path_differs_from_absent() {
        assert_eq!(
            p("Return-Path: <>\nFrom: a@b.c\n\nx")
                .return_path
                .as_deref(),
            Some("")
        );
        assert_eq!(p("From: a@b.c\n\nx").return_path, None);
    }

    #[test]
    fn empty_subject_is_none() {
        assert_eq!(p("From: a@b.c\nSubject:   \n\nx").subject, None);
    }

    #[test]
    fn first_of_repeated_fields_wins() {
        let m = p("From: first@a.example\nFrom: second@b.example\nSubject: one\nSubject: two\n\nx");
        assert_eq!(m.from.unwrap().email, "first@a.example");
        assert_eq!(m.subject.as_deref(), Some("one"));
    }

    #[test]
    fn whitespace_inside_field_name_is_not_from() {
        let m = p("Fr om: evil@attacker.example\nSubject: s\n\nx");
        assert_eq!(m.from, None);
    }

    #[test]
    fn robot_headers_are_read_raw() {
        let m = p(
            "From: a@b.c\nAuto-Submitted: auto-replied (vacation)\nPrecedence: bulk\n\
                   List-Id: <dev.lists.example>\nList-Post: <mailto:dev@lists.example>\n\
                   X-Auto-Response-Suppress: OOF, DR\n\nx",
        );
        assert_eq!(m.auto_submitted.as_deref(), Some("auto-replied (vacation)"));
        assert_eq!(m.precedence.as_deref(), Some("bulk"));
        assert_eq!(m.list_id.as_deref(), Some("<dev.lists.example>"));
        assert_eq!(m.list_headers, vec!["list-post"]);
        assert!(m.x_autoreply);
        let m = p("From: a@b.c\nX-Auto-Response-Suppress: DR, NDR\n\nx");
        assert!(!m.x_autoreply);
    }

    #[test]
    fn multipart_report_type() {
        let m = p("From: MAILER-DAEMON@mx.example\n\
                   Content-Type: multipart/report; report-type=Delivery-Status; boundary=\"b\"\n\n\
                   --b\nContent-Type: text/plain\n\nfailed\n--b\n\
                   Content-Type: message/delivery-status\n\nStatus: 5.1.1\n--b--\n");
        assert_eq!(m.content_type.as_deref(), Some("multipart/report"));
        assert_eq!(m.report_type.as_deref(), Some("delivery-status"));
        assert_eq!(m.text_body.as_deref().map(str::trim), Some("failed"));
    }

    #[test]
    fn message_id_helpers() {
        assert_eq!(normalize_message_id("  <a@b> "), Some("a@b".into()));
        assert_eq!(normalize_message_id("a@b"), Some("a@b".into()));
        assert_eq!(normalize_message_id("<>"), None);
        assert_eq!(normalize_message_id("   "), None);
        assert_eq!(
            message_id_list("<a@b> <c@d>\r\n\t<e@f> <a@b>"),
            vec!["a@b", "c@d", "e@f"]
        );
        assert_eq!(
            message_id_list("Your message of \"Mon, 1 Jan\" <x@y>"),
            vec!["x@y"]
        );
        assert_eq!(message_id_list("a@b, c@d (old)"), vec!["a@b", "c@d"]);
        assert!(message_id_list("").is_empty());
    }
}
