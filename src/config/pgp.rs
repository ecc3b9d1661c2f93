//! `[pgp]` and the handlers' `pgp_key`: the team's OpenPGP key and the
//! public keys secintake encrypts to. Every key is read and checked when
//! the configuration loads, so a key that cannot work is an error naming
//! the key's file, not a surprise when the first encrypted report arrives.

use std::path::PathBuf;

use super::keys;
use super::loader::{Field, Section};
use super::{ConfigError, Mailbox};
use crate::openpgp::{PublicKey, SecretKey};

/// `[pgp]`: present when `secret_key_file` is set.
#[derive(Debug, Clone)]
pub struct Pgp {
    /// The team key, unlocked: decrypts reports, signs what secintake
    /// encrypts. Its public half is the one the policy publishes.
    pub team: SecretKey,
    /// Where it was read from (for the permission warning).
    pub secret_key_file: PathBuf,
    /// Reporters' public keys the team already has (`*.asc`, `*.gpg`,
    /// `*.pgp` files), read when a case needs one.
    pub keyring_dir: Option<PathBuf>,
    /// Sign the acknowledgement with the team key (PGP/MIME signed).
    pub sign_acknowledgements: bool,
    /// Send the text of an encrypted report to handlers without a
    /// `pgp_key` in cleartext. Default false: they get the facts only.
    pub cleartext_to_handlers: bool,
}

impl super::Config {
    /// Whether what an encrypted report says may go to handlers in
    /// cleartext (`[pgp] cleartext_to_handlers`; no by default).
    pub fn cleartext_to_handlers(&self) -> bool {
        self.pgp.as_ref().is_some_and(|p| p.cleartext_to_handlers)
    }
}

pub(super) fn pgp_from(mut s: Section<'_>, mailbox: &Mailbox) -> Result<Option<Pgp>, ConfigError> {
    let passphrase = match s.get(keys::pgp::passphrase_file).map(|f| f.secret_file()) {
        // Offline commands beside a unit that holds the passphrase as a
        // credential: they go on without the team key.
        Some(Err(_)) if s.loader.offline => return Ok(None),
        other => other.transpose()?,
    };
    let keyring_dir = s
        .get(keys::pgp::keyring_dir)
        .map(|f| {
            let dir = f.path()?;
            if !dir.is_dir() {
                return Err(f.fail(format_args!("{} is not a directory", dir.display())));
            }
            Ok(dir)
        })
        .transpose()?;
    let flag = |s: &mut Section<'_>, key| s.get(key).map(|f| f.boolean()).transpose();
    let sign_acknowledgements = flag(&mut s, keys::pgp::sign_acknowledgements)?.unwrap_or(false);
    let cleartext_to_handlers = flag(&mut s, keys::pgp::cleartext_to_handlers)?.unwrap_or(false);
    let Some(file) = s.get(keys::pgp::secret_key_file) else {
        if passphrase.is_some() || sign_acknowledgements {
            return Err(s.loader.missing(
                &s.key(keys::pgp::secret_key_file),
                " (the other [pgp] keys need the team key)",
            ));
        }
        return Ok(None);
    };
    let (path, bytes) = match file.file_bytes() {
        Err(_) if s.loader.offline => return Ok(None),
        other => other?,
    };
    let team = SecretKey::from_bytes(&bytes, passphrase.as_deref())
        .map_err(|e| file.fail(format_args!("{}: {e}", path.display())))?;
    let ids = team.public().emails();
    if !ids.contains(&mailbox.address) {
        return Err(file.fail(format_args!(
            "{}: the key (fingerprint {}) is for {}, not mailbox.address {}: reporters' \
             clients look the key up by that address",
            path.display(),
            team.fingerprint(),
            if ids.is_empty() {
                "no email address".to_string()
            } else {
                ids.join(", ")
            },
            mailbox.address
        )));
    }
    Ok(Some(Pgp {
        team,
        secret_key_file: path,
        keyring_dir,
        sign_acknowledgements,
        cleartext_to_handlers,
    }))
}

/// A handler's `pgp_key`: their public key, which must carry their address.
pub(super) fn handler_key(f: &Field<'_>, email: &str) -> Result<PublicKey, ConfigError> {
    let (path, bytes) = f.file_bytes()?;
    let key = PublicKey::from_bytes(&bytes)
        .map_err(|e| f.fail(format_args!("{}: {e}", path.display())))?;
    if !key.emails().iter().any(|e| e == email) {
        return Err(f.fail(format_args!(
            "{}: the key (fingerprint {}) has no user id for {email}",
            path.display(),
            key.fingerprint()
        )));
    }
    Ok(key)
}
