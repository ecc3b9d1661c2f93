//! Keys: reading them, keeping only what their own signatures vouch for,
//! and answering which part may encrypt or sign at a given time.
//!
//! rPGP's `verify_bindings` fails a whole key when any one signature on it
//! does not verify with the primary key, and a third-party certification
//! (what keyservers and `gpg --sign-key` add) never does. So a key is read
//! here by dropping every signature that is not a valid self-signature, and
//! then every user id and subkey left without one.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pgp::composed::{
    ArmorOptions, Deserializable, SignedKeyDetails, SignedPublicKey, SignedPublicSubKey,
    SignedSecretKey,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{KeyFlags, PublicKeyEncryptedSessionKey, Signature, SignatureType};
use pgp::types::{KeyDetails, Password, SignedUser, SigningKey, Tag, VerifyingKey};

use super::{contains, describe};

/// At most this many self-signatures are checked per user id or subkey. A
/// real key has one to a few (one per expiry change); a crafted key with
/// thousands would cost a public-key operation each.
const MAX_SELF_SIGNATURES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an OpenPGP key: {0}")]
    NotAKey(String),
    #[error("no user id with a valid self-signature")]
    NoValidUserId,
    #[error("the key is protected by a passphrase and none was given")]
    PassphraseNeeded,
    #[error("the passphrase does not unlock the key")]
    WrongPassphrase,
    #[error("the secret key cannot be used: {0}")]
    Unusable(String),
    #[error("the key is revoked")]
    Revoked,
    #[error("expired on {}", .0.format("%Y-%m-%d"))]
    Expired(DateTime<Utc>),
    #[error("no subkey can encrypt")]
    NoEncryptionKey,
    #[error("no key or subkey can sign")]
    NoSigningKey,
    #[error("cannot armor the key: {0}")]
    Armor(String),
}

/// Someone's public key (a handler's, a reporter's, the team's own), with
/// only its valid self-signatures kept. Debug prints the fingerprint.
#[derive(Clone)]
pub struct PublicKey {
    key: Arc<SignedPublicKey>,
}

/// The team's secret key, unlocked (its passphrase removed in memory, so
/// no operation needs it again). Debug prints only the fingerprint.
#[derive(Clone)]
pub struct SecretKey {
    secret: Arc<SignedSecretKey>,
    public: PublicKey,
}

/// One key of a certificate (the primary or a subkey) with what its
/// newest valid self-signature says about it.
pub(super) struct Part<'k> {
    pub(super) key: PartKey<'k>,
    flags: KeyFlags,
    created: DateTime<Utc>,
    /// The earlier of its own and (for a subkey) the primary's expiry.
    expires: Option<DateTime<Utc>>,
    revoked: bool,
}

#[derive(Clone, Copy)]
pub(super) enum PartKey<'k> {
    Primary(&'k pgp::packet::PublicKey),
    Sub(&'k pgp::packet::PublicSubkey),
}

impl PartKey<'_> {
    pub(super) fn verifying(&self) -> &dyn VerifyingKey {
        match self {
            PartKey::Primary(k) => *k,
            PartKey::Sub(k) => *k,
        }
    }
}

impl Part<'_> {
    /// Not revoked, and within its lifetime at `at`.
    fn valid_at(&self, at: DateTime<Utc>) -> bool {
        !self.revoked && self.created <= at && self.expires.is_none_or(|e| at < e)
    }

    pub(super) fn can_encrypt_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_at(at)
            && (self.flags.encrypt_comms() || self.flags.encrypt_storage())
            && self.key.verifying().algorithm().can_encrypt()
    }

    fn can_sign_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_at(at) && self.flags.sign() && self.key.verifying().algorithm().can_sign()
    }

    /// Whether a data signature made at `at` by this part counts. The
    /// primary signs unless its flags are absent (gpg always sets them);
    /// a subkey only with the sign flag, as gpg judges it.
    pub(super) fn may_have_signed_at(&self, at: DateTime<Utc>) -> bool {
        let primary = matches!(self.key, PartKey::Primary(_));
        self.valid_at(at) && (self.flags.sign() || (primary && self.flags == KeyFlags::default()))
    }

    /// Whether `sig` names this part as its issuer (key id or
    /// fingerprint); one that names no issuer matches any part.
    pub(super) fn issued(&self, sig: &Signature) -> bool {
        issued_by(sig, self.key.verifying())
    }
}

