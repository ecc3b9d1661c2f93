//! [`Config::load`]: reads the file, merges the environment over it, walks
//! the result into a [`Config`] and notes the secret files others can read.
//! Errors from the file as a whole (unreadable, not TOML) are made here.

use std::collections::HashMap;
use std::path::Path;

use config::{FileFormat, Source};

use super::loader::{io_reason, Loader};
use super::sections::config_from;
use super::validate::secret_file_warnings;
use super::{env, Config, ConfigError, Origin};

impl Config {
    /// Reads `path`, applies `SECINTAKE_*` variables from the process
    /// environment and validates everything.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, env::process_vars()?)
    }

    /// Like [`Config::load`], for commands that contact no server (`status`,
    /// `cases`, `mail`, `sla`, `backup`): a server password file, or the
    /// team key or its passphrase file, that cannot be read is left out
    /// instead of failing, so they run beside a systemd unit whose
    /// `LoadCredential=` files only the unit can read.
    pub fn load_offline(path: &Path) -> Result<Config, ConfigError> {
        Self::load_inner(path, env::process_vars()?, true)
    }

    /// Like [`Config::load`] with the environment given explicitly (tests).
    pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
        Self::load_inner(path, env, false)
    }

    fn load_inner(
        path: &Path,
        env: HashMap<String, String>,
        offline: bool,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            reason: io_reason(&err),
        })?;
        let env = env::source(env)?;
        let built = config::Config::builder()
            .add_source(config::File::from_str(&text, FileFormat::Toml))
            .add_source(env)
            .build()
            .and_then(|built| built.collect());
        let mut loader = Loader::new(path);
        loader.offline = offline;
        match built {
            Ok(root) => {
                let mut cfg = config_from(&loader, root)?;
                cfg.file_warnings = secret_file_warnings(path, &text);
                Ok(cfg)
            }
            Err(config::ConfigError::FileParse { cause, .. }) => Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                detail: toml_detail(&cause.to_string()),
            }),
            Err(other) => Err(ConfigError::Invalid {
                origin: Origin::File(path.to_path_buf()),
                key: String::new(),
                detail: one_line(&other.to_string()),
            }),
        }
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Turns the toml crate's multi-line report into "line L, column C: message".
fn toml_detail(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match (lines.first(), lines.last()) {
        (Some(first), Some(last)) if lines.len() > 1 => {
            let at = first.strip_prefix("TOML parse error at ").unwrap_or(first);
            format!("{at}: {last}")
        }
        _ => one_line(report),
    }
}

/// The example names its passwords' files as a systemd unit's credentials
/// (`/run/credentials/…`); tests point them at files holding `secret`.
#[cfg(test)]
pub(crate) fn secret_files(secret: &str) -> HashMap<String, String> {
    #[allow(clippy::unwrap_used)]
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("secret");
    #[allow(clippy::unwrap_used)]
    std::fs::write(&path, secret).unwrap();
    let p = path.display().to_string();
    [
        ("SECINTAKE_IMAP__PASSWORD_FILE", p.clone()),
        ("SECINTAKE_SMTP__PASSWORD_FILE", p),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[cfg(test)]
impl Config {
    /// The example configuration (`config/secintake.example.toml`, two
    /// handlers), loaded for real, for unit tests.
    pub(crate) fn example() -> Config {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/secintake.example.toml");
        #[allow(clippy::unwrap_used)]
        Config::load_with_env(&path, secret_files("x")).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/secintake.example.toml");
        let config = Config::load_with_env(&path, secret_files("imap-secret"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.mailbox.address, "security@example.org");
        assert_eq!(config.imap.host, "imap.example.org");
        assert_eq!(config.imap.port, 993);
        assert_eq!(config.smtp.port, 587);
        assert_eq!(config.handlers.len(), 2);
        assert_eq!(config.limits.max_message_size, 50 << 20);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }
}
