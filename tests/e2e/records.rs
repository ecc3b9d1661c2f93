//! One case's records (issue 12): `cases export ID --out DIR` hands over
//! the case as JSON and its mail as an mbox; `cases erase ID --yes`
//! removes its personal data for good and records that it did.

use crate::common;

use common::daemon::cli;
use common::world::World;
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_case_is_exported_whole_and_erased_on_request() {
    let mut w = World::start_ready(|_| {});
    w.report("ann@example.net", "Heap overflow in the parser");
    let id = w.wait_acked_cases(1)[0]["id"].as_str().unwrap().to_string();
    w.wait_outbox_empty();

    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_string_lossy().into_owned();
    let (code, text, err) = cli(&w.config, &["cases", "export", &id, "--out", &dir]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains(&format!("{id}.mbox")), "{text}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(json["id"], id.as_str());
    let messages = json["messages"].as_array().unwrap().len();
    let mbox = std::fs::read_to_string(out.path().join(format!("{id}.mbox"))).unwrap();
    let starts = mbox.lines().filter(|l| l.starts_with("From ")).count();
    assert_eq!(starts, messages, "one mbox entry per message:\n{mbox}");
    assert!(mbox.contains("Heap overflow in the parser"));
    for f in [format!("{id}.json"), format!("{id}.mbox")] {
        let mode = std::fs::metadata(out.path().join(&f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // Never over an existing file.
    let (code, _, err) = cli(&w.config, &["cases", "export", &id, "--out", &dir]);
    assert_eq!(code, 1, "{err}");

    // Erasure asks first.
    let (code, _, err) = cli(&w.config, &["cases", "erase", &id]);
    assert_eq!(code, 1);
    assert!(err.contains("--yes"), "{err}");
    assert!(w.show(&id)["reporter"].is_string());
    let (code, text, err) = cli(&w.config, &["cases", "erase", &id, "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("personal data erased"), "{text}");
    let after = w.show(&id);
    assert!(
        after["reporter"].is_null() && after["subject"].is_null(),
        "{after}"
    );
    let msgs = after["messages"].as_array().unwrap();
    assert!(
        msgs.iter()
            .all(|m| m["from"].is_null() && m["purged"] == true),
        "{after}"
    );
    let dump = after.to_string();
    assert!(
        !dump.contains("ann@example.net") && !dump.contains("Heap overflow"),
        "{dump}"
    );
    assert!(
        after["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["what"] == "personal data erased"),
        "{after}"
    );
    let first = msgs[0]["id"].as_i64().unwrap().to_string();
    let (code, raw, _) = cli(&w.config, &["mail", "export", &first]);
    assert_eq!(code, 0);
    assert!(raw.is_empty(), "{raw}");
    // Nothing of it is left in the state file's pages either (secure
    // delete, and the write-ahead log folded in).
    w.daemon.terminate(common::world::T);
    let needle = b"Heap overflow in the parser";
    for path in [
        w.db(),
        std::path::PathBuf::from(format!("{}-wal", w.db().display())),
    ] {
        let bytes = std::fs::read(&path).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|x| x == needle),
            "{} still holds the report",
            path.display()
        );
    }
}
