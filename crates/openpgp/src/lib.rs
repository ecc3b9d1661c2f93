//! OpenPGP, the one adapter over rPGP (the `pgp` crate): no other module
//! names a `pgp::` type.
//!
//! It owns reading keys and deciding which of their parts are valid
//! (`keys`: the team's [`SecretKey`], handlers' and reporters'
//! [`PublicKey`]s), opening reports with a bound on output and nesting and
//! checking the signature inside (`decrypt`), and encrypting and signing
//! what the team sends (`encrypt`).
//!
//! Errors are one line and never carry secret material or decrypted
//! content: rPGP's own messages can quote packet bytes, so only fixed
//! phrases (and the algorithm names of "unsupported" errors) pass through
//! [`describe`].

mod decrypt;
mod encrypt;
mod keys;
#[cfg(test)]
mod tests;

pub use decrypt::{decrypt, verify_detached, DecryptError, Decrypted, SignatureCheck, MAX_NESTING};
pub use encrypt::{clearsign, encrypt, sign_detached, EncryptError};
pub use keys::{KeyError, PublicKey, SecretKey};

use pgp::errors::Error as PgpError;

impl SecretKey {
    /// The team key from its armored (or binary) transferable secret key;
    /// `passphrase` None = unprotected. Verifies self-signatures, removes
    /// the passphrase (a wrong one is [`KeyError::WrongPassphrase`]),
    /// requires a part that can encrypt and one that can sign now, and
    /// proves both with a signed message to itself.
    ///
    /// "Now" is the system clock: this is load-time validation, like a TLS
    /// certificate's, not a decision the injected clock should drive.
    pub fn from_bytes(bytes: &[u8], passphrase: Option<&str>) -> Result<SecretKey, KeyError> {
        let (key, weak_checksum) = SecretKey::unlock(bytes, passphrase)?;
        // The legacy 2-byte checksum lets 1 in 65,536 wrong passphrases
        // through the unlock: the self-test is what catches them.
        self_test(&key).map_err(|e| {
            if weak_checksum {
                KeyError::WrongPassphrase
            } else {
                e
            }
        })?;
        Ok(key)
    }
}

/// Encrypts and signs a short message to the key itself and opens it:
/// proves the unlocked secret material belongs to the public keys. (Here,
/// above `keys`, `encrypt` and `decrypt`, so none of them imports another
/// in a circle.)
fn self_test(key: &SecretKey) -> Result<(), KeyError> {
    let probe = b"secintake key self-test";
    let public = key.public();
    let fail = |reason: String| KeyError::Unusable(reason);
    let armored = encrypt(probe, &[&public], Some(key)).map_err(|e| fail(e.to_string()))?;
    let opened = decrypt(armored.as_bytes(), key, &[&public], probe.len())
        .map_err(|e| fail(e.to_string()))?;
    let signed = opened.signature
        == SignatureCheck::Valid {
            fingerprint: key.fingerprint(),
        };
    if opened.data != probe || !signed {
        return Err(fail("its signature or decryption does not verify".into()));
    }
    Ok(())
}

/// Longest piece of rPGP text an error carries: enough for an algorithm
/// name and a reason, short enough to stay one log line.
const MAX_DETAIL: usize = 120;

/// A one-line description of an rPGP error that is safe to log: a fixed
/// phrase per kind, plus rPGP's text only where it names an algorithm or
/// feature. rPGP's free-form messages can quote packet contents (a
/// mismatching tag's bytes, a packet's `Debug`), which for a decrypted
/// message is plaintext and for a secret key is key material.
fn describe(err: &PgpError) -> String {
    match err {
        PgpError::Unsupported { message, .. } | PgpError::Unimplemented { message, .. } => {
            format!("unsupported: {}", one_line(message))
        }
        PgpError::InvalidArmorWrappers => "invalid armor header or footer".into(),
        PgpError::InvalidChecksum => "armor checksum mismatch".into(),
        PgpError::Base64Decode { .. } => "invalid base64 in the armor".into(),
        PgpError::IO { source, .. } => describe_io(source),
        PgpError::PacketIncomplete { .. } | PgpError::RequestedSizeTooLarge => {
            "truncated packet".into()
        }
        PgpError::PacketParsing { .. }
        | PgpError::PacketError { .. }
        | PgpError::InvalidPacketContent { .. }
        | PgpError::PacketTooLarge { .. }
        | PgpError::InvalidInput { .. } => "invalid packet".into(),
        PgpError::NoMatchingPacket { .. } => "no OpenPGP data found".into(),
        PgpError::TooManyPackets => "more packets than expected".into(),
        PgpError::MdcError => "integrity check failed: the message was modified".into(),
        PgpError::MissingKey => "no matching key".into(),
        PgpError::ChecksumMissmatch { .. } => "checksum mismatch".into(),
        PgpError::RSAError { .. }
        | PgpError::EllipticCurve { .. }
        | PgpError::SignatureError { .. }
        | PgpError::UnpadError
        | PgpError::PadError
        | PgpError::AesKw { .. }
        | PgpError::AesKek { .. } => "cryptographic operation failed".into(),
        PgpError::Utf8Error { .. } => "invalid UTF-8".into(),
        PgpError::Message { message, .. } => describe_message(message),
        _ => "invalid OpenPGP data".into(),
    }
}

/// rPGP's free-form `Message` errors, passed on only where known to name
/// no data: others quote input bytes ("armor footer Error { input: [33,
/// 33, …] }").
fn describe_message(message: &str) -> String {
    if message.starts_with("failed reading: armor")
        || message.starts_with("not enough bytes in buffer: armor")
    {
        return "invalid or truncated armor".into();
    }
    if message == "empty input" {
        return "empty input".into();
    }
    if let Some(kind) = message.strip_prefix("unexpected block type: ") {
        let plain = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ';
        if kind.len() <= 40 && kind.chars().all(plain) {
            return format!("unexpected armor type {kind}");
        }
    }
    "invalid OpenPGP data".into()
}

/// [`describe`] for an I/O error, which is how rPGP's streaming readers
/// report their own errors (an rPGP error inside, or a plain kind).
fn describe_io(err: &std::io::Error) -> String {
    if let Some(inner) = err.get_ref().and_then(|e| e.downcast_ref::<PgpError>()) {
        return describe(inner);
    }
    match err.kind() {
        std::io::ErrorKind::UnexpectedEof => "truncated data".into(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => "invalid data".into(),
        kind => format!("read error ({kind:?})"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first line of `text`, at most [`MAX_DETAIL`] characters.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(MAX_DETAIL).collect()
}
