//! Where an encrypted message keeps its OpenPGP data: the second part of a
//! PGP/MIME `multipart/encrypted` (RFC 3156), or an armored block inside a
//! text part (inline PGP), possibly quoted by a reply (`> `).

use mail_parser::decoders::base64::base64_decode;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::parsed::{MAX_OFFERED_KEYS, MAX_OFFERED_KEY_BYTES};

use super::body::PGP_MESSAGE_MARKER;
use super::raw::header_block_start;

const PGP_MESSAGE_END: &str = "-----END PGP MESSAGE-----";

/// The OpenPGP data of an encrypted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// PGP/MIME: the encrypted MIME entity (armored or binary).
    Mime(Vec<u8>),
    /// Inline PGP: the armored block (quote prefixes removed), and the
    /// text around it, which stays as it is.
    Inline {
        armored: String,
        before: String,
        after: String,
    },
}

impl Payload {
    /// The bytes to decrypt.
    pub fn data(&self) -> &[u8] {
        match self {
            Payload::Mime(b) => b,
            Payload::Inline { armored, .. } => armored.as_bytes(),
        }
    }
}

/// The signed entity and the signature of the first PGP/MIME
/// `multipart/signed` part (RFC 3156 section 5): the first child's bytes
/// as they stand (header and body, lines ending in CRLF, up to the line
/// break before the boundary), the second child's body.
pub fn signed_entity(raw: &[u8], max_bytes: usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let body = &raw[header_block_start(raw)..];
    let body = &body[..body.len().min(max_bytes)];
    std::panic::catch_unwind(|| {
        let msg = MessageParser::default().parse(body)?;
        let part = msg.parts.iter().find(|part| {
            part.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("multipart")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("signed"))
                    && ct
                        .attribute("protocol")
                        .is_some_and(|p| p.eq_ignore_ascii_case("application/pgp-signature"))
            })
        })?;
        let PartType::Multipart(children) = &part.body else {
            return None;
        };
        let signed = msg.parts.get(*children.first()? as usize)?;
        let sig = msg.parts.get(*children.get(1)? as usize)?;
        let (start, end) = (signed.offset_header as usize, signed.offset_end as usize);
        // mail-parser's end offset stops before the line break that
        // belongs to the boundary (the unit test below pins this).
        let data = body.get(start..end)?;
        let signature = match &sig.body {
            PartType::Text(t) | PartType::Html(t) => t.as_bytes().to_vec(),
            PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
            PartType::Message(_) | PartType::Multipart(_) => return None,
        };
        Some((crlf(data), signature))
    })
    .ok()
    .flatten()
}

/// `data` with every line ending as CRLF (the canonical form signatures
/// are made over).
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 40);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The keys a message offers: its `application/pgp-keys` parts, then the
/// `keydata` of its Autocrypt header (base64, RFC-less but universal:
/// autocrypt.org level 1).
pub(super) fn offered_keys(msg: &Message<'_>, autocrypt: Option<&str>) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = msg
        .parts
        .iter()
        .filter(|part| {
            part.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("application")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("pgp-keys"))
            })
        })
        .filter_map(|part| match &part.body {
            PartType::Text(t) | PartType::Html(t) => Some(t.as_bytes().to_vec()),
            PartType::Binary(b) | PartType::InlineBinary(b) => Some(b.to_vec()),
            PartType::Message(_) | PartType::Multipart(_) => None,
        })
        .filter(|k| k.len() <= MAX_OFFERED_KEY_BYTES)
        .take(MAX_OFFERED_KEYS)
        .collect();
    let keydata = autocrypt.and_then(|v| {
        v.split(';')
            .find_map(|attr| attr.trim().strip_prefix("keydata="))
            .map(|b64| {
                b64.chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>()
            })
    });
    if let Some(bytes) = keydata.and_then(|b| base64_decode(b.as_bytes())) {
        if keys.len() < MAX_OFFERED_KEYS && bytes.len() <= MAX_OFFERED_KEY_BYTES {
            keys.push(bytes);
        }
    }
    keys
}

/// The first OpenPGP payload of `raw`, if it has one. Reads the whole
/// message (up to `max_bytes`), not just the parser's window: an
/// encrypted report carries its attachments inside the ciphertext.
pub fn encrypted_payload(raw: &[u8], max_bytes: usize) -> Option<Payload> {
    let body = &raw[header_block_start(raw)..];
    let body = &body[..body.len().min(max_bytes)];
    let found = std::panic::catch_unwind(|| {
        let msg = MessageParser::default().parse(body)?;
        pgp_mime(&msg).or_else(|| inline(&msg))
    });
    found.ok().flatten()
}

