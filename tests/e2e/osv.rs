//! `secintake cases export ID --osv` against the published OSV schema.
//!
//! Why: an OSV record is read by scanners and vulnerability databases, so
//! "valid JSON" is not enough: every record must pass the OSV JSON schema
//! 1.6.7 (vendored as tests/fixtures/osv/schema.json, see its README) as
//! validated by an independent implementation, Python's jsonschema
//! (Debian's python3-jsonschema, installed by scripts/install-deps.sh).
//! Without it these tests fail, naming the package: a skipped schema check
//! would pass unnoticed.
//!
//! `a_case_handled_by_email_exports_as_a_valid_osv_record` drives one case
//! through the real stack: a report over inbound SMTP, a handler's
//! DKIM-signed command mail (`/affected`, `/fixed-in`, `/cve`, `/credit`,
//! `/severity` with a CVSS vector, `/summary`), `/announce`, then the real
//! binary's export. `every_mapping_validates` runs the syntax variants of
//! the mapping through the library and the schema, without mail.

use crate::common;

use common::daemon::{cli, eventually};
use common::world::{World, T};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SECURITY: &str = "security@example.org";
const ANNOUNCE: &str = "announce@example.org";
const REPORTER: &str = "reporter@example.net";
const ALICE: &str = "alice@example.org";

/// The interpreter python3-jsonschema installs for: Debian's, not
/// whichever `python3` comes first on PATH (pyenv's may lack the module).
const PYTHON: &str = "/usr/bin/python3";

/// Validates each record of a JSON array (stdin) against the schema
/// (argv[1]) with the validator its `$schema` names (Draft 2020-12).
/// Exit 0: all valid; 3: some invalid (one line per error); anything
/// else (a missing module, a bad schema) is a broken check.
const VALIDATE: &str = r#"
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
bad = 0
for i, record in enumerate(json.load(sys.stdin)):
    for e in validator.iter_errors(record):
        bad += 1
        print(f"record {i} at {list(e.absolute_path)}: {e.message}")
print(cls.__name__)
sys.exit(3 if bad else 0)
"#;

fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv/schema.json")
}

/// Runs the schema check on `records`: Ok(()) when all are valid,
/// Err(the validator's complaints) when not; panics when the check itself
/// cannot run.
fn schema_check(records: &[Value]) -> Result<(), String> {
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(VALIDATE)
        .arg(schema_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {PYTHON} ({e}): install python3-jsonschema (scripts/install-deps.sh)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(records).unwrap().as_bytes())
        .expect("write records to python");
    let out = child.wait_with_output().expect("wait for python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            assert!(
                stdout.trim_end().ends_with("Draft202012Validator"),
                "the schema declares JSON Schema 2020-12, validated by: {stdout}"
            );
            Ok(())
        }
        Some(3) => Err(stdout),
        _ => panic!(
            "the OSV schema check could not run ({}); is python3-jsonschema installed \
             (scripts/install-deps.sh)?\n{stderr}{stdout}",
            out.status
        ),
    }
}

/// The check is not vacuous: the schema refuses what OSV forbids.
#[test]
fn the_schema_check_refuses_invalid_records() {
    let valid = json!({
        "id": "CVE-2026-1", "modified": "2026-12-01T10:00:00.000Z",
        "affected": [{"package": {"ecosystem": "crates.io", "name": "x"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}],
    });
    schema_check(std::slice::from_ref(&valid)).expect("a minimal record is valid");
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v
    };
    for (what, bad) in [
        (
            "a case id as id",
            mutate(&|v| v["id"] = json!("SEC-2026-0001")),
        ),
        (
            "an unknown ecosystem",
            mutate(&|v| v["affected"][0]["package"]["ecosystem"] = json!("Cargo")),
        ),
        (
            "fixed with last_affected",
            mutate(&|v| {
                v["affected"][0]["ranges"][0]["events"] =
                    json!([{"introduced": "0"}, {"fixed": "2"}, {"last_affected": "1"}])
            }),
        ),
        (
            "a word as severity",
            mutate(&|v| v["severity"] = json!([{"type": "CVSS_V3", "score": "high"}])),
        ),
        (
            "a time without Z",
            mutate(&|v| v["modified"] = json!("2026-12-01 10:00")),
        ),
        (
            "an unknown field",
            mutate(&|v| v["severity_word"] = json!("high")),
        ),
    ] {
        let err = schema_check(&[bad]).expect_err(what);
        assert!(err.contains("record 0"), "{what}: {err}");
    }
}

