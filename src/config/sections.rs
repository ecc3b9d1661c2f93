//! Building the typed configuration from the merged tree: [`config_from`]
//! opens every section and hands each to its `*_from` function. The
//! sections with no connection to a server are built here; `[imap]` and
//! `[smtp]` are in `servers`, `[announce]` in `announce`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use config::{Map, Value};

use super::announce::announce_from;
use super::keys::{self, SECTIONS};
use super::loader::{Field, Loader, Section};
use super::oauth2::{oauth2_from, Auth};
use super::pgp::{handler_key, pgp_from};
use super::servers::{imap_from, smtp_from};
use super::units::parse_duration;
use super::validate::valid_address;
use super::{
    Alerts, Config, ConfigError, Handler, HandlerAuth, Intake, Limits, Mailbox, Reporter,
    Retention, Sla, Storage, Templates, Workflow,
};

/// Upper bound for `intake.batch_size`; larger windows only make one
/// round trip huge without making intake faster.
const MAX_BATCH_SIZE: u64 = 10_000;

/// The whole configuration from the merged tree's root table.
pub(super) fn config_from(
    loader: &Loader,
    mut root: Map<String, Value>,
) -> Result<Config, ConfigError> {
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
    let pgp = loader.section(&mut root, keys::pgp::NAME, keys::pgp::KEYS)?;
    let alerts = loader.section(&mut root, keys::alerts::NAME, keys::alerts::KEYS)?;
    let alert_relay =
        loader.section(&mut root, keys::alert_relay::NAME, keys::alert_relay::KEYS)?;
    let oauth2 = loader.section(&mut root, keys::oauth2::NAME, keys::oauth2::KEYS)?;
    let metrics = loader.section(&mut root, keys::metrics::NAME, keys::metrics::KEYS)?;
    let retention = loader.section(&mut root, keys::retention::NAME, keys::retention::KEYS)?;

    let mailbox = mailbox_from(mailbox)?;
    let handlers = handlers_from(handlers, &mailbox)?;
    let pgp = pgp_from(pgp, &mailbox)?;
    let mut imap = imap_from(imap)?;
    let smtp = smtp_from(smtp)?;
    let oauth2 = oauth2_from(oauth2)?;
    if let Some(o) = &oauth2 {
        imap.mechanism = o.mechanism;
    } else {
        let user = [(imap.auth, "imap.auth"), (smtp.auth, "smtp.auth")]
            .into_iter()
            .find(|(a, _)| *a == Auth::OAuth2);
        if let Some((_, key)) = user {
            return Err(loader.missing(
                &format!("{}.{}", keys::oauth2::NAME, keys::oauth2::client_id),
                &format!(" ({key} is \"oauth2\": [oauth2] says how tokens are had)"),
            ));
        }
    }
    let metrics_listen = metrics_from(metrics)?;
    let retention = retention_from(retention)?;
    Ok(Config {
        retention,
        metrics_listen,
        imap,
        smtp,
        storage: storage_from(storage)?,
        sla: sla_from(sla)?,
        limits: limits_from(limits)?,
        templates: templates_from(templates)?,
        intake: intake_from(intake)?,
        handler_auth: handler_auth_from(handler_auth)?,
        workflow: workflow_from(workflow)?,
        announce: announce_from(announce)?,
        reporter: reporter_from(reporter)?,
        alerts: Alerts {
            relay: (!alert_relay.is_empty())
                .then(|| smtp_from(alert_relay))
                .transpose()?,
            ..alerts_from(alerts)?
        },
        mailbox,
        handlers,
        pgp,
        oauth2,
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

/// `[retention]`: durations of at least a day.
fn retention_from(mut s: Section<'_>) -> Result<Retention, ConfigError> {
    let day = std::time::Duration::from_secs(86_400);
    let mut read = |key| s.get(key).map(|f| f.duration_min(day)).transpose();
    Ok(Retention {
        raw_after: read(keys::retention::raw_after)?,
        sent_after: read(keys::retention::sent_after)?,
    })
}

/// `[metrics] listen`: an IP address and port on loopback (the metrics
/// name cases and counts; they are not for the network).
fn metrics_from(mut s: Section<'_>) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let Some(f) = s.get(keys::metrics::listen) else {
        return Ok(None);
    };
    let text = f.line()?;
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|_| f.fail("expected an address and port, e.g. \"127.0.0.1:9464\""))?;
    if !addr.ip().is_loopback() {
        return Err(f.fail(format_args!(
            "{} is not a loopback address: the metrics are for this host (scrape them through \
             a local agent, or use `secintake metrics` with node_exporter's textfile collector)",
            addr.ip()
        )));
    }
    Ok(Some(addr))
}

fn alerts_from(mut s: Section<'_>) -> Result<Alerts, ConfigError> {
    let Some(f) = s.get(keys::alerts::command) else {
        return Ok(Alerts::default());
    };
    let command = f.list()?;
    let Some(program) = command.first() else {
        return Err(f.fail("expected [\"/path/to/program\", \"argument\", …]"));
    };
    let path = std::path::Path::new(program);
    if !path.is_absolute() {
        return Err(f.fail(format_args!(
            "{program:?}: give the program's absolute path"
        )));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let runnable = std::fs::metadata(path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !runnable {
            return Err(f.fail(format_args!("{program}: no such executable file")));
        }
    }
    Ok(Alerts {
        command,
        relay: None,
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

fn handler_auth_from(mut s: Section<'_>) -> Result<HandlerAuth, ConfigError> {
    const ACCEPT: [&str; 3] = ["authentication-results", "pgp-signature", "dkim"];
    let accept = match s.get(keys::handler_auth::accept) {
        None => ACCEPT[..2].iter().map(|a| a.to_string()).collect(),
        Some(f) => {
            let list = f.list()?;
            if let Some(bad) = list.iter().find(|a| !ACCEPT.contains(&a.as_str())) {
                return Err(f.fail(format_args!(
                    "{bad:?} is not a proof secintake knows (expected {})",
                    ACCEPT.map(|a| format!("{a:?}")).join(", ")
                )));
            }
            if list.is_empty() {
                return Err(f.fail("must name at least one proof"));
            }
            list
        }
    };
    let microsoft365 = match s.get(keys::handler_auth::results_form) {
        None => false,
        Some(f) => match f.text()?.as_str() {
            "rfc8601" => false,
            "microsoft365" => true,
            _ => return Err(f.fail("expected \"rfc8601\" or \"microsoft365\"")),
        },
    };
    let arc_sealers = match s.get(keys::handler_auth::arc_sealers) {
        None => Vec::new(),
        Some(f) => f
            .list()?
            .iter()
            .map(|d| {
                let d = d.trim().to_ascii_lowercase();
                let ok = d.contains('.')
                    && d.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                ok.then_some(d).ok_or_else(|| {
                    f.fail("expected domains like \"google.com\" (an ARC-Seal's d=)")
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if !arc_sealers.is_empty() && !accept.iter().any(|a| a == ACCEPT[0]) {
        return Err(s.loader.error(
            &s.key(keys::handler_auth::arc_sealers),
            None,
            "is set but handler_auth.accept leaves out \"authentication-results\", which ARC \
             verdicts extend"
                .into(),
        ));
    }
    Ok(HandlerAuth {
        microsoft365,
        arc_sealers,
        accept_authentication_results: accept.iter().any(|a| a == ACCEPT[0]),
        accept_pgp_signature: accept.iter().any(|a| a == ACCEPT[1]),
        accept_dkim: accept.iter().any(|a| a == ACCEPT[2]),
        dns_servers: match s.get(keys::handler_auth::dns_servers) {
            None => Vec::new(),
            Some(f) => f
                .list()?
                .iter()
                .map(|a| {
                    let a = a.trim();
                    a.parse::<std::net::SocketAddr>()
                        .or_else(|_| format!("{a}:53").parse())
                        .map_err(|_| {
                            f.fail(format_args!(
                                "{a:?} is not an IP address (with an optional :port)"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        },
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
        let pgp_key = t
            .get(keys::handlers::pgp_key)
            .map(|f| handler_key(&f, &email))
            .transpose()?;
        out.push(Handler {
            name,
            email,
            pgp_key,
        });
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
