//! The command line: `secintake run`, `check-config`, `status`, `cases …`, `mail …`.
//!
//! Output meant for scripts (`--json`) has a documented, stable shape (see
//! README.md); the text output is for people and may change.

mod cases;
mod generate;
mod logging;
mod mail;
mod oauth2;
mod osv;
mod pgp;
mod records;
mod status;

use cases::*;
use mail::*;
use osv::*;
use pgp::*;
use status::*;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::store::Store;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "secintake",
    version,
    about = "Runs an open-source project's security@ mailbox: every report becomes a case and is acknowledged at once; deadlines and the audit trail are kept in SQLite.",
    after_help = "Configuration: one TOML file (see config/secintake.example.toml) plus SECINTAKE_<SECTION>__<KEY> environment overrides, e.g. SECINTAKE_IMAP__PASSWORD.\nLogging: SECINTAKE_LOG takes a tracing filter (default: info); other crates never log above info, so no protocol trace (passwords, message bodies) can be turned on."
)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "SECINTAKE_CONFIG",
        default_value = "/etc/secintake/secintake.toml"
    )]
    pub config: PathBuf,
    /// Log format on standard error (text lines become native journal
    /// entries when standard error is the journal).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// What `secintake generate` writes.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Generated {
    /// Man pages, one per command (secintake.1, secintake-run.1, …).
    Man,
    /// bash, zsh and fish completions.
    Completions,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (IMAP intake, SMTP outbox, deadlines, alerts) until SIGTERM/SIGINT.
    Run {
        /// With a new state file on a mailbox secintake handled before
        /// (its mail carries the $SecintakeDone keyword): record that mail
        /// without answering it, instead of refusing to start.
        #[arg(long)]
        adopt: bool,
    },
    /// Validate the configuration, then log in to IMAP and SMTP (and the
    /// alert relay) and say what fails.
    CheckConfig {
        /// Only validate the file and the templates; do not contact the
        /// servers (for systemd's ExecStartPre: a mail server outage must
        /// not keep the daemon, and its outage alerts, from starting).
        #[arg(long)]
        offline: bool,
    },
    /// Show the last successful sync, connection health, the outbox backlog
    /// and the mailbox's lease. Exit status: 0 all well, 3 the mailbox or
    /// the SMTP server is failing (an outage or a refused password), the
    /// state file takes no writes, or another instance holds the mailbox;
    /// 1 the status could not be read.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Cases.
    #[command(subcommand)]
    Cases(CasesCommand),
    /// Stored mail: what opened no case, held acknowledgements, raw export.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Print an RFC 9116 security.txt: Contact (mailbox.address), Expires,
    /// Encryption (the team key), Policy (mailbox.policy_url), Preferred-Languages.
    SecurityTxt {
        /// Clear-sign it with the team key ([pgp] secret_key_file).
        #[arg(long)]
        sign: bool,
        /// How long it is valid (RFC 9116 advises less than a year).
        #[arg(long, default_value = "365d", value_parser = parse_duration_arg)]
        expires: std::time::Duration,
        /// Where the team's public key is published, e.g.
        /// https://example.org/security.asc (default: the key's openpgp4fpr: URI).
        #[arg(long)]
        encryption: Option<String>,
        /// Preferred languages for reports, comma-separated.
        #[arg(long, default_value = "en")]
        languages: String,
    },
    /// OpenPGP: the team key.
    #[command(subcommand)]
    Pgp(PgpCommand),
    /// OAuth2 ([oauth2]): getting the first refresh token.
    #[command(subcommand)]
    Oauth2(Oauth2Command),
    /// Print OpenMetrics text of what the state file counts (for
    /// node_exporter's textfile collector; the daemon serves it, with its
    /// live health, on [metrics] listen).
    Metrics,
    /// Write man pages or shell completions into DIR (for packaging).
    #[command(hide = true)]
    Generate { what: Generated, dir: PathBuf },
    /// Bring the state file's schema up to this secintake's (the daemon
    /// stopped; a copy is made first). `run` does the same at start; no
    /// other command changes the schema.
    Migrate,
    /// Write a consistent copy of the state file to FILE (created 0600; it
    /// must not exist), safe while the daemon runs.
    Backup {
        /// Where the copy goes.
        file: PathBuf,
        /// Then open the copy and check it: SQLite's integrity check, and
        /// its cases counted.
        #[arg(long)]
        verify: bool,
    },
    /// Time to acknowledgement and to response, per case and in total: met or
    /// missed, median and 90th percentile.
    Sla {
        /// Only cases received at or after this date (YYYY-MM-DD, "YYYY-MM-DD HH:MM" UTC, or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PgpCommand {
    /// Print the team's public key, armored (for the web site and keyservers).
    ExportKey,
}

