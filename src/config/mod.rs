//! Configuration: one TOML file plus `SECINTAKE_*` environment overrides.
//!
//! [`Config::load`] reads and validates everything before the daemon does
//! anything else, so it never runs half-configured: every mistake becomes
//! one [`ConfigError`] whose `Display` is a single line naming the key, the
//! value (secrets are never shown) and what was expected.
//!
//! Environment variables: `SECINTAKE_<SECTION>__<KEY>`, one underscore after
//! the prefix and two between section and key (a single `_` would be
//! ambiguous with snake_case keys), e.g. `SECINTAKE_IMAP__PASSWORD`. They win
//! over the file. `SECINTAKE_*` variables without `__` that do not start with
//! a section name (`SECINTAKE_CONFIG`, `SECINTAKE_LOG`, …) belong to other
//! parts of the program and are ignored here.
//!
//! Secrets (`imap.password`, `smtp.password`) can instead be given as
//! `*_password_file`, e.g. a systemd `LoadCredential=` file: the file's
//! trailing line break is trimmed.
//!
//! Relative paths written in the file are resolved against the directory that
//! holds the file; relative paths from environment variables are left as
//! they are (relative to the working directory).
//!
//! The file is parsed by the `config` crate into an untyped tree and then
//! walked by hand rather than through serde: that is what lets every error
//! name its key, show its value, tell a file value from an environment
//! value, and keep secrets out of messages.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{FileFormat, Map, Source, Value};

mod env;
mod keys;
mod loader;
mod units;
mod validate;

use keys::SECTIONS;
use loader::{io_reason, Field, Loader, Section};
use validate::{is_loopback, same_folder, secret_file_warnings, valid_address};

pub use units::{parse_duration, parse_size};

/// RFC 2177: servers may log out an idle client after 30 minutes.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(29 * 60);
/// Upper bound for `intake.batch_size`; larger windows only make one
/// round trip huge without making intake faster.
const MAX_BATCH_SIZE: u64 = 10_000;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The monitored address and what acknowledgements say about the project.
    pub mailbox: Mailbox,
    /// Where reports are fetched from.
    pub imap: Imap,
    /// Where acknowledgements and notifications are sent through.
    pub smtp: Smtp,
    /// Where cases and raw messages are kept.
    pub storage: Storage,
    /// Deadlines promised to reporters.
    pub sla: Sla,
    /// The people who handle reports (may be empty: see [`Config::warnings`]).
    pub handlers: Vec<Handler>,
    /// Abuse and resource limits.
    pub limits: Limits,
    /// Where message templates come from.
    pub templates: Templates,
    /// How existing mail is treated on first start and fetched.
    pub intake: Intake,
    /// How mail claiming to come from a handler is authenticated.
    pub handler_auth: HandlerAuth,
    /// How cases get their primary handler.
    pub workflow: Workflow,
    /// Where `/announce` sends advisories.
    pub announce: Announce,
    /// What reporters are told after the acknowledgement.
    pub reporter: Reporter,
    /// Problems with the files the configuration was read from, found at
    /// load (a password in a file other users can read); part of
    /// [`Config::warnings`].
    pub file_warnings: Vec<String>,
}

/// `[workflow]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// "round-robin" (default): each new case gets the next handler as its
    /// primary; "none": nobody until someone sends /take.
    pub round_robin: bool,
    /// Copy each relay, state change, take/assign, audit note and
    /// announcement to the other handlers (default true).
    pub team_copies: bool,
}

/// `[reporter]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reporter {
    /// Tell the reporter when their case is confirmed, rejected, marked
    /// duplicate, given a CVE, fix-ready, announced or closed (template
    /// `update.txt`). Default true; `/quiet` turns it off for one case.
    pub updates: bool,
}

/// `[announce]`: where advisories go, and how `cases export --osv`
/// describes the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The announce list address; None: /announce is refused.
    pub list: Option<String>,
    /// Where the project publishes an advisory (https), with `{id}` and
    /// `{case}` placeholders; the OSV record's ADVISORY reference.
    pub advisory_url: Option<String>,
    /// OSV ecosystem of the project's package (one of
    /// `osv::ECOSYSTEMS`); None: `cases export --osv` is refused.
    pub osv_ecosystem: Option<String>,
    /// Package name in that ecosystem; None: `mailbox.project`.
    pub osv_package: Option<String>,
    pub osv_range_type: crate::osv::RangeType,
    /// The project's registered OSV id prefix (one of `osv::ID_PREFIXES`).
    pub osv_id_prefix: Option<String>,
}

