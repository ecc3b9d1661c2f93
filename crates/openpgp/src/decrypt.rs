//! Opening a message: decrypting with the team key, unwrapping at most
//! [`MAX_NESTING`] compressed layers, reading at most the caller's limit
//! of plaintext, and judging the signatures inside; also detached
//! signatures.
//!
//! rPGP parses a message one layer at a time, as it is read: a
//! compressed layer is only opened by `decompress`, so a message of a
//! thousand nested layers costs nothing until asked, and is refused here
//! at the fifth. Memory is about the message's size plus `max_output`:
//! rPGP decrypts SEIPDv1 whole before releasing any plaintext (so nothing
//! unauthenticated is parsed), and decompression streams.

use std::fmt;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

use chrono::{DateTime, Utc};
use pgp::composed::{DecryptionOptions, Deserializable, DetachedSignature, Esk, Message, TheRing};
use pgp::errors::Error as PgpError;
use pgp::packet::{Signature, SignatureType};
use pgp::types::Password;

use super::keys::{to_utc, PartKey};
use super::{describe, describe_io, find, PublicKey, SecretKey};

/// Compressed layers, and signatures, a message may wrap its text in
/// (each one-pass signature is a layer of its own in the grammar). gpg
/// makes one compressed layer and one signature per signer; 4 leaves room
/// for a forwarded or re-signed message while keeping reading recursion
/// shallow and the text hashed at most 4 times (rPGP runs one hasher per
/// signature over all of it).
pub const MAX_NESTING: usize = 4;

/// At most this many detached signatures are checked: one per signer is
/// usual, and each costs a public-key operation per matching key.
const MAX_SIGNATURES: usize = 16;

const ARMOR_BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    Unsigned,
    /// The fingerprint of the PRIMARY key of the verifier that matched.
    Valid {
        fingerprint: String,
    },
    /// Signed by a key we have, but the signature does not verify (or the
    /// key was revoked, expired or not allowed to sign when it was made).
    Invalid {
        issuer: Option<String>,
    },
    /// Signed, but by none of the verifiers (the issuer fingerprint or
    /// key id, uppercase hex, if the signature names one).
    UnknownKey {
        issuer: Option<String>,
    },
}

/// A decrypted message. Debug shows its length, never its content.
pub struct Decrypted {
    pub data: Vec<u8>,
    pub signature: SignatureCheck,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("data", &format_args!("{} bytes", self.data.len()))
            .field("signature", &self.signature)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("not a readable OpenPGP message: {0}")]
    Malformed(String),
    #[error("the message is not encrypted to our key")]
    NotForUs,
    #[error("unsupported OpenPGP message: {0}")]
    Unsupported(String),
    #[error("the plaintext exceeds {0} bytes")]
    TooLarge(usize),
    #[error("more than {MAX_NESTING} nested compressed or signed layers")]
    TooDeep,
    #[error("cannot decrypt: {0}")]
    Failed(String),
}

/// Decrypts an OpenPGP message (armored when it has a "-----BEGIN PGP
/// MESSAGE-----" line, else binary) with `key`, reading at most
/// `max_output` bytes of plaintext, then checks any signature inside
/// against `verifiers` (by issuer key id or fingerprint, primary or
/// subkey).
pub fn decrypt(
    message: &[u8],
    key: &SecretKey,
    verifiers: &[&PublicKey],
    max_output: usize,
) -> Result<Decrypted, DecryptError> {
    // rPGP has a few panics for states it believes unreachable; a crafted
    // message must not take a worker thread down with it.
    catch_unwind(AssertUnwindSafe(|| {
        open(message, key, verifiers, max_output)
    }))
    .unwrap_or_else(|_| Err(DecryptError::Failed("rPGP panicked on this message".into())))
}

fn open(
    message: &[u8],
    key: &SecretKey,
    verifiers: &[&PublicKey],
    max_output: usize,
) -> Result<Decrypted, DecryptError> {
    let msg = parse(message)?;
    let msg = decrypt_layer(msg, key)?;
    let mut msg = unwrap_layers(msg)?;
    let data = read_bounded(&mut msg, max_output)?;
    let signature = check_message_signatures(&msg, verifiers);
    Ok(Decrypted { data, signature })
}