#[derive(Debug, Subcommand)]
pub enum Oauth2Command {
    /// Get a refresh token with a person at a browser, and save it (0600)
    /// beside the state file as <storage.path>.oauth2-token: the device
    /// flow (a code entered on any device) where oauth2.device_url is
    /// known (Microsoft), else the browser flow through a redirect to
    /// 127.0.0.1 (Google). Run it as the daemon's user.
    Authorize {
        /// Use the browser flow even where the device flow is offered.
        #[arg(long)]
        browser: bool,
        /// The loopback port the browser flow listens on (0: any free
        /// one). Fix it to forward it over ssh from a remote host.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}

#[derive(Debug, Subcommand)]
pub enum CasesCommand {
    /// List cases, oldest first.
    List {
        /// Only cases in this state (new, acknowledged, …).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one case: facts, due times, messages and the event timeline.
    Show {
        /// Case id, e.g. SEC-2026-0007.
        id: String,
        #[arg(long)]
        json: bool,
        /// Print only the report's text (decrypted with the team key when it
        /// arrived encrypted).
        #[arg(long, conflicts_with = "json")]
        text: bool,
    },
    /// Record that the reporter got a detailed response another way (stops the reminders).
    Responded { id: String },
    /// Set or move a deadline: `fix` (fixes ready) or `embargo` (public disclosure date).
    Deadline {
        id: String,
        /// fix | embargo
        kind: String,
        /// YYYY-MM-DD, "YYYY-MM-DD HH:MM" (UTC) or RFC 3339.
        date: String,
    },
    /// Mark a deadline met: fix | embargo | respond | acknowledge.
    Met { id: String, kind: String },
    /// Make a handler (name or email) the case's primary handler, as /assign does.
    Assign { id: String, handler: String },
    /// Move the case to another state of the disclosure process, as /state does.
    State {
        id: String,
        /// new, acknowledged, triage, confirmed, fixing, fix-ready, closed …
        state: String,
    },
    /// Add an internal note (copied to the handlers, never to the reporter).
    Note { id: String, text: String },
    /// Close the case, as /close does.
    Close { id: String },
    /// Print the case as an OSV record (JSON) for osv-scanner and vulnerability databases.
    ///
    /// OSV schema 1.6.7: the id is the CVE (/cve), or "<osv_id_prefix>-<case
    /// id>" with [announce] osv_id_prefix; affected ranges come from
    /// /affected and /fixed-in (syntax: README, "OSV export"), the package
    /// from [announce] osv_ecosystem and osv_package; then credits (/credit),
    /// severity (/severity), references and the announced advisory. A fact
    /// OSV cannot express stops the export with one line naming the case,
    /// the fact and its value; nothing is printed then.
    #[command(group(clap::ArgGroup::new("format").required(true).args(["osv", "out"])))]
    Export {
        /// Case id, e.g. SEC-2026-0007.
        id: String,
        /// Print an OSV record.
        #[arg(long)]
        osv: bool,
        /// Also print a case that is not announced yet: the record has no
        /// published time and says "draft": true in database_specific.
        #[arg(long, requires = "osv")]
        draft: bool,
        /// Instead: write the whole case into DIR as ID.json (as `cases show
        /// --json`) and ID.mbox (its mail, mboxrd), each 0600.
        #[arg(long, value_name = "DIR", conflicts_with = "osv")]
        out: Option<PathBuf>,
    },
    /// Remove the case's personal data on request: its reports and replies,
    /// addresses, subjects, facts and event details. The id, states,
    /// deadlines and event names stay; recorded as an event. Not
    /// reversible: asks for --yes.
    Erase {
        id: String,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// List stored incoming mail that opened no case.
    List {
        /// Auto-generated mail (bounces, auto-replies, lists), with the rule that matched.
        #[arg(long)]
        robots: bool,
        #[arg(long)]
        json: bool,
    },
    /// Open a case from a stored message that was filed as auto-generated or too old.
    Promote {
        /// Message id as shown by `mail list`.
        id: i64,
    },
    /// Write a stored message's raw bytes to standard output (e.g. an
    /// original too large to attach to the notification).
    Export {
        /// Message id as shown by `cases show` or `mail list`.
        id: i64,
    },
    /// List acknowledgements held back by [limits] acks_per_hour or ack_only_if.
    Held {
        #[arg(long)]
        json: bool,
    },
    /// Send held acknowledgements: those of the given cases, or --all.
    Release {
        /// Case ids, e.g. SEC-2026-0007.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<String>,
        /// Every held acknowledgement.
        #[arg(long)]
        all: bool,
    },
}

/// Parses arguments, runs the command, returns the exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "{}secintake: {}",
                logging::error_line_prefix(),
                one_line(&e)
            );
            std::process::ExitCode::from(1)
        }
    }
}

