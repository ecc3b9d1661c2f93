//! The walk over the merged tree: [`Loader`] opens each table and refuses
//! unknown keys, [`Section`] hands out its keys one by one, and [`Field`]
//! turns one value into a typed one. Every error they make is one line that
//! names the key, shows the value (never a secret's) and says where it came
//! from: the file, or the environment variable that set it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Map, Value, ValueKind};

use super::env::{env_leaf, env_name, ENV_ORIGIN};
use super::units::{parse_duration, parse_size, DURATION_EXPECTED, SIZE_EXPECTED};
use super::validate::{valid_address, valid_host};
use super::{keys, ConfigError, Origin, TlsMode};

const TLS_EXPECTED: &str = "expected one of \"implicit\", \"starttls\", \"none\"";
const PORT_EXPECTED: &str = "expected a port number from 1 to 65535";

/// Walks the merged tree and builds the typed configuration.
pub(super) struct Loader {
    /// The configuration file, named in errors.
    path: PathBuf,
    /// Directory against which relative paths from the file are resolved.
    base: PathBuf,
    /// A server password file that cannot be read counts as an empty
    /// password (see [`Config::load_offline`](super::Config::load_offline)).
    pub(super) offline: bool,
}

/// One key's value on its way to a typed field.
pub(super) struct Field<'l> {
    loader: &'l Loader,
    /// Dotted, e.g. "imap.port" or "handlers[1].email".
    pub(super) key: String,
    pub(super) value: Value,
    /// Never show the value.
    secret: bool,
}

/// One table (`[imap]`, `handlers[0]`, …) whose keys are taken one by one.
pub(super) struct Section<'l> {
    pub(super) loader: &'l Loader,
    name: String,
    table: Map<String, Value>,
}

impl Loader {
    /// A loader for the configuration file at `path`.
    pub(super) fn new(path: &Path) -> Loader {
        Loader {
            path: path.to_path_buf(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            offline: false,
        }
    }

    fn origin(&self, key: &str, value: Option<&Value>) -> Origin {
        match value.and_then(|v| env_leaf(key, v)) {
            Some(leaf) => Origin::Env(env_name(&leaf)),
            None => Origin::File(self.path.clone()),
        }
    }

    pub(super) fn error(&self, key: &str, value: Option<&Value>, detail: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(key, value),
            key: key.to_string(),
            detail,
        }
    }

    pub(super) fn missing(&self, key: &str, alternatives: &str) -> ConfigError {
        ConfigError::Invalid {
            origin: Origin::File(self.path.clone()),
            key: key.to_string(),
            detail: format!("missing required key {key}{alternatives}"),
        }
    }

    pub(super) fn section(
        &self,
        root: &mut Map<String, Value>,
        name: &str,
        known: &[&str],
    ) -> Result<Section<'_>, ConfigError> {
        self.table(name, root.remove(name), known)
    }

    fn table(
        &self,
        name: &str,
        value: Option<Value>,
        known: &[&str],
    ) -> Result<Section<'_>, ConfigError> {
        let table = match value {
            None => Map::new(),
            Some(Value {
                kind: ValueKind::Table(table),
                ..
            }) => table,
            Some(other) => {
                return Err(self.error(
                    name,
                    Some(&other),
                    format!("{name} = {}: expected a table [{name}]", show(&other)),
                ))
            }
        };
        let mut unknown: Vec<&String> = table
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        unknown.sort();
        if let Some(k) = unknown.first() {
            let full = format!("{name}.{k}");
            return Err(self.error(
                &full,
                table.get(*k),
                format!(
                    "unknown key {full:?} (expected one of: {})",
                    known.join(", ")
                ),
            ));
        }
        Ok(Section {
            loader: self,
            name: name.to_string(),
            table,
        })
    }

    pub(super) fn handler_tables(
        &self,
        value: Option<Value>,
    ) -> Result<Vec<Section<'_>>, ConfigError> {
        let items = match value {
            None => return Ok(Vec::new()),
            Some(Value {
                kind: ValueKind::Array(items),
                ..
            }) => items,
            Some(other) => {
                return Err(self.error(
                    keys::handlers::NAME,
                    Some(&other),
                    format!(
                        "handlers = {}: expected [[handlers]] tables with name and email \
                         (handlers cannot be set through environment variables)",
                        show(&other)
                    ),
                ))
            }
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let name = format!("handlers[{i}]");
                if !matches!(item.kind, ValueKind::Table(_)) {
                    return Err(self.error(
                        &name,
                        Some(&item),
                        format!(
                            "{name} = {}: expected a [[handlers]] table with name and email",
                            show(&item)
                        ),
                    ));
                }
                self.table(&name, Some(item), keys::handlers::KEYS)
            })
            .collect()
    }
}

