//! Sealing a built message: PGP/MIME encryption (RFC 3156) with protected
//! headers (draft-ietf-lamps-header-protection, the "v1" form Thunderbird,
//! K-9/Thunderbird for Android and Delta Chat read).
//!
//! The routing fields stay outside (From, To, Cc, Date, Message-ID,
//! In-Reply-To, References, Auto-Submitted, ...); outside, the Subject
//! becomes "...". Inside the encryption: the Subject, From, To and Date
//! again, then the message's own Content-* fields and body. Sealing works
//! on the bytes `compose::build` made, so every letter can be sealed the
//! same way whatever it carries.

use crate::openpgp::{self, PublicKey, SecretKey};

/// What the outside shows instead of the subject.
pub const HIDDEN_SUBJECT: &str = "...";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the message has no header block")]
    NoHeader,
    #[error("cannot encrypt: {0}")]
    Encrypt(#[from] openpgp::EncryptError),
}

/// One header field as it stands in the message: its name and its whole
/// text (folded lines included, CRLF-terminated).
struct Field<'a> {
    name: &'a str,
    text: &'a str,
}

/// Splits a header block into its fields (a line that starts with white
/// space continues the field before it).
fn fields(header: &str) -> Vec<Field<'_>> {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut start = 0;
    let bytes = header.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let line_end = header[i..].find("\r\n").map_or(header.len(), |n| i + n + 2);
        let next = bytes.get(line_end).copied();
        if !matches!(next, Some(b' ' | b'\t')) {
            let text = &header[start..line_end];
            let name = text.split(':').next().unwrap_or("").trim();
            if !name.is_empty() {
                out.push(Field { name, text });
            }
            start = line_end;
        }
        i = line_end;
    }
    out
}

/// A built message's header fields and its body.
fn split(text: &str) -> Result<(Vec<Field<'_>>, &str), SealError> {
    let at = text.find("\r\n\r\n").ok_or(SealError::NoHeader)?;
    Ok((fields(&text[..at + 2]), &text[at + 4..]))
}

/// Whether the field describes the body (it moves inside).
fn is_content(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("content-")
}

/// Copied inside as protected headers, and (but Subject) kept outside.
fn is_protected(name: &str) -> bool {
    ["subject", "from", "to", "cc", "date", "reply-to"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

/// Ends a two-part message whose last part is `armored`: its lines as
/// CRLF, then the closing boundary.
fn close(mut out: String, armored: &str, boundary: &str) -> Vec<u8> {
    out.push_str(&armored.replace("\r\n", "\n").replace('\n', "\r\n"));
    if !out.ends_with("\r\n") {
        out.push_str("\r\n");
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out.into_bytes()
}

/// `raw` PGP/MIME-signed with the team key (RFC 3156 section 5): the
/// body and its Content-* fields become the signed first part, the
/// detached signature the second. The header stays as it was.
pub fn sign(raw: &[u8], team: &SecretKey) -> Result<Vec<u8>, SealError> {
    let text = String::from_utf8_lossy(raw);
    let (fields, body) = split(&text)?;
    let mut entity = String::new();
    for f in fields.iter().filter(|f| is_content(f.name)) {
        entity.push_str(f.text);
    }
    entity.push_str("\r\n");
    entity.push_str(body);
    // The line break before the boundary belongs to the boundary.
    let entity = entity.trim_end_matches("\r\n");
    let signature = openpgp::sign_detached(entity.as_bytes(), team)?;
    let boundary = format!("signed-{:016x}", rand::random::<u64>());
    let mut out = String::new();
    for f in fields
        .iter()
        .filter(|f| !is_content(f.name) && !f.name.eq_ignore_ascii_case("mime-version"))
    {
        out.push_str(f.text);
    }
    out.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/signed; micalg=pgp-sha256; \
         protocol=\"application/pgp-signature\"; boundary=\"{boundary}\"\r\n\r\n\
         This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n\
         --{boundary}\r\n{entity}\r\n--{boundary}\r\n\
         Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n\
         Content-Description: OpenPGP digital signature\r\n\
         Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n"
    ));
    Ok(close(out, &signature, &boundary))
}

/// `raw` encrypted to `recipients` (and the team's own key, so the team
/// can read what it sent), signed with `team`.
pub fn seal(raw: &[u8], recipients: &[&PublicKey], team: &SecretKey) -> Result<Vec<u8>, SealError> {
    let text = String::from_utf8_lossy(raw);
    let (fields, body) = split(&text)?;

    let mut inner = String::new();
    for f in fields.iter().filter(|f| is_content(f.name)) {
        if f.name.eq_ignore_ascii_case("content-type") {
            inner.push_str(f.text.trim_end_matches("\r\n"));
            inner.push_str("; protected-headers=\"v1\"\r\n");
        } else {
            inner.push_str(f.text);
        }
    }
    if !fields
        .iter()
        .any(|f| f.name.eq_ignore_ascii_case("content-type"))
    {
        inner.push_str("Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\"\r\n");
    }
    for f in fields.iter().filter(|f| is_protected(f.name)) {
        inner.push_str(f.text);
    }
    inner.push_str("\r\n");
    inner.push_str(body);

    let team_pub = team.public();
    let mut to: Vec<&PublicKey> = recipients.to_vec();
    to.push(&team_pub);
    let armored = openpgp::encrypt(inner.as_bytes(), &to, Some(team))?;

    let boundary = format!("sealed-{:016x}", rand::random::<u64>());
    let mut out = String::new();
    for f in &fields {
        if is_content(f.name) || f.name.eq_ignore_ascii_case("mime-version") {
            continue;
        }
        if f.name.eq_ignore_ascii_case("subject") {
            out.push_str(&format!("Subject: {HIDDEN_SUBJECT}\r\n"));
        } else {
            out.push_str(f.text);
        }
    }
    out.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: multipart/encrypted; \
         protocol=\"application/pgp-encrypted\"; boundary=\"{boundary}\"\r\n\r\n\
         This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
         --{boundary}\r\nContent-Type: application/pgp-encrypted\r\n\
         Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n"
    ));
    Ok(close(out, &armored, &boundary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_folded_lines_together() {
        let h = "From: a@b.c\r\nSubject: long\r\n continued\r\nContent-Type: text/plain;\r\n\tcharset=utf-8\r\n";
        let f = fields(h);
        let names: Vec<&str> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["From", "Subject", "Content-Type"]);
        assert_eq!(f[1].text, "Subject: long\r\n continued\r\n");
        assert!(is_content(f[2].name) && !is_content(f[0].name));
        assert!(is_protected("SUBJECT") && !is_protected("Message-ID"));
    }
}
