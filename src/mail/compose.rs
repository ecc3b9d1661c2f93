//! Building the mail secintake sends: pure functions, no I/O.
//!
//! Every outgoing message gets its Message-ID here, before it is stored and
//! queued, so a retry after a crash re-sends the very same bytes and the
//! receiving side can recognise the copy.

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use rand::Rng;

/// A message ready to be stored and queued.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Without angle brackets.
    pub message_id: String,
    pub to: Vec<String>,
    pub subject: String,
    pub raw: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("invalid address {0:?}")]
    Address(String),
    #[error("cannot build message: {0}")]
    Build(#[from] lettre::error::Error),
    /// It must go encrypted, and cannot.
    #[error(transparent)]
    Seal(crate::mail::seal::SealError),
    /// It must go encrypted, and secintake holds no key for this address.
    #[error("it must go encrypted, and there is no OpenPGP key for {0}")]
    NoKey(String),
}

/// Longest subject we copy from a report, in characters. Some robots and
/// attackers send 100 KB subjects.
const MAX_SUBJECT_CHARS: usize = 200;

/// Characters that change how text around them is shown without being
/// seen: bidirectional overrides and isolates (U+202E makes "exe.txt" read
/// "txt.exe"), zero-width characters, the BOM, invisible operators. Never
/// copied into mail we send or CLI output.
pub fn invisible(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

/// `s` for a terminal or a header: control and invisible characters
/// (see [`invisible`]) replaced by U+FFFD, so they show instead of acting.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || invisible(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Removes CR, LF and other control characters and invisible ones (see
/// [`invisible`]), collapses whitespace and caps the length, so nothing a
/// reporter writes can inject a header or disguise a subject.
pub fn clean_subject(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SUBJECT_CHARS * 4));
    let mut space = false;
    for c in s.chars() {
        if invisible(c) {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
        if out.chars().count() >= MAX_SUBJECT_CHARS {
            out.push('…');
            break;
        }
    }
    out
}

/// `Re: <original subject> [SEC-2026-0007]`.
pub fn reply_subject(original: Option<&str>, case_id: &str) -> String {
    let cleaned = original.map(clean_subject).unwrap_or_default();
    let tag = format!("[{case_id}]");
    let base = if cleaned.is_empty() {
        "your security report".to_owned()
    } else {
        cleaned
    };
    let base = if base.contains(&tag) {
        base
    } else {
        format!("{base} {tag}")
    };
    let lower = base.to_ascii_lowercase();
    if lower.starts_with("re:") || lower.starts_with("re :") {
        base
    } else {
        format!("Re: {base}")
    }
}

/// A new Message-ID (without brackets) in our own domain. The case id in it
/// lets a bounce that quotes only our Message-ID still be matched by eye.
pub fn new_message_id(purpose: &str, case_id: Option<&str>, our_address: &str) -> String {
    let domain = our_address.rsplit('@').next().unwrap_or("localhost");
    let r: u64 = rand::thread_rng().gen();
    match case_id {
        Some(c) => format!("{purpose}.{c}.{r:016x}@{domain}"),
        None => format!("{purpose}.{r:016x}@{domain}"),
    }
}

fn mailbox(name: Option<&str>, addr: &str) -> Result<Mailbox, ComposeError> {
    let email = addr
        .parse()
        .map_err(|_| ComposeError::Address(addr.to_owned()))?;
    Ok(Mailbox::new(name.map(clean_subject), email))
}

/// The parts of an outgoing message that vary.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    pub from_name: Option<&'a str>,
    pub from: &'a str,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    /// Message-IDs without brackets, oldest first.
    pub references: Vec<String>,
    /// `Auto-Submitted` value: `auto-replied` for answers to a message,
    /// `auto-generated` for alerts (RFC 3834).
    /// `auto-generated` for alerts (RFC 3834); "no" for mail a person wrote
    /// (relays, announcements): then the header is left out.
    pub auto_submitted: &'static str,
    pub date: DateTime<Utc>,
    /// A message to attach whole (message/rfc822), e.g. the original report
    /// in a handler notification.
    pub attach: Option<&'a [u8]>,
    /// Files to attach as they are (a handler's patch in a relay).
    pub files: &'a [crate::mail::message::Attachment],
}

/// The attachment part: message/rfc822 when the raw message can travel
/// as 8bit (RFC 2046 forbids base64 there), else application/octet-stream
/// in base64 so nothing is lost.
fn attachment(raw: &[u8]) -> lettre::message::SinglePart {
    use lettre::message::header::ContentTransferEncoding;
    use lettre::message::{Body, SinglePart};
    if let Ok(body) = Body::new_with_encoding(raw.to_vec(), ContentTransferEncoding::EightBit) {
        if let Ok(ct) = ContentType::parse("message/rfc822") {
            return SinglePart::builder()
                .header(ct)
                .header(lettre::message::header::ContentDisposition::attachment(
                    "report.eml",
                ))
                .body(body);
        }
    }
    lettre::message::Attachment::new("report.eml".to_owned()).body(
        raw.to_vec(),
        ContentType::parse("application/octet-stream").unwrap_or(ContentType::TEXT_PLAIN),
    )
}

