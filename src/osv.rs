//! OSV records (Open Source Vulnerability format, schema 1.6.7) from a
//! case's facts, for `secintake cases export ID --osv` (pure, no I/O).
//!
//! The CLI gathers the facts a handler recorded (`/cve`, `/severity`,
//! `/affected`, `/fixed-in`, `/credit`, `/summary`, the announcement) into
//! [`Facts`]; [`record`] maps them, or says in one line which fact cannot
//! be mapped. Nothing is guessed: an OSV record is read by scanners that
//! tell users whether they are vulnerable, so a fact it cannot express
//! exactly stops the export rather than printing a wrong or invalid record.
//!
//! ## The `/affected` syntax
//!
//! One or more groups separated by `;` (or `||`). A group is either
//!
//! - **bounds**, separated by commas or spaces: at most one lower bound
//!   `>= V` and at most one upper bound, `< V` (first fixed version) or
//!   `<= V` (last affected version), e.g. `>= 2.0, < 2.4.3` or `<= 1.9.9`.
//!   A group without lower bound starts at the first version (OSV
//!   `introduced: "0"`); `*` or `all` alone means every version. Each group
//!   becomes one OSV range: events `introduced`, then `fixed` (`<`) or
//!   `last_affected` (`<=`);
//! - **exact versions**, e.g. `2.4.0, 2.4.1` (`= V` is the same as `V`):
//!   they go to the OSV `versions` list.
//!
//! A version starts with a digit (or `v` and a digit) and holds letters,
//! digits and `. + ~ : _ -`. Refused, with the reason: `>` (OSV has no
//! exclusive lower bound), `!=`, wildcards (`2.x`, `2.*`), `^`/`~` ranges,
//! words (`before 2.4`), and a group mixing bounds with exact versions.
//!
//! `/fixed-in` (versions separated by commas or spaces) closes the groups
//! of `/affected` that have no upper bound, one version each in order
//! (versions that already end a group as `< V` are skipped). Where every
//! group already ends, or `/affected` lists exact versions only, it adds
//! nothing. Without `/affected`, a single `/fixed-in V` means every version
//! before V (`introduced: "0"`, `fixed: V`).
//!
//! With `[announce] osv_range_type = "SEMVER"` every version in a range
//! must be SemVer 2.0 (a leading `v` is dropped, as OSV's SEMVER type has
//! none); the default `"ECOSYSTEM"` takes versions as the ecosystem
//! writes them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;

/// The OSV schema version the records follow (and are tested against:
/// tests/fixtures/osv/schema.json).
pub const SCHEMA_VERSION: &str = "1.6.7";

/// Longest `summary`: OSV asks for one line, "preferably under 120 characters".
const MAX_SUMMARY_CHARS: usize = 120;

/// The ecosystems the published schema 1.6.7 accepts (its `$defs/ecosystem`
/// pattern), less `GIT`: GIT ranges name commits, which `/affected` does not
/// record. A name may carry a `:suffix` (e.g. `Debian:12`).
pub const ECOSYSTEMS: &[&str] = &[
    "AlmaLinux",
    "Alpine",
    "Android",
    "Bioconductor",
    "Bitnami",
    "Chainguard",
    "ConanCenter",
    "CRAN",
    "crates.io",
    "Debian",
    "GHC",
    "GitHub Actions",
    "Go",
    "Hackage",
    "Hex",
    "Linux",
    "Maven",
    "npm",
    "NuGet",
    "openSUSE",
    "OSS-Fuzz",
    "Packagist",
    "Photon OS",
    "Pub",
    "PyPI",
    "Red Hat",
    "Rocky Linux",
    "RubyGems",
    "SUSE",
    "SwiftURL",
    "Ubuntu",
    "wolfi",
];

/// The id prefixes of the home databases the published schema 1.6.7
/// accepts (its `$defs/prefix` pattern; `SUSE-[SRFO]U` spelt out). A
/// record's `id` must start with one of them and a `-`.
pub const ID_PREFIXES: &[&str] = &[
    "ASB-A",
    "PUB-A",
    "ALSA",
    "ALBA",
    "ALEA",
    "BIT",
    "CGA",
    "CURL",
    "CVE",
    "DSA",
    "DLA",
    "ELA",
    "DTSA",
    "GHSA",
    "GO",
    "GSD",
    "HSEC",
    "LBSEC",
    "MAL",
    "OSV",
    "openSUSE-SU",
    "PHSA",
    "PSF",
    "PYSEC",
    "RHBA",
    "RHEA",
    "RHSA",
    "RLSA",
    "RXSA",
    "RSEC",
    "RUSTSEC",
    "SUSE-SU",
    "SUSE-RU",
    "SUSE-FU",
    "SUSE-OU",
    "UBUNTU",
    "USN",
];

