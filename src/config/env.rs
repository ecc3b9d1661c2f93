//! Environment overrides: which `SECINTAKE_*` variables are configuration,
//! how their names map to dotted keys and back, and which value of the
//! merged tree came from one, so that an error can name the variable.

use std::collections::HashMap;

use config::{Map, Value, ValueKind};

use super::keys::SECTIONS;
use super::{ConfigError, Origin};

/// Prefix of the environment variables that override the file.
const ENV_PREFIX: &str = "SECINTAKE_";
/// What the `config` crate records as the origin of environment values.
pub(super) const ENV_ORIGIN: &str = "the environment";

/// The process's `SECINTAKE_*` variables (the prefix in any case); a value
/// that is not UTF-8 is refused, naming its variable.
pub(super) fn process_vars() -> Result<HashMap<String, String>, ConfigError> {
    let mut env = HashMap::new();
    for (key, value) in std::env::vars_os() {
        let Ok(key) = key.into_string() else { continue };
        if !key.to_ascii_uppercase().starts_with(ENV_PREFIX) {
            continue;
        }
        match value.into_string() {
            Ok(value) => {
                env.insert(key, value);
            }
            Err(_) => {
                return Err(ConfigError::Invalid {
                    origin: Origin::Env(key.clone()),
                    key: env_key(&key),
                    detail: "the value is not valid UTF-8".to_string(),
                })
            }
        }
    }
    Ok(env)
}

/// The `config` crate's source for the variables in `env` that are
/// configuration keys, once their names are checked.
pub(super) fn source(env: HashMap<String, String>) -> Result<config::Environment, ConfigError> {
    let env = env_overrides(env)?;
    Ok(config::Environment::with_prefix("SECINTAKE")
        .prefix_separator("_")
        .separator("__")
        .source(Some(env)))
}

/// Checks `SECINTAKE_*` variable names and keeps those meant for us.
fn env_overrides(env: HashMap<String, String>) -> Result<Map<String, String>, ConfigError> {
    // By name, so that of several bad variables the same one is always named.
    let mut vars: Vec<(String, String)> = env.into_iter().collect();
    vars.sort();
    let mut out = Map::new();
    for (name, value) in vars {
        let upper = name.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let trimmed = rest.trim_start_matches('_');
        let section = SECTIONS
            .iter()
            .find(|s| trimmed.to_ascii_lowercase().starts_with(&format!("{s}_")));
        if rest.starts_with('_') || (!rest.contains("__") && section.is_some()) {
            let example = match section {
                Some(s) => format!(
                    "{ENV_PREFIX}{}__{}",
                    s.to_ascii_uppercase(),
                    trimmed[s.len()..].trim_start_matches('_')
                ),
                None => format!("{ENV_PREFIX}IMAP__PASSWORD"),
            };
            return Err(ConfigError::Invalid {
                origin: Origin::Env(name.clone()),
                key: env_key(&name),
                detail: format!(
                    "write one underscore after SECINTAKE and two between section and key, e.g. {example}"
                ),
            });
        }
        if !rest.contains("__") {
            continue; // SECINTAKE_CONFIG, SECINTAKE_LOG, ...: not configuration keys
        }
        // The config crate silently drops variables whose key it cannot
        // parse (e.g. SECINTAKE_IMAP__P@SS): refuse them here instead.
        let well_formed = rest.split("__").count() == 2
            && rest.split("__").all(|part| {
                !part.is_empty()
                    && !part.starts_with('_')
                    && !part.ends_with('_')
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
        if !well_formed {
            return Err(ConfigError::Invalid {
                origin: Origin::Env(name.clone()),
                key: env_key(&name),
                detail: "expected a name of the form SECINTAKE_<SECTION>__<KEY> \
                         (letters, digits and single underscores), e.g. SECINTAKE_IMAP__PASSWORD_FILE"
                    .to_string(),
            });
        }
        out.insert(name, value);
    }
    Ok(out)
}

/// The environment variable that sets a dotted key.
pub(super) fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// The dotted key an environment variable name maps to.
fn env_key(name: &str) -> String {
    name.get(ENV_PREFIX.len()..)
        .unwrap_or("")
        .to_ascii_lowercase()
        .replace("__", ".")
}

/// The dotted key of some value under `value` that came from the environment.
pub(super) fn env_leaf(key: &str, value: &Value) -> Option<String> {
    if value.origin() == Some(ENV_ORIGIN) {
        return Some(key.to_string());
    }
    match &value.kind {
        ValueKind::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort();
            keys.into_iter()
                .find_map(|k| env_leaf(&format!("{key}.{k}"), &table[k]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_round_trip() {
        assert_eq!(
            env_name("imap.password_file"),
            "SECINTAKE_IMAP__PASSWORD_FILE"
        );
        assert_eq!(
            env_key("SECINTAKE_IMAP__PASSWORD_FILE"),
            "imap.password_file"
        );
    }
}