/// An error and its causes in one line, each cause said once: most of our
/// errors already quote their cause ("cannot create … : Read-only file
/// system"), which `{:#}` then repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

pub(super) fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    // ConfigError's Display is the whole one-line message.
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    // Needs no configuration: it runs while the package is built.
    if let Command::Generate { what, dir } = &cli.command {
        return generate::generate(*what, dir);
    }
    // What contacts no server (and needs no team key) runs without the
    // secrets, beside a unit that holds them as credentials.
    let offline = !matches!(
        cli.command,
        Command::Run { .. }
            | Command::CheckConfig { .. }
            | Command::SecurityTxt { .. }
            | Command::Pgp(_)
            | Command::Oauth2(_)
    );
    let cfg = if offline {
        Config::load_offline(&cli.config).map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        load_config(&cli.config)?
    };
    match cli.command {
        Command::Run { adopt } => {
            for w in cfg.warnings() {
                tracing::warn!("{w}");
            }
            let rt = runtime()?;
            rt.block_on(async {
                let shutdown = CancellationToken::new();
                let s = shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("signal received");
                    s.cancel();
                });
                crate::daemon::run(cfg, Arc::new(SystemClock), shutdown, adopt).await
            })?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::CheckConfig { offline } => check_config(cfg, offline),
        Command::Status { json } => status(&cfg, json),
        Command::Cases(CasesCommand::List { state, json }) => cases_list(&cfg, state, json),
        Command::Cases(CasesCommand::Show { id, json, text }) => case_show(&cfg, &id, json, text),
        Command::Mail(MailCommand::List { robots, json }) => mail_list(&cfg, robots, json),
        Command::Mail(MailCommand::Promote { id }) => promote(cfg, id),
        Command::Mail(MailCommand::Held { json }) => held(&cfg, json),
        Command::Mail(MailCommand::Export { id }) => export(&cfg, id),
        Command::Mail(MailCommand::Release { ids, all }) => release(&cfg, &ids, all),
        Command::Sla { since, json } => sla(&cfg, since.as_deref(), json),
        Command::SecurityTxt {
            sign,
            expires,
            encryption,
            languages,
        } => security_txt(&cfg, sign, expires, encryption.as_deref(), &languages),
        Command::Pgp(PgpCommand::ExportKey) => export_key(&cfg),
        Command::Oauth2(Oauth2Command::Authorize { browser, port }) => {
            oauth2::authorize(&cfg, browser, port)
        }
        Command::Migrate => migrate(&cfg),
        Command::Generate { what, dir } => generate::generate(what, &dir),
        Command::Metrics => {
            let store = open_store(&cfg)?;
            let now = crate::clock::Clock::now(&SystemClock);
            let counts = crate::store::metric_counts(store.conn(), &crate::clock::fmt_ts(now))?;
            print!("{}", crate::metrics::render(&counts, now, None));
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Backup { file, verify } => {
            state_exists(&cfg)?;
            Store::open_any(&cfg.storage.path)?.backup_to(&file)?;
            println!("state file copied to {}", file.display());
            if verify {
                let (cases, version) = Store::verify_copy(&file)?;
                println!(
                    "the copy is sound: integrity check ok, schema version {version}, {cases} case(s)"
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Cases(CasesCommand::Responded { id }) => met(&cfg, &id, "respond"),
        Command::Cases(CasesCommand::Met { id, kind }) => met(&cfg, &id, &kind),
        Command::Cases(CasesCommand::Deadline { id, kind, date }) => {
            set_deadline(&cfg, &id, &kind, &date)
        }
        Command::Cases(CasesCommand::Assign { id, handler }) => {
            run_command(&cfg, &id, &format!("/assign {handler}"))
        }
        Command::Cases(CasesCommand::State { id, state }) => {
            run_command(&cfg, &id, &format!("/state {state}"))
        }
        Command::Cases(CasesCommand::Close { id }) => run_command(&cfg, &id, "/close"),
        Command::Cases(CasesCommand::Note { id, text }) => note(&cfg, &id, &text),
        Command::Cases(CasesCommand::Export {
            id, out: Some(dir), ..
        }) => records::export(&cfg, &id, &dir),
        Command::Cases(CasesCommand::Export { id, draft, .. }) => {
            osv_export(&cfg, &cli.config, &id, draft)
        }
        Command::Cases(CasesCommand::Erase { id, yes }) => records::erase(&cfg, &id, yes),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn check_config(cfg: Config, offline: bool) -> anyhow::Result<std::process::ExitCode> {
    println!("config ok: {}", cfg.mailbox.address);
    for w in cfg.warnings() {
        println!("warning: {w}");
    }
    if let Some(id) = &cfg.handler_auth.trusted_authserv_id {
        let mut hosts = vec![id.clone()];
        hosts.extend(cfg.handler_auth.border_hosts.iter().cloned());
        println!(
            "handler mail is believed only on an Authentication-Results header from {id} \
             above every Received field added by a host other than {}. Your border MTA must:\n\
             \x20 1. remove Authentication-Results fields claiming {id} from arriving mail \
             (RFC 8601 section 5),\n\
             \x20 2. add its own verdict (DKIM, SPF or DMARC) at the top of the header,\n\
             \x20 3. name one of those hosts in the 'by' clause of its Received field.",
            hosts.join(", ")
        );
    }
    let mut failed = false;
    match crate::templates::Templates::load(cfg.templates.dir.as_deref()) {
        Ok(_) => println!("templates ok"),
        Err(e) => {
            println!("templates FAILED: {e}");
            failed = true;
        }
    }
    if offline {
        return Ok(if failed {
            std::process::ExitCode::from(1)
        } else {
            std::process::ExitCode::SUCCESS
        });
    }
    let rt = runtime()?;
    let tokens = cfg.token_source();
    rt.block_on(async {
        match crate::intake::check(&cfg.imap, tokens.as_deref()).await {
            Ok(s) => println!("{s}"),
            Err(e) => {
                println!("IMAP FAILED: {e}");
                failed = true;
            }
        }
        let relay = crate::outbox::Relay {
            section: crate::outbox::Section::Smtp,
            cfg: cfg.smtp.clone(),
            tokens: tokens.clone(),
        };
        failed |= !check_smtp("SMTP", &relay).await;
        if let Some(second) = &cfg.alerts.relay {
            let relay = crate::outbox::Relay {
                section: crate::outbox::Section::AlertRelay,
                cfg: second.clone(),
                tokens: None,
            };
            failed |= !check_smtp("alert_relay", &relay).await;
        }
    });
    Ok(if failed {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// Connects and logs in to `relay` as the outbox would, prints how it
/// went under `label`; whether it worked.
async fn check_smtp(label: &str, relay: &crate::outbox::Relay) -> bool {
    match crate::outbox::connect(relay).await {
        Ok(mut c) => {
            let _ = c.quit().await;
            println!(
                "{label} ok: connected to {}:{}{}",
                relay.cfg.host,
                relay.cfg.port,
                if relay.cfg.username.is_some() {
                    " and logged in"
                } else {
                    ""
                }
            );
            true
        }
        Err(e) => {
            println!("{label} FAILED: {e}");
            false
        }
    }
}

pub(super) fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    state_exists(cfg)?;
    Ok(Store::open_existing(&cfg.storage.path)?)
}

/// The CLI never creates the state file (opening one would).
fn state_exists(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.storage.path.exists() {
        anyhow::bail!(
            "storage.path {}: no state file yet (has `secintake run` started once?)",
            cfg.storage.path.display()
        );
    }
    Ok(())
}

/// `secintake migrate`: brings the state file's schema up to this
/// secintake's, with the daemon stopped (its lock), after a copy.
fn migrate(cfg: &Config) -> anyhow::Result<std::process::ExitCode> {
    state_exists(cfg)?;
    let _lock = crate::daemon::lock_state(cfg)
        .map_err(|e| anyhow::anyhow!("{e:#}; stop it before `secintake migrate`"))?;
    let before = Store::open_any(&cfg.storage.path)?.version()?;
    let store = Store::open(&cfg.storage.path)?;
    let after = store.version()?;
    if before == after {
        println!("the state file is at schema version {after} already");
    } else {
        println!(
            "state file migrated from schema version {before} to {after}; the copy made \
             before is beside it ({}.before-v{}.*)",
            cfg.storage.path.display(),
            before + 1
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

pub(super) fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `cli:<login name>`, the actor recorded for operator actions.
pub fn local_user() -> String {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()));
    format!("cli:{name}")
}