impl<'l> Section<'l> {
    /// Whether the section holds no (more) keys: absent or empty.
    pub(super) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub(super) fn get(&mut self, key: &str) -> Option<Field<'l>> {
        self.table.remove(key).map(|value| Field {
            loader: self.loader,
            key: format!("{}.{key}", self.name),
            value,
            secret: false,
        })
    }

    pub(super) fn require(&mut self, key: &str) -> Result<Field<'l>, ConfigError> {
        self.get(key)
            .ok_or_else(|| self.loader.missing(&format!("{}.{key}", self.name), ""))
    }

    /// The section's name, as keys are prefixed with it.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.name)
    }

    /// A secret given either directly as `key` or as a path in `file_key`.
    pub(super) fn secret(
        &mut self,
        key: &str,
        file_key: &str,
    ) -> Result<Option<String>, ConfigError> {
        let direct = self.get(key).map(|mut f| {
            f.secret = true;
            f
        });
        let file = self.get(file_key);
        match (direct, file) {
            (Some(direct), Some(file)) => {
                let blame = if file.is_from_env() || !direct.is_from_env() {
                    &file
                } else {
                    &direct
                };
                Err(self.loader.error(
                    &blame.key,
                    Some(&blame.value),
                    format!(
                        "{} and {} are both set: set only one",
                        self.key(key),
                        self.key(file_key)
                    ),
                ))
            }
            (Some(direct), None) => {
                let secret = direct.text()?;
                if secret.is_empty() {
                    return Err(direct.fail("must not be empty"));
                }
                if secret.contains(['\r', '\n', '\0']) {
                    return Err(direct.fail("must not contain line breaks or NUL"));
                }
                Ok(Some(secret))
            }
            (None, Some(file)) => match file.secret_file() {
                // Commands that contact no server run beside a systemd
                // unit whose LoadCredential= files only the unit can read.
                Err(_) if self.loader.offline => Ok(Some(String::new())),
                other => other.map(Some),
            },
            (None, None) => Ok(None),
        }
    }
}