/// `[handler_auth]`: when mail From a handler's address is believed.
#[derive(Debug, Clone, Default)]
pub struct HandlerAuth {
    /// The authserv-id (RFC 8601) of the operator's own mail server, whose
    /// `Authentication-Results` headers are trusted. None: none are.
    pub trusted_authserv_id: Option<String>,
    /// Believe handler mail without DKIM/SPF proof. Default false; only for
    /// closed setups (`check-config` warns).
    pub trust_unauthenticated: bool,
    /// Hosts of the operator's own mail system besides the authserv-id
    /// (e.g. the IMAP server's LMTP, an internal relay), lowercased: their
    /// `Received` fields are not "another host" (see `auth`).
    pub border_hosts: Vec<String>,
}

/// `[mailbox]`: the security@ address itself.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// The monitored address, lowercased and validated as an addr-spec.
    pub address: String,
    /// Project name used in outgoing mail ("the Foo project").
    pub project: String,
    /// Link to the security policy; empty when not configured.
    pub policy_url: String,
    /// Optional address that receives comments on cases.
    pub comment_address: Option<String>,
}

/// How a connection is encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain connect, then STARTTLS (required, never opportunistic).
    Starttls,
    /// No encryption: only accepted for loopback hosts.
    None,
}

/// What happens to a message on the server once it is safely stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Set `\Seen`.
    Seen,
    /// Move it to this folder.
    Move(String),
    /// Leave it untouched.
    Keep,
}

/// `[imap]`.
#[derive(Clone)]
pub struct Imap {
    /// Server host name or IP address (no port).
    pub host: String,
    /// Server port: default 993 for implicit TLS, 143 otherwise.
    pub port: u16,
    /// Encryption mode: default implicit.
    pub tls: TlsMode,
    /// Extra PEM CA bundle to trust instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Login name.
    pub username: String,
    /// Login password (from `password` or `password_file`). Never logged.
    pub password: String,
    /// Folder to watch: default "INBOX".
    pub folder: String,
    /// Use IMAP IDLE (polling stays on as a safety net): default true.
    pub idle: bool,
    /// How often to poll: default 60s.
    pub poll_interval: Duration,
    /// Re-issue IDLE after this long: default 25m, below 29m (RFC 2177).
    pub idle_timeout: Duration,
    /// Read/write timeout for every command outside IDLE: default 60s.
    pub io_timeout: Duration,
    /// What to do with a stored message: default [`After::Seen`].
    pub after: After,
}

impl fmt::Debug for Imap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("folder", &self.folder)
            .field("idle", &self.idle)
            .field("poll_interval", &self.poll_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("after", &self.after)
            .finish()
    }
}

/// `[smtp]`.
#[derive(Clone)]
pub struct Smtp {
    /// Relay host name or IP address (no port).
    pub host: String,
    /// Relay port: default 465 implicit, 587 starttls, 25 none.
    pub port: u16,
    /// Encryption mode: default starttls.
    pub tls: TlsMode,
    /// Extra PEM CA bundle to trust instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
    /// Login name; set together with `password` or not at all.
    pub username: Option<String>,
    /// Login password (from `password` or `password_file`). Never logged.
    pub password: Option<String>,
    /// Whole-send timeout (lettre's own covers only the connect): default 30s.
    pub timeout: Duration,
    /// Display name on outgoing mail, e.g. "Foo Security Team".
    pub from_name: Option<String>,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("from_name", &self.from_name)
            .finish()
    }
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct Storage {
    /// SQLite database file: default "/var/lib/secintake/secintake.db".
    pub path: PathBuf,
}

/// `[sla]`: deadlines counted from receipt of a report.
#[derive(Debug, Clone)]
pub struct Sla {
    /// Acknowledge a report within this: default 48h.
    pub acknowledge: Duration,
    /// Give a substantive response within this: default 72h.
    pub respond: Duration,
    /// Remind the case's handlers this long before a deadline, longest
    /// first: default ["24h", "4h"].
    pub remind_before: Vec<Duration>,
    /// Once a deadline has passed, escalate again this often until it is
    /// met: default 12h.
    pub escalate_every: Duration,
    /// Extra addresses escalations go to, besides every handler.
    pub escalate_to: Vec<String>,
    /// Alert the handlers when an acknowledgement is still unsent this
    /// long after it was queued: default 1h.
    pub ack_alert_after: Duration,
    /// Local time of the daily digest to each handler; None = no digest.
    pub digest_at: Option<chrono::NaiveTime>,
    /// Time zone of `digest_at`: default UTC.
    pub timezone: chrono_tz::Tz,
}

