//! The `/affected` and `/fixed-in` facts, checked and made into OSV ranges.
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

use serde::Serialize;

use super::vocab::RangeType;

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

/// Why a fact cannot be mapped: (its field, why).
pub(super) type Unmapped = (&'static str, String);

/// The OSV ranges and exact versions of `/affected` and `/fixed-in`, or
/// (field, why).
pub(super) fn ranges(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::test_support::{facts, mapped, range, settings};
    use crate::osv::{record, Facts, Settings};
    use serde_json::json;

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
}
