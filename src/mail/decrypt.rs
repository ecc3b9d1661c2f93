//! Reading a message as the team does: parsed, and when it is encrypted
//! to the team key, decrypted, so that the case, classification, threading,
//! commands and relays work on what the sender wrote.
//!
//! [`read`] is the one way the pipeline reads mail, at arrival and again
//! from the store. What decryption yields lives only in memory: the stored
//! raw bytes stay exactly as received, and neither the plaintext nor the
//! protected subject is ever logged.

use crate::config::Config;
use crate::mail::message::{self, Decryption, ParsedMessage, Payload};
use crate::openpgp::{self, PublicKey};

/// Reads `raw`: parsed when `parsed_ok` (else only hashed, see
/// [`message::reparse`]), then decrypted with the team key when it is
/// encrypted. Never panics; a message that cannot be decrypted keeps its
/// outer view with [`Decryption::Failed`] saying why.
pub fn read(raw: &[u8], parsed_ok: bool, cfg: &Config) -> ParsedMessage {
    let mut p = message::reparse(raw, parsed_ok);
    if !p.parsed_ok {
        return p;
    }
    let verifiers: Vec<&PublicKey> = cfg
        .handlers
        .iter()
        .filter_map(|h| h.pgp_key.as_ref())
        .collect();
    let max = usize::try_from(cfg.limits.max_message_size).unwrap_or(usize::MAX);
    if !p.encrypted {
        if p.content_type.as_deref() == Some("multipart/signed") {
            p.signed = message::signed_entity(raw, max)
                .map(|(data, sig)| openpgp::verify_detached(&data, &sig, &verifiers));
        }
        return p;
    }
    let Some(pgp) = &cfg.pgp else {
        p.decryption = Some(Decryption::NoKey);
        return p;
    };
    let Some(payload) = message::encrypted_payload(raw, max) else {
        p.decryption = Some(Decryption::Failed(
            "no OpenPGP data in it (S/MIME is not supported)".into(),
        ));
        return p;
    };
    // The OpenPGP parser meets attacker-made packets: a panic in it costs
    // this message its plaintext, never the daemon (an abort is caught by
    // intake's poison guard, which counts the attempt before reading).
    let opened =
        std::panic::catch_unwind(|| openpgp::decrypt(payload.data(), &pgp.team, &verifiers, max));
    match opened {
        Ok(Ok(d)) => merge(&mut p, payload, d),
        Ok(Err(e)) => p.decryption = Some(Decryption::Failed(e.to_string())),
        Err(_) => {
            p.decryption = Some(Decryption::Failed(
                "the OpenPGP data could not be processed".into(),
            ))
        }
    }
    p
}

/// The first key `p` offers that carries `address` and can encrypt now:
/// only such a key may be used to write to that address.
pub fn offered_key_for(
    p: &ParsedMessage,
    address: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<PublicKey> {
    p.offered_keys
        .iter()
        .filter_map(|bytes| PublicKey::from_bytes(bytes).ok())
        .find(|k| k.emails().iter().any(|e| e == address) && k.can_encrypt(now))
}

/// Puts what the sender wrote in place of the ciphertext: for PGP/MIME the
/// decrypted MIME entity's text and, when it carries one (protected
/// headers), its Subject; for inline PGP the block's plaintext between the
/// text around it.
fn merge(p: &mut ParsedMessage, payload: Payload, d: openpgp::Decrypted) {
    match payload {
        Payload::Mime(_) => {
            let entity = with_header_block(&d.data).into_owned();
            let inner = message::parse(&entity);
            p.text_body = inner.text_body;
            p.protected_subject = inner.subject;
            // Thunderbird attaches the sender's key inside the encryption.
            let room = message::MAX_OFFERED_KEYS.saturating_sub(p.offered_keys.len());
            p.offered_keys
                .splice(0..0, inner.offered_keys.into_iter().take(room));
            p.plaintext = Some(entity);
            p.too_complex |= inner.too_complex;
        }
        Payload::Inline { before, after, .. } => {
            let text = String::from_utf8_lossy(&d.data);
            let mut body = before;
            body.push_str(text.trim_end_matches(['\r', '\n']));
            body.push('\n');
            body.push_str(&after);
            p.text_body = Some(message::cap_text(body));
        }
    }
    p.decryption = Some(Decryption::Decrypted {
        signature: d.signature,
    });
}

/// The decrypted entity as a message the parser reads: it starts with its
/// own MIME header fields; one that starts with its body (some clients
/// encrypt bare text) gets an empty header block.
fn with_header_block(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let first_line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let looks_like_field = first_line
        .iter()
        .position(|b| *b == b':')
        .is_some_and(|i| i > 0 && first_line[..i].iter().all(|b| b.is_ascii_graphic()));
    if looks_like_field {
        std::borrow::Cow::Borrowed(data)
    } else {
        let mut v = b"Content-Type: text/plain; charset=utf-8\r\n\r\n".to_vec();
        v.extend_from_slice(data);
        std::borrow::Cow::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_text_gets_a_header_block_and_mime_keeps_its_own() {
        assert!(with_header_block(b"Content-Type: text/plain\r\n\r\nhi")
            .starts_with(b"Content-Type: text/plain\r\n"));
        assert!(with_header_block(b"hello: world, and more").starts_with(b"hello: world"));
        assert!(with_header_block(b"Hi there,\nthe bug")
            .starts_with(b"Content-Type: text/plain; charset=utf-8"));
    }

    #[test]
    fn cleartext_and_keyless_reads_say_so() {
        let cfg = Config::example();
        let p = read(b"From: a@b.c\r\nSubject: x\r\n\r\nplain\r\n", true, &cfg);
        assert_eq!(p.decryption, None);
        let armored = b"From: a@b.c\r\nSubject: x\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA\r\n-----END PGP MESSAGE-----\r\n";
        let p = read(armored, true, &cfg);
        assert_eq!(p.decryption, Some(Decryption::NoKey));
    }
}