/// One `[[handlers]]` entry.
#[derive(Debug, Clone)]
pub struct Handler {
    /// Display name.
    pub name: String,
    /// Address, lowercased; unique among handlers.
    pub email: String,
}

/// `[limits]`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// At most this many acknowledgements to one sender per day: default 5.
    /// Senders are compared case- and plus-tag-insensitively.
    pub acks_per_sender_per_day: u32,
    /// At most this many acknowledgements in any hour, all senders
    /// together: default 20. Beyond it acknowledgements are held (not
    /// dropped) until `secintake mail release`, and the handlers are told.
    pub acks_per_hour: u32,
    /// Acknowledge only senders whose From the receiving server verified
    /// (`"dmarc-pass"`); others are held. Default: anyone (`"any"`).
    pub ack_only_if_dmarc_pass: bool,
    /// Messages larger than this (bytes) are not fetched whole, and no mail
    /// to handlers is larger: default 50MiB.
    pub max_message_size: u64,
    /// Alert when a problem (e.g. IMAP down) lasts this long: default 15m.
    pub alert_after: Duration,
}

/// `[templates]`.
#[derive(Debug, Clone)]
pub struct Templates {
    /// Directory of custom templates; `None` = built-in templates.
    pub dir: Option<PathBuf>,
}

/// `[intake]`.
#[derive(Debug, Clone)]
pub struct Intake {
    /// On first start, messages older than this (by IMAP INTERNALDATE) are
    /// recorded but not acknowledged: default 7d.
    pub backfill: Duration,
    /// Messages fetched per IMAP round trip: default 250 (also the number recorded per transaction during a backlog).
    pub batch_size: u32,
}

/// Where an invalid value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The configuration file (also used for keys that are missing altogether).
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// Why the configuration was refused. `Display` is the one line to print.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("config error: cannot read {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error, without the "(os error N)" suffix.
        reason: String,
    },
    /// The configuration file is not valid TOML.
    #[error("config error in {}: TOML syntax error at {detail}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// "line L, column C: message".
        detail: String,
    },
    /// A key is unknown, missing, or its value is unusable.
    #[error("config error in {origin}: {detail}")]
    Invalid {
        /// The file or the environment variable responsible.
        origin: Origin,
        /// Dotted key, e.g. "imap.tls" or "handlers[1].email".
        key: String,
        /// Names the key, its value unless secret, and what is expected.
        detail: String,
    },
}

