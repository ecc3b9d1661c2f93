//! OSV records (Open Source Vulnerability format, schema 1.6.7) from a
//! case's facts, for `secintake cases export ID --osv` (pure, no I/O).
//!
//! The CLI gathers the facts a handler recorded (`/cve`, `/severity`,
//! `/affected`, `/fixed-in`, `/credit`, `/summary`, the announcement) into
//! [`Facts`]; [`record`](fn@record) maps them, or says in one line which
//! fact cannot be mapped. Nothing is guessed: an OSV record is read by
//! scanners that tell users whether they are vulnerable, so a fact it
//! cannot express exactly stops the export rather than printing a wrong or
//! invalid record.
//!
//! The folder, by concern (each file imports only those listed before it):
//! - `vocab`: the words a record may use: ecosystems, id prefixes, range
//!   types, CVSS vectors;
//! - `ranges`: the `/affected` and `/fixed-in` syntax (documented there)
//!   and the OSV ranges it makes;
//! - `record`: the record, the facts and settings it is made from, and
//!   why a case's facts make none.

mod ranges;
mod record;
mod vocab;

pub use ranges::{parse_affected, parse_fixed_in, Bounds, Event, Range, Upper, Versions};
pub use record::{
    record, Affected, Credit, DatabaseSpecific, Facts, OsvError, Package, Record, Reference,
    Settings, Severity, SCHEMA_VERSION,
};
pub use vocab::{cvss_type, valid_ecosystem, RangeType, ECOSYSTEMS, ID_PREFIXES};

/// The facts and settings that the tests of `ranges` and `record` share.
#[cfg(test)]
mod test_support {
    use super::*;
    use serde_json::json;

    pub(super) fn settings() -> Settings {
        Settings {
            ecosystem: "crates.io".into(),
            package: "example".into(),
            range_type: RangeType::Ecosystem,
            id_prefix: None,
            advisory_url: None,
        }
    }

    pub(super) fn facts<'a>() -> Facts<'a> {
        Facts {
            case_id: "SEC-2026-0007",
            cve: Some("CVE-2026-12345"),
            modified: "2026-12-01T10:00:00Z".parse().unwrap(),
            published: Some("2026-11-30T09:00:00Z".parse().unwrap()),
            ..Facts::default()
        }
    }

    /// The `ranges` and `versions` of the record for `affected`/`fixed_in`.
    pub(super) fn mapped(
        affected: Option<&str>,
        fixed_in: Option<&str>,
    ) -> Result<serde_json::Value, String> {
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

    pub(super) fn range(events: serde_json::Value) -> serde_json::Value {
        json!({"type": "ECOSYSTEM", "events": events})
    }
}