fn parse(bytes: &[u8]) -> Result<Message<'_>, DecryptError> {
    let parsed = match find(bytes, ARMOR_BEGIN) {
        Some(at) => Message::from_armor(&bytes[at..]).map(|(msg, _)| msg),
        None => Message::from_bytes(bytes),
    };
    parsed.map_err(|e| classify(&e))
}

/// Removes the encryption layer, after checking that some session key
/// packet is addressed to one of our keys.
fn decrypt_layer<'a>(msg: Message<'a>, key: &SecretKey) -> Result<Message<'a>, DecryptError> {
    let Message::Encrypted { esk, .. } = &msg else {
        return Err(DecryptError::Failed("the message is not encrypted".into()));
    };
    let ours = key.public();
    let for_us = esk.iter().any(|esk| match esk {
        Esk::PublicKeyEncryptedSessionKey(pkesk) => ours.addressed_by(pkesk),
        Esk::SymKeyEncryptedSessionKey(_) => false,
    });
    if !for_us {
        return Err(DecryptError::NotForUs);
    }
    let password = Password::empty();
    let ring = TheRing {
        secret_keys: vec![key.inner()],
        key_passwords: vec![&password],
        // GnuPG 2.3+ writes its OCB format to keys that advertise it (keys
        // made by gpg 2.3+ do). It is authenticated, so reading it is safe;
        // the unauthenticated legacy format (SED) stays refused.
        decrypt_options: DecryptionOptions::new().enable_gnupg_aead(),
        ..TheRing::default()
    };
    match msg.decrypt_the_ring(ring, true) {
        Ok((msg, _)) => Ok(msg),
        Err(PgpError::MissingKey) => Err(DecryptError::Failed(
            "our key does not open the session key addressed to it".into(),
        )),
        Err(e) => Err(classify(&e)),
    }
}

/// Decompresses until the literal data is reached, at most
/// [`MAX_NESTING`] times, counting signed layers on the way.
fn unwrap_layers(mut msg: Message<'_>) -> Result<Message<'_>, DecryptError> {
    let mut decompressed = 0;
    loop {
        match innermost(&msg)? {
            Message::Literal { .. } => return Ok(msg),
            Message::Compressed { .. } if decompressed < MAX_NESTING => {
                msg = msg.decompress().map_err(|e| classify(&e))?;
                decompressed += 1;
            }
            Message::Encrypted { .. } => {
                return Err(DecryptError::Unsupported(
                    "an encrypted message inside the encrypted message".into(),
                ))
            }
            // Compressed beyond the limit (`innermost` returns no signed layer).
            Message::Compressed { .. } | Message::Signed { .. } => {
                return Err(DecryptError::TooDeep)
            }
        }
    }
}

/// The message inside the signed layers of `msg`, if they carry at most
/// [`MAX_NESTING`] signatures. Read before any text is: a signed layer
/// knows its signatures from the one-pass packets that open it.
fn innermost<'m, 'a>(msg: &'m Message<'a>) -> Result<&'m Message<'a>, DecryptError> {
    let mut current = msg;
    let mut signatures = 0;
    // rPGP makes a signed layer only around at least one signature, so
    // this loop ends after at most MAX_NESTING + 1 layers.
    while let Message::Signed { reader, .. } = current {
        signatures += reader.num_signatures();
        if signatures > MAX_NESTING {
            return Err(DecryptError::TooDeep);
        }
        current = reader.get_ref();
    }
    Ok(current)
}

/// Reads the plaintext, at most `max` bytes. Reading to the end is also
/// what makes rPGP read the signature packets after the text.
fn read_bounded(msg: &mut Message<'_>, max: usize) -> Result<Vec<u8>, DecryptError> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut data = Vec::new();
    msg.by_ref()
        .take(limit)
        .read_to_end(&mut data)
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<PgpError>()) {
                Some(inner) => classify(inner),
                None => DecryptError::Malformed(describe_io(&e)),
            },
        )?;
    if data.len() > max {
        return Err(DecryptError::TooLarge(max));
    }
    Ok(data)
}