impl ConfigError {
    /// The dotted key at fault, if the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl Config {
    /// Reads `path`, applies `SECINTAKE_*` variables from the process
    /// environment and validates everything.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, env::process_vars()?)
    }

    /// Like [`Config::load`] with the environment given explicitly (tests).
    pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Config, ConfigError> {
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
        let loader = Loader::new(path);
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

/// Refuses `tls = "none"` unless the host is loopback.
fn check_plaintext(
    tls: &Option<Field<'_>>,
    mode: TlsMode,
    section: &str,
    host: &str,
) -> Result<(), ConfigError> {
    if let (Some(field), TlsMode::None) = (tls, mode) {
        if !is_loopback(host) {
            return Err(field.fail(format_args!(
                "only allowed when {section}.host is a loopback address (127.0.0.0/8, ::1 or localhost), \
                 and {section}.host is {host:?}; use \"implicit\" or \"starttls\""
            )));
        }
    }
    Ok(())
}

/// The whole configuration from the merged tree's root table.
fn config_from(loader: &Loader, mut root: Map<String, Value>) -> Result<Config, ConfigError> {
    let mut unknown: Vec<&String> = root
        .keys()
        .filter(|k| !SECTIONS.contains(&k.as_str()))
        .collect();
    unknown.sort();
    if let Some(k) = unknown.first() {
        return Err(loader.error(
            k,
            root.get(*k),
            format!(
                "unknown key {k:?} (expected one of: {})",
                SECTIONS.join(", ")
            ),
        ));
    }
    // Open every table first so that an unknown (typically misspelt)
    // key is reported before the "missing key" it causes.
    let mailbox = loader.section(&mut root, keys::mailbox::NAME, keys::mailbox::KEYS)?;
    let imap = loader.section(&mut root, keys::imap::NAME, keys::imap::KEYS)?;
    let smtp = loader.section(&mut root, keys::smtp::NAME, keys::smtp::KEYS)?;
    let storage = loader.section(&mut root, keys::storage::NAME, keys::storage::KEYS)?;
    let sla = loader.section(&mut root, keys::sla::NAME, keys::sla::KEYS)?;
    let handlers = loader.handler_tables(root.remove(keys::handlers::NAME))?;
    let limits = loader.section(&mut root, keys::limits::NAME, keys::limits::KEYS)?;
    let templates = loader.section(&mut root, keys::templates::NAME, keys::templates::KEYS)?;
    let intake = loader.section(&mut root, keys::intake::NAME, keys::intake::KEYS)?;
    let handler_auth = loader.section(
        &mut root,
        keys::handler_auth::NAME,
        keys::handler_auth::KEYS,
    )?;
    let workflow = loader.section(&mut root, keys::workflow::NAME, keys::workflow::KEYS)?;
    let announce = loader.section(&mut root, keys::announce::NAME, keys::announce::KEYS)?;
    let reporter = loader.section(&mut root, keys::reporter::NAME, keys::reporter::KEYS)?;

    let mailbox = mailbox_from(mailbox)?;
    let handlers = handlers_from(handlers, &mailbox)?;
    Ok(Config {
        imap: imap_from(imap)?,
        smtp: smtp_from(smtp)?,
        storage: storage_from(storage)?,
        sla: sla_from(sla)?,
        limits: limits_from(limits)?,
        templates: templates_from(templates)?,
        intake: intake_from(intake)?,
        handler_auth: handler_auth_from(handler_auth)?,
        workflow: workflow_from(workflow)?,
        announce: announce_from(announce)?,
        reporter: reporter_from(reporter)?,
        mailbox,
        handlers,
        file_warnings: Vec::new(),
    })
}

fn mailbox_from(mut s: Section<'_>) -> Result<Mailbox, ConfigError> {
    let address = s.require(keys::mailbox::address)?.address()?;
    let project = s.require(keys::mailbox::project)?.line()?;
    let policy_url = match s.get(keys::mailbox::policy_url) {
        None => String::new(),
        Some(f) => {
            let url = f.line()?;
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .unwrap_or("");
            if rest.is_empty() || rest.starts_with('/') || url.contains(char::is_whitespace) {
                return Err(f.fail("expected an https:// URL"));
            }
            url
        }
    };
    let comment_address = s
        .get(keys::mailbox::comment_address)
        .map(|f| f.address())
        .transpose()?;
    Ok(Mailbox {
        address,
        project,
        policy_url,
        comment_address,
    })
}

/// The connection keys `[imap]` and `[smtp]` share, as found: host, tls,
/// port and ca_file. Each section takes its own keys; [`Endpoint::read`]
/// reads them the same way for both.
struct EndpointFields<'l> {
    host: Field<'l>,
    tls: Option<Field<'l>>,
    port: Option<Field<'l>>,
    ca_file: Option<Field<'l>>,
}

/// Those keys read: the port defaulted from the TLS mode.
struct Endpoint {
    host: String,
    tls: TlsMode,
    port: u16,
    ca_file: Option<PathBuf>,
}

impl Endpoint {
    fn read(
        fields: EndpointFields<'_>,
        section: &str,
        default_tls: TlsMode,
        default_port: fn(TlsMode) -> u16,
    ) -> Result<Endpoint, ConfigError> {
        let host = fields.host.host()?;
        let tls = fields
            .tls
            .as_ref()
            .map(Field::tls)
            .transpose()?
            .unwrap_or(default_tls);
        check_plaintext(&fields.tls, tls, section, &host)?;
        let port = match fields.port {
            Some(f) => f.port()?,
            None => default_port(tls),
        };
        let ca_file = fields.ca_file.map(|f| f.ca_file()).transpose()?;
        Ok(Endpoint {
            host,
            tls,
            port,
            ca_file,
        })
    }
}

