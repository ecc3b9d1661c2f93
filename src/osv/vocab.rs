//! The words of the OSV schema a record may use: the ecosystems and id
//! prefixes that schema 1.6.7 accepts (`config` checks `[announce]`
//! against them), the range types, and CVSS vectors.

use serde::Serialize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