impl PublicKey {
    /// Armored or binary; the first key in the input. Keeps only valid
    /// self-signatures and the user ids and subkeys they bind.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        // The one mistake worth naming; rPGP's own text is not passed on,
        // since for a secret key given here it could quote key material.
        if contains(bytes, b"-----BEGIN PGP PRIVATE KEY BLOCK-----") {
            return Err(KeyError::NotAKey("a secret key, not a public one".into()));
        }
        let (key, _) = SignedPublicKey::from_reader_single(bytes)
            .map_err(|e| KeyError::NotAKey(describe(&e)))?;
        Ok(PublicKey {
            key: Arc::new(verified(key)?),
        })
    }

    /// Uppercase hex, no spaces.
    pub fn fingerprint(&self) -> String {
        format!("{:X}", self.key.primary_key.fingerprint())
    }

    /// The user ids whose newest self-signature is not a revocation.
    pub fn user_ids(&self) -> Vec<String> {
        self.key
            .details
            .users
            .iter()
            .filter(|u| newest(&u.signatures).is_some_and(|s| !is_revocation(s)))
            .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
            .collect()
    }

    /// The emails of its user ids, lowercased, each once.
    pub fn emails(&self) -> Vec<String> {
        let mut emails: Vec<String> = Vec::new();
        for uid in self.user_ids() {
            if let Some(email) = email_of(&uid) {
                if !emails.contains(&email) {
                    emails.push(email);
                }
            }
        }
        emails
    }

    /// The primary key's expiry, from its newest self-signature.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.primary().expires
    }

    /// Whether some valid (sub)key can encrypt at `now`.
    pub fn can_encrypt(&self, now: DateTime<Utc>) -> bool {
        self.parts().iter().any(|p| p.can_encrypt_at(now))
    }

    /// ASCII-armored transferable public key, as verified: with its valid
    /// self-signatures only (no third-party certifications, no photos).
    pub fn armored(&self) -> Result<String, KeyError> {
        self.key
            .to_armored_string(ArmorOptions::default())
            .map_err(|e| KeyError::Armor(describe(&e)))
    }

    /// The primary and every subkey with a valid binding.
    pub(super) fn parts(&self) -> Vec<Part<'_>> {
        let primary = self.primary();
        let mut parts = Vec::with_capacity(1 + self.key.public_subkeys.len());
        for sub in &self.key.public_subkeys {
            let binding = newest(
                sub.signatures
                    .iter()
                    .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding)),
            );
            let created = to_utc(sub.key.created_at().as_secs());
            let own_expiry = binding.and_then(|b| expiry(created, b));
            parts.push(Part {
                key: PartKey::Sub(&sub.key),
                flags: binding.map(Signature::key_flags).unwrap_or_default(),
                created,
                expires: [own_expiry, primary.expires].into_iter().flatten().min(),
                revoked: primary.revoked || sub.signatures.iter().any(is_revocation),
            });
        }
        parts.insert(0, primary);
        parts
    }

    /// The primary key as its newest self-signature describes it: the
    /// newest over direct-key signatures and the certifications of user
    /// ids that are not revoked.
    fn primary(&self) -> Part<'_> {
        let details = &self.key.details;
        let user_sigs = details
            .users
            .iter()
            .filter_map(|u| newest(&u.signatures))
            .filter(|s| !is_revocation(s));
        let newest_sig = newest(user_sigs.chain(&details.direct_signatures));
        let created = to_utc(self.key.primary_key.created_at().as_secs());
        Part {
            key: PartKey::Primary(&self.key.primary_key),
            flags: newest_sig.map(Signature::key_flags).unwrap_or_default(),
            created,
            expires: newest_sig.and_then(|s| expiry(created, s)),
            revoked: !details.revocation_signatures.is_empty(),
        }
    }

    /// Whether `pkesk` is addressed to one of this key's parts.
    pub(super) fn addressed_by(&self, pkesk: &PublicKeyEncryptedSessionKey) -> bool {
        self.parts().iter().any(|p| match p.key {
            PartKey::Primary(k) => pkesk.match_identity(k),
            PartKey::Sub(k) => pkesk.match_identity(k),
        })
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

impl SecretKey {
    /// Parses and unlocks a transferable secret key (see
    /// [`SecretKey::from_bytes`], which adds the self-test): verifies
    /// self-signatures, removes the passphrase (a wrong one is
    /// [`KeyError::WrongPassphrase`]) and requires a part that can encrypt
    /// and one that can sign now. Also returns whether a part is protected
    /// by the legacy 2-byte checksum, which lets some wrong passphrases
    /// through.
    pub(super) fn unlock(
        bytes: &[u8],
        passphrase: Option<&str>,
    ) -> Result<(SecretKey, bool), KeyError> {
        // rPGP's parse errors can quote the bytes they choke on, which
        // here are key material: only the fixed phrase of `describe`.
        let (mut secret, _) = SignedSecretKey::from_reader_single(bytes)
            .map_err(|e| KeyError::NotAKey(describe(&e)))?;
        let public = PublicKey {
            key: Arc::new(verified(secret.to_public_key())?),
        };
        let protected = secret.primary_key.secret_params().is_encrypted()
            || secret
                .secret_subkeys
                .iter()
                .any(|s| s.key.secret_params().is_encrypted());
        if protected && passphrase.is_none() {
            return Err(KeyError::PassphraseNeeded);
        }
        // gpg protects with a SHA-1 checksum; the legacy 2-byte one lets 1
        // in 65,536 wrong passphrases through `remove_password`.
        let weak_checksum = (secret.primary_key.secret_params().is_encrypted()
            && !secret.primary_key.has_sha1_checksum())
            || secret
                .secret_subkeys
                .iter()
                .any(|s| s.key.secret_params().is_encrypted() && !s.key.has_sha1_checksum());
        let password = Password::from(passphrase.unwrap_or_default());
        secret
            .primary_key
            .remove_password(&password)
            .map_err(unlock_error)?;
        for sub in &mut secret.secret_subkeys {
            sub.key.remove_password(&password).map_err(unlock_error)?;
        }
        // Only the subkeys whose binding survived verification may decrypt.
        let bound: Vec<_> = public.parts().iter().map(|p| fingerprint_of(p)).collect();
        secret
            .secret_subkeys
            .retain(|s| bound.contains(&s.key.fingerprint()));
        let key = SecretKey {
            secret: Arc::new(secret),
            public,
        };
        key.check_usable(Utc::now())?;
        Ok((key, weak_checksum))
    }

    pub fn fingerprint(&self) -> String {
        self.public.fingerprint()
    }

    pub fn user_ids(&self) -> Vec<String> {
        self.public.user_ids()
    }

    /// The primary key's expiry, if any.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.public.expires_at()
    }

    pub fn public(&self) -> PublicKey {
        self.public.clone()
    }

    /// The rPGP key, for decryption (rPGP picks the subkey by PKESK id).
    pub(super) fn inner(&self) -> &SignedSecretKey {
        &self.secret
    }

    /// The secret half of the newest part that can sign at `now`, and the
    /// hash its algorithm wants (SHA-256 for RSA and Ed25519).
    pub(super) fn signer(&self, now: DateTime<Utc>) -> Option<(&dyn SigningKey, HashAlgorithm)> {
        let parts = self.public.parts();
        let part = parts
            .iter()
            .filter(|p| p.can_sign_at(now))
            .max_by_key(|p| p.created)?;
        let key: &dyn SigningKey = match part.key {
            PartKey::Primary(_) => &self.secret.primary_key,
            PartKey::Sub(sub) => {
                let fp = sub.fingerprint();
                &self
                    .secret
                    .secret_subkeys
                    .iter()
                    .find(|s| s.key.fingerprint() == fp)?
                    .key
            }
        };
        Some((key, key.hash_alg()))
    }

    /// The key is neither revoked nor expired and can encrypt and sign.
    fn check_usable(&self, now: DateTime<Utc>) -> Result<(), KeyError> {
        let primary = self.public.primary();
        if primary.revoked {
            return Err(KeyError::Revoked);
        }
        if let Some(expired) = primary.expires.filter(|e| *e <= now) {
            return Err(KeyError::Expired(expired));
        }
        let parts = self.public.parts();
        let decryptable = parts.iter().filter(|p| p.can_encrypt_at(now)).any(|p| {
            let fp = fingerprint_of(p);
            self.secret.primary_key.fingerprint() == fp
                || self
                    .secret
                    .secret_subkeys
                    .iter()
                    .any(|s| s.key.fingerprint() == fp)
        });
        if !decryptable {
            return Err(KeyError::NoEncryptionKey);
        }
        if self.signer(now).is_none() {
            return Err(KeyError::NoSigningKey);
        }
        Ok(())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.fingerprint())
    }
}