fn imap_from(mut s: Section<'_>) -> Result<Imap, ConfigError> {
    let Endpoint {
        host,
        tls,
        port,
        ca_file,
    } = Endpoint::read(
        EndpointFields {
            host: s.require(keys::imap::host)?,
            tls: s.get(keys::imap::tls),
            port: s.get(keys::imap::port),
            ca_file: s.get(keys::imap::ca_file),
        },
        keys::imap::NAME,
        TlsMode::Implicit,
        |tls| match tls {
            TlsMode::Implicit => 993,
            _ => 143,
        },
    )?;
    let username = s.require(keys::imap::username)?.line()?;
    let password = s
        .secret(keys::imap::password, keys::imap::password_file)?
        .ok_or_else(|| {
            s.loader
                .missing(&s.key(keys::imap::password), " (or imap.password_file)")
        })?;
    let folder = s
        .get(keys::imap::folder)
        .map(|f| f.folder())
        .transpose()?
        .unwrap_or_else(|| "INBOX".into());
    let idle = s
        .get(keys::imap::idle)
        .map(|f| f.boolean())
        .transpose()?
        .unwrap_or(true);
    let poll_interval = s
        .get(keys::imap::poll_interval)
        .map(|f| f.duration_min(Duration::from_secs(1)))
        .transpose()?
        .unwrap_or(Duration::from_secs(60));
    let idle_timeout = match s.get(keys::imap::idle_timeout) {
        None => Duration::from_secs(25 * 60),
        Some(f) => {
            let d = f.duration_min(Duration::from_secs(1))?;
            if d >= MAX_IDLE_TIMEOUT {
                return Err(f.fail(
                    "must be less than 29m (RFC 2177: servers may end an IDLE after 30 minutes)",
                ));
            }
            d
        }
    };
    let io_timeout = s
        .get(keys::imap::io_timeout)
        .map(|f| f.duration_min(Duration::from_secs(1)))
        .transpose()?
        .unwrap_or(Duration::from_secs(60));
    let after = match s.get(keys::imap::after) {
        None => After::Seen,
        Some(f) => {
            let text = f.text()?;
            let lower = text.to_ascii_lowercase();
            match lower.as_str() {
                "seen" => After::Seen,
                "keep" => After::Keep,
                _ if lower.starts_with("move:") => {
                    let target = &text["move:".len()..];
                    if target.trim().is_empty() || target.chars().any(char::is_control) {
                        return Err(f.fail("expected a folder name after \"move:\""));
                    }
                    if same_folder(target, &folder) {
                        return Err(f.fail(format_args!(
                            "moves messages into imap.folder ({folder:?}) itself"
                        )));
                    }
                    After::Move(target.to_string())
                }
                _ => return Err(f.fail("expected \"seen\", \"keep\" or \"move:<folder>\"")),
            }
        }
    };
    Ok(Imap {
        host,
        port,
        tls,
        ca_file,
        username,
        password,
        folder,
        idle,
        poll_interval,
        idle_timeout,
        io_timeout,
        after,
    })
}