/// The best verdict over every signature in every signed layer.
fn check_message_signatures(msg: &Message<'_>, verifiers: &[&PublicKey]) -> SignatureCheck {
    let mut verdict = SignatureCheck::Unsigned;
    let mut layer = msg;
    // At most MAX_NESTING signatures in all: `innermost` let it through.
    while let Message::Signed { reader, .. } = layer {
        for i in 0..reader.num_signatures() {
            let Some(sig) = reader.signature(i) else {
                continue;
            };
            let check = check_signature(sig, verifiers, |key| {
                layer.verify_nested_explicit(i, key.verifying()).is_ok()
            });
            verdict = better(verdict, check);
        }
        layer = reader.get_ref();
    }
    verdict
}

/// Checks an armored or binary detached signature over `data` against
/// `verifiers`. Unreadable signature data is `Invalid` (there was meant to
/// be a signature, and it does not verify).
pub fn verify_detached(data: &[u8], signature: &[u8], verifiers: &[&PublicKey]) -> SignatureCheck {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        DetachedSignature::from_reader_many(signature).map(|(sigs, _)| {
            sigs.take(MAX_SIGNATURES)
                .collect::<Result<Vec<DetachedSignature>, PgpError>>()
        })
    }));
    let sigs = match parsed {
        Ok(Ok(Ok(sigs))) if !sigs.is_empty() => sigs,
        _ => return SignatureCheck::Invalid { issuer: None },
    };
    sigs.iter()
        .map(|d| {
            check_signature(&d.signature, verifiers, |key| match key {
                PartKey::Primary(k) => d.signature.verify(k, data).is_ok(),
                PartKey::Sub(k) => d.signature.verify(k, data).is_ok(),
            })
        })
        .fold(SignatureCheck::Unsigned, better)
}

/// The verdict on one data signature: `verify` does the cryptography
/// against one candidate key part; the issuer names the candidates, and
/// the part must have been valid, and allowed to sign, when it was made.
fn check_signature(
    sig: &Signature,
    verifiers: &[&PublicKey],
    verify: impl Fn(PartKey<'_>) -> bool,
) -> SignatureCheck {
    let issuer = issuer_of(sig);
    let data_signature = matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text));
    let made_at: DateTime<Utc> = sig
        .created()
        .map_or(DateTime::<Utc>::MIN_UTC, |t| to_utc(t.as_secs()));
    let mut named = false;
    for verifier in verifiers {
        for part in verifier.parts().iter().filter(|p| p.issued(sig)) {
            // A signature naming no issuer "matches" every part; only a
            // named issuer makes a failure Invalid rather than unknown.
            named |= issuer.is_some();
            if data_signature && verify(part.key) && part.may_have_signed_at(made_at) {
                return SignatureCheck::Valid {
                    fingerprint: verifier.fingerprint(),
                };
            }
        }
    }
    if named {
        SignatureCheck::Invalid { issuer }
    } else {
        SignatureCheck::UnknownKey { issuer }
    }
}

/// The issuer a signature names: its fingerprint, else its key id.
fn issuer_of(sig: &Signature) -> Option<String> {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return Some(format!("{fp:X}"));
    }
    sig.issuer_key_id()
        .first()
        .map(|id| hex::encode_upper(id.as_ref()))
}

/// Of two verdicts the more telling: Valid, then Invalid, then UnknownKey.
fn better(a: SignatureCheck, b: SignatureCheck) -> SignatureCheck {
    let rank = |c: &SignatureCheck| match c {
        SignatureCheck::Valid { .. } => 3,
        SignatureCheck::Invalid { .. } => 2,
        SignatureCheck::UnknownKey { .. } => 1,
        SignatureCheck::Unsigned => 0,
    };
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

/// The error for an rPGP failure while reading a message.
fn classify(err: &PgpError) -> DecryptError {
    match err {
        PgpError::Unsupported { .. } | PgpError::Unimplemented { .. } => {
            DecryptError::Unsupported(describe(err))
        }
        PgpError::MdcError => DecryptError::Failed(describe(err)),
        _ => DecryptError::Malformed(describe(err)),
    }
}
