//! The OSV record of a case: the facts and settings it is made from, the
//! record itself (its fields in the order of the OSV documentation), and
//! why a case's facts make none.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;

use super::ranges::{ranges, Range, Unmapped};
use super::vocab::{cvss_type, RangeType};

/// The OSV schema version the records follow (and are tested against:
/// tests/fixtures/osv/schema.json).
pub const SCHEMA_VERSION: &str = "1.6.7";

/// Longest `summary`: OSV asks for one line, "preferably under 120 characters".
const MAX_SUMMARY_CHARS: usize = 120;

/// Where the record says the package lives and how it is named: the
/// `[announce] osv_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// OSV ecosystem, one of [`ECOSYSTEMS`](super::ECOSYSTEMS).
    pub ecosystem: String,
    /// Package name in that ecosystem.
    pub package: String,
    pub range_type: RangeType,
    /// The project's registered OSV database prefix: the record's id is
    /// `<prefix>-<case id>` and a CVE becomes an alias.
    pub id_prefix: Option<String>,
    /// Where the project publishes the advisory; `{id}` and `{case}` are
    /// replaced by the record's and the case's id.
    pub advisory_url: Option<String>,
}

/// What a case says, as the record needs it.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub case_id: &'a str,
    pub cve: Option<&'a str>,
    /// `critical|high|medium|low`, optionally followed by a CVSS vector.
    pub severity: Option<&'a str>,
    pub affected: Option<&'a str>,
    pub fixed_in: Option<&'a str>,
    /// How the reporter wants to be credited; `none` for nobody.
    pub credit: Option<&'a str>,
    /// One line: the announcement's subject, or the report's.
    pub title: Option<&'a str>,
    /// The advisory text.
    pub details: Option<&'a str>,
    /// The time of the case's last event.
    pub modified: DateTime<Utc>,
    /// When the case was announced; None: not announced, the record is a
    /// draft.
    pub published: Option<DateTime<Utc>>,
}

/// Why a case's facts make no OSV record. `Display` is one line naming the
/// case, the fact and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsvError {
    pub case: String,
    /// The fact, as `cases show --json` names it (`affected`, `fixed_in`, …).
    pub field: &'static str,
    /// Its value; None when it is not set.
    pub value: Option<String>,
    pub why: String,
}

impl fmt::Display for OsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}: {} = {v:?}: {}", self.case, self.field, self.why),
            None => write!(f, "{}: {} is not set: {}", self.case, self.field, self.why),
        }
    }
}

impl std::error::Error for OsvError {}