/// Renders a draft to RFC 5322 bytes.
pub fn build(d: Draft<'_>) -> Result<Outgoing, ComposeError> {
    let mut b = lettre::Message::builder()
        .from(mailbox(d.from_name, d.from)?)
        .subject(
            d.subject
                .chars()
                .filter(|c| !invisible(*c))
                .collect::<String>(),
        )
        .message_id(Some(format!("<{}>", d.message_id)))
        .date(d.date.into());
    for to in &d.to {
        b = b.to(mailbox(None, to)?);
    }
    if let Some(irt) = &d.in_reply_to {
        b = b.in_reply_to(format!("<{irt}>"));
    }
    if !d.references.is_empty() {
        let refs: Vec<String> = d.references.iter().map(|r| format!("<{r}>")).collect();
        b = b.references(refs.join(" "));
    }
    if d.auto_submitted != "no" {
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            d.auto_submitted.to_owned(),
        ));
        // Ask well-behaved auto-responders (Exchange) not to answer us.
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".to_owned(),
        ));
    }
    let msg = if d.attach.is_none() && d.files.is_empty() {
        b.header(ContentType::TEXT_PLAIN).body(d.body)?
    } else {
        let mut parts = lettre::message::MultiPart::mixed()
            .singlepart(lettre::message::SinglePart::plain(d.body));
        if let Some(raw) = d.attach {
            parts = parts.singlepart(attachment(raw));
        }
        for f in d.files {
            let ct = ContentType::parse(&f.content_type)
                .or_else(|_| ContentType::parse("application/octet-stream"))
                .unwrap_or(ContentType::TEXT_PLAIN);
            parts = parts.singlepart(
                lettre::message::Attachment::new(clean_subject(&f.name)).body(f.bytes.clone(), ct),
            );
        }
        b.multipart(parts)?
    };
    Ok(Outgoing {
        message_id: d.message_id,
        to: d.to,
        subject: d.subject,
        raw: msg.formatted(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn invisible_characters_never_reach_a_subject_or_a_terminal() {
        let evil = "Invoice\u{202E}fdp.exe\u{200B} [SEC-2026-0001]";
        assert_eq!(clean_subject(evil), "Invoicefdp.exe [SEC-2026-0001]");
        assert_eq!(printable("a\u{202E}b\x1b[31m"), "a\u{FFFD}b\u{FFFD}[31m");
        assert_eq!(printable("Grüße 日本"), "Grüße 日本");
    }

    use super::*;

    #[test]
    fn subject_has_tag_and_no_control_characters() {
        let s = reply_subject(Some("XSS in\r\nBcc: evil@x.org\tlogin"), "SEC-2026-0007");
        assert_eq!(s, "Re: XSS in Bcc: evil@x.org login [SEC-2026-0007]");
        assert_eq!(
            reply_subject(Some("RE: old thread"), "SEC-2026-0001"),
            "RE: old thread [SEC-2026-0001]"
        );
        assert_eq!(
            reply_subject(None, "SEC-2026-0001"),
            "Re: your security report [SEC-2026-0001]"
        );
        assert_eq!(
            reply_subject(Some("bug [SEC-2026-0001]"), "SEC-2026-0001"),
            "Re: bug [SEC-2026-0001]"
        );
        let long = "x".repeat(150_000);
        assert!(reply_subject(Some(&long), "SEC-2026-0001").len() < 300);
    }

    #[test]
    fn built_message_has_threading_and_auto_submitted() {
        let out = build(Draft {
            from_name: Some("Example security"),
            from: "security@example.org",
            to: vec!["rep@example.net".into()],
            subject: "Re: bug [SEC-2026-0001]".into(),
            body: "hello".into(),
            message_id: "ack.1@example.org".into(),
            in_reply_to: Some("r1@example.net".into()),
            references: vec!["r0@example.net".into(), "r1@example.net".into()],
            auto_submitted: "auto-replied",
            date: Utc::now(),
            attach: None,
            files: &[],
        })
        .unwrap();
        let text = String::from_utf8(out.raw).unwrap();
        assert!(
            text.contains("Message-ID: <ack.1@example.org>\r\n"),
            "{text}"
        );
        assert!(text.contains("In-Reply-To: <r1@example.net>\r\n"), "{text}");
        assert!(text.contains("References: <r0@example.net> <r1@example.net>\r\n"));
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"));
    }

    #[test]
    fn rejects_unusable_address() {
        let r = build(Draft {
            from_name: None,
            from: "security@example.org",
            to: vec!["not an address".into()],
            subject: "s".into(),
            body: String::new(),
            message_id: "m@example.org".into(),
            in_reply_to: None,
            references: vec![],
            auto_submitted: "auto-generated",
            date: Utc::now(),
            attach: None,
            files: &[],
        });
        assert!(matches!(r, Err(ComposeError::Address(_))));
    }
}
