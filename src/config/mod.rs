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
//!
//! This file holds what the configuration *is*: the public types. How it is
//! read lives beside it, each part importing only the parts listed before it:
//!
//! - `units`: durations and sizes as written ("48h", "50MiB");
//! - `keys`: every section and key, spelt once;
//! - `env`: which variables are configuration, and their names;
//! - `validate`: addresses, hosts, and the warnings of a loaded config;
//! - `loader`: the walk over the merged tree, one key at a time, whose
//!   errors name key, value and origin;
//! - `servers`, `announce`, `sections`: one `*_from` function per section;
//! - `load`: [`Config::load`] itself, which puts them together.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

mod announce;
mod env;
mod keys;
mod load;
mod loader;
mod oauth2;
mod pgp;
mod sections;
mod servers;
mod units;
mod validate;

pub use oauth2::{Auth, Mechanism, OAuth2, Provider};
pub use pgp::Pgp;
pub use units::{parse_duration, parse_size};
pub use validate::same_folder;

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
    /// `[alerts]`.
    pub alerts: Alerts,
    /// `[pgp]`: the team's OpenPGP key, when it has one.
    pub pgp: Option<Pgp>,
    /// `[oauth2]`: how access tokens are had, when a server uses them.
    pub oauth2: Option<OAuth2>,
    /// `[retention]`: how long raw mail is kept.
    pub retention: Retention,
    /// `[metrics] listen`: where the daemon serves OpenMetrics (loopback
    /// only); None: not served.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Problems with the files the configuration was read from, found at
    /// load (a password in a file other users can read); part of
    /// [`Config::warnings`].
    pub file_warnings: Vec<String>,
}

/// `[retention]`: raw reports are unfixed vulnerabilities and reporters'
/// personal data. None: kept (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// Drop the raw bytes (and bodies) of the messages of cases closed,
    /// rejected or marked duplicate this long ago.
    pub raw_after: Option<Duration>,
    /// Drop the stored copies of outgoing mail delivered this long ago
    /// (not the internal mail of open cases: the leak guard reads it).
    pub sent_after: Option<Duration>,
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

/// `[alerts]`: a second path for outage alerts.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    /// A program and its arguments (no shell), run with every outage alert
    /// and recovery notice on standard input as an RFC 5322 message: it
    /// still reaches someone when the SMTP server is what fails (a chat
    /// webhook, `sendmail` through another relay). Empty: none.
    pub command: Vec<String>,
    /// `[alert_relay]`: a second SMTP relay that carries the alerts and
    /// recovery notices of the parts whose failure stops mail (the SMTP
    /// server, the state file) to the handlers. Its keys are `[smtp]`'s
    /// connection and password keys; `auth` and `from_name` are not
    /// among them.
    pub relay: Option<Smtp>,
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
    /// Accept the verdict of `trusted_authserv_id` (default yes).
    pub accept_authentication_results: bool,
    /// Accept a valid OpenPGP signature by the handler's `pgp_key`
    /// (default yes).
    pub accept_pgp_signature: bool,
    /// Accept a DKIM signature by the handler's own domain, verified by
    /// secintake through DNS (default no: it needs DNS).
    pub accept_dkim: bool,
    /// DNS servers for `dkim` (UDP); empty: the system's resolvers.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// `results_form = "microsoft365"`: read the verdict Exchange Online
    /// writes without an authserv-id (see `mail::auth`).
    pub microsoft365: bool,
    /// ARC sealers (RFC 8617) whose ARC-Authentication-Results count like
    /// the trusted server's own, by their ARC-Seal `d=`, lowercased.
    pub arc_sealers: Vec<String>,
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
    /// How to log in: default [`Auth::Password`].
    pub auth: Auth,
    /// The SASL mechanism for `auth = "oauth2"` (`oauth2.mechanism`).
    pub mechanism: Mechanism,
    /// Login password (from `password` or `password_file`); empty with
    /// `auth = "oauth2"`. Never logged.
    pub password: String,
    /// The main folder to watch: default "INBOX" (`folder`, or the first
    /// of `folders`).
    pub folder: String,
    /// More folders to watch, each on its own connection: the rest of
    /// `folders` (a provider's spam folder, say).
    pub more_folders: Vec<String>,
    /// `junk = "auto"`: also watch the folder the server marks `\Junk`
    /// (RFC 6154), found when the daemon starts.
    pub junk_auto: bool,
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
            .field("auth", &self.auth)
            .field("password", &"<redacted>")
            .field("folder", &self.folder)
            .field("more_folders", &self.more_folders)
            .field("junk_auto", &self.junk_auto)
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
    /// Login name; set together with `password` or not at all (or with
    /// `auth = "oauth2"`).
    pub username: Option<String>,
    /// How to log in: default [`Auth::Password`].
    pub auth: Auth,
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
            .field("auth", &self.auth)
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
    /// Their OpenPGP public key: mail about encrypted reports goes to them
    /// encrypted; without one they get the facts only.
    pub pgp_key: Option<crate::openpgp::PublicKey>,
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

impl Config {
    /// The `[[handlers]]` entry for `email` (addresses are stored
    /// lowercased), if it is one.
    pub fn handler(&self, email: &str) -> Option<&Handler> {
        self.handlers.iter().find(|h| h.email == email)
    }
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
