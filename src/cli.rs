//! The command line: `secintake run`, `check-config`, `status`, `cases …`, `mail …`.
//!
//! Output meant for scripts (`--json`) has a documented, stable shape (see
//! README.md); the text output is for people and may change.

use crate::clock::{Clock, SystemClock};
use crate::compose::printable;
use crate::config::Config;
use crate::store::{self, Store};
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
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (IMAP intake, SMTP outbox, deadlines, alerts) until SIGTERM/SIGINT.
    Run,
    /// Validate the configuration, then log in to IMAP and SMTP and say what fails.
    CheckConfig {
        /// Only validate the file and the templates; do not contact the
        /// servers (for systemd's ExecStartPre: a mail server outage must
        /// not keep the daemon, and its outage alerts, from starting).
        #[arg(long)]
        offline: bool,
    },
    /// Show the last successful sync, connection health and the outbox backlog.
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
    Export {
        /// Case id, e.g. SEC-2026-0007.
        id: String,
        /// OSV format (the only one so far; required so that the command
        /// line says what it prints).
        #[arg(long, required = true)]
        osv: bool,
        /// Also print a case that is not announced yet: the record has no
        /// published time and says "draft": true in database_specific.
        #[arg(long)]
        draft: bool,
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
    init_logging(cli.log_format);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("secintake: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Whether an event may be logged whatever `SECINTAKE_LOG` says: other
/// crates only up to info. Their debug and trace output carries what they
/// see on the wire (async-imap logs `LOGIN "user" "password"` and whole
/// messages at trace), and a per-target directive such as
/// `async_imap::imap_stream=trace` is more specific than any cap added to
/// the filter, so the cap is a separate filter the directive cannot reach.
fn within_log_cap(meta: &tracing::Metadata<'_>) -> bool {
    let ours = meta.target() == "secintake" || meta.target().starts_with("secintake::");
    ours || *meta.level() <= tracing::Level::INFO
}

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SECINTAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(tracing_subscriber::filter::filter_fn(within_log_cap)))
        .with(filter)
        .init();
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
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
    let cfg = load_config(&cli.config)?;
    match cli.command {
        Command::Run => {
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
                crate::daemon::run(cfg, Arc::new(SystemClock), shutdown).await
            })?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::CheckConfig { offline } => check_config(cfg, offline),
        Command::Status { json } => status(&cfg, json),
        Command::Cases(CasesCommand::List { state, json }) => cases_list(&cfg, state, json),
        Command::Cases(CasesCommand::Show { id, json }) => case_show(&cfg, &id, json),
        Command::Mail(MailCommand::List { robots, json }) => mail_list(&cfg, robots, json),
        Command::Mail(MailCommand::Promote { id }) => promote(cfg, id),
        Command::Mail(MailCommand::Held { json }) => held(&cfg, json),
        Command::Mail(MailCommand::Export { id }) => export(&cfg, id),
        Command::Mail(MailCommand::Release { ids, all }) => release(&cfg, &ids, all),
        Command::Sla { since, json } => sla(&cfg, since.as_deref(), json),
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
        Command::Cases(CasesCommand::Export { id, osv: _, draft }) => {
            osv_export(&cfg, &cli.config, &id, draft)
        }
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
    rt.block_on(async {
        match crate::intake::check(&cfg.imap).await {
            Ok(s) => println!("{s}"),
            Err(e) => {
                println!("IMAP FAILED: {e}");
                failed = true;
            }
        }
        match crate::outbox::connect(&cfg.smtp).await {
            Ok(mut c) => {
                let _ = c.quit().await;
                println!(
                    "SMTP ok: connected to {}:{}{}",
                    cfg.smtp.host,
                    cfg.smtp.port,
                    if cfg.smtp.username.is_some() {
                        " and logged in"
                    } else {
                        ""
                    }
                );
            }
            Err(e) => {
                println!("SMTP FAILED: {e}");
                failed = true;
            }
        }
    });
    Ok(if failed {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    if !cfg.storage.path.exists() {
        anyhow::bail!(
            "storage.path {}: no state file yet (has `secintake run` started once?)",
            cfg.storage.path.display()
        );
    }
    Ok(Store::open(&cfg.storage.path)?)
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn status(cfg: &Config, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let c = s.conn();
    let folder = store::folder_state(c, &cfg.imap.folder)?;
    let last_sync = store::last_sync_at(c, &cfg.imap.folder)?;
    let imap = store::health(c, "imap")?;
    let smtp = store::health(c, "smtp")?;
    let (backlog, oldest) = store::outbox_backlog(c)?;
    let failed = store::outbox_failed_count(c)?;
    let held = store::held_acks(c, None)?.len();
    let open = store::count_not_closed(c)?;
    if json {
        print_json(&serde_json::json!({
            "folder": cfg.imap.folder,
            "uidvalidity": folder.as_ref().map(|f| f.uidvalidity),
            "last_uid": folder.as_ref().map(|f| f.last_uid),
            "last_sync_at": last_sync,
            "imap": imap,
            "smtp": smtp,
            "outbox": { "backlog": backlog, "oldest_unsent_at": oldest, "failed": failed },
            "held_acks": held,
            "open_cases": open,
        }))?;
    } else {
        println!(
            "mailbox        {} (folder {})",
            cfg.mailbox.address, cfg.imap.folder
        );
        println!("last sync      {}", last_sync.as_deref().unwrap_or("never"));
        for h in [&imap, &smtp] {
            match &h.failing_since {
                Some(since) => println!(
                    "{:<14} FAILING since {} ({}){}",
                    h.component,
                    since,
                    h.last_error.as_deref().unwrap_or("unknown error"),
                    if h.alerted { ", handlers alerted" } else { "" }
                ),
                None => println!(
                    "{:<14} ok (last success {})",
                    h.component,
                    h.last_ok_at.as_deref().unwrap_or("never")
                ),
            }
        }
        println!(
            "outbox         {backlog} waiting{}; {failed} failed permanently",
            oldest
                .map(|o| format!(", oldest since {o}"))
                .unwrap_or_default()
        );
        println!("open cases     {open}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn cases_list(
    cfg: &Config,
    state: Option<String>,
    json: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let state = match state.as_deref() {
        None => None,
        Some(s) => Some(crate::model::State::parse(s).ok_or_else(|| {
            anyhow::anyhow!(
                "--state {s:?}: expected one of {}",
                crate::model::names(&crate::model::State::ALL)
            )
        })?),
    };
    let s = open_store(cfg)?;
    let rows = store::cases(s.conn(), state)?;
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no cases");
    } else {
        println!(
            "{:<15} {:<13} {:<20} {:<30} subject",
            "ID", "STATE", "RECEIVED", "REPORTER"
        );
        for r in rows {
            println!(
                "{:<15} {:<13} {:<20} {:<30} {}",
                r.id,
                r.state,
                &r.received_at[..r.received_at.len().min(19)],
                printable(r.reporter.as_deref().unwrap_or("-")),
                printable(r.subject.as_deref().unwrap_or(""))
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn case_show(cfg: &Config, id: &str, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let c = s.conn();
    let Some(case) = store::case(c, id)? else {
        anyhow::bail!("no case {id:?} (ids look like SEC-2026-0007; see `secintake cases list`)");
    };
    let messages = store::messages_of_case(c, id)?;
    let events = store::events_of_case(c, id)?;
    let deadlines = crate::deadlines::of_case(c, id)?;
    if json {
        let mut v = serde_json::to_value(&case)?;
        v["deadlines"] = serde_json::to_value(&deadlines)?;
        v["messages"] = serde_json::to_value(&messages)?;
        v["events"] = serde_json::to_value(&events)?;
        print_json(&v)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    println!("{}  [{}]", case.id, case.state);
    println!(
        "subject       {}",
        printable(case.subject.as_deref().unwrap_or(""))
    );
    println!(
        "reporter      {}",
        case.reporter
            .as_deref()
            .unwrap_or("(no usable reply address)")
    );
    println!("received      {}", case.received_at);
    println!(
        "acknowledge   due {}{}",
        case.ack_due_at,
        case.acknowledged_at
            .as_deref()
            .map(|a| format!(", done {a}"))
            .unwrap_or_default()
    );
    println!(
        "respond       due {}{}",
        case.respond_due_at,
        case.responded_at
            .as_deref()
            .map(|a| format!(", done {a}"))
            .unwrap_or_default()
    );
    for d in deadlines
        .iter()
        .filter(|d| d.kind == "fix" || d.kind == "embargo")
    {
        println!(
            "{:<13} due {}{}",
            d.kind,
            d.due_at,
            d.met_at
                .as_deref()
                .map(|a| format!(", done {a}"))
                .unwrap_or_default()
        );
    }
    if case.unparsed {
        println!("note          the report could not be parsed; read its raw bytes");
    }
    println!("\nmessages:");
    for m in &messages {
        println!(
            "  #{:<6} {} {:<3} {:<10} {} {}{}",
            m.id,
            m.at,
            m.direction,
            m.kind,
            printable(m.from.as_deref().unwrap_or("-")),
            printable(m.subject.as_deref().unwrap_or("")),
            m.robot_rule
                .as_deref()
                .map(|r| format!(" (robot: {r})"))
                .unwrap_or_default()
        );
    }
    println!("\ntimeline:");
    for e in &events {
        println!(
            "  {} {:<28} {}{}",
            e.at,
            e.actor,
            e.what,
            e.detail
                .as_deref()
                .map(|d| format!(": {}", printable(d)))
                .unwrap_or_default()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn mail_list(cfg: &Config, robots: bool, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let rows: Vec<store::MessageRow> = if robots {
        store::robot_messages(s.conn())?
    } else {
        store::unattached_messages(s.conn())?
    };
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no messages");
    } else {
        println!(
            "{:<7} {:<24} {:<20} {:<15} {:<30} subject",
            "ID", "AT", "RULE", "CASE", "FROM"
        );
        for m in rows {
            println!(
                "{:<7} {:<24} {:<20} {:<15} {:<30} {}",
                m.id,
                m.at,
                m.robot_rule.as_deref().unwrap_or(&m.kind),
                m.case_id.as_deref().unwrap_or("-"),
                printable(m.from.as_deref().unwrap_or("-")),
                printable(m.subject.as_deref().unwrap_or(""))
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn export(cfg: &Config, id: i64) -> anyhow::Result<std::process::ExitCode> {
    use std::io::Write;
    let s = open_store(cfg)?;
    let Some((_, raw)) = store::message(s.conn(), id)? else {
        anyhow::bail!("no stored message with id {id} (see `secintake cases show` or `mail list`)");
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&raw)
        .context("writing the message to standard output")?;
    out.flush()
        .context("writing the message to standard output")?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn held(cfg: &Config, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let rows = store::held_acks(s.conn(), None)?;
    if json {
        print_json(&rows)?;
    } else if rows.is_empty() {
        println!("no held acknowledgements");
    } else {
        println!("{:<15} {:<24} {:<30} why", "CASE", "HELD AT", "TO");
        for h in rows {
            println!(
                "{:<15} {:<24} {:<30} {}",
                h.case_id,
                h.held_at,
                printable(&h.recipient),
                h.reason
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn release(cfg: &Config, ids: &[String], all: bool) -> anyhow::Result<std::process::ExitCode> {
    let released = as_operator(cfg, |tx, ctx, actor| {
        if all {
            return Ok(crate::cases::release_held(tx, ctx, None, actor)?);
        }
        let mut out = Vec::new();
        for id in ids {
            case_must_exist(tx, id)?;
            let r = crate::cases::release_held(tx, ctx, Some(id), actor)?;
            if r.is_empty() {
                anyhow::bail!("case {id} has no held acknowledgement (see `secintake mail held`)");
            }
            out.extend(r);
        }
        Ok(out)
    })?;
    if released.is_empty() {
        println!("no held acknowledgements");
    } else {
        println!(
            "released {} acknowledgement(s): {} (the running daemon sends them)",
            released.len(),
            released.join(", ")
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn promote(cfg: Config, id: i64) -> anyhow::Result<std::process::ExitCode> {
    let (case_id, acked) = as_operator(&cfg, |tx, ctx, actor| {
        Ok(crate::cases::promote(tx, ctx, id, actor)?)
    })?;
    println!(
        "message {id} opened case {case_id}{}",
        if acked {
            "; acknowledgement queued (the running daemon sends it)"
        } else {
            "; no acknowledgement (see `secintake cases show`)"
        }
    );
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs an operator action in one transaction, with what the workflow
/// needs: the configuration, the templates, the time, and the local user
/// as the actor.
fn as_operator<R>(
    cfg: &Config,
    f: impl FnOnce(&rusqlite::Connection, &crate::context::Context<'_>, &str) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let mut s = open_store(cfg)?;
    let templates = crate::templates::Templates::load(cfg.templates.dir.as_deref())?;
    let actor = local_user();
    let ctx = crate::context::Context {
        cfg,
        templates: &templates,
        now: SystemClock.now(),
    };
    let tx = s.transaction()?;
    let r = f(&tx, &ctx, &actor)?;
    tx.commit().context("saving the case")?;
    Ok(r)
}

/// `cli:<login name>`, the actor recorded for operator actions.
pub fn local_user() -> String {
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {}", rustix::process::getuid().as_raw()));
    format!("cli:{name}")
}

fn case_must_exist(conn: &rusqlite::Connection, id: &str) -> anyhow::Result<store::CaseRow> {
    store::case(conn, id)?.ok_or_else(|| {
        anyhow::anyhow!("no case {id:?} (ids look like SEC-2026-0007; see `secintake cases list`)")
    })
}

fn met(cfg: &Config, id: &str, kind: &str) -> anyhow::Result<std::process::ExitCode> {
    use crate::model::Kind;
    let kind = match Kind::parse(kind) {
        Some(k @ (Kind::Fix | Kind::Embargo | Kind::Respond | Kind::Acknowledge)) => k,
        _ => anyhow::bail!(
            "unknown deadline {kind:?}: expected one of fix, embargo, respond, acknowledge"
        ),
    };
    let changed = as_operator(cfg, |tx, ctx, actor| {
        case_must_exist(tx, id)?;
        let now = ctx.now;
        let how = format!("marked by {actor}");
        if kind == Kind::Respond {
            return Ok(crate::workflow::record_response(
                tx,
                now,
                id,
                actor,
                &how,
                ["response recorded", "response recorded again"],
                "sent another way (secintake cases responded)",
                None,
            )?);
        }
        let changed = if kind == Kind::Acknowledge {
            let met = store::record_acknowledged(tx, id, now, &how)?;
            crate::workflow::acknowledged(tx, now, id)?;
            met
        } else {
            crate::deadlines::meet(tx, id, kind, now, &how)?
        };
        if changed {
            let what = format!("{} deadline met", kind.as_str());
            store::add_event(tx, id, now, actor, &what, None, None)?;
        }
        Ok(changed)
    })?;
    if changed {
        println!("{id}: {} deadline met; its reminders stop", kind.as_str());
    } else {
        println!(
            "{id}: no open {} deadline (already met, or never set)",
            kind.as_str()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn set_deadline(
    cfg: &Config,
    id: &str,
    kind: &str,
    date: &str,
) -> anyhow::Result<std::process::ExitCode> {
    use crate::model::Kind;
    let kind = match Kind::parse(kind) {
        Some(k @ (Kind::Fix | Kind::Embargo)) => k,
        _ => anyhow::bail!("cannot set deadline {kind:?}: expected fix or embargo (acknowledge and respond follow sla.*)"),
    };
    let Some(due) = crate::clock::parse_date(date) else {
        anyhow::bail!("date {date:?}: expected {}", crate::clock::DATE_FORMS);
    };
    let done = as_operator(cfg, |tx, ctx, actor| {
        case_must_exist(tx, id)?;
        Ok(crate::workflow::set_deadline(
            tx, ctx, id, kind, due, actor, None,
        )?)
    })?;
    match done {
        Ok(done) => println!("{id}: {done}"),
        Err(e) => anyhow::bail!("{id}: {e}"),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn sla(cfg: &Config, since: Option<&str>, json: bool) -> anyhow::Result<std::process::ExitCode> {
    let since = match since {
        None => None,
        Some(d) => Some(crate::clock::parse_date(d).ok_or_else(|| {
            anyhow::anyhow!("--since {d:?}: expected {}", crate::clock::DATE_FORMS)
        })?),
    };
    let s = open_store(cfg)?;
    let r = crate::sla::report(s.conn(), since, SystemClock.now())?;
    if json {
        print_json(&r)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let secs = |s: Option<i64>| {
        s.map(|s| {
            humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string()
        })
        .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<15} {:<22} {:<10} {:<14} {:<10} to response",
        "CASE", "RECEIVED", "ACK", "to ack", "RESPONSE"
    );
    for c in &r.cases {
        println!(
            "{:<15} {:<22} {:<10} {:<14} {:<10} {}",
            c.id,
            &c.received_at[..c.received_at.len().min(19)],
            c.acknowledge.status,
            secs(c.acknowledge.seconds),
            c.respond.status,
            secs(c.respond.seconds)
        );
    }
    for (name, t) in [
        ("acknowledgement", &r.acknowledge),
        ("response", &r.respond),
    ] {
        println!(
            "{name:<16} met {}, missed {}, pending {}, waived {}; median {}, 90th percentile {}",
            t.met,
            t.missed,
            t.pending,
            t.waived,
            secs(t.median_seconds),
            secs(t.p90_seconds)
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs one handler command from the command line, with the same rules
/// as by email; the actor is the local user.
fn run_command(cfg: &Config, id: &str, line: &str) -> anyhow::Result<std::process::ExitCode> {
    let parsed = crate::commands::parse(line);
    let Some((_, cmd)) = parsed.commands.into_iter().next() else {
        anyhow::bail!("not a command: {line}");
    };
    let cmd = cmd.map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = as_operator(cfg, |tx, ctx, actor| {
        case_must_exist(tx, id)?;
        Ok(crate::workflow::apply(tx, ctx, id, actor, &cmd, "", None)?)
    })?;
    match result {
        Ok(done) => {
            println!("{id}: {done}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("secintake: {id}: {e}");
            Ok(std::process::ExitCode::from(1))
        }
    }
}

fn note(cfg: &Config, id: &str, text: &str) -> anyhow::Result<std::process::ExitCode> {
    if text.trim().is_empty() {
        anyhow::bail!("the note is empty");
    }
    as_operator(cfg, |tx, ctx, actor| {
        let case = case_must_exist(tx, id)?;
        Ok(crate::workflow::note(
            tx,
            ctx,
            &case,
            actor,
            text.trim(),
            None,
        )?)
    })?;
    println!("{id}: note recorded and copied to the handlers (the running daemon sends it)");
    Ok(std::process::ExitCode::SUCCESS)
}

/// `cases export ID --osv`: gathers what the record needs from the case
/// (crate::osv maps it) and prints it. The record is for publication, so
/// a case that is not announced needs `--draft`: an embargoed issue must
/// not leave the machine in a format made for databases by accident.
fn osv_export(
    cfg: &Config,
    config_path: &std::path::Path,
    id: &str,
    draft: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let s = open_store(cfg)?;
    let c = s.conn();
    let case = case_must_exist(c, id)?;
    let a = &cfg.announce;
    let Some(ecosystem) = a.osv_ecosystem.clone() else {
        anyhow::bail!(
            "{id}: announce.osv_ecosystem is not set in {}: an OSV record names the package's \
             ecosystem (e.g. \"crates.io\", \"PyPI\"; see config/secintake.example.toml)",
            config_path.display()
        );
    };
    let settings = crate::osv::Settings {
        ecosystem,
        package: a
            .osv_package
            .clone()
            .unwrap_or_else(|| cfg.mailbox.project.clone()),
        range_type: a.osv_range_type,
        id_prefix: a.osv_id_prefix.clone(),
        advisory_url: a.advisory_url.clone(),
    };
    let events = store::events_of_case(c, id)?;
    let at = |t: &str| {
        crate::clock::parse_ts(t)
            .ok_or_else(|| anyhow::anyhow!("{id}: the state file holds a bad time {t:?}"))
    };
    let mut modified = at(&case.received_at)?;
    for e in &events {
        modified = modified.max(at(&e.at)?);
    }
    let published = match events.iter().find(|e| e.what == "announced") {
        Some(e) => Some(at(&e.at)?),
        None => None,
    };
    if published.is_none() && !draft {
        anyhow::bail!(
            "{id}: not announced yet (state {}): an OSV record is for publication; pass --draft \
             to print it anyway, marked \"draft\": true",
            case.state
        );
    }
    // The announcement as it went to the list (not a dry run): its subject
    // is the public title, its text the public details.
    let announcement = match published {
        None => None,
        Some(_) => store::messages_of_case(c, id)?.into_iter().rev().find(|m| {
            m.direction == "out"
                && m.kind == "announce"
                && !m.subject.as_deref().unwrap_or("").starts_with("[DRY RUN]")
        }),
    };
    let title = match &announcement {
        Some(m) => m.subject.as_deref().map(|t| {
            let t = t.trim();
            t.strip_prefix("[security]").unwrap_or(t).trim().to_owned()
        }),
        None => case.subject.as_deref().map(crate::compose::clean_subject),
    };
    let details = match &announcement {
        Some(m) => Some(without_signature(&crate::workflow::stored_text(c, m)?)),
        None => store::fact(c, id, "summary")?,
    };
    let credit = store::fact(c, id, "credit")?;
    let facts = crate::osv::Facts {
        case_id: id,
        cve: case.cve.as_deref(),
        severity: case.severity.as_deref(),
        affected: case.affected.as_deref(),
        fixed_in: case.fixed_in.as_deref(),
        credit: credit.as_deref(),
        title: title.as_deref(),
        details: details.as_deref(),
        modified,
        published,
    };
    let record = crate::osv::record(&facts, &settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    print_json(&record)?;
    if published.is_none() {
        eprintln!(
            "secintake: {id} is not announced: the record is a draft (database_specific.draft), \
             not for publication"
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// `text` above its signature (a `-- ` line), trimmed.
fn without_signature(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_end_matches('\r') == "-- " {
            break;
        }
        out.push(line.trim_end_matches('\r'));
    }
    out.join("\n").trim().to_owned()
}
