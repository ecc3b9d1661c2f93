//! The one adapter over `mail-parser` 0.11: raw RFC 5322 bytes in, our own
//! [`ParsedMessage`] out.
//!
//! Nothing else in the crate names a `mail_parser` type, so upgrading the
//! parser (1.x needs a newer Rust) only touches this file.
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

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mail_parser::decoders::html::html_to_text;
use mail_parser::{Header, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use sha2::{Digest, Sha256};

/// Inputs longer than this are truncated before parsing: the header block and
/// the start of the body still parse, the rest is only kept as raw bytes.
/// Deciding what a message is never needs its attachments, and mail-parser
/// decodes every part it sees: a 27 MiB report with a base64 attachment
/// cost two more copies of the attachment (measured by the benchmark).
pub const MAX_PARSE_BYTES: usize = 4 * 1024 * 1024;
/// Cap on [`ParsedMessage::text_body`], in bytes (cut on a char boundary).
pub const MAX_TEXT_BODY_BYTES: usize = 1024 * 1024;
/// Cap on every header value we keep (subject, list-id, ...), in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;
/// At most this many repeated list-like header values (Delivered-To,
/// Authentication-Results, Message-IDs in References ...) are kept.
pub const MAX_REPEATED_VALUES: usize = 100;
/// How far into the decoded text we look for an inline PGP block.
const MAX_INLINE_PGP_SCAN_BYTES: usize = 4 * 1024 * 1024;
/// How deep into attached messages we look for text when the message itself
/// has none.
const MAX_NESTED_TEXT_DEPTH: usize = 3;
/// How many leading lines may be skipped while looking for the header block.
const MAX_PREAMBLE_LINES: usize = 64;
/// A message declaring more MIME parts than this (counted as Content-Type
/// fields anywhere in the parsed window) is read for its header only.
/// Real mail has a few dozen at most (the corpus: 31); every part is a node
/// in mail-parser's tree, and a `message/rfc822` part nests a whole message,
/// so the count also bounds the tree's depth. A 1.28 MB message nesting
/// 40,000 levels crashed the daemon when the tree was freed (issue 7).
pub const MAX_MIME_PARTS: usize = 500;
/// At most this many top-level trace fields (Received,
/// Authentication-Results) are kept, in header order.
const MAX_TRACE_FIELDS: usize = 200;

const PGP_MESSAGE_MARKER: &str = "-----BEGIN PGP MESSAGE-----";

/// A mailbox from an address header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Display name, decoded; `None` when absent or empty.
    pub name: Option<String>,
    /// Lowercased, trimmed addr-spec. Never empty: a field without an address
    /// yields no [`Address`] at all. Not validated: see
    /// `classify::reply_address` before sending anything to it.
    pub email: String,
}