/// Whether `s` names an ecosystem of [`ECOSYSTEMS`], with or without a
/// `:suffix`.
pub fn valid_ecosystem(s: &str) -> bool {
    let (name, suffix) = match s.split_once(':') {
        Some((n, rest)) => (n, Some(rest)),
        None => (s, None),
    };
    ECOSYSTEMS.contains(&name) && suffix.is_none_or(|r| !r.trim().is_empty())
}

/// How range versions are compared (OSV `ranges[].type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeType {
    /// The ecosystem's own version ordering (the default).
    Ecosystem,
    /// SemVer 2.0 precedence.
    Semver,
}

/// Where the record says the package lives and how it is named: the
/// `[announce] osv_*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// OSV ecosystem, one of [`ECOSYSTEMS`].
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
pub struct Range {
    #[serde(rename = "type")]
    pub kind: RangeType,
    pub events: Vec<Event>,
}

/// One range event; serialises as a one-key object, e.g.
/// `{"introduced": "2.0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
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

/// The upper end of a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upper {
    /// `< V`: V is the first fixed version.
    Fixed(String),
    /// `<= V`: V is the last affected version.
    LastAffected(String),
}

/// One group of bounds: `>= A, < B`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bounds {
    /// None: from the first version.
    pub introduced: Option<String>,
    /// None: not fixed (yet).
    pub upper: Option<Upper>,
}

/// `/affected`, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    pub ranges: Vec<Bounds>,
    pub exact: Vec<String>,
}

/// How to write `/affected`, for error messages.
const AFFECTED_HINT: &str =
    "write bounds like \">= 2.0, < 2.4.3\" or exact versions like \"2.4.0, 2.4.1\", groups separated by \";\"";

/// Parses `/affected` (see the module documentation).
pub fn parse_affected(s: &str) -> Result<Versions, String> {
    let mut out = Versions::default();
    for group in s.split(';').flat_map(|g| g.split("||")) {
        let items = tokens(group)?;
        if items.is_empty() {
            continue;
        }
        let exact = |(op, _): &(&str, &str)| matches!(*op, "" | "=" | "==");
        let every =
            |(op, v): &(&str, &str)| op.is_empty() && (*v == "*" || v.eq_ignore_ascii_case("all"));
        if items.iter().any(every) {
            if items.len() > 1 {
                return Err(format!(
                    "\"{}\" means every version and stands alone in its group",
                    items.iter().find(|i| every(i)).map_or("*", |i| i.1)
                ));
            }
            out.ranges.push(Bounds::default());
        } else if items.iter().all(exact) {
            for (_, v) in items {
                out.exact.push(version(v)?);
            }
        } else if items.iter().any(exact) {
            return Err(format!(
                "\"{}\" mixes bounds with exact versions: separate them with \";\"",
                group.trim()
            ));
        } else {
            let mut b = Bounds::default();
            for (op, v) in items {
                let v = version(v)?;
                let upper = match op {
                    ">=" if b.introduced.is_some() => {
                        return Err(format!("\"{}\" has two lower bounds", group.trim()))
                    }
                    ">=" => {
                        b.introduced = Some(v);
                        continue;
                    }
                    "<" => Upper::Fixed(v),
                    "<=" => Upper::LastAffected(v),
                    ">" => {
                        return Err(format!(
                            "\"> {v}\": OSV has no exclusive lower bound; write \">=\" with the first affected version"
                        ))
                    }
                    "!=" => {
                        return Err(format!(
                            "\"!= {v}\": OSV cannot exclude a version; split the range, or list the versions"
                        ))
                    }
                    other => return Err(format!("\"{other}\" is not an operator (>=, <, <=)")),
                };
                if b.upper.is_some() {
                    return Err(format!("\"{}\" has two upper bounds", group.trim()));
                }
                b.upper = Some(upper);
            }
            out.ranges.push(b);
        }
    }
    if out.ranges.is_empty() && out.exact.is_empty() {
        return Err(format!("no versions: {AFFECTED_HINT}"));
    }
    Ok(out)
}

