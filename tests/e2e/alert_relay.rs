//! `[alert_relay]`: when the SMTP server is what fails, the alert still
//! reaches the handlers, through a second relay (here a second, separate
//! mail stack: its own Postfix, Dovecot and CA). The recovery notice goes
//! by the first relay, which works again then.

use crate::common;

use common::daemon::eventually;
use common::world::{World, T};
use common::{header, simple_message, toml_str, MailStack};
use std::time::Duration;

const ALICE: &str = "alice@example.org";

fn relay_config(backup: &MailStack) -> String {
    format!(
        "[alert_relay]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = {}\n\
         username = \"relay@example.org\"\npassword = {}\n",
        backup.submission_port,
        toml_str(&backup.ca_file.display().to_string()),
        toml_str(&backup.password)
    )
}

fn subject_has(m: &[u8], word: &str) -> bool {
    header(m, "Subject").is_some_and(|s| s.contains(word))
}

#[test]
fn an_smtp_outage_is_alerted_through_the_second_relay_and_the_recovery_by_the_first() {
    let backup = MailStack::start();
    let w = World::start_ready(|c| {
        c.alert_after = "2s".into();
        c.extra = relay_config(&backup);
    });
    let out = w.cli_ok(&["check-config"]);
    assert!(
        out.contains("alert_relay ok: connected to 127.0.0.1") && out.contains("logged in"),
        "{out}"
    );

    w.stack.stop_smtp();
    w.stack.inject(
        "security@example.org",
        &simple_message(
            "r@example.net",
            "security@example.org",
            "During the outage",
            "x",
        ),
    );
    let alert = eventually(
        Duration::from_secs(60),
        "the alert through the second relay",
        Some(&w.daemon),
        || {
            backup
                .fetch_all(ALICE)
                .into_iter()
                .find(|m| subject_has(m, "ALERT"))
        },
    );
    assert_eq!(
        header(&alert, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(
        header(&alert, "From").is_some_and(|f| f.contains("security@example.org")),
        "{:?}",
        header(&alert, "From")
    );
    let text = String::from_utf8_lossy(&alert).to_ascii_lowercase();
    assert!(text.contains("smtp"), "{text}");
    assert!(
        w.log().contains("alert sent through [alert_relay]"),
        "{}",
        w.log()
    );

    w.stack.start_smtp();
    w.stack.wait_for(
        ALICE,
        |m| m.iter().any(|m| subject_has(m, "recovered")),
        Duration::from_secs(60),
    );
    // Anything more would come within a few health checks.
    std::thread::sleep(Duration::from_secs(3));
    let second: Vec<String> = backup
        .fetch_all(ALICE)
        .iter()
        .map(|m| header(m, "Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        second.len(),
        1,
        "the second relay carries the alert only: {second:?}"
    );
    eventually(T, "SMTP healthy", Some(&w.daemon), || {
        let st = w.status()?;
        st["smtp"]["failing_since"].is_null().then_some(())
    });
}