/// The second part of the first `multipart/encrypted` with the OpenPGP
/// protocol (its first part is only "Version: 1").
fn pgp_mime(msg: &Message<'_>) -> Option<Payload> {
    for part in &msg.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let is_encrypted = ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("encrypted"));
        let protocol = ct.attribute("protocol").unwrap_or("");
        if !is_encrypted || !protocol.eq_ignore_ascii_case("application/pgp-encrypted") {
            continue;
        }
        let PartType::Multipart(children) = &part.body else {
            continue;
        };
        let data = msg.parts.get(*children.get(1)? as usize)?;
        return match &data.body {
            PartType::Text(t) | PartType::Html(t) => Some(Payload::Mime(t.as_bytes().to_vec())),
            PartType::Binary(b) | PartType::InlineBinary(b) => Some(Payload::Mime(b.to_vec())),
            PartType::Message(_) | PartType::Multipart(_) => None,
        };
    }
    None
}

/// The first armored PGP message in a text part.
fn inline(msg: &Message<'_>) -> Option<Payload> {
    msg.parts.iter().find_map(|part| match &part.body {
        PartType::Text(t) => inline_block(t),
        _ => None,
    })
}

/// Cuts the armored block out of `text`. The BEGIN line's prefix (`> `,
/// `>> `, spaces) is the quote marker; it is removed from every line of
/// the block, so a block quoted in a reply still decodes.
pub(crate) fn inline_block(text: &str) -> Option<Payload> {
    let begin = text.find(PGP_MESSAGE_MARKER)?;
    let line_start = text[..begin].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..begin];
    if !prefix.chars().all(|c| c == '>' || c == ' ' || c == '\t') {
        return None;
    }
    let end_rel = text[begin..].find(PGP_MESSAGE_END)?;
    let end = begin + end_rel + PGP_MESSAGE_END.len();
    let after_start = text[end..].find('\n').map_or(text.len(), |i| end + i + 1);
    let mut armored = String::with_capacity(end - line_start);
    for line in text[line_start..end].lines() {
        // A quoted empty line is often ">" without the space.
        let line = line
            .strip_prefix(prefix)
            .or_else(|| line.strip_prefix(prefix.trim_end()))
            .unwrap_or_else(|| line.trim_start());
        armored.push_str(line.trim_end());
        armored.push('\n');
    }
    Some(Payload::Inline {
        armored,
        before: text[..line_start].to_string(),
        after: text[after_start..].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgp_mime_yields_its_second_part() {
        let raw = b"From: r@example.net\r\nSubject: ...\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n\
            --b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\
            --b\r\nContent-Type: application/octet-stream; name=encrypted.asc\r\n\r\n\
            -----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n--b--\r\n";
        let Some(Payload::Mime(data)) = encrypted_payload(raw, 1 << 20) else {
            panic!("no payload")
        };
        let text = String::from_utf8(data).unwrap();
        assert!(text.starts_with("-----BEGIN PGP MESSAGE-----"), "{text}");
        assert!(text.contains("hQEMA"));
    }

    #[test]
    fn inline_blocks_lose_their_quote_prefix_and_keep_the_text_around() {
        let text =
            "Hi,\n> -----BEGIN PGP MESSAGE-----\n>\n> hQEMA\n> -----END PGP MESSAGE-----\nthanks\n";
        let Some(Payload::Inline {
            armored,
            before,
            after,
        }) = inline_block(text)
        else {
            panic!("no block")
        };
        assert_eq!(
            armored,
            "-----BEGIN PGP MESSAGE-----\n\nhQEMA\n-----END PGP MESSAGE-----\n"
        );
        assert_eq!(before, "Hi,\n");
        assert_eq!(after, "thanks\n");
    }

    #[test]
    fn the_signed_entity_is_the_first_part_without_the_boundary_line_break() {
        let entity = "Content-Type: text/plain; charset=utf-8\r\n\r\n/severity low\r\n";
        let raw = format!(
            "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; \
             micalg=pgp-sha256; protocol=\"application/pgp-signature\"; boundary=\"s\"\r\n\r\n\
             --s\r\n{entity}\r\n--s\r\nContent-Type: application/pgp-signature\r\n\r\nSIG\r\n--s--\r\n"
        );
        let (data, sig) = signed_entity(raw.as_bytes(), 1 << 20).unwrap();
        assert_eq!(String::from_utf8(data).unwrap(), entity);
        assert!(sig.starts_with(b"SIG"));
    }

    #[test]
    fn a_marker_inside_a_sentence_or_without_end_is_no_block() {
        assert_eq!(
            inline_block("see -----BEGIN PGP MESSAGE----- here\n-----END PGP MESSAGE-----"),
            None
        );
        assert_eq!(inline_block("-----BEGIN PGP MESSAGE-----\nabc\n"), None);
        assert_eq!(
            encrypted_payload(b"From: a@b.c\r\n\r\nplain\r\n", 1 << 20),
            None
        );
    }
}
