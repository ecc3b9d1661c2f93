//! What the team sends: messages encrypted to handlers or reporters (and
//! to itself), detached signatures for RFC 3156 multipart/signed, and
//! cleartext-signed text for security.txt.
//!
//! Output is what GnuPG 2.2 reads: SEIPDv1 with AES-256 (no AEAD, which
//! 2.2 lacks), binary literal data, no compression, ASCII armor.
//!
//! Which subkeys are valid is judged at the system clock's now: rPGP
//! stamps every signature with `Timestamp::now()` anyway, and a subkey
//! that expired by that clock would make that signature or message
//! unusable to its reader, so both must use the same clock.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use pgp::composed::{ArmorOptions, CleartextSignedMessage, DetachedSignature, MessageBuilder};
use pgp::crypto::hash::HashAlgorithm as Hash;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{Password, SigningKey};

use super::keys::PartKey;
use super::{describe, PublicKey, SecretKey};

#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("no recipients to encrypt to")]
    NoRecipients,
    #[error("key {0} has no valid subkey that can encrypt")]
    NoEncryptionKey(String),
    #[error("key {0} has no valid (sub)key that can sign")]
    NoSigningKey(String),
    #[error("openpgp: {0}")]
    Failed(String),
}

#[allow(clippy::redundant_allocation)] // see `signing_key`
type Signer<'k> = Box<&'k dyn SigningKey>;

fn failed(err: pgp::errors::Error) -> EncryptError {
    EncryptError::Failed(describe(&err))
}

/// Encrypts `data` to every valid encryption (sub)key of every recipient
/// (an error if one has none) and, when `signer` is given, signs it and
/// encrypts it to the signer's own key too, so the team can read what it
/// sent. A key given twice is encrypted to once.
pub fn encrypt(
    data: &[u8],
    recipients: &[&PublicKey],
    signer: Option<&SecretKey>,
) -> Result<String, EncryptError> {
    let now = Utc::now();
    let mut rng = rand::thread_rng();
    let own = signer.map(SecretKey::public);
    let keys: Vec<&PublicKey> = recipients.iter().copied().chain(own.as_ref()).collect();
    if keys.is_empty() {
        return Err(EncryptError::NoRecipients);
    }
    let mut builder = MessageBuilder::from_bytes("", data.to_vec())
        .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key.fingerprint()) {
            continue;
        }
        let parts = key.parts();
        let usable: Vec<_> = parts.iter().filter(|p| p.can_encrypt_at(now)).collect();
        if usable.is_empty() {
            return Err(EncryptError::NoEncryptionKey(key.fingerprint()));
        }
        for part in usable {
            match part.key {
                PartKey::Primary(k) => builder.encrypt_to_key(&mut rng, k),
                PartKey::Sub(k) => builder.encrypt_to_key(&mut rng, k),
            }
            .map_err(failed)?;
        }
    }
    let signing = signer.map(|s| signing_key(s, now)).transpose()?;
    if let Some((key, hash)) = &signing {
        builder.sign(**key, Password::empty(), *hash);
    }
    builder
        .to_armored_string(&mut rng, ArmorOptions::default())
        .map_err(failed)
}

/// A detached, ASCII-armored binary signature over `data` (for RFC 3156
/// multipart/signed, whose caller passes the canonical CRLF part).
pub fn sign_detached(data: &[u8], signer: &SecretKey) -> Result<String, EncryptError> {
    let (key, hash) = signing_key(signer, Utc::now())?;
    let signature = DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        &key,
        &Password::empty(),
        hash,
        data,
    )
    .map_err(failed)?;
    signature
        .to_armored_string(ArmorOptions::default())
        .map_err(failed)
}

/// A cleartext-signed text (RFC 4880 §7, "-----BEGIN PGP SIGNED
/// MESSAGE-----"), for security.txt. Trailing spaces and tabs are dropped
/// from each line first: the standard leaves them out of the signed text,
/// so GnuPG ignores them when verifying while rPGP would hash them.
pub fn clearsign(text: &str, signer: &SecretKey) -> Result<String, EncryptError> {
    let (key, _) = signing_key(signer, Utc::now())?;
    let trimmed = trim_line_ends(text);
    let signed =
        CleartextSignedMessage::sign(rand::thread_rng(), &trimmed, &key, &Password::empty())
            .map_err(failed)?;
    signed
        .to_armored_string(ArmorOptions::default())
        .map_err(failed)
}

/// The signer's signing (sub)key and its hash. Boxed because rPGP's
/// `impl SigningKey` arguments take a key chosen at run time only as
/// `Box<&dyn SigningKey>`.
fn signing_key(signer: &SecretKey, now: DateTime<Utc>) -> Result<(Signer<'_>, Hash), EncryptError> {
    let (key, hash) = signer
        .signer(now)
        .ok_or_else(|| EncryptError::NoSigningKey(signer.fingerprint()))?;
    Ok((Box::new(key), hash))
}

fn trim_line_ends(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix("\r\n") {
            Some(body) => (body, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            },
        };
        out.push_str(body.trim_end_matches([' ', '\t']));
        out.push_str(end);
    }
    out
}