/// Everything the pipeline needs from one message, in our own types.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMessage {
    /// False when parsing panicked or failed, or no header block was found.
    /// The other fields are then empty, except `content_hash`.
    pub parsed_ok: bool,
    /// Message-ID without `<>`, trimmed; `None` when absent or empty.
    pub message_id: Option<String>,
    /// Message-IDs named by In-Reply-To, without `<>`, in order.
    pub in_reply_to: Vec<String>,
    /// Message-IDs named by References, without `<>`, in order.
    pub references: Vec<String>,
    /// First mailbox of the (first well-formed) From field.
    pub from: Option<Address>,
    /// That From field's raw value (unfolded, capped), kept for display when
    /// it has no parseable address, and to spot the null sender `From: <>`.
    pub from_raw: Option<String>,
    /// First mailbox of the Sender field.
    pub sender: Option<Address>,
    /// First mailbox of the Reply-To field.
    pub reply_to: Option<Address>,
    /// Every mailbox of the To fields (groups flattened).
    pub to: Vec<Address>,
    /// Every mailbox of the Cc fields (groups flattened).
    pub cc: Vec<Address>,
    /// Delivered-To values, lowercased, `<>` stripped, in header order.
    pub delivered_to: Vec<String>,
    /// X-Original-To values, lowercased, `<>` stripped, in header order.
    pub x_original_to: Vec<String>,
    /// Topmost Return-Path, lowercased, without `<>`; `Some("")` for the null
    /// reverse path `<>` (bounces and auto-replies use it).
    pub return_path: Option<String>,
    /// Decoded Subject; `None` when absent or empty (capped).
    pub subject: Option<String>,
    /// Date field, when it parses to a plausible date.
    pub date: Option<chrono::DateTime<chrono::Utc>>,
    /// Raw Auto-Submitted value (RFC 3834), trimmed.
    pub auto_submitted: Option<String>,
    /// Raw Precedence value, trimmed.
    pub precedence: Option<String>,
    /// Raw List-Id value, trimmed.
    pub list_id: Option<String>,
    /// Raw List-Unsubscribe value, trimmed.
    pub list_unsubscribe: Option<String>,
    /// Lowercased names of other mailing-list fields present at top level:
    /// List-Post, List-Help, List-Subscribe, List-Owner, List-Archive,
    /// Mailing-List (ezmlm), X-Mailing-List, X-ML-Name, X-MLServer (fml).
    pub list_headers: Vec<String>,
    /// A non-standard robot marker is present: X-Autoreply, X-Autorespond,
    /// X-Autoresponder, X-Auto-Response-Suppress naming All/OOF/AutoReply,
    /// X-MS-Exchange-Message-Is-Ndr, or a challenge-response request
    /// (X-Bluebottle-Request).
    pub x_autoreply: bool,
    /// Top-level `type/subtype`, lowercased; `None` without a Content-Type.
    pub content_type: Option<String>,
    /// `report-type` parameter of a top-level multipart/report, lowercased.
    pub report_type: Option<String>,
    /// Raw Authentication-Results values, in header order.
    pub authentication_results: Vec<String>,
    /// Top-level Received and Authentication-Results fields in header
    /// order, read from the raw bytes (names compared with whitespace
    /// removed, so obsolete spellings are seen too). `auth` decides from
    /// their order which verdicts the receiving server wrote.
    pub trace: Vec<TraceField>,
    /// The message declares more than [`MAX_MIME_PARTS`] parts: only its
    /// header was parsed; `text_body` is `None` and the raw bytes are the
    /// only copy of the content.
    pub too_complex: bool,
    /// Best readable text: the text/plain bodies (HTML-only bodies converted
    /// crudely to text), joined, capped at [`MAX_TEXT_BODY_BYTES`].
    pub text_body: Option<String>,
    /// PGP/MIME multipart/encrypted, an application/pgp-encrypted part, an
    /// inline `-----BEGIN PGP MESSAGE-----` block, or S/MIME enveloped data
    /// (application/pkcs7-mime whose smime-type is not signed-data).
    /// Only this message's own parts count, not attached messages.
    pub encrypted: bool,
    /// Lowercase hex SHA-256 of the raw bytes, as received.
    pub content_hash: String,
    /// Lowercase hex SHA-256 of the raw bytes without the trace fields
    /// receiving servers prepend (Received, Delivered-To, ...): two
    /// deliveries of one message share it, two messages that merely share
    /// a Message-ID do not.
    pub content_key: String,
}

/// One top-level trace field, see [`ParsedMessage::trace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceField {
    /// A `Received` field; `by` is the host named by its `by` clause,
    /// lowercased, when there is one.
    Received { by: Option<String> },
    /// An `Authentication-Results` field. `exact_name` is false when the
    /// name was not written exactly `Authentication-Results:` (whitespace
    /// before the colon or inside the name): a border filter matching
    /// `^Authentication-Results:` would not have removed it.
    AuthResults { value: String, exact_name: bool },
}

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

/// Frees a parsed tree without recursing per level. mail-parser's own drop
/// recurses once per nested `message/rfc822` level (about four frames
/// each), which overflowed a 2 MiB thread stack at ~35,000 levels; this
/// detaches every nested message into a list first, so each one drops
/// with no children left.
fn free_flat(msg: Message<'_>) {
    let mut pending = vec![msg];
    while let Some(mut m) = pending.pop() {
        for part in &mut m.parts {
            if let PartType::Message(inner) = std::mem::take(&mut part.body) {
                pending.push(inner);
            }
        }
    }
}

/// Whether `raw` holds more than `max` Content-Type fields at the start of
/// a line (the field name compared with whitespace removed, the way
/// mail-parser reads it). One pass, no allocation.
fn mime_parts_exceed(raw: &[u8], max: usize) -> bool {
    const NAME: &[u8] = b"content-type";
    let mut count = 0usize;
    for line in raw.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().take(64).position(|&b| b == b':') else {
            continue;
        };
        let mut name = line[..colon].iter().filter(|b| !b.is_ascii_whitespace());
        let matches = NAME
            .iter()
            .all(|want| name.next().is_some_and(|b| b.eq_ignore_ascii_case(want)))
            && name.next().is_none();
        if matches {
            count += 1;
            if count > max {
                return true;
            }
        }
    }
    false
}

