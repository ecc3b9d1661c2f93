//! `secintake cases export ID --osv`: the case as an OSV record.

use super::*;
use crate::config::Config;
use crate::store::{self};

/// `cases export ID --osv`: gathers what the record needs from the case
/// (crate::osv maps it) and prints it. The record is for publication, so
/// a case that is not announced needs `--draft`: an embargoed issue must
/// not leave the machine in a format made for databases by accident.
pub(super) fn osv_export(
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
            m.direction == crate::model::Direction::Out
                && m.kind == crate::model::MessageKind::Announce
                && !m.subject.as_deref().unwrap_or("").starts_with("[DRY RUN]")
        }),
    };
    let title = match &announcement {
        Some(m) => m.subject.as_deref().map(|t| {
            let t = t.trim();
            t.strip_prefix("[security]").unwrap_or(t).trim().to_owned()
        }),
        None => case
            .subject
            .as_deref()
            .map(crate::mail::compose::clean_subject),
    };
    let details = match &announcement {
        Some(m) => Some(without_signature(&crate::workflow::stored_text(c, cfg, m)?)),
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
pub(super) fn without_signature(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_end_matches('\r') == "-- " {
            break;
        }
        out.push(line.trim_end_matches('\r'));
    }
    out.join("\n").trim().to_owned()
}
