//! The one adapter over `mail-parser` 0.11: raw RFC 5322 bytes in, our own
//! [`ParsedMessage`] out.
//!
//! Nothing else in the crate names a `mail_parser` type, so upgrading the
//! parser (1.x needs a newer Rust) only touches this folder.
//!
//! What this module guards against (see `design-notes.md`):
//! - `parse` never panics: mail-parser runs under `catch_unwind`, and on a
//!   panic the caller still gets the content hash with `parsed_ok == false`.
//! - Work is bounded: at most [`MAX_PARSE_BYTES`] are handed to the parser,
//!   the readable text is capped at [`MAX_TEXT_BODY_BYTES`], header values at
//!   [`MAX_HEADER_VALUE_BYTES`].
//! - mail-parser reads `Fr om:` as `From:` (it drops whitespace inside field
//!   names); we ignore such fields, as DKIM verifiers and other MUAs do.
//! - mail-parser answers the *last* occurrence of a repeated field; we take the
//!   *first* one (what a human sees at the top of the header block) for
//!   single-valued fields, and keep every occurrence for list-like ones.
//! - `Return-Path: <>` and an absent Return-Path both come out of mail-parser
//!   as `HeaderValue::Empty`; we read the raw value to tell them apart.
//! - Extra headers (Auto-Submitted, Precedence, X-Autoreply, ...) are read from
//!   the raw header bytes, never through custom header parsers (registering one
//!   disables all default parsers).
//! - Text before the header block that a lenient reader can recover from (a
//!   UTF-8 BOM, blank or whitespace-only lines, an mbox `From ` line, a BSMTP
//!   envelope) is skipped before parsing; the hash is still of the raw bytes.
//!
//! The folder, by concern (each file imports only those listed before it):
//! - `parsed`: what the adapter hands out ([`ParsedMessage`] and its
//!   parts) and the limits on what it keeps;
//! - `raw`: the header block read as bytes, without the parser: where it
//!   starts, its trace fields, the content key;
//! - `mime`: the part count that bounds the tree, and freeing it flat;
//! - `body`: the readable text, and whether the message is encrypted;
//! - `encrypted`: where an encrypted message keeps its OpenPGP data;
//! - `headers`: the header fields, read from mail-parser's tree;
//! - `reply`: what a handler's reply carries on to the reporter (its own
//!   words when it is HTML only, its attached files);
//! - this file: [`parse`] and its guard.

use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::MessageParser;
use sha2::{Digest, Sha256};

mod body;
mod encrypted;
mod headers;
mod mime;
mod parsed;
mod raw;
mod reply;

pub use body::cap_text;
pub use encrypted::{encrypted_payload, signed_entity, Payload};
pub use headers::{message_id_list, normalize_message_id};
pub use parsed::{
    Address, Decryption, ParsedMessage, TraceField, MAX_HEADER_VALUE_BYTES, MAX_MIME_PARTS,
    MAX_OFFERED_KEYS, MAX_OFFERED_KEY_BYTES, MAX_PARSE_BYTES, MAX_REPEATED_VALUES,
    MAX_TEXT_BODY_BYTES,
};
pub use reply::{
    attachments, reply_text, Attachment, MAX_RELAY_ATTACHMENTS, MAX_RELAY_ATTACHMENT_BYTES,
};

use headers::convert;
use mime::{free_flat, mime_parts_exceed};
use raw::{content_key, header_block_start};

/// Parses raw message bytes. Never panics; see the module docs for the limits.
pub fn parse(raw: &[u8]) -> ParsedMessage {
    #[cfg(debug_assertions)]
    test_fault::abort_if_marked(raw);
    parse_guarded(raw, |body| {
        let parser = MessageParser::default();
        if mime_parts_exceed(body, MAX_MIME_PARTS) {
            let msg = parser.parse_headers(body)?;
            let mut pm = convert(&msg)?;
            pm.too_complex = true;
            return Some(pm);
        }
        let msg = parser.parse(body)?;
        let pm = convert(&msg);
        free_flat(msg);
        pm
    })
}

/// A fault hook for the tests of the intake's poison guard, compiled into
/// debug builds only: when `SECINTAKE_TEST_ABORT_ON` is set, parsing a
/// message that contains its value aborts the process, as a parser crash
/// would. Release builds have no such hook.
#[cfg(debug_assertions)]
mod test_fault {
    use std::sync::OnceLock;

    pub fn abort_if_marked(raw: &[u8]) {
        static MARK: OnceLock<Option<Vec<u8>>> = OnceLock::new();
        let mark = MARK.get_or_init(|| {
            std::env::var_os("SECINTAKE_TEST_ABORT_ON")
                .map(|v| v.into_encoded_bytes())
                .filter(|v| !v.is_empty())
        });
        if let Some(mark) = mark {
            if raw.windows(mark.len()).any(|w| w == mark.as_slice()) {
                std::process::abort();
            }
        }
    }
}

/// A message read for nothing but its hashes: `parsed_ok` is false. For
/// bytes that must not reach the parser again (see the intake's poison
/// guard) or that already failed to parse once.
pub fn unparsed(raw: &[u8]) -> ParsedMessage {
    ParsedMessage {
        parsed_ok: false,
        content_hash: hex::encode(Sha256::digest(raw)),
        content_key: content_key(raw),
        ..ParsedMessage::default()
    }
}

/// Reads a stored message again: parsed when it parsed on arrival, else
/// [`unparsed`], so bytes that crashed or defeated the parser once are
/// never handed to it a second time.
pub fn reparse(raw: &[u8], parsed_ok: bool) -> ParsedMessage {
    if parsed_ok {
        parse(raw)
    } else {
        unparsed(raw)
    }
}

/// Hashes, finds the header block, caps the size, and runs `parser` under
/// `catch_unwind`, so neither a parser bug nor ours can take the daemon down.
fn parse_guarded(raw: &[u8], parser: impl FnOnce(&[u8]) -> Option<ParsedMessage>) -> ParsedMessage {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let body = &raw[header_block_start(raw)..];
        parser(&body[..body.len().min(MAX_PARSE_BYTES)])
    }));
    match parsed {
        Ok(Some(mut pm)) => {
            pm.content_hash = hex::encode(Sha256::digest(raw));
            pm.content_key = content_key(raw);
            pm
        }
        _ => unparsed(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics_and_hash_is_stable() {
        for raw in [
            &b""[..],
            b"\n\n\n",
            b"\xff\xfe\x00",
            b"no headers here",
            b":::\n\n",
        ] {
            let a = parse(raw);
            let b = parse(raw);
            assert_eq!(a.content_hash, b.content_hash);
            assert_eq!(a.content_hash, hex::encode(Sha256::digest(raw)));
        }
        assert!(!parse(b"").parsed_ok);
    }

    #[test]
    fn a_panicking_parser_yields_an_unparsed_message_with_its_hash() {
        let raw = b"From: a@b.c\n\nbody";
        let m = parse_guarded(raw, |_| panic!("parser bug"));
        assert!(!m.parsed_ok);
        assert_eq!(m.content_hash, hex::encode(Sha256::digest(raw)));
        assert_eq!(m.from, None);
    }
}