/// An OSV record. Field order is the order of the OSV documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub schema_version: &'static str,
    pub id: String,
    pub modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<Severity>,
    pub affected: Vec<Affected>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub credits: Vec<Credit>,
    pub database_specific: DatabaseSpecific,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Severity {
    /// `CVSS_V3` or `CVSS_V4`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The vector.
    pub score: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Affected {
    pub package: Package,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Range>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reference {
    /// `ADVISORY`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Credit {
    pub name: String,
    /// `FINDER`: the reporter.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// What OSV has no field for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseSpecific {
    /// The case's qualitative severity (`critical|high|medium|low`): OSV's
    /// own `severity` takes CVSS vectors only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// True when the case is not announced yet (`--draft`): not for
    /// publication.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
}

/// The record for `facts`, or why there is none.
pub fn record(facts: &Facts<'_>, settings: &Settings) -> Result<Record, OsvError> {
    let cve = facts.cve.map(str::trim).filter(|c| !c.is_empty());
    let (id, aliases) = id_and_aliases(facts, settings, cve)?;
    let (word, severity) = severity(facts)?;

    let affected = affected(facts, settings).map_err(|(field, why)| {
        let value = match field {
            "affected" => facts.affected,
            _ => facts.fixed_in,
        };
        fail(facts, field, value, why)
    })?;

    let mut references = Vec::new();
    if let Some(url) = &settings.advisory_url {
        references.push(Reference {
            kind: "ADVISORY",
            url: url.replace("{id}", &id).replace("{case}", facts.case_id),
        });
    }
    if let Some(cve) = cve {
        references.push(Reference {
            kind: "ADVISORY",
            url: format!("https://www.cve.org/CVERecord?id={cve}"),
        });
    }

    let credits = match facts.credit.map(str::trim) {
        None | Some("") => Vec::new(),
        Some(c) if c.eq_ignore_ascii_case("none") => Vec::new(),
        Some(c) => vec![Credit {
            name: c.to_owned(),
            kind: "FINDER",
        }],
    };

    let text = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(Record {
        schema_version: SCHEMA_VERSION,
        id,
        modified: crate::clock::fmt_ts(facts.modified),
        published: facts.published.map(crate::clock::fmt_ts),
        aliases,
        summary: text(facts.title).map(|t| one_line(&t)),
        details: text(facts.details),
        severity,
        affected: vec![affected],
        references,
        credits,
        database_specific: DatabaseSpecific {
            severity: word.map(str::to_owned),
            draft: facts.published.is_none(),
        },
    })
}

/// Why `facts` make no record: the fact `field`, its `value`, and `why`.
fn fail(facts: &Facts<'_>, field: &'static str, value: Option<&str>, why: String) -> OsvError {
    OsvError {
        case: facts.case_id.to_owned(),
        field,
        value: value.map(str::to_owned),
        why,
    }
}

/// The record's id and aliases: `<prefix>-<case id>` with the CVE as an
/// alias when the project has an OSV prefix, else the CVE itself.
fn id_and_aliases(
    facts: &Facts<'_>,
    settings: &Settings,
    cve: Option<&str>,
) -> Result<(String, Vec<String>), OsvError> {
    match (&settings.id_prefix, cve) {
        (Some(p), cve) => Ok((
            format!("{p}-{}", facts.case_id),
            cve.into_iter().map(str::to_owned).collect(),
        )),
        (None, Some(cve)) => Ok((cve.to_owned(), Vec::new())),
        (None, None) => Err(fail(
            facts,
            "cve",
            None,
            "an OSV id starts with a registered database prefix (CVE-, GHSA-, …) and a case \
             id does not; assign one with /cve CVE-…, or set [announce] osv_id_prefix to your \
             project's registered OSV prefix"
                .into(),
        )),
    }
}

/// `/severity` split into its word (`critical|high|medium|low`, for
/// `database_specific`) and the OSV severity of the CVSS vector after it.
fn severity<'a>(facts: &Facts<'a>) -> Result<(Option<&'a str>, Vec<Severity>), OsvError> {
    let (word, vector) = match facts.severity.map(str::trim) {
        None | Some("") => (None, None),
        Some(s) => match s.split_once(char::is_whitespace) {
            Some((w, v)) => (Some(w), Some(v.trim())),
            None => (Some(s), None),
        },
    };
    let mut severity = Vec::new();
    if let Some(v) = vector {
        let kind = cvss_type(v).ok_or_else(|| {
            fail(
                facts,
                "severity",
                facts.severity,
                "the part after the word is not a CVSS v3.x or v4.0 vector".into(),
            )
        })?;
        severity.push(Severity {
            kind,
            score: v.to_owned(),
        });
    }
    Ok((word, severity))
}

/// The `affected` entry, or (field, why).
fn affected(facts: &Facts<'_>, s: &Settings) -> Result<Affected, Unmapped> {
    let (ranges, versions) = ranges(facts.affected, facts.fixed_in, s.range_type)?;
    Ok(Affected {
        package: Package {
            ecosystem: s.ecosystem.clone(),
            name: s.package.clone(),
        },
        ranges,
        versions,
    })
}

/// One line of at most [`MAX_SUMMARY_CHARS`] characters.
fn one_line(s: &str) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_SUMMARY_CHARS {
        return flat;
    }
    let mut out: String = flat.chars().take(MAX_SUMMARY_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::test_support::{facts, range, settings};
    use serde_json::json;

    #[test]
    fn the_whole_record() {
        let f = Facts {
            severity: Some("high CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            affected: Some(">= 2.0, < 2.4.3"),
            credit: Some("Jane Doe (ACME Labs)"),
            title: Some("  Stack overflow in\tthe YAML loader "),
            details: Some("Deeply nested YAML overflows the stack.\n"),
            ..facts()
        };
        let s = Settings {
            advisory_url: Some("https://example.org/advisories/{id}.html?case={case}".into()),
            ..settings()
        };
        let v = serde_json::to_value(record(&f, &s).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({
                "schema_version": "1.6.7",
                "id": "CVE-2026-12345",
                "modified": "2026-12-01T10:00:00.000Z",
                "published": "2026-11-30T09:00:00.000Z",
                "summary": "Stack overflow in the YAML loader",
                "details": "Deeply nested YAML overflows the stack.",
                "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected": [{
                    "package": {"ecosystem": "crates.io", "name": "example"},
                    "ranges": [range(json!([{"introduced": "2.0"}, {"fixed": "2.4.3"}]))],
                }],
                "references": [
                    {"type": "ADVISORY", "url": "https://example.org/advisories/CVE-2026-12345.html?case=SEC-2026-0007"},
                    {"type": "ADVISORY", "url": "https://www.cve.org/CVERecord?id=CVE-2026-12345"},
                ],
                "credits": [{"name": "Jane Doe (ACME Labs)", "type": "FINDER"}],
                "database_specific": {"severity": "high"},
            })
        );
    }

    #[test]
    fn ids_aliases_drafts_and_credit_none() {
        // No CVE and no prefix: no id the schema accepts.
        let f = Facts {
            cve: None,
            affected: Some("< 2.0"),
            ..facts()
        };
        let err = record(&f, &settings()).unwrap_err().to_string();
        assert!(
            err.starts_with("SEC-2026-0007: cve is not set: an OSV id starts with a registered"),
            "{err}"
        );
        // A project prefix: its own id, the CVE as an alias.
        let s = Settings {
            id_prefix: Some("CURL".into()),
            ..settings()
        };
        let r = record(&f, &s).unwrap();
        assert_eq!((r.id.as_str(), r.aliases.len()), ("CURL-SEC-2026-0007", 0));
        let f = Facts {
            cve: Some("CVE-2026-1111"),
            published: None,
            credit: Some("None"),
            severity: Some("low"),
            title: Some(&"x".repeat(200)),
            ..f
        };
        let r = record(&f, &s).unwrap();
        assert_eq!(r.aliases, vec!["CVE-2026-1111".to_string()]);
        assert!(r.credits.is_empty() && r.severity.is_empty());
        assert_eq!(r.published, None);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["database_specific"],
            json!({"severity": "low", "draft": true})
        );
        let summary = r.summary.unwrap();
        assert_eq!(summary.chars().count(), 120);
        assert!(summary.ends_with('…'));
    }
}