/// The error for a failed `remove_password`. rPGP reports a wrong
/// passphrase as the check that caught it: `InvalidInput` for gpg's SHA-1
/// checksum, `ChecksumMissmatch` for the legacy 2-byte one, `Aead` for an
/// AEAD-protected key. Anything else (an S2K rPGP lacks, gpg's "dummy"
/// primary of a key kept offline) is named as what it is.
fn unlock_error(err: pgp::errors::Error) -> KeyError {
    use pgp::errors::Error;
    match err {
        Error::InvalidInput { .. } | Error::ChecksumMissmatch { .. } | Error::Aead { .. } => {
            KeyError::WrongPassphrase
        }
        other => KeyError::Unusable(describe(&other)),
    }
}

/// `key` with only its valid self-signatures, and the user ids and
/// subkeys they bind. Fails without a validly bound user id.
fn verified(key: SignedPublicKey) -> Result<SignedPublicKey, KeyError> {
    let SignedPublicKey {
        primary_key: primary,
        details,
        public_subkeys,
    } = key;
    let own = |sig: &&Signature| issued_by(sig, &primary);
    let users: Vec<SignedUser> = details
        .users
        .into_iter()
        .filter_map(|SignedUser { id, signatures }| {
            let valid: Vec<Signature> = signatures
                .iter()
                .filter(own)
                .take(MAX_SELF_SIGNATURES)
                .filter(|s| s.verify_certification(&primary, Tag::UserId, &id).is_ok())
                .cloned()
                .collect();
            (!valid.is_empty()).then(|| SignedUser::new(id, valid))
        })
        .collect();
    if users.is_empty() {
        return Err(KeyError::NoValidUserId);
    }
    let direct_key = |sigs: Vec<Signature>| -> Vec<Signature> {
        sigs.iter()
            .filter(own)
            .take(MAX_SELF_SIGNATURES)
            .filter(|s| s.verify_key(&primary).is_ok())
            .cloned()
            .collect()
    };
    let details = SignedKeyDetails::new(
        direct_key(details.revocation_signatures),
        direct_key(details.direct_signatures),
        users,
        Vec::new(),
    );
    let subkeys = public_subkeys
        .into_iter()
        .filter_map(|sub| verified_subkey(&primary, sub))
        .collect();
    Ok(SignedPublicKey::new(primary, details, subkeys))
}

