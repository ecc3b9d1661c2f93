//! The reporter's OpenPGP key: where it comes from and which one mail to
//! them is encrypted to (issue 10).
//!
//! A key is adopted only when it carries the reporter's own address and
//! can encrypt, so mail about a case can never be encrypted to a key of
//! someone else's choosing. Sources, in order: a key the reporter's mail
//! offers (attached, also inside the encryption, or in its Autocrypt
//! header), a key a handler attaches to their mail about the case, the
//! team's `[pgp] keyring_dir`.

use crate::context::Context;
use crate::mail::decrypt::offered_key_for;
use crate::mail::message::ParsedMessage;
use crate::openpgp::PublicKey;
use crate::store::{self, CaseRow, StoreError};
use rusqlite::Connection;

/// A keyring file larger than this is not a public key.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// Adopts the reporter's key from `p` when it offers one for the
/// reporter's address: the first one always, a different one only from a
/// handler (`by_handler`), who may be correcting it. Returns the new
/// key's fingerprint.
pub fn adopt(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    p: &ParsedMessage,
    who: &str,
    by_handler: bool,
) -> Result<Option<String>, StoreError> {
    let Some(reporter) = case.reporter.as_deref() else {
        return Ok(None);
    };
    let Some(key) = offered_key_for(p, reporter, ctx.now) else {
        return Ok(None);
    };
    let fp = key.fingerprint();
    if case.reporter_key.as_deref() == Some(fp.as_str())
        || (case.reporter_key.is_some() && !by_handler)
    {
        return Ok(None);
    }
    let Ok(armored) = key.armored() else {
        return Ok(None);
    };
    store::set_reporter_key(conn, &case.id, &fp, &armored)?;
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        who,
        "reporter key",
        Some(&format!("OpenPGP key {fp} for {reporter}")),
        p.message_id.as_deref(),
    )?;
    Ok(Some(fp))
}

/// The key mail to `case`'s reporter is encrypted to: the adopted one,
/// else the first key in `[pgp] keyring_dir` for the reporter's address.
pub fn reporter_key(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
) -> Result<Option<PublicKey>, StoreError> {
    let Some(reporter) = case.reporter.as_deref() else {
        return Ok(None);
    };
    let usable = |k: &PublicKey| k.emails().iter().any(|e| e == reporter) && k.can_encrypt(ctx.now);
    if let Some(armored) = store::reporter_key(conn, &case.id)? {
        if let Some(k) = PublicKey::from_bytes(armored.as_bytes())
            .ok()
            .filter(usable)
        {
            return Ok(Some(k));
        }
    }
    Ok(keyring(ctx).into_iter().find(usable))
}

/// The keys in `[pgp] keyring_dir` (`*.asc`, `*.gpg`, `*.pgp`); files
/// that cannot be read or are no key are skipped.
fn keyring(ctx: &Context<'_>) -> Vec<PublicKey> {
    let Some(dir) = ctx.cfg.pgp.as_ref().and_then(|p| p.keyring_dir.as_ref()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "asc" | "gpg" | "pgp"))
        })
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= MAX_KEY_FILE))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .filter_map(|b| PublicKey::from_bytes(&b).ok())
        .collect()
}
