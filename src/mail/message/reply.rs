//! What a handler's reply carries on to the reporter besides its plain
//! text: its own words when it is HTML only ([`reply_text`], without the
//! containers in which mail clients quote), and the files attached to it
//! ([`attachments`]).

use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::body::cap_string;
use super::mime::{free_flat, mime_parts_exceed};
use super::parsed::{MAX_MIME_PARTS, MAX_PARSE_BYTES, MAX_TEXT_BODY_BYTES};
use super::raw::header_block_start;

/// What a handler's reply says in its own words, when it has no plain-text
/// body: its HTML converted to text (html2text) without the containers in
/// which mail clients quote the message being answered. `None` when the
/// message has a text/plain body (its `>` quotes are cut by the caller) or
/// no HTML at all. Converting an HTML-only reply naively relayed the
/// notification's internal text (issue 8).
pub fn reply_text(raw: &[u8]) -> Option<String> {
    let html = catch_unwind(AssertUnwindSafe(|| reply_html(raw))).ok()??;
    // Outlook puts the quoted message after these markers as siblings,
    // not inside them, so the HTML is cut there.
    let cut = OUTLOOK_QUOTE_STARTS
        .iter()
        .filter_map(|m| html.find(m))
        .min()
        .unwrap_or(html.len());
    let config = html2text::config::plain()
        .add_css(QUOTE_CSS)
        .ok()?
        .no_link_wrapping();
    let text = catch_unwind(AssertUnwindSafe(|| {
        config.string_from_read(&html.as_bytes()[..cut], 10_000)
    }))
    .ok()?
    .ok()?;
    Some(cap_string(text.trim().to_string(), MAX_TEXT_BODY_BYTES))
}

/// The containers in which clients quote the message being answered:
/// Gmail (`gmail_quote`), Apple Mail and Thunderbird (`blockquote
/// type=cite`, `moz-cite-prefix`), Yahoo, and any other blockquote.
const QUOTE_CSS: &str = "blockquote, .gmail_quote, .gmail_attr, .moz-cite-prefix, \
    .yahoo_quoted, [type=cite] { display: none }";

/// Where Outlook (desktop and web) starts the quoted message.
const OUTLOOK_QUOTE_STARTS: &[&str] = &[
    "<div id=\"appendonsend\"",
    "<div id=\"divRplyFwdMsg\"",
    "<div id=\"mail-editor-reference-message-container\"",
];

/// The HTML body of a reply that has no text/plain body, decoded.
fn reply_html(raw: &[u8]) -> Option<String> {
    let body = &raw[header_block_start(raw)..];
    let body = &body[..body.len().min(MAX_PARSE_BYTES)];
    if mime_parts_exceed(body, MAX_MIME_PARTS) {
        return None;
    }
    let msg = MessageParser::default().parse(body)?;
    let has_plain = msg.text_body.iter().any(|id| {
        msg.parts
            .get(*id as usize)
            .is_some_and(|p| matches!(p.body, PartType::Text(_)))
    });
    let html = if has_plain {
        None
    } else {
        msg.html_body
            .iter()
            .find_map(|id| match &msg.parts.get(*id as usize)?.body {
                PartType::Html(h) => Some(h.to_string()),
                _ => None,
            })
    };
    free_flat(msg);
    html
}

/// A file a handler attached to a reply (a patch, a PoC), to go on to the
/// reporter with the relayed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name without any path, printable.
    pub name: String,
    /// `type/subtype`, lowercased.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// At most this many attachments, and this many bytes in all, go on with
/// a relay; past either, none do (the caller says so).
pub const MAX_RELAY_ATTACHMENTS: usize = 10;
pub const MAX_RELAY_ATTACHMENT_BYTES: usize = 10 << 20;