/// Parses `/fixed-in`: versions separated by commas, semicolons or spaces.
pub fn parse_fixed_in(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (op, v) in tokens(s)? {
        if !op.is_empty() {
            return Err(format!(
                "\"{op}\": /fixed-in takes versions (the first fixed release), not bounds"
            ));
        }
        out.push(version(v)?);
    }
    if out.is_empty() {
        return Err("no versions".into());
    }
    Ok(out)
}

/// Splits a group into (operator, version) pairs: an operator (any run of
/// `<>=!`), optional spaces, then a token up to the next space or comma.
fn tokens(group: &str) -> Result<Vec<(&str, &str)>, String> {
    let mut out = Vec::new();
    let mut rest = group;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',' || c == ';');
        if rest.is_empty() {
            return Ok(out);
        }
        let op_len = rest
            .find(|c: char| !matches!(c, '<' | '>' | '=' | '!'))
            .unwrap_or(rest.len());
        let (op, after) = rest.split_at(op_len);
        let after = after.trim_start();
        let v_len = after
            .find(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .unwrap_or(after.len());
        let (v, after) = after.split_at(v_len);
        if v.is_empty() {
            return Err(format!("\"{op}\" has no version after it"));
        }
        out.push((op, v));
        rest = after;
    }
}

/// Checks one version token and returns it.
fn version(v: &str) -> Result<String, String> {
    if v.starts_with(['^', '~']) {
        return Err(format!(
            "\"{v}\": ^ and ~ ranges mean different things in each ecosystem; write the bounds, e.g. \">= 1.2, < 2.0\""
        ));
    }
    if v.contains('*')
        || v.split(['.', '-', '+'])
            .any(|p| p.eq_ignore_ascii_case("x"))
    {
        return Err(format!(
            "\"{v}\": wildcards cannot be expressed in OSV; write the bounds, e.g. \">= 2.0, < 3.0\""
        ));
    }
    let mut chars = v.chars();
    let starts_ok = match chars.next() {
        Some(c) if c.is_ascii_digit() => true,
        Some('v' | 'V') => chars.next().is_some_and(|c| c.is_ascii_digit()),
        _ => false,
    };
    let chars_ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '_' | '-'));
    if starts_ok && chars_ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "\"{v}\" is not a version (it starts with a digit, or v and a digit); {AFFECTED_HINT}"
        ))
    }
}