/// Every form of the `/affected` syntax, with and without `/fixed-in`, the
/// SEMVER range type, a project id prefix, CVSS v3 and v4 vectors, drafts:
/// each record the library makes passes the published schema.
#[test]
fn every_mapping_validates() {
    use secintake::osv::{record, Facts, RangeType, Settings};
    let settings = |range_type, id_prefix: Option<&str>| Settings {
        ecosystem: "PyPI".into(),
        package: "example".into(),
        range_type,
        id_prefix: id_prefix.map(str::to_owned),
        advisory_url: Some("https://example.org/security/{id}".into()),
    };
    let base = Facts {
        case_id: "SEC-2026-0042",
        cve: Some("CVE-2026-40042"),
        severity: Some("medium"),
        title: Some("Path traversal in the archive extractor"),
        details: Some("Crafted archives write outside the target folder.\n\n**Upgrade.**"),
        credit: Some("Jane Doe"),
        modified: "2026-12-01T10:00:00Z".parse().unwrap(),
        published: Some("2026-11-30T09:00:00Z".parse().unwrap()),
        ..Facts::default()
    };
    let mut records = Vec::new();
    for (affected, fixed_in) in [
        (Some(">= 2.0, < 2.4.3"), None),
        (Some(">=2.0 <=2.4.2"), Some("2.4.3")),
        (Some(">= 1.0, < 1.4.2; >= 2.0"), Some("1.4.2, 2.1.1")),
        (Some(">= 1.0 || >= 2.0, < 2.1.1"), None),
        (Some("2.4.0, 2.4.1; >= 3.0, < 3.0.2"), None),
        (Some("2.4.0 2.4.1"), Some("2.4.2")),
        (Some("*"), Some("9.9")),
        (Some("all"), None),
        (None, Some("2.4.3")),
    ] {
        let f = Facts {
            affected,
            fixed_in,
            ..base.clone()
        };
        let r = record(&f, &settings(RangeType::Ecosystem, None))
            .unwrap_or_else(|e| panic!("{affected:?} {fixed_in:?}: {e}"));
        records.push(serde_json::to_value(r).unwrap());
    }
    for f in [
        Facts {
            affected: Some(">= v1.2.0, < v1.4.0-rc.1"),
            severity: Some(
                "critical CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            ),
            ..base.clone()
        },
        Facts {
            affected: Some("< 1.0.0"),
            severity: Some("high CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            cve: None,
            credit: Some("none"),
            published: None,
            title: None,
            details: None,
            ..base.clone()
        },
    ] {
        let r = record(&f, &settings(RangeType::Semver, Some("PYSEC"))).unwrap();
        records.push(serde_json::to_value(r).unwrap());
    }
    if let Err(e) = schema_check(&records) {
        panic!("{e}\n{}", serde_json::to_string_pretty(&records).unwrap());
    }
    assert_eq!(records[9]["id"], "PYSEC-SEC-2026-0042");
    assert_eq!(records[9]["aliases"], json!(["CVE-2026-40042"]));
    assert_eq!(records[10]["database_specific"]["draft"], true);
}

// ------------------------------------------------- the whole stack --

impl World {
    /// A stack, a daemon with handler Alice (authenticated by the stack's
    /// OpenDKIM) and the OSV keys set.
    fn osv() -> World {
        // No CLI call before the daemon has created its state file.
        World::start_ready(|cfg| {
            cfg.handlers = vec![("Alice".into(), ALICE.into())];
            cfg.extra = format!(
                "[handler_auth]\ntrusted_authserv_id = \"{}\"\n\n[announce]\nlist = \"{ANNOUNCE}\"\n\
                 advisory_url = \"https://example.org/security/{{id}}\"\n\
                 osv_ecosystem = \"crates.io\"\nosv_package = \"example-yaml\"\n",
                common::AUTHSERV_ID
            );
        })
    }

    /// A report over inbound SMTP; waits until its case is acknowledged.
    fn acknowledged_case(&self, subject: &str) -> String {
        let raw = common::simple_message(REPORTER, SECURITY, subject, "Details of the flaw.");
        self.stack.send_raw(REPORTER, &[SECURITY], &raw);
        let id = eventually(T, "the case", Some(&self.daemon), || {
            common::daemon::cases(&self.config)
                .iter()
                .find(|c| c["subject"] == subject)
                .and_then(|c| c["id"].as_str().map(str::to_owned))
        });
        self.wait_state(&id, "acknowledged");
        id
    }

    /// Alice's command mail, threaded under the case's notification and
    /// submitted on the authenticated port (DKIM-signed, so the stack
    /// stamps a genuine dkim=pass); waits until the daemon recorded
    /// `event`.
    fn alice_commands(&self, id: &str, body: &str, event: &str) -> Value {
        let root = common::daemon::thread_root(&self.db(), id);
        let (in_reply_to, references) = (
            format!("In-Reply-To: <{root}>"),
            format!("References: <{root}>"),
        );
        let (raw, _) = common::text_mail(
            "cmd",
            ALICE,
            SECURITY,
            &format!("Re: [{id}] New report"),
            &[&in_reply_to, &references],
            body,
        );
        self.stack.submit(ALICE, ALICE, &[SECURITY], &raw);
        eventually(T, &format!("{event:?} on {id}"), Some(&self.daemon), || {
            let v = self.show(id);
            let done = v["events"].as_array()?.iter().any(|e| e["what"] == event);
            done.then_some(v)
        })
    }

    /// `cases export ID --osv [more]`: (exit code, stdout, stderr).
    fn export(&self, id: &str, more: &[&str]) -> (i32, String, String) {
        let mut args = vec!["cases", "export", id, "--osv"];
        args.extend_from_slice(more);
        cli(&self.config, &args)
    }
}

#[test]
fn a_case_handled_by_email_exports_as_a_valid_osv_record() {
    let w = World::osv();
    let id = w.acknowledged_case("Stack overflow in the YAML loader");
    let cvss = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H";
    w.alice_commands(
        &id,
        &format!(
            "/take\n/state confirmed\n/severity high {cvss}\n\
             /affected >= 2.0, < 2.4.3; >= 3.0\n/fixed-in 3.0.2\n/cve CVE-2026-40123\n\
             /credit Jane Doe (ACME Labs)\n\
             /summary OSV-DETAILS: deeply nested YAML overflows the stack.\n\
             /state fixing\n/state fix-ready"
        ),
        "summary set",
    );
    w.wait_state(&id, "fix-ready");

    // Not announced: refused, unless asked for a draft.
    let (code, out, err) = w.export(&id, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert_eq!(
        err.trim_end(),
        format!(
            "secintake: {id}: not announced yet (state fix-ready): an OSV record is for \
             publication; pass --draft to print it anyway, marked \"draft\": true"
        )
    );
    let (code, out, err) = w.export(&id, &["--draft"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("is not announced: the record is a draft"),
        "{err}"
    );
    let draft: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(draft["database_specific"]["draft"], true);
    assert_eq!(draft.get("published"), None);
    assert_eq!(
        draft["details"],
        "OSV-DETAILS: deeply nested YAML overflows the stack."
    );

    let shown = w.alice_commands(&id, "/announce", "announced");
    assert_eq!(shown["state"], "announced");
    let announced_at = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["what"] == "announced")
        .map(|e| e["at"].clone())
        .unwrap();

    let (code, out, err) = w.export(&id, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let record: Value = serde_json::from_str(&out).expect("JSON");
    if let Err(e) = schema_check(&[record.clone(), draft.clone()]) {
        panic!("{e}\n{out}");
    }
    assert_eq!(record["schema_version"], "1.6.7");
    assert_eq!(record["id"], "CVE-2026-40123");
    assert_eq!(record.get("aliases"), None);
    assert_eq!(record["published"], announced_at);
    assert!(
        record["modified"].as_str() >= record["published"].as_str(),
        "{record}"
    );
    assert_eq!(record["summary"], "Stack overflow in the YAML loader");
    let details = record["details"].as_str().unwrap();
    assert!(
        details.starts_with("OSV-DETAILS: deeply nested YAML overflows the stack."),
        "the announced advisory: {details}"
    );
    assert!(details.contains("CVE-2026-40123"), "{details}");
    assert!(!details.contains("\n-- \n"), "no signature: {details}");
    assert_eq!(
        record["affected"],
        json!([{
            "package": {"ecosystem": "crates.io", "name": "example-yaml"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"fixed": "2.4.3"}]},
                {"type": "ECOSYSTEM", "events": [{"introduced": "3.0"}, {"fixed": "3.0.2"}]},
            ],
        }])
    );
    assert_eq!(
        record["credits"],
        json!([{"name": "Jane Doe (ACME Labs)", "type": "FINDER"}])
    );
    assert_eq!(
        record["severity"],
        json!([{"type": "CVSS_V3", "score": cvss}])
    );
    assert_eq!(record["database_specific"], json!({"severity": "high"}));
    assert_eq!(
        record["references"],
        json!([
            {"type": "ADVISORY", "url": "https://example.org/security/CVE-2026-40123"},
            {"type": "ADVISORY", "url": "https://www.cve.org/CVERecord?id=CVE-2026-40123"},
        ])
    );

    // A fact OSV cannot express: one line naming the case, the fact and
    // its value, exit 1, nothing on stdout.
    let other = w.acknowledged_case("Timing leak in token compare");
    w.alice_commands(
        &other,
        "/cve CVE-2026-40124\n/affected before 2.4",
        "affected versions set",
    );
    let (code, out, err) = w.export(&other, &["--draft"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "no record: {out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "secintake: {other}: affected = \"before 2.4\": \"before\" is not a version"
        )),
        "{err}"
    );
}
