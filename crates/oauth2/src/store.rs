//! The refresh token on disk: read from the state copy or the operator's
//! seed file, whichever is newer; written atomically, 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::TokenError;

/// The refresh token to use: `token_file` (kept current by rotations)
/// unless `seed` is newer (the operator put a fresh one there) or
/// `token_file` does not exist yet.
pub(crate) fn read_refresh_token(
    token_file: &Path,
    seed: Option<&Path>,
) -> Result<String, TokenError> {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let from = match (modified(token_file), seed) {
        (Some(own), Some(seed)) if modified(seed).is_some_and(|s| s > own) => seed,
        (Some(_), _) => token_file,
        (None, Some(seed)) => seed,
        (None, None) => {
            return Err(TokenError::Rejected(format!(
                "no refresh token yet ({} does not exist): run `secintake oauth2 authorize`, \
                 or set oauth2.refresh_token_file",
                token_file.display()
            )))
        }
    };
    let text = fs::read_to_string(from).map_err(|e| {
        TokenError::Rejected(format!(
            "cannot read the refresh token from {}: {e}",
            from.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(TokenError::Rejected(format!(
            "{} does not hold one refresh token (empty, or more than one line)",
            from.display()
        )));
    }
    Ok(token.to_string())
}

/// An exclusive lock on `<token_file>.lock` (0600), held until dropped;
/// waits for another process's refresh to finish.
pub(crate) fn lock(token_file: &Path) -> Result<fs::File, TokenError> {
    let mut name = token_file.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| TokenError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    f.lock()
        .map_err(|e| TokenError::Unavailable(format!("cannot lock {}: {e}", path.display())))?;
    Ok(f)
}

/// Writes `token` to `path` so that a crash leaves the old token or the
/// new one, never a torn file: a 0600 temporary beside it, synced, renamed
/// over it, the directory synced.
pub fn save_refresh_token(path: &Path, token: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}