fn smtp_from(mut s: Section<'_>) -> Result<Smtp, ConfigError> {
    let Endpoint {
        host,
        tls,
        port,
        ca_file,
    } = Endpoint::read(
        EndpointFields {
            host: s.require(keys::smtp::host)?,
            tls: s.get(keys::smtp::tls),
            port: s.get(keys::smtp::port),
            ca_file: s.get(keys::smtp::ca_file),
        },
        keys::smtp::NAME,
        TlsMode::Starttls,
        |tls| match tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        },
    )?;
    let username_field = s.get(keys::smtp::username);
    let username = username_field.as_ref().map(Field::line).transpose()?;
    let password = s.secret(keys::smtp::password, keys::smtp::password_file)?;
    match (&username_field, &password) {
        (Some(f), None) => {
            return Err(s.loader.error(
                &s.key(keys::smtp::password),
                Some(&f.value),
                "smtp.username is set but smtp.password (or smtp.password_file) is not: set both or neither".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(s.loader.missing(&s.key(keys::smtp::username), " (smtp.password is set: set both or neither)"));
        }
        _ => {}
    }
    let timeout = s
        .get(keys::smtp::timeout)
        .map(|f| f.duration_min(Duration::from_secs(1)))
        .transpose()?
        .unwrap_or(Duration::from_secs(30));
    let from_name = s.get(keys::smtp::from_name).map(|f| f.line()).transpose()?;
    Ok(Smtp {
        host,
        port,
        tls,
        ca_file,
        username,
        password,
        timeout,
        from_name,
    })
}

fn storage_from(mut s: Section<'_>) -> Result<Storage, ConfigError> {
    let path = match s.get(keys::storage::path) {
        None => PathBuf::from("/var/lib/secintake/secintake.db"),
        Some(f) => {
            let path = f.path()?;
            if path.is_dir() {
                return Err(f.fail("is a directory; expected the path of the database file"));
            }
            path
        }
    };
    Ok(Storage { path })
}

fn sla_from(mut s: Section<'_>) -> Result<Sla, ConfigError> {
    let second = Duration::from_secs(1);
    let dur = |f: Option<Field<'_>>, default: u64| -> Result<Duration, ConfigError> {
        Ok(f.map(|f| f.duration_min(second))
            .transpose()?
            .unwrap_or(Duration::from_secs(default)))
    };
    let acknowledge = dur(s.get(keys::sla::acknowledge), 48 * 3600)?;
    let respond = dur(s.get(keys::sla::respond), 72 * 3600)?;
    let escalate_every = dur(s.get(keys::sla::escalate_every), 12 * 3600)?;
    let ack_alert_after = dur(s.get(keys::sla::ack_alert_after), 3600)?;
    let mut remind_before = match s.get(keys::sla::remind_before) {
        None => vec![
            Duration::from_secs(24 * 3600),
            Duration::from_secs(4 * 3600),
        ],
        Some(f) => f
            .list()?
            .iter()
            .map(|item| parse_duration(item).map_err(|e| f.fail(e)))
            .collect::<Result<Vec<_>, _>>()?,
    };
    remind_before.sort_unstable_by(|a, b| b.cmp(a));
    remind_before.dedup();
    let escalate_to = match s.get(keys::sla::escalate_to) {
        None => Vec::new(),
        Some(f) => f
            .list()?
            .iter()
            .map(|item| {
                valid_address(item).ok_or_else(|| {
                    f.fail(format_args!(
                        "{item:?} is not a bare email address like \"security@example.org\""
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let digest_at = match s.get(keys::sla::digest_at) {
        None => None,
        Some(f) => Some(
            chrono::NaiveTime::parse_from_str(f.text()?.trim(), "%H:%M")
                .map_err(|_| f.fail("expected a time of day like \"09:00\" (24-hour HH:MM)"))?,
        ),
    };
    let timezone = match s.get(keys::sla::timezone) {
        None => chrono_tz::UTC,
        Some(f) => f.text()?.trim().parse::<chrono_tz::Tz>().map_err(|_| {
            f.fail("expected an IANA time zone name like \"Europe/Paris\" or \"UTC\"")
        })?,
    };
    Ok(Sla {
        acknowledge,
        respond,
        remind_before,
        escalate_every,
        escalate_to,
        ack_alert_after,
        digest_at,
        timezone,
    })
}

fn workflow_from(mut s: Section<'_>) -> Result<Workflow, ConfigError> {
    let round_robin = match s.get(keys::workflow::assign) {
        None => true,
        Some(f) => match f.text()?.trim().to_ascii_lowercase().as_str() {
            "round-robin" => true,
            "none" => false,
            _ => return Err(f.fail("expected one of \"round-robin\", \"none\"")),
        },
    };
    let team_copies = s
        .get(keys::workflow::team_copies)
        .map(|f| f.boolean())
        .transpose()?
        .unwrap_or(true);
    Ok(Workflow {
        round_robin,
        team_copies,
    })
}

fn reporter_from(mut s: Section<'_>) -> Result<Reporter, ConfigError> {
    Ok(Reporter {
        updates: s
            .get(keys::reporter::updates)
            .map(|f| f.boolean())
            .transpose()?
            .unwrap_or(true),
    })
}

fn announce_from(mut s: Section<'_>) -> Result<Announce, ConfigError> {
    use crate::osv::{valid_ecosystem, RangeType, ECOSYSTEMS, ID_PREFIXES};
    let list = s
        .get(keys::announce::list)
        .map(|f| f.address())
        .transpose()?;
    let advisory_url = match s.get(keys::announce::advisory_url) {
        None => None,
        Some(f) => {
            let url = f.line()?;
            let rest = url.strip_prefix("https://").unwrap_or("");
            // Braces only as the two placeholders: anything else would
            // reach the record as a broken URL.
            let bare = url.replace("{id}", "").replace("{case}", "");
            if rest.is_empty()
                || rest.starts_with('/')
                || url.contains(char::is_whitespace)
                || bare.contains(['{', '}'])
            {
                return Err(f.fail(
                    "expected an https:// URL, with {id} (the OSV id) or {case} (the case id) \
                     where the id goes",
                ));
            }
            Some(url)
        }
    };
    let osv_ecosystem = match s.get(keys::announce::osv_ecosystem) {
        None => None,
        Some(f) => {
            let e = f.line()?;
            if !valid_ecosystem(&e) {
                return Err(f.fail(format_args!(
                    "expected an OSV ecosystem, optionally with :suffix (e.g. \"Debian:12\"), one \
                     of: {}",
                    ECOSYSTEMS.join(", ")
                )));
            }
            Some(e)
        }
    };
    let osv_package = s
        .get(keys::announce::osv_package)
        .map(|f| f.line())
        .transpose()?;
    let osv_range_type = match s.get(keys::announce::osv_range_type) {
        None => RangeType::Ecosystem,
        Some(f) => match f.text()?.to_ascii_uppercase().as_str() {
            "ECOSYSTEM" => RangeType::Ecosystem,
            "SEMVER" => RangeType::Semver,
            _ => return Err(f.fail("expected \"ECOSYSTEM\" or \"SEMVER\"")),
        },
    };
    let osv_id_prefix = match s.get(keys::announce::osv_id_prefix) {
        None => None,
        Some(f) => {
            let p = f.line()?;
            if !ID_PREFIXES.contains(&p.as_str()) {
                return Err(f.fail(format_args!(
                    "expected an OSV database prefix registered in the OSV schema, one of: {}",
                    ID_PREFIXES.join(", ")
                )));
            }
            Some(p)
        }
    };
    Ok(Announce {
        list,
        advisory_url,
        osv_ecosystem,
        osv_package,
        osv_range_type,
        osv_id_prefix,
    })
}

fn handler_auth_from(mut s: Section<'_>) -> Result<HandlerAuth, ConfigError> {
    Ok(HandlerAuth {
        trusted_authserv_id: s
            .get(keys::handler_auth::trusted_authserv_id)
            .map(|f| f.line().map(|l| l.trim().to_ascii_lowercase()))
            .transpose()?,
        trust_unauthenticated: s
            .get(keys::handler_auth::trust_unauthenticated)
            .map(|f| f.boolean())
            .transpose()?
            .unwrap_or(false),
        border_hosts: match s.get(keys::handler_auth::border_hosts) {
            None => Vec::new(),
            Some(f) => f
                .list()?
                .iter()
                .map(|h| {
                    let h = h.trim().to_ascii_lowercase();
                    let ok = !h.is_empty()
                        && h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                    ok.then_some(h)
                        .ok_or_else(|| f.fail("expected host names like \"mx.example.org\""))
                })
                .collect::<Result<Vec<_>, _>>()?,
        },
    })
}

fn handlers_from(tables: Vec<Section<'_>>, mailbox: &Mailbox) -> Result<Vec<Handler>, ConfigError> {
    // email -> key of its first occurrence
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for mut t in tables {
        let name = t.require(keys::handlers::name)?.line()?;
        let email_field = t.require(keys::handlers::email)?;
        let email = email_field.address()?;
        if email == mailbox.address {
            return Err(
                email_field.fail("is mailbox.address itself; handlers need their own address")
            );
        }
        if let Some(first) = seen.get(&email) {
            return Err(email_field.fail(format_args!("duplicate of {first}")));
        }
        seen.insert(email.clone(), email_field.key.clone());
        out.push(Handler { name, email });
    }
    Ok(out)
}

fn limits_from(mut s: Section<'_>) -> Result<Limits, ConfigError> {
    let acks = s
        .get(keys::limits::acks_per_sender_per_day)
        .map(|f| {
            f.integer(
                0,
                u64::from(u32::MAX),
                "expected a whole number from 0 to 4294967295",
            )
        })
        .transpose()?
        .unwrap_or(5) as u32;
    let max_message_size = match s.get(keys::limits::max_message_size) {
        None => 50 << 20,
        Some(f) => {
            let n = f.size()?;
            if n == 0 {
                return Err(f.fail("must be more than 0 bytes"));
            }
            n
        }
    };
    let alert_after = s
        .get(keys::limits::alert_after)
        .map(|f| f.duration_min(Duration::from_secs(1)))
        .transpose()?
        .unwrap_or(Duration::from_secs(15 * 60));
    let acks_per_hour = s
        .get(keys::limits::acks_per_hour)
        .map(|f| {
            f.integer(
                1,
                u64::from(u32::MAX),
                "expected a whole number from 1 to 4294967295",
            )
        })
        .transpose()?
        .unwrap_or(20) as u32;
    let ack_only_if_dmarc_pass = match s.get(keys::limits::ack_only_if) {
        None => false,
        Some(f) => match f.text()?.trim().to_ascii_lowercase().as_str() {
            "any" => false,
            "dmarc-pass" => true,
            _ => return Err(f.fail("expected one of \"any\", \"dmarc-pass\"")),
        },
    };
    Ok(Limits {
        acks_per_sender_per_day: acks,
        acks_per_hour,
        ack_only_if_dmarc_pass,
        max_message_size,
        alert_after,
    })
}

fn templates_from(mut s: Section<'_>) -> Result<Templates, ConfigError> {
    let dir = match s.get(keys::templates::dir) {
        None => None,
        Some(f) => {
            let dir = f.path()?;
            std::fs::read_dir(&dir).map_err(|err| f.read_fail(&dir, &err))?;
            Some(dir)
        }
    };
    Ok(Templates { dir })
}

fn intake_from(mut s: Section<'_>) -> Result<Intake, ConfigError> {
    let backfill = s
        .get(keys::intake::backfill)
        .map(|f| f.duration())
        .transpose()?
        .unwrap_or(Duration::from_secs(7 * 86400));
    let batch_size = s
        .get(keys::intake::batch_size)
        .map(|f| f.integer(1, MAX_BATCH_SIZE, "expected a whole number from 1 to 10000"))
        .transpose()?
        .unwrap_or(250) as u32;
    Ok(Intake {
        backfill,
        batch_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/secintake.example.toml");
        let config = Config::load_with_env(
            &path,
            env::vars(&[
                ("SECINTAKE_IMAP__PASSWORD", "imap-secret"),
                ("SECINTAKE_SMTP__PASSWORD", "smtp-secret"),
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.mailbox.address, "security@example.org");
        assert_eq!(config.imap.host, "imap.example.org");
        assert_eq!(config.imap.port, 993);
        assert_eq!(config.smtp.port, 587);
        assert_eq!(config.handlers.len(), 2);
        assert_eq!(config.limits.max_message_size, 50 << 20);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
    }

    /// `[announce]`'s OSV keys: accepted as documented, refused with the
    /// key, the value and what is expected.
    #[test]
    fn osv_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let example = include_str!("../../config/secintake.example.toml");
        let load = |announce: &str| {
            std::fs::write(
                &path,
                example.replace("\n[announce]\n", &format!("\n[announce]\n{announce}\n")),
            )
            .unwrap();
            Config::load_with_env(
                &path,
                env::vars(&[
                    ("SECINTAKE_IMAP__PASSWORD", "x"),
                    ("SECINTAKE_SMTP__PASSWORD", "x"),
                ]),
            )
        };
        let a = load("").unwrap().announce;
        assert_eq!(
            (
                a.osv_ecosystem,
                a.osv_package,
                a.osv_range_type,
                a.osv_id_prefix
            ),
            (None, None, crate::osv::RangeType::Ecosystem, None)
        );
        let a = load(
            "osv_ecosystem = \"Debian:12\"\nosv_package = \"example-tools\"\n\
             osv_range_type = \"semver\"\nosv_id_prefix = \"CURL\"\n\
             advisory_url = \"https://example.org/adv/{id}?case={case}\"",
        )
        .unwrap()
        .announce;
        assert_eq!(a.osv_ecosystem.as_deref(), Some("Debian:12"));
        assert_eq!(a.osv_package.as_deref(), Some("example-tools"));
        assert_eq!(a.osv_range_type, crate::osv::RangeType::Semver);
        assert_eq!(a.osv_id_prefix.as_deref(), Some("CURL"));
        assert_eq!(
            a.advisory_url.as_deref(),
            Some("https://example.org/adv/{id}?case={case}")
        );
        for (line, expected) in [
            (
                "osv_ecosystem = \"Cargo\"",
                "announce.osv_ecosystem = \"Cargo\": expected an OSV ecosystem",
            ),
            (
                "osv_ecosystem = \"GIT\"",
                "announce.osv_ecosystem = \"GIT\": expected an OSV ecosystem",
            ),
            (
                "osv_range_type = \"GIT\"",
                "announce.osv_range_type = \"GIT\": expected \"ECOSYSTEM\" or \"SEMVER\"",
            ),
            (
                "osv_id_prefix = \"SEC\"",
                "announce.osv_id_prefix = \"SEC\": expected an OSV database prefix",
            ),
            (
                "advisory_url = \"http://example.org/{id}\"",
                "announce.advisory_url = \"http://example.org/{id}\": expected an https:// URL",
            ),
            (
                "advisory_url = \"https://example.org/{cve}\"",
                "expected an https:// URL, with {id}",
            ),
            (
                "osv_package = \"\"",
                "announce.osv_package = \"\": must not be empty",
            ),
        ] {
            let err = load(line).unwrap_err().to_string();
            assert!(err.contains(expected), "{line}: {err}");
            assert!(err.contains("c.toml"), "{err}");
        }
    }
}