impl Field<'_> {
    /// The secret held alone in the file this field names (a trailing
    /// newline trimmed), e.g. a systemd `LoadCredential=` file.
    pub(super) fn secret_file(&self) -> Result<String, ConfigError> {
        let path = self.path()?;
        let bytes = std::fs::read(&path).map_err(|err| self.read_fail(&path, &err))?;
        let text =
            String::from_utf8(bytes).map_err(|_| self.fail("the file is not valid UTF-8"))?;
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.is_empty() {
            return Err(self.fail("the file is empty"));
        }
        if secret.contains(['\r', '\n', '\0']) {
            return Err(self.fail("the file holds more than one line; expected the secret alone"));
        }
        Ok(secret.to_string())
    }

    /// The bytes of the file this field names, with the path they came from.
    pub(super) fn file_bytes(&self) -> Result<(PathBuf, Vec<u8>), ConfigError> {
        let path = self.path()?;
        let bytes = std::fs::read(&path).map_err(|err| self.read_fail(&path, &err))?;
        Ok((path, bytes))
    }

    fn is_from_env(&self) -> bool {
        self.value.origin() == Some(ENV_ORIGIN)
    }

    /// "key = value: what" as an error.
    pub(super) fn fail(&self, what: impl fmt::Display) -> ConfigError {
        let shown = if self.secret {
            "<redacted>".to_string()
        } else {
            show(&self.value)
        };
        self.loader.error(
            &self.key,
            Some(&self.value),
            format!("{} = {shown}: {what}", self.key),
        )
    }

    pub(super) fn read_fail(&self, resolved: &Path, err: &io::Error) -> ConfigError {
        if self.value.kind == ValueKind::String(resolved.display().to_string()) {
            self.fail(format_args!("cannot read: {}", io_reason(err)))
        } else {
            self.fail(format_args!(
                "cannot read {}: {}",
                resolved.display(),
                io_reason(err)
            ))
        }
    }

    pub(super) fn text(&self) -> Result<String, ConfigError> {
        match &self.value.kind {
            ValueKind::String(s) => Ok(s.clone()),
            _ => Err(self.fail("expected a string")),
        }
    }

    /// A non-empty single-line string.
    pub(super) fn line(&self) -> Result<String, ConfigError> {
        let s = self.text()?;
        if s.trim().is_empty() {
            return Err(self.fail("must not be empty"));
        }
        if s.chars().any(char::is_control) {
            return Err(self.fail("must not contain control characters such as line breaks"));
        }
        Ok(s)
    }

    pub(super) fn integer(&self, min: u64, max: u64, expected: &str) -> Result<u64, ConfigError> {
        let n: Option<i128> = match &self.value.kind {
            ValueKind::I64(n) => Some(i128::from(*n)),
            ValueKind::U64(n) => Some(i128::from(*n)),
            ValueKind::I128(n) => Some(*n),
            ValueKind::U128(n) => i128::try_from(*n).ok(),
            ValueKind::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        match n {
            Some(n) if n >= i128::from(min) && n <= i128::from(max) => Ok(n as u64),
            _ => Err(self.fail(expected)),
        }
    }

    pub(super) fn port(&self) -> Result<u16, ConfigError> {
        Ok(self.integer(1, u64::from(u16::MAX), PORT_EXPECTED)? as u16)
    }

    pub(super) fn boolean(&self) -> Result<bool, ConfigError> {
        match &self.value.kind {
            ValueKind::Boolean(b) => Ok(*b),
            ValueKind::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
            ValueKind::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.fail("expected true or false")),
        }
    }

    pub(super) fn duration(&self) -> Result<Duration, ConfigError> {
        match &self.value.kind {
            ValueKind::String(s) => parse_duration(s).map_err(|e| self.fail(e)),
            _ => Err(self.fail(DURATION_EXPECTED)),
        }
    }

    /// A list of strings: a TOML array, or (from the environment) one
    /// comma-separated string.
    pub(super) fn list(&self) -> Result<Vec<String>, ConfigError> {
        match &self.value.kind {
            ValueKind::Array(items) => items
                .iter()
                .map(|v| match &v.kind {
                    ValueKind::String(s) => Ok(s.trim().to_string()),
                    _ => Err(self.fail("expected an array of strings")),
                })
                .collect(),
            ValueKind::String(s) => Ok(s
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()),
            _ => Err(self.fail("expected an array of strings")),
        }
    }

    /// A duration of at least `min`.
    pub(super) fn duration_min(&self, min: Duration) -> Result<Duration, ConfigError> {
        let d = self.duration()?;
        if d < min {
            return Err(self.fail(format_args!(
                "must be at least {}",
                humantime::format_duration(min)
            )));
        }
        Ok(d)
    }

    pub(super) fn size(&self) -> Result<u64, ConfigError> {
        match &self.value.kind {
            ValueKind::I64(n) if *n >= 0 => Ok(*n as u64),
            ValueKind::U64(n) => Ok(*n),
            ValueKind::String(s) => parse_size(s).map_err(|e| self.fail(e)),
            _ => Err(self.fail(SIZE_EXPECTED)),
        }
    }

    pub(super) fn tls(&self) -> Result<TlsMode, ConfigError> {
        match self.text().map(|s| s.to_ascii_lowercase()).as_deref() {
            Ok("implicit") => Ok(TlsMode::Implicit),
            Ok("starttls") => Ok(TlsMode::Starttls),
            Ok("none") => Ok(TlsMode::None),
            _ => Err(self.fail(TLS_EXPECTED)),
        }
    }

    /// A path; relative paths from the file are resolved against its directory.
    pub(super) fn path(&self) -> Result<PathBuf, ConfigError> {
        let s = self.text()?;
        if s.trim().is_empty() {
            return Err(self.fail("expected a path"));
        }
        let path = PathBuf::from(s);
        if path.is_relative() && !self.is_from_env() {
            Ok(self.loader.base.join(path))
        } else {
            Ok(path)
        }
    }

    /// A PEM CA bundle that exists and is readable.
    pub(super) fn ca_file(&self) -> Result<PathBuf, ConfigError> {
        let path = self.path()?;
        let bytes = std::fs::read(&path).map_err(|err| self.read_fail(&path, &err))?;
        let marker = b"-----BEGIN CERTIFICATE-----";
        if !bytes.windows(marker.len()).any(|w| w == marker) {
            return Err(self
                .fail("expected a PEM file with at least one -----BEGIN CERTIFICATE----- block"));
        }
        Ok(path)
    }

    pub(super) fn host(&self) -> Result<String, ConfigError> {
        let s = self.line()?;
        valid_host(&s).ok_or_else(|| {
            let section = self.key.split('.').next().unwrap_or_default();
            self.fail(format_args!(
                "expected a host name or IP address, without scheme or port (the port goes in {section}.port)"
            ))
        })
    }

    pub(super) fn address(&self) -> Result<String, ConfigError> {
        let s = self.text()?;
        valid_address(&s)
            .ok_or_else(|| self.fail("expected a bare email address like \"security@example.org\""))
    }

    pub(super) fn folder(&self) -> Result<String, ConfigError> {
        self.line()
    }
}

pub(super) fn io_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// How a value is shown in messages (TOML-like).
fn show(value: &Value) -> String {
    match &value.kind {
        ValueKind::Nil => "nothing".into(),
        ValueKind::Boolean(b) => b.to_string(),
        ValueKind::I64(n) => n.to_string(),
        ValueKind::I128(n) => n.to_string(),
        ValueKind::U64(n) => n.to_string(),
        ValueKind::U128(n) => n.to_string(),
        ValueKind::Float(n) => n.to_string(),
        ValueKind::String(s) => format!("{s:?}"),
        ValueKind::Table(_) => "a table".into(),
        ValueKind::Array(_) => "an array".into(),
    }
}
