//! What a message's own parts say: its readable text (the text/plain
//! bodies, else HTML converted crudely, else the text of attached
//! messages), and whether it is encrypted.

use std::borrow::Cow;

use mail_parser::decoders::html::html_to_text;
use mail_parser::{Message, MimeHeaders, PartType};

use super::parsed::MAX_TEXT_BODY_BYTES;

/// How far into the decoded text we look for an inline PGP block.
const MAX_INLINE_PGP_SCAN_BYTES: usize = 4 * 1024 * 1024;

/// How deep into attached messages we look for text when the message itself
/// has none.
pub(super) const MAX_NESTED_TEXT_DEPTH: usize = 3;

pub(super) const PGP_MESSAGE_MARKER: &str = "-----BEGIN PGP MESSAGE-----";

/// Readable text of the message's own parts (not attached messages).
///
/// mail-parser's `text_body` list may point at an inline image (it counts
/// image/* as inline body in multipart/related), so each id is checked; when
/// that yields nothing the HTML bodies are tried, then any text part at all,
/// then the text of attached messages (a forward as attachment with an empty
/// cover note), `depth` levels deep.
pub(super) fn text_body(msg: &Message<'_>, depth: usize) -> Option<String> {
    let part_text = |id: &u32| -> Option<String> {
        match &msg.parts.get(*id as usize)?.body {
            PartType::Text(t) => Some(t.to_string()),
            PartType::Html(h) => Some(html_to_text(h)),
            _ => None,
        }
    };
    let all_ids: Vec<u32> = (0..msg.parts.len() as u32).collect();
    for ids in [&msg.text_body, &msg.html_body, &all_ids] {
        let mut out = String::new();
        for id in ids {
            if out.len() >= MAX_TEXT_BODY_BYTES {
                break;
            }
            let Some(text) = part_text(id) else { continue };
            if text.trim().is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            let room = MAX_TEXT_BODY_BYTES.saturating_sub(out.len());
            out.push_str(&cap_string(text, room));
        }
        if !out.trim().is_empty() {
            return Some(out);
        }
    }
    if depth == 0 {
        return None;
    }
    let nested: Vec<String> = msg
        .parts
        .iter()
        .filter_map(|part| match &part.body {
            PartType::Message(inner) => text_body(inner, depth - 1),
            _ => None,
        })
        .collect();
    (!nested.is_empty()).then(|| cap_string(nested.join("\n\n"), MAX_TEXT_BODY_BYTES))
}

pub(super) fn is_encrypted(msg: &Message<'_>) -> bool {
    let mut scanned = 0usize;
    for part in &msg.parts {
        if let Some(ct) = part.content_type() {
            let ctype = ct.ctype().to_ascii_lowercase();
            let subtype = ct.subtype().unwrap_or("").to_ascii_lowercase();
            match (ctype.as_str(), subtype.as_str()) {
                ("multipart", "encrypted") | ("application", "pgp-encrypted") => return true,
                ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
                    // Without smime-type we cannot tell enveloped from opaque
                    // signed data: unreadable either way, call it encrypted.
                    let smime_type = ct
                        .attribute("smime-type")
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    if smime_type != "signed-data" && smime_type != "certs-only" {
                        return true;
                    }
                }
                _ => {}
            }
        }
        let contents: Cow<'_, [u8]> = match &part.body {
            PartType::Text(t) | PartType::Html(t) => Cow::Borrowed(t.as_bytes()),
            PartType::Binary(b) | PartType::InlineBinary(b) => Cow::Borrowed(b.as_ref()),
            PartType::Message(_) | PartType::Multipart(_) => continue,
        };
        let room = MAX_INLINE_PGP_SCAN_BYTES.saturating_sub(scanned);
        if room == 0 {
            break;
        }
        let slice = &contents[..contents.len().min(room)];
        scanned += slice.len();
        if contains(slice, PGP_MESSAGE_MARKER.as_bytes()) {
            return true;
        }
    }
    false
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `text` cut to [`MAX_TEXT_BODY_BYTES`] on a char boundary, as every
/// readable text the adapter hands out.
pub fn cap_text(text: String) -> String {
    cap_string(text, MAX_TEXT_BODY_BYTES)
}

pub(super) fn cap_string(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::message::{parse, ParsedMessage};

    fn p(s: &str) -> ParsedMessage {
        parse(s.as_bytes())
    }

    #[test]
    fn encryption_detection() {
        let pgp_mime = "From: a@b.c\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\n\n\
                        --b\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--b\n\
                        Content-Type: application/octet-stream\n\nxx\n--b--\n";
        assert!(p(pgp_mime).encrypted);
        let inline =
            "From: a@b.c\n\nhello\n-----BEGIN PGP MESSAGE-----\nabc\n-----END PGP MESSAGE-----\n";
        assert!(p(inline).encrypted);
        let smime = "From: a@b.c\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n\
                     Content-Transfer-Encoding: base64\n\nAAAA\n";
        assert!(p(smime).encrypted);
        let opaque = smime.replace("enveloped-data", "signed-data");
        assert!(!p(&opaque).encrypted);
        let signed = "From: a@b.c\n\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhi\n-----BEGIN PGP SIGNATURE-----\nx\n-----END PGP SIGNATURE-----\n";
        assert!(!p(signed).encrypted);
    }

    #[test]
    fn attached_encrypted_message_does_not_make_the_outer_one_encrypted() {
        let m = p("From: a@b.c\nContent-Type: multipart/mixed; boundary=o\n\n\
                   --o\nContent-Type: text/plain\n\nsee attached\n--o\n\
                   Content-Type: message/rfc822\n\n\
                   From: x@y.z\nContent-Type: multipart/encrypted; boundary=i\n\n\
                   --i\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n--i--\n\
                   --o--\n");
        assert!(m.parsed_ok);
        assert!(!m.encrypted);
    }

    #[test]
    fn text_body_is_capped() {
        let big = "a".repeat(MAX_TEXT_BODY_BYTES + 10);
        let m = p(&format!("From: a@b.c\n\n{big}"));
        assert_eq!(m.text_body.unwrap().len(), MAX_TEXT_BODY_BYTES);
    }

    #[test]
    fn html_in_multipart_related_is_found_behind_an_inline_image() {
        let m = p("From: a@b.c\nContent-Type: multipart/related; boundary=b\n\n\
                   --b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n\
                   --b\nContent-Type: text/html\n\n<p>Report text</p>\n--b--\n");
        let t = m.text_body.unwrap_or_default();
        assert!(t.contains("Report text"), "{t:?}");
    }

    #[test]
    fn text_of_a_forward_as_attachment_is_found() {
        let m = p("From: a@b.c\nContent-Type: multipart/mixed; boundary=o\n\n\
                   --o\nContent-Type: text/plain\n\n\r\n--o\n\
                   Content-Type: message/rfc822\n\n\
                   From: x@y.z\nSubject: inner\n\nThe real report.\n\
                   --o--\n");
        let t = m.text_body.unwrap_or_default();
        assert!(t.contains("The real report."), "{t:?}");
    }

    #[test]
    fn html_only_is_stripped() {
        let m = p("From: a@b.c\nContent-Type: text/html\n\n<html><body><p>Hello <b>there</b></p></body></html>");
        let t = m.text_body.unwrap();
        assert!(t.contains("Hello"), "{t}");
        assert!(!t.contains("<b>"), "{t}");
    }
}
