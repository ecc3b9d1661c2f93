//! What the adapter hands out: [`ParsedMessage`] and its parts, in our own
//! types, and the limits on what it keeps.

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

/// A message declaring more MIME parts than this (counted as Content-Type
/// fields anywhere in the parsed window) is read for its header only.
/// Real mail has a few dozen at most (the corpus: 31); every part is a node
/// in mail-parser's tree, and a `message/rfc822` part nests a whole message,
/// so the count also bounds the tree's depth. A 1.28 MB message nesting
/// 40,000 levels crashed the daemon when the tree was freed (issue 7).
pub const MAX_MIME_PARTS: usize = 500;

/// At most this many offered keys are kept (see `offered_keys`).
pub const MAX_OFFERED_KEYS: usize = 3;
/// A larger key part is ignored: an RSA-4096 key with a few user ids and
/// subkeys is 5-10 KiB armored.
pub const MAX_OFFERED_KEY_BYTES: usize = 64 * 1024;

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
    /// What became of the encryption of an `encrypted` message; `None`
    /// for a cleartext one. Set by `mail::decrypt`, never by the parser.
    pub decryption: Option<Decryption>,
    /// The Subject inside the encrypted part (protected headers), when it
    /// was decrypted and carried one. `subject` stays the outer one: only
    /// encrypted mail and local views may show this.
    pub protected_subject: Option<String>,
    /// OpenPGP public keys the message offers, as bytes: its
    /// `application/pgp-keys` parts (inside the encryption too, once
    /// decrypted), then the keydata of its `Autocrypt` header. At most
    /// [`MAX_OFFERED_KEYS`] of at most [`MAX_OFFERED_KEY_BYTES`] each.
    pub offered_keys: Vec<Vec<u8>>,
    /// The decrypted MIME entity of a PGP/MIME message, in memory only:
    /// where a handler's encrypted reply keeps its attachments.
    pub plaintext: Option<Vec<u8>>,
    /// The OpenPGP signature of a cleartext PGP/MIME signed message
    /// (multipart/signed, RFC 3156 section 5), checked against the
    /// handlers' keys by `mail::decrypt`.
    pub signed: Option<crate::openpgp::SignatureCheck>,
    /// For mail From a handler with `[handler_auth] accept = ["dkim"]`:
    /// its DKIM signature as secintake verified it through DNS (intake
    /// sets it before the message is recorded).
    pub dkim: Option<crate::dkim::DkimCheck>,
    /// For mail From a handler with `[handler_auth] arc_sealers`: its ARC
    /// chain as secintake verified it through DNS (set like `dkim`).
    pub arc: Option<crate::dkim::ArcCheck>,
    /// Lowercase hex SHA-256 of the raw bytes, as received.
    pub content_hash: String,
    /// Lowercase hex SHA-256 of the raw bytes without the trace fields
    /// receiving servers prepend (Received, Delivered-To, ...): two
    /// deliveries of one message share it, two messages that merely share
    /// a Message-ID do not.
    pub content_key: String,
}

/// What became of an encrypted message (see `mail::decrypt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decryption {
    /// Read with the team key: the text and subject are the decrypted
    /// ones (the subject from the protected headers when it has them).
    Decrypted {
        signature: crate::openpgp::SignatureCheck,
    },
    /// No team key is configured: stored and acknowledged, never read.
    NoKey,
    /// It could not be read; one line saying why, never its content.
    Failed(String),
}

impl ParsedMessage {
    /// The OpenPGP signature the message carries, if it is signed: inside
    /// the encryption, or as PGP/MIME signed cleartext.
    pub fn signature(&self) -> Option<&crate::openpgp::SignatureCheck> {
        match &self.decryption {
            Some(Decryption::Decrypted { signature }) => Some(signature),
            _ => self.signed.as_ref(),
        }
    }
}

impl Decryption {
    pub fn is_decrypted(&self) -> bool {
        matches!(self, Decryption::Decrypted { .. })
    }
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