/// Whether `v` is a SemVer 2.0 version (MAJOR.MINOR.PATCH, optional
/// `-prerelease` and `+build`).
fn is_semver(v: &str) -> bool {
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let (rest, build) = match v.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (v, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let core_ok = core.split('.').count() == 3 && core.split('.').all(numeric);
    let pre_ok = pre.is_none_or(|p| {
        p.split('.')
            .all(|i| ident(i) && (!i.bytes().all(|b| b.is_ascii_digit()) || numeric(i)))
    });
    let build_ok = build.is_none_or(|b| b.split('.').all(ident));
    core_ok && pre_ok && build_ok
}

/// The OSV severity type of a CVSS v3.0/v3.1 or v4.0 vector (`CVSS_V3`,
/// `CVSS_V4`), or None when `v` is not one. Stricter than the OSV schema:
/// every base metric must be there, once.
pub fn cvss_type(v: &str) -> Option<&'static str> {
    const V3: &[(&str, &str, bool)] = &[
        // (metric, values, base metric)
        ("AV", "NALP", true),
        ("AC", "LH", true),
        ("PR", "NLH", true),
        ("UI", "NR", true),
        ("S", "UC", true),
        ("C", "NLH", true),
        ("I", "NLH", true),
        ("A", "NLH", true),
        ("E", "XUPFH", false),
        ("RL", "XOTWU", false),
        ("RC", "XURC", false),
        ("CR", "XLMH", false),
        ("IR", "XLMH", false),
        ("AR", "XLMH", false),
        ("MAV", "XNALP", false),
        ("MAC", "XLH", false),
        ("MPR", "XNLH", false),
        ("MUI", "XNR", false),
        ("MS", "XUC", false),
        ("MC", "XNLH", false),
        ("MI", "XNLH", false),
        ("MA", "XNLH", false),
    ];
    // CVSS v4.0 fixes the order: the base metrics, then the optional ones.
    const V4: &[(&str, &str, bool)] = &[
        ("AV", "NALP", true),
        ("AC", "LH", true),
        ("AT", "NP", true),
        ("PR", "NLH", true),
        ("UI", "NPA", true),
        ("VC", "HLN", true),
        ("VI", "HLN", true),
        ("VA", "HLN", true),
        ("SC", "HLN", true),
        ("SI", "HLN", true),
        ("SA", "HLN", true),
        ("E", "XAPU", false),
        ("CR", "XHML", false),
        ("IR", "XHML", false),
        ("AR", "XHML", false),
        ("MAV", "XNALP", false),
        ("MAC", "XLH", false),
        ("MAT", "XNP", false),
        ("MPR", "XNLH", false),
        ("MUI", "XNPA", false),
        ("MVC", "XNLH", false),
        ("MVI", "XNLH", false),
        ("MVA", "XNLH", false),
        ("MSC", "XNLH", false),
        ("MSI", "XNLHS", false),
        ("MSA", "XNLHS", false),
        ("S", "XNP", false),
        ("AU", "XNY", false),
        ("R", "XAUI", false),
        ("V", "XDC", false),
        ("RE", "XLMH", false),
        ("U", "", false),
    ];
    let value_ok = |allowed: &str, metric: &str, value: &str| {
        if metric == "U" {
            return ["X", "Clear", "Green", "Amber", "Red"].contains(&value);
        }
        value.len() == 1 && allowed.contains(value)
    };
    let (table, kind, ordered, rest) = if let Some(r) = v
        .strip_prefix("CVSS:3.1/")
        .or_else(|| v.strip_prefix("CVSS:3.0/"))
    {
        (V3, "CVSS_V3", false, r)
    } else {
        (V4, "CVSS_V4", true, v.strip_prefix("CVSS:4.0/")?)
    };
    let mut seen = vec![false; table.len()];
    let mut last = 0;
    for part in rest.split('/') {
        let (metric, value) = part.split_once(':')?;
        let i = table.iter().position(|(m, _, _)| *m == metric)?;
        if seen[i] || (ordered && i < last) || !value_ok(table[i].1, metric, value) {
            return None;
        }
        seen[i] = true;
        last = i;
    }
    let base_complete = table.iter().zip(&seen).all(|((_, _, base), s)| !base || *s);
    base_complete.then_some(kind)
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

/// Why a fact cannot be mapped: (its field, why).
type Unmapped = (&'static str, String);

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

/// The OSV ranges and exact versions of `/affected` and `/fixed-in`, or
/// (field, why).
fn ranges(
    affected: Option<&str>,
    fixed_in: Option<&str>,
    range_type: RangeType,
) -> Result<(Vec<Range>, Vec<String>), Unmapped> {
    let fixes = match fixed_in.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => parse_fixed_in(f).map_err(|e| ("fixed_in", e))?,
        None => Vec::new(),
    };
    let given = affected.map(str::trim).filter(|a| !a.is_empty());
    let mut parsed = match given {
        Some(a) => parse_affected(a).map_err(|e| ("affected", e))?,
        None => fixed_in_alone(&fixes)?,
    };
    let semver = range_type == RangeType::Semver;
    // Without /affected the bound came from /fixed-in, and is blamed on it.
    let bounds_from = if given.is_some() {
        "affected"
    } else {
        "fixed_in"
    };
    for b in &mut parsed.ranges {
        if let Some(v) = &mut b.introduced {
            semver_checked(v, bounds_from, semver)?;
        }
        match &mut b.upper {
            Some(Upper::Fixed(v) | Upper::LastAffected(v)) => {
                semver_checked(v, bounds_from, semver)?
            }
            None => {}
        }
    }
    close_open_groups(&mut parsed.ranges, fixes, affected, semver)?;
    let ranges = parsed
        .ranges
        .into_iter()
        .map(|b| osv_range(b, range_type))
        .collect();
    Ok((ranges, parsed.exact))
}

/// The versions when there is no `/affected`: a single `/fixed-in V`
/// means every version before V.
fn fixed_in_alone(fixes: &[String]) -> Result<Versions, Unmapped> {
    match fixes {
        [] => Err((
            "affected",
            "a record needs the affected versions: set /affected <versions> or \
             /fixed-in <version>"
                .into(),
        )),
        [fix] => Ok(Versions {
            ranges: vec![Bounds {
                introduced: None,
                upper: Some(Upper::Fixed(fix.clone())),
            }],
            exact: Vec::new(),
        }),
        _ => Err((
            "fixed_in",
            "several fixed versions but no /affected to say which versions each \
             fixes: set e.g. /affected >= 2.0, < 2.4.3; >= 3.0, < 3.0.1"
                .into(),
        )),
    }
}

/// Under SEMVER, versions lose a leading v and must be SemVer 2.0; a
/// version that is not is blamed on `field`.
fn semver_checked(v: &mut String, field: &'static str, semver: bool) -> Result<(), Unmapped> {
    if !semver {
        return Ok(());
    }
    let bare = v.strip_prefix(['v', 'V']).unwrap_or(v);
    if !is_semver(bare) {
        return Err((
            field,
            format!(
                "\"{v}\" is not a SemVer 2.0 version (MAJOR.MINOR.PATCH), as \
                 [announce] osv_range_type = \"SEMVER\" needs"
            ),
        ));
    }
    *v = bare.to_owned();
    Ok(())
}

/// `/fixed-in` closes the open groups, one version each, in order.
/// `affected` is the fact as written, for the error.
fn close_open_groups(
    ranges: &mut [Bounds],
    fixes: Vec<String>,
    affected: Option<&str>,
    semver: bool,
) -> Result<(), Unmapped> {
    let mut new = Vec::new();
    for mut f in fixes {
        semver_checked(&mut f, "fixed_in", semver)?;
        let ends_a_group = ranges
            .iter()
            .any(|b| b.upper == Some(Upper::Fixed(f.clone())));
        if !ends_a_group {
            new.push(f);
        }
    }
    let open = ranges.iter().filter(|b| b.upper.is_none()).count();
    if open > 0 && !new.is_empty() {
        if new.len() != open {
            return Err((
                "fixed_in",
                format!(
                    "{} version(s) for {open} group(s) of affected = {:?} without an upper \
                     bound: give one fixed version per open group, in order, or write the \
                     bounds into /affected (< V)",
                    new.len(),
                    affected.unwrap_or_default()
                ),
            ));
        }
        let mut new = new.into_iter();
        for b in ranges.iter_mut().filter(|b| b.upper.is_none()) {
            b.upper = new.next().map(Upper::Fixed);
        }
    }
    Ok(())
}

/// One group of bounds as an OSV range: `introduced` (`0` without a lower
/// bound), then `fixed` or `last_affected`.
fn osv_range(b: Bounds, kind: RangeType) -> Range {
    let mut events = vec![Event::Introduced(
        b.introduced.unwrap_or_else(|| "0".into()),
    )];
    match b.upper {
        Some(Upper::Fixed(v)) => events.push(Event::Fixed(v)),
        Some(Upper::LastAffected(v)) => events.push(Event::LastAffected(v)),
        None => {}
    }
    Range { kind, events }
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
    use serde_json::json;

    fn settings() -> Settings {
        Settings {
            ecosystem: "crates.io".into(),
            package: "example".into(),
            range_type: RangeType::Ecosystem,
            id_prefix: None,
            advisory_url: None,
        }
    }

    fn facts<'a>() -> Facts<'a> {
        Facts {
            case_id: "SEC-2026-0007",
            cve: Some("CVE-2026-12345"),
            modified: "2026-12-01T10:00:00Z".parse().unwrap(),
            published: Some("2026-11-30T09:00:00Z".parse().unwrap()),
            ..Facts::default()
        }
    }

    /// The `ranges` and `versions` of the record for `affected`/`fixed_in`.
    fn mapped(affected: Option<&str>, fixed_in: Option<&str>) -> Result<serde_json::Value, String> {
        let f = Facts {
            affected,
            fixed_in,
            ..facts()
        };
        let r = record(&f, &settings()).map_err(|e| e.to_string())?;
        let mut v = serde_json::to_value(&r.affected[0]).unwrap();
        v.as_object_mut().unwrap().remove("package");
        Ok(v)
    }

    fn range(events: serde_json::Value) -> serde_json::Value {
        json!({"type": "ECOSYSTEM", "events": events})
    }

    #[test]
    fn bounds_become_range_events() {
        for (affected, events) in [
            (
                ">= 2.0, < 2.4.3",
                json!([{"introduced": "2.0"}, {"fixed": "2.4.3"}]),
            ),
            (
                ">=2.0 <2.4.3",
                json!([{"introduced": "2.0"}, {"fixed": "2.4.3"}]),
            ),
            (
                "< 2.4.3, >= 2.0",
                json!([{"introduced": "2.0"}, {"fixed": "2.4.3"}]),
            ),
            (
                "<= 1.9.9",
                json!([{"introduced": "0"}, {"last_affected": "1.9.9"}]),
            ),
            (">= 1.0", json!([{"introduced": "1.0"}])),
            ("*", json!([{"introduced": "0"}])),
            ("All", json!([{"introduced": "0"}])),
            (
                "< v1.2.0-rc.1",
                json!([{"introduced": "0"}, {"fixed": "v1.2.0-rc.1"}]),
            ),
        ] {
            assert_eq!(
                mapped(Some(affected), None).unwrap(),
                json!({"ranges": [range(events)]}),
                "{affected}"
            );
        }
    }

    #[test]
    fn groups_and_exact_versions() {
        assert_eq!(
            mapped(
                Some(">= 1.0, < 1.4.2; >= 2.0, <= 2.1.0 || 3.0.0, = 3.0.1"),
                None
            )
            .unwrap(),
            json!({
                "ranges": [
                    range(json!([{"introduced": "1.0"}, {"fixed": "1.4.2"}])),
                    range(json!([{"introduced": "2.0"}, {"last_affected": "2.1.0"}])),
                ],
                "versions": ["3.0.0", "3.0.1"],
            })
        );
        assert_eq!(
            mapped(Some("2.4.0, 2.4.1 2.4.2"), Some("2.4.3")).unwrap(),
            json!({"versions": ["2.4.0", "2.4.1", "2.4.2"]}),
            "/fixed-in adds nothing to exact versions"
        );
    }

    #[test]
    fn fixed_in_closes_open_groups() {
        let both = |a, f| mapped(Some(a), Some(f)).unwrap()["ranges"].clone();
        assert_eq!(
            both(">= 2.0", "2.4.3"),
            json!([range(json!([{"introduced": "2.0"}, {"fixed": "2.4.3"}]))])
        );
        assert_eq!(
            both(">= 1.0; >= 2.0", "1.4.2, 2.1.1"),
            json!([
                range(json!([{"introduced": "1.0"}, {"fixed": "1.4.2"}])),
                range(json!([{"introduced": "2.0"}, {"fixed": "2.1.1"}])),
            ])
        );
        // Already named as an upper bound: skipped; the other closes 2.x.
        assert_eq!(
            both(">= 1.0, < 1.4.2; >= 2.0", "1.4.2 2.1.1"),
            json!([
                range(json!([{"introduced": "1.0"}, {"fixed": "1.4.2"}])),
                range(json!([{"introduced": "2.0"}, {"fixed": "2.1.1"}])),
            ])
        );
        // Every group ends: /fixed-in adds nothing (<= and a fix are
        // mutually exclusive in one OSV range).
        assert_eq!(
            both("<= 2.4.2", "2.4.3"),
            json!([range(
                json!([{"introduced": "0"}, {"last_affected": "2.4.2"}])
            )])
        );
        // An open group with no new fix stays open (not fixed yet).
        assert_eq!(
            both(">= 1.0, < 1.4.2; >= 2.0", "1.4.2"),
            json!([
                range(json!([{"introduced": "1.0"}, {"fixed": "1.4.2"}])),
                range(json!([{"introduced": "2.0"}])),
            ])
        );
        // Without /affected, one fix means every version before it.
        assert_eq!(
            mapped(None, Some("2.4.3")).unwrap()["ranges"],
            json!([range(json!([{"introduced": "0"}, {"fixed": "2.4.3"}]))])
        );
    }

    #[test]
    fn what_cannot_be_mapped_is_refused_naming_case_field_and_value() {
        for (affected, fixed_in, expected) in [
            (
                None,
                None,
                "SEC-2026-0007: affected is not set: a record needs the affected versions",
            ),
            (
                Some("before 2.4"),
                None,
                "SEC-2026-0007: affected = \"before 2.4\": \"before\" is not a version",
            ),
            (
                Some("> 2.0"),
                None,
                "\"> 2.0\": OSV has no exclusive lower bound",
            ),
            (Some(">= 2.0, != 2.1"), None, "OSV cannot exclude a version"),
            (
                Some("2.x"),
                None,
                "\"2.x\": wildcards cannot be expressed in OSV",
            ),
            (Some("< 2.*"), None, "wildcards"),
            (Some("^1.2"), None, "^ and ~ ranges"),
            (Some("~> 1.2"), None, "\"~>\": ^ and ~ ranges"),
            (Some(">= 1.0, >= 2.0"), None, "has two lower bounds"),
            (Some("< 1.0 <= 2.0"), None, "has two upper bounds"),
            (Some("2.0, < 3.0"), None, "mixes bounds with exact versions"),
            (
                Some("*, 2.0"),
                None,
                "\"*\" means every version and stands alone",
            ),
            (Some(">="), None, "\">=\" has no version after it"),
            (Some(" ; "), None, "affected = \" ; \": no versions"),
            (
                Some("all versions"),
                None,
                "\"all\" means every version and stands alone",
            ),
            (
                Some(">= 1.0; >= 2.0"),
                Some("1.4.2"),
                "1 version(s) for 2 group(s)",
            ),
            (
                Some(">= 1.0"),
                Some("1.4.2, 2.1.1"),
                "SEC-2026-0007: fixed_in = \"1.4.2, 2.1.1\": 2 version(s) for 1 group(s)",
            ),
            (
                None,
                Some("1.4.2, 2.1.1"),
                "fixed_in = \"1.4.2, 2.1.1\": several fixed versions but no /affected",
            ),
            (
                Some(">= 1.0"),
                Some("< 2.0"),
                "fixed_in = \"< 2.0\": \"<\": /fixed-in takes versions",
            ),
            (
                Some(">= 1.0"),
                Some("soon"),
                "fixed_in = \"soon\": \"soon\" is not a version",
            ),
        ] {
            let err = mapped(affected, fixed_in).expect_err(expected);
            assert!(err.contains(expected), "{affected:?} {fixed_in:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn semver_ranges_need_semver_versions() {
        let s = Settings {
            range_type: RangeType::Semver,
            ..settings()
        };
        let f = Facts {
            affected: Some(">= v1.2.0, < 1.4.0-rc.1+b5"),
            ..facts()
        };
        let r = record(&f, &s).unwrap();
        assert_eq!(
            serde_json::to_value(&r.affected[0].ranges).unwrap(),
            json!([{"type": "SEMVER", "events": [{"introduced": "1.2.0"}, {"fixed": "1.4.0-rc.1+b5"}]}])
        );
        for (affected, fixed_in, field) in [
            (
                Some(">= 1.2"),
                None,
                "affected = \">= 1.2\": \"1.2\" is not a SemVer",
            ),
            (
                Some(">= 1.2.0"),
                Some("1.4"),
                "fixed_in = \"1.4\": \"1.4\" is not a SemVer",
            ),
            (Some("< 01.2.3"), None, "\"01.2.3\" is not a SemVer"),
        ] {
            let f = Facts {
                affected,
                fixed_in,
                ..facts()
            };
            let err = record(&f, &s).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        for ok in [
            "0.0.0",
            "1.2.3",
            "1.2.3-alpha.1",
            "1.2.3+build.7",
            "10.20.30-rc-1",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "1.2", "1.2.3.4", "1.02.3", "1.2.3-", "1.2.3-01", "1.2.3+", "a.b.c",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
    }

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

    #[test]
    fn cvss_vectors() {
        for (v, kind) in [
            (
                "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                Some("CVSS_V3"),
            ),
            (
                "CVSS:3.0/AV:L/AC:H/PR:L/UI:R/S:C/C:L/I:N/A:N/E:P/RL:O",
                Some("CVSS_V3"),
            ),
            (
                "CVSS:3.1/C:H/I:H/A:H/AV:N/AC:L/PR:N/UI:N/S:U",
                Some("CVSS_V3"),
            ),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", None),
            ("CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None),
            ("CVSS:3.1/AV:Q/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", None),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/", None),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                Some("CVSS_V4"),
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/E:A/U:Amber",
                Some("CVSS_V4"),
            ),
            (
                "CVSS:4.0/AC:L/AV:N/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                None,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/U:Blue",
                None,
            ),
            ("CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P", None),
            ("high", None),
        ] {
            assert_eq!(cvss_type(v), kind, "{v}");
        }
    }

    #[test]
    fn ecosystems() {
        for ok in [
            "crates.io",
            "PyPI",
            "Debian:12",
            "Red Hat",
            "GitHub Actions",
        ] {
            assert!(valid_ecosystem(ok), "{ok}");
        }
        for bad in ["GIT", "pypi", "Debian:", "Cargo", "", "npm "] {
            assert!(!valid_ecosystem(bad), "{bad}");
        }
    }
}