/// The files attached to a message (its own parts, not attached
/// messages, not signatures), decoded; `Err` with the reason when there
/// are more than [`MAX_RELAY_ATTACHMENTS`] or they are larger than
/// [`MAX_RELAY_ATTACHMENT_BYTES`] together.
pub fn attachments(raw: &[u8]) -> Result<Vec<Attachment>, String> {
    let body = &raw[header_block_start(raw)..];
    if body.len() > MAX_PARSE_BYTES {
        return Err("the mail is larger than secintake reads whole".into());
    }
    if mime_parts_exceed(body, MAX_MIME_PARTS) {
        return Err("the mail has too many parts".into());
    }
    let found = catch_unwind(AssertUnwindSafe(|| {
        let Some(msg) = MessageParser::default().parse(body) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut total = 0;
        for id in &msg.attachments {
            let Some(part) = msg.parts.get(*id as usize) else {
                continue;
            };
            let content_type = part
                .content_type()
                .map(|ct| {
                    let sub = ct.subtype().unwrap_or("octet-stream");
                    format!("{}/{sub}", ct.ctype()).to_ascii_lowercase()
                })
                .unwrap_or_else(|| "application/octet-stream".into());
            let skip = matches!(
                content_type.as_str(),
                "message/rfc822"
                    | "application/pgp-signature"
                    | "application/pkcs7-signature"
                    | "application/x-pkcs7-signature"
            );
            let bytes: &[u8] = match &part.body {
                PartType::Text(t) | PartType::Html(t) => t.as_bytes(),
                PartType::Binary(b) | PartType::InlineBinary(b) => b.as_ref(),
                PartType::Message(_) | PartType::Multipart(_) => continue,
            };
            if skip {
                continue;
            }
            let name = part
                .attachment_name()
                .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string())
                .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>())
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("attachment-{}", out.len() + 1));
            total += bytes.len();
            out.push(Attachment {
                name,
                content_type,
                bytes: bytes.to_vec(),
            });
            if out.len() > MAX_RELAY_ATTACHMENTS || total > MAX_RELAY_ATTACHMENT_BYTES {
                free_flat(msg);
                return Err(format!(
                    "more than {MAX_RELAY_ATTACHMENTS} attachments or {} MiB",
                    MAX_RELAY_ATTACHMENT_BYTES >> 20
                ));
            }
        }
        free_flat(msg);
        Ok(out)
    }));
    found.unwrap_or_else(|_| Err("the attachments could not be read".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html_mail(html: &str) -> Vec<u8> {
        format!(
            "From: alice@example.org\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn html_replies_lose_the_quote_containers_of_real_clients() {
        let samples = [
            // Gmail
            "<div dir=\"ltr\">NEW TEXT here</div><br><div class=\"gmail_quote\">\
             <div dir=\"ltr\" class=\"gmail_attr\">On Mon, Example security wrote:<br></div>\
             <blockquote class=\"gmail_quote\">INTERNAL primary handler Alice</blockquote></div>",
            // Outlook
            "<div>NEW TEXT here</div><div id=\"appendonsend\"></div><hr>\
             <div id=\"divRplyFwdMsg\"><b>From:</b> Example security</div>\
             <div>INTERNAL primary handler Alice</div>",
            // Apple Mail
            "<div>NEW TEXT here</div><div><br><blockquote type=\"cite\">\
             <div>INTERNAL primary handler Alice</div></blockquote></div>",
            // Thunderbird
            "<p>NEW TEXT here</p><div class=\"moz-cite-prefix\">On 01.12.26 Example wrote:</div>\
             <blockquote type=\"cite\">INTERNAL primary handler Alice</blockquote>",
        ];
        for html in samples {
            let text = reply_text(&html_mail(html)).expect("text");
            assert!(text.contains("NEW TEXT here"), "{text:?}");
            assert!(!text.contains("INTERNAL"), "{text:?}");
            assert!(!text.contains("wrote:"), "{text:?}");
        }
        // A plain-text body is left to the caller's quote cutting.
        assert_eq!(reply_text(b"From: a@b.c\r\n\r\nplain\r\n"), None);
    }

    #[test]
    fn a_corpus_gmail_reply_keeps_only_its_own_text() {
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/corpus/new-report-like/talon-gmail.eml"
        ))
        .unwrap();
        // It has a text/plain alternative, which the caller cuts by `>`.
        assert_eq!(reply_text(&raw), None);
        // Its HTML alternative alone, as an HTML-only client would send it.
        let text = String::from_utf8_lossy(&raw);
        let start = text.find("Content-Type: text/html").unwrap();
        let body_start = start + text[start..].find("\n\n").unwrap() + 2;
        let end = body_start + text[body_start..].find("\n--=====").unwrap();
        let html_only = html_mail(&text[body_start..end]);
        assert_eq!(reply_text(&html_only).as_deref(), Some("Hello"));
    }

    #[test]
    fn a_patch_attached_to_a_reply_is_found_and_a_signature_is_not() {
        let raw = "From: alice@example.org\r\nSubject: Re: x\r\nMIME-Version: 1.0\r\n\
                   Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
                   --b\r\nContent-Type: text/plain\r\n\r\nPatch attached.\r\n\
                   --b\r\nContent-Type: text/x-patch; name=\"fix.patch\"\r\n\
                   Content-Disposition: attachment; filename=\"../../fix.patch\"\r\n\r\n\
                   --- a/x.c\r\n+++ b/x.c\r\n\
                   --b\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--b--\r\n";
        let files = attachments(raw.as_bytes()).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        assert_eq!(files[0].name, "fix.patch");
        assert_eq!(files[0].content_type, "text/x-patch");
        assert!(String::from_utf8_lossy(&files[0].bytes).contains("+++ b/x.c"));
        assert_eq!(attachments(b"From: a@b.c\r\n\r\nplain\r\n"), Ok(vec![]));
    }
}
