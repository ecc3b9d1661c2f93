//! The configuration's schema: every section and every key it may hold,
//! each spelt once, here.
//!
//! "Unknown key" errors list a section's keys from this table, and the code
//! that reads a key names it through the constant made here, so the two
//! cannot drift apart: a key that is read but not declared does not
//! compile, and the tests below fail for a key that is declared but never
//! read, or not documented in the example file.

/// Declares the sections, and for each a module holding its `NAME`, its
/// `KEYS` and one `&str` constant per key. The constants are lowercase so
/// that each is spelt exactly as the key is in the file.
macro_rules! schema {
    ($($section:ident: [$($key:ident),+ $(,)?],)+) => {
        /// Every section, in the order "unknown key" errors list them.
        pub(super) const SECTIONS: &[&str] = &[$($section::NAME),+];

        /// Every section with its keys (the example file must document them).
        #[cfg(test)]
        const SCHEMA: &[(&str, &[&str])] = &[$(($section::NAME, $section::KEYS)),+];

        $(
            #[allow(non_upper_case_globals)]
            pub(super) mod $section {
                /// The section's name in the file and in environment variables.
                pub(in crate::config) const NAME: &str = stringify!($section);
                /// Its keys, in the order "unknown key" errors list them.
                pub(in crate::config) const KEYS: &[&str] = &[$($key),+];
                $(pub(in crate::config) const $key: &str = stringify!($key);)+
            }
        )+
    };
}

schema! {
    mailbox: [address, project, policy_url, comment_address],
    imap: [
        host, port, tls, ca_file, username, auth, password, password_file, folder, folders,
        junk, idle, poll_interval, idle_timeout, io_timeout, after,
    ],
    smtp: [
        host, port, tls, ca_file, username, auth, password, password_file, timeout, from_name,
    ],
    storage: [path],
    sla: [
        acknowledge, respond, remind_before, escalate_every, escalate_to, ack_alert_after,
        digest_at, timezone,
    ],
    handlers: [name, email, pgp_key],
    limits: [
        acks_per_sender_per_day, acks_per_hour, ack_only_if, max_message_size, alert_after,
    ],
    templates: [dir],
    intake: [backfill, batch_size],
    handler_auth: [
        trusted_authserv_id, trust_unauthenticated, border_hosts, accept, dns_servers,
        results_form, arc_sealers,
    ],
    workflow: [assign, team_copies],
    announce: [
        list, advisory_url, osv_ecosystem, osv_package, osv_range_type, osv_id_prefix,
    ],
    reporter: [updates],
    alerts: [command],
    alert_relay: [host, port, tls, ca_file, username, password, password_file, timeout],
    pgp: [
        secret_key_file, passphrase_file, keyring_dir, sign_acknowledgements,
        cleartext_to_handlers,
    ],
    metrics: [listen],
    retention: [raw_after, sent_after],
    oauth2: [
        provider, tenant, token_url, client_id, client_secret_file, client_auth, grant, scopes,
        refresh_token_file, mechanism, auth_url, device_url,
    ],
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    /// Every key the loader knows is documented in the example, in its section.
    #[test]
    fn example_config_documents_every_key() {
        let text = include_str!("../../config/secintake.example.toml");
        for (section, keys) in SCHEMA {
            let header = match *section {
                "handlers" => "[[handlers]]".to_string(),
                _ => format!("[{section}]"),
            };
            let start = text
                .find(&format!("\n{header}\n"))
                .unwrap_or_else(|| panic!("{header} missing"));
            let body = &text[start + header.len() + 2..];
            let end = body.find("\n[").unwrap_or(body.len());
            let body = &body[..end];
            for key in *keys {
                let documented = body
                    .lines()
                    .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = ")));
                assert!(documented, "{header} {key} is not documented");
            }
        }
    }

    /// Every declared key is read by its section: set to a value that no
    /// reader accepts, each is refused by name. (A key declared but never
    /// read would be accepted and silently ignored.)
    #[test]
    fn every_key_is_read() {
        let required: &[(&str, &[(&str, &str)])] = &[
            (
                "mailbox",
                &[
                    ("address", "\"security@example.org\""),
                    ("project", "\"Example\""),
                ],
            ),
            (
                "imap",
                &[
                    ("host", "\"imap.example.org\""),
                    ("username", "\"u\""),
                    ("password", "\"p\""),
                ],
            ),
            ("smtp", &[("host", "\"smtp.example.org\"")]),
            ("alert_relay", &[("host", "\"smtp2.example.org\"")]),
            (
                "handlers",
                &[("name", "\"A\""), ("email", "\"a@example.org\"")],
            ),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        for (section, keys) in SCHEMA {
            for bad in *keys {
                let mut toml = String::new();
                for (name, _) in SCHEMA {
                    toml += &match *name {
                        "handlers" => "[[handlers]]\n".to_string(),
                        _ => format!("[{name}]\n"),
                    };
                    let lines = required.iter().filter(|(s, _)| s == name);
                    for (key, value) in lines.flat_map(|(_, lines)| lines.iter()) {
                        if !(name == section && key == bad) {
                            toml += &format!("{key} = {value}\n");
                        }
                    }
                    if name == section {
                        toml += &format!("{bad} = {{ a = 1 }}\n");
                    }
                }
                std::fs::write(&path, &toml).unwrap();
                let err = Config::load_with_env(&path, HashMap::new()).err();
                let expected = match *section {
                    "handlers" => format!("handlers[0].{bad}"),
                    _ => format!("{section}.{bad}"),
                };
                assert_eq!(
                    err.as_ref().and_then(|e| e.key()),
                    Some(expected.as_str()),
                    "{toml}{err:?}"
                );
            }
        }
    }
}
