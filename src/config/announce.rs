//! `[announce]`: where `/announce` sends advisories, and how
//! `cases export --osv` describes the project, checked against the OSV
//! schema's ecosystems and id prefixes.

use crate::osv::{valid_ecosystem, RangeType, ECOSYSTEMS, ID_PREFIXES};

use super::keys;
use super::loader::Section;
use super::{Announce, ConfigError};

pub(super) fn announce_from(mut s: Section<'_>) -> Result<Announce, ConfigError> {
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

#[cfg(test)]
mod tests {
    use crate::config::Config;

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
            Config::load_with_env(&path, crate::config::load::secret_files("x"))
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