/// The top-level Received and Authentication-Results fields of `raw`, in
/// order, read straight from the header block (up to the first empty line).
fn trace_fields(raw: &[u8]) -> Vec<TraceField> {
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

/// See [`ParsedMessage::content_key`]: the hash of everything from the
/// first top-level field that is not a trace field on.
fn content_key(raw: &[u8]) -> String {
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

/// Where the header block starts: skips a UTF-8 BOM, blank or whitespace-only
/// lines, an mbox `From ` separator line and a BSMTP envelope
/// (HELO/EHLO/MAIL FROM/RCPT TO ... DATA).
fn header_block_start(raw: &[u8]) -> usize {
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

fn trim_ascii(s: &[u8]) -> &[u8] {
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

/// Unfolds a raw header value: CR/LF removed, runs of whitespace collapsed to
/// one space, trimmed, capped at [`MAX_HEADER_VALUE_BYTES`].
fn unfold(value: &[u8]) -> String {
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

fn cap_string(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

fn strip_comments(s: &str) -> String {
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

fn convert(msg: &Message<'_>) -> Option<ParsedMessage> {
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
    Some(pm)
}

/// Readable text of the message's own parts (not attached messages).
///
/// mail-parser's `text_body` list may point at an inline image (it counts
/// image/* as inline body in multipart/related), so each id is checked; when
/// that yields nothing the HTML bodies are tried, then any text part at all,
/// then the text of attached messages (a forward as attachment with an empty
/// cover note), `depth` levels deep.
fn text_body(msg: &Message<'_>, depth: usize) -> Option<String> {
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

fn is_encrypted(msg: &Message<'_>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParsedMessage {
        parse(s.as_bytes())
    }

    /// A report wrapped in `levels` nested `message/rfc822` parts, the shape
    /// that crashed the daemon at 40,000 levels (issue 7).
    fn nested(levels: usize) -> Vec<u8> {
        let mut s = String::new();
        for i in 0..levels {
            s.push_str(&format!(
                "From: a{i}@example.net\r\nSubject: level {i}\r\n\
                 Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n\
                 --b{i}\r\nContent-Type: message/rfc822\r\n\r\n"
            ));
        }
        s.push_str("From: inner@example.net\r\nSubject: inner\r\n\r\nbody\r\n");
        for i in (0..levels).rev() {
            s.push_str(&format!("\r\n--b{i}--\r\n"));
        }
        s.into_bytes()
    }

    #[test]
    fn forty_thousand_nested_messages_read_as_header_only() {
        let raw = nested(40_000);
        // Runs on the test harness's 2 MiB thread stack, like the blocking
        // pool's threads in the daemon.
        let m = parse(&raw);
        assert!(m.parsed_ok);
        assert!(m.too_complex);
        assert_eq!(m.subject.as_deref(), Some("level 0"));
        assert_eq!(m.text_body, None);
        let small = parse(&nested(2));
        assert!(!small.too_complex);
        assert!(small.text_body.is_some_and(|t| t.contains("body")));
    }

    #[test]
    fn a_deep_tree_is_freed_without_recursion() {
        // Past the part cap on purpose: mail-parser's own drop of this tree
        // overflows a 2 MiB stack; free_flat must not.
        let raw = nested(40_000);
        let done = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let msg = MessageParser::default().parse(&raw[..]).expect("parses");
                free_flat(msg);
            })
            .expect("spawn")
            .join();
        assert!(done.is_ok());
    }

    #[test]
    fn part_count_reads_names_as_the_parser_does() {
        let many = "Content-Type: text/plain\n".repeat(MAX_MIME_PARTS + 1);
        assert!(mime_parts_exceed(many.as_bytes(), MAX_MIME_PARTS));
        let odd = "Content - Type : text/plain\n".repeat(MAX_MIME_PARTS + 1);
        assert!(mime_parts_exceed(odd.as_bytes(), MAX_MIME_PARTS));
        let few = "Content-Type: text/plain\n".repeat(MAX_MIME_PARTS);
        assert!(!mime_parts_exceed(few.as_bytes(), MAX_MIME_PARTS));
        assert!(!mime_parts_exceed(
            b"X-Content-Type: a\nContent-Typed: b\n",
            0
        ));
    }

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