/// `sub` with only its valid binding and revocation signatures; None if no
/// binding is left. A binding that lets the subkey sign must carry the
/// subkey's own back-signature, or anyone could claim someone's signing
/// subkey as theirs.
fn verified_subkey(
    primary: &pgp::packet::PublicKey,
    sub: SignedPublicSubKey,
) -> Option<SignedPublicSubKey> {
    let SignedPublicSubKey { key, signatures } = sub;
    let valid: Vec<Signature> = signatures
        .into_iter()
        .take(MAX_SELF_SIGNATURES)
        .filter(|s| s.verify_subkey_binding(primary, &key).is_ok())
        .filter(|s| {
            s.typ() != Some(SignatureType::SubkeyBinding)
                || !s.key_flags().sign()
                || s.embedded_signature()
                    .is_some_and(|back| back.verify_primary_key_binding(&key, primary).is_ok())
        })
        .collect();
    let bound = valid
        .iter()
        .any(|s| s.typ() == Some(SignatureType::SubkeyBinding));
    bound.then(|| SignedPublicSubKey::new(key, valid))
}

/// Whether `sig` names `key` as issuer by key id or fingerprint; a
/// signature naming no issuer at all may be anyone's.
fn issued_by(sig: &Signature, key: &dyn VerifyingKey) -> bool {
    let ids = sig.issuer_key_id();
    let fingerprints = sig.issuer_fingerprint();
    (ids.is_empty() && fingerprints.is_empty())
        || ids.iter().any(|id| **id == key.legacy_key_id())
        || fingerprints.iter().any(|fp| **fp == key.fingerprint())
}

fn fingerprint_of(part: &Part<'_>) -> pgp::types::Fingerprint {
    part.key.verifying().fingerprint()
}

fn is_revocation(sig: &Signature) -> bool {
    matches!(
        sig.typ(),
        Some(SignatureType::CertRevocation | SignatureType::SubkeyRevocation)
    )
}

/// The signature with the latest creation time.
fn newest<'s>(sigs: impl IntoIterator<Item = &'s Signature>) -> Option<&'s Signature> {
    sigs.into_iter()
        .max_by_key(|s| s.created().map(|t| t.as_secs()))
}

/// When a key created at `created` expires per `sig` (0 = never).
fn expiry(created: DateTime<Utc>, sig: &Signature) -> Option<DateTime<Utc>> {
    let secs = sig.key_expiration_time()?.as_secs();
    (secs > 0).then_some(())?;
    created.checked_add_signed(chrono::Duration::seconds(i64::from(secs)))
}

pub(super) fn to_utc(secs: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(secs), 0).unwrap_or_default()
}

/// The address in "Name <addr>", or a bare "addr", lowercased.
fn email_of(uid: &str) -> Option<String> {
    let addr = match (uid.rfind('<'), uid.rfind('>')) {
        (Some(open), Some(close)) if open < close => &uid[open + 1..close],
        _ => uid,
    };
    let addr = addr.trim();
    (addr.contains('@') && !addr.contains(char::is_whitespace)).then(|| addr.to_lowercase())
}
