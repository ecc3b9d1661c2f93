//! One test per kind of configuration mistake, asserting the exact one-line
//! message the operator sees, plus the overrides and defaults that the
//! messages depend on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secintake::config::{After, Config, ConfigError, TlsMode};

/// A complete, valid configuration with every optional key left out,
/// needing no files besides itself (cli_config's error tests use it too).
pub(crate) const BASE: &str = r#"
[mailbox]
address = "Security@Example.org"
project = "Example"

[imap]
host = "imap.example.org"
username = "security@example.org"
password = "imap-secret"

[smtp]
host = "smtp.example.org"
"#;

struct Case {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Case {
    fn new(toml: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secintake.toml");
        std::fs::write(&path, toml).unwrap();
        Case { dir, path }
    }

    /// Writes `content` next to the config file and returns its path.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn load(&self, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(&self.path, env)
    }

    fn error(&self, env: &[(&str, &str)]) -> String {
        match self.load(env) {
            Ok(config) => panic!("expected an error, loaded {config:?}"),
            Err(err) => {
                let line = err.to_string();
                assert!(!line.contains('\n'), "not one line: {line:?}");
                line
            }
        }
    }

    /// "config error in <path>: " for this case's file.
    fn prefix(&self) -> String {
        format!("config error in {}: ", self.path.display())
    }
}

/// BASE with `line` inserted right after the `[section]` header.
fn with(section: &str, line: &str) -> String {
    let header = format!("[{section}]\n");
    if BASE.contains(&header) {
        BASE.replacen(&header, &format!("{header}{line}\n"), 1)
    } else {
        format!("{BASE}\n{header}{line}\n")
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn base_config_loads_with_documented_defaults() {
    let config = Case::new(BASE).load(&[]).unwrap();
    assert_eq!(config.mailbox.address, "security@example.org");
    assert_eq!(config.mailbox.policy_url, "");
    assert_eq!(config.imap.port, 993);
    assert_eq!(config.imap.tls, TlsMode::Implicit);
    assert_eq!(config.imap.folder, "INBOX");
    assert!(config.imap.idle);
    assert_eq!(config.imap.poll_interval, Duration::from_secs(60));
    assert_eq!(config.imap.idle_timeout, Duration::from_secs(25 * 60));
    assert_eq!(config.imap.io_timeout, Duration::from_secs(60));
    assert_eq!(config.imap.after, After::Seen);
    assert_eq!(config.smtp.port, 587);
    assert_eq!(config.smtp.tls, TlsMode::Starttls);
    assert_eq!(config.smtp.username, None);
    assert_eq!(config.smtp.password, None);
    assert_eq!(config.smtp.timeout, Duration::from_secs(30));
    assert_eq!(
        config.storage.path,
        PathBuf::from("/var/lib/secintake/secintake.db")
    );
    assert_eq!(config.sla.acknowledge, Duration::from_secs(48 * 3600));
    assert_eq!(config.sla.respond, Duration::from_secs(72 * 3600));
    assert!(config.handlers.is_empty());
    assert_eq!(config.limits.acks_per_sender_per_day, 5);
    assert_eq!(config.limits.max_message_size, 50 * 1024 * 1024);
    assert_eq!(config.limits.alert_after, Duration::from_secs(15 * 60));
    assert_eq!(config.templates.dir, None);
    assert_eq!(config.intake.backfill, Duration::from_secs(7 * 86400));
    assert_eq!(config.intake.batch_size, 250);
    assert!(config
        .warnings()
        .iter()
        .any(|w| w.starts_with("no [[handlers]] configured")));
}

#[test]
fn missing_config_file() {
    let err = Config::load_with_env(Path::new("/nonexistent/secintake.toml"), HashMap::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config error: cannot read /nonexistent/secintake.toml: No such file or directory"
    );
}

#[test]
fn toml_syntax_error_is_one_line() {
    let case = Case::new("[imap]\nhost = \"unterminated\n");
    assert_eq!(
        case.error(&[]),
        format!(
            "{}TOML syntax error at line 2, column 21: invalid basic string, expected `\"`",
            case.prefix()
        )
    );
}

#[test]
fn unknown_key() {
    let case =
        Case::new(&BASE.replace("host = \"imap.example.org\"", "hots = \"imap.example.org\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}unknown key \"imap.hots\" (expected one of: host, port, tls, ca_file, username, auth, password, \
             password_file, folder, folders, junk, idle, poll_interval, idle_timeout, io_timeout, after)",
            case.prefix()
        )
    );
}

#[test]
fn folders_are_checked() {
    let both = Case::new(&with(
        "imap",
        "folder = \"INBOX\"\nfolders = [\"INBOX\", \"Junk\"]",
    ));
    assert_eq!(
        both.error(&[]),
        format!(
            "{}imap.folders = an array: imap.folder and imap.folders are both set: set only one",
            both.prefix()
        )
    );
    let twice = Case::new(&with("imap", "folders = [\"INBOX\", \"inbox\"]"));
    assert!(
        twice.error(&[]).ends_with("\"inbox\" is listed twice"),
        "{}",
        twice.error(&[])
    );
    let junk = Case::new(&with("imap", "junk = \"yes\""));
    assert!(
        junk.error(&[])
            .contains("imap.junk = \"yes\": expected \"auto\" or \"none\""),
        "{}",
        junk.error(&[])
    );
}

#[test]
fn unknown_section() {
    let case = Case::new(&format!("{BASE}\n[handler]\nname = \"x\"\n"));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}unknown key \"handler\" (expected one of: mailbox, imap, smtp, storage, sla, handlers, \
             limits, templates, intake, handler_auth, workflow, announce, reporter, alerts, alert_relay, pgp, metrics, retention, oauth2)",
            case.prefix()
        )
    );
}

#[test]
fn unknown_key_from_environment_names_the_variable() {
    let case = Case::new(BASE);
    assert_eq!(
        case.error(&[("SECINTAKE_SMTP__HOTS", "x")]),
        "config error in environment variable SECINTAKE_SMTP__HOTS: unknown key \"smtp.hots\" \
         (expected one of: host, port, tls, ca_file, username, auth, password, password_file, timeout, from_name)"
    );
}

#[test]
fn bad_enum() {
    let case = Case::new(&with("imap", "tls = \"ssl\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.tls = \"ssl\": expected one of \"implicit\", \"starttls\", \"none\"",
            case.prefix()
        )
    );
    let case = Case::new(&with("imap", "after = \"delete\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.after = \"delete\": expected \"seen\", \"keep\" or \"move:<folder>\"",
            case.prefix()
        )
    );
}

#[test]
fn after_move_parses_and_refuses_its_own_folder() {
    let config = Case::new(&with("imap", "after = \"move:Archive/Security\""))
        .load(&[])
        .unwrap();
    assert_eq!(config.imap.after, After::Move("Archive/Security".into()));
    let case = Case::new(&with("imap", "after = \"move:inbox\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.after = \"move:inbox\": moves messages into imap.folder (\"INBOX\") itself",
            case.prefix()
        )
    );
}

#[test]
fn bad_duration() {
    let case = Case::new(&with("imap", "poll_interval = \"60\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.poll_interval = \"60\": expected a duration like \"60s\", \"25m\", \"48h\", \"7d\" or \"1h 30m\"",
            case.prefix()
        )
    );
    let case = Case::new(&with("sla", "acknowledge = 48"));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}sla.acknowledge = 48: expected a duration like \"60s\", \"25m\", \"48h\", \"7d\" or \"1h 30m\"",
            case.prefix()
        )
    );
}

#[test]
fn idle_timeout_must_stay_below_29_minutes() {
    let case = Case::new(&with("imap", "idle_timeout = \"29m\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.idle_timeout = \"29m\": must be less than 29m (RFC 2177: servers may end an IDLE after 30 minutes)",
            case.prefix()
        )
    );
    let config = Case::new(&with("imap", "idle_timeout = \"28m 59s\""))
        .load(&[])
        .unwrap();
    assert_eq!(config.imap.idle_timeout, Duration::from_secs(29 * 60 - 1));
}

#[test]
fn bad_size() {
    let case = Case::new(&with("limits", "max_message_size = \"50 megabytes\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}limits.max_message_size = \"50 megabytes\": expected a size like \"50MiB\" \
             (units: B, KB, KiB, MB, MiB, GB, GiB; no unit = bytes)",
            case.prefix()
        )
    );
    let config = Case::new(&with("limits", "max_message_size = \"10MB\""))
        .load(&[])
        .unwrap();
    assert_eq!(config.limits.max_message_size, 10_000_000);
}

#[test]
fn missing_required_key() {
    let case = Case::new(&BASE.replace("host = \"imap.example.org\"\n", ""));
    assert_eq!(
        case.error(&[]),
        format!("{}missing required key imap.host", case.prefix())
    );
    let case = Case::new(&BASE.replace("address = \"Security@Example.org\"\n", ""));
    assert_eq!(
        case.error(&[]),
        format!("{}missing required key mailbox.address", case.prefix())
    );
    let case = Case::new(&BASE.replace("[smtp]\nhost = \"smtp.example.org\"\n", ""));
    assert_eq!(
        case.error(&[]),
        format!("{}missing required key smtp.host", case.prefix())
    );
}

#[test]
fn missing_password() {
    let case = Case::new(&BASE.replace("password = \"imap-secret\"\n", ""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}missing required key imap.password (or imap.password_file)",
            case.prefix()
        )
    );
}

#[test]
fn plaintext_refused_for_remote_host() {
    let case = Case::new(&with("imap", "tls = \"none\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.tls = \"none\": only allowed when imap.host is a loopback address (127.0.0.0/8, ::1 or localhost), \
             and imap.host is \"imap.example.org\"; use \"implicit\" or \"starttls\"",
            case.prefix()
        )
    );
}

#[test]
fn plaintext_allowed_for_loopback() {
    for host in ["127.0.0.5", "::1", "[::1]", "localhost"] {
        let toml = with("smtp", "tls = \"none\"").replace("smtp.example.org", host);
        let config = Case::new(&toml).load(&[]).unwrap();
        assert_eq!(config.smtp.tls, TlsMode::None);
        assert_eq!(config.smtp.port, 25);
        assert!(config
            .warnings()
            .iter()
            .any(|w| w.starts_with("smtp.tls = \"none\"")));
    }
    let config = Case::new(BASE)
        .load(&[
            ("SECINTAKE_IMAP__HOST", "127.0.0.1"),
            ("SECINTAKE_IMAP__TLS", "none"),
        ])
        .unwrap();
    assert_eq!(config.imap.port, 143);
}

#[test]
fn missing_ca_file() {
    let case = Case::new(&with("imap", "ca_file = \"/nonexistent/ca.pem\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.ca_file = \"/nonexistent/ca.pem\": cannot read: No such file or directory",
            case.prefix()
        )
    );
}

#[test]
fn relative_ca_file_is_resolved_next_to_the_config() {
    let case = Case::new(&with("smtp", "ca_file = \"ca.pem\""));
    let err = case.error(&[]);
    let resolved = case.dir.path().join("ca.pem");
    assert_eq!(
        err,
        format!(
            "{}smtp.ca_file = \"ca.pem\": cannot read {}: No such file or directory",
            case.prefix(),
            display(&resolved)
        )
    );
    case.file(
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    assert_eq!(case.load(&[]).unwrap().smtp.ca_file, Some(resolved));
}

#[test]
fn ca_file_without_certificate() {
    let case = Case::new("");
    let ca = case.file("ca.pem", "not a certificate\n");
    std::fs::write(
        &case.path,
        with("imap", &format!("ca_file = {:?}", display(&ca))),
    )
    .unwrap();
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.ca_file = {:?}: expected a PEM file with at least one -----BEGIN CERTIFICATE----- block",
            case.prefix(),
            display(&ca)
        )
    );
}

#[test]
fn password_and_password_file_both_set() {
    let case = Case::new(&with("imap", "password_file = \"/run/credentials/imap\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.password and imap.password_file are both set: set only one",
            case.prefix()
        )
    );
    // The same mistake split between file and environment names the variable.
    let case = Case::new(BASE);
    assert_eq!(
        case.error(&[("SECINTAKE_IMAP__PASSWORD_FILE", "/run/credentials/imap")]),
        "config error in environment variable SECINTAKE_IMAP__PASSWORD_FILE: \
         imap.password and imap.password_file are both set: set only one"
    );
}

#[test]
fn secret_file_missing() {
    let case = Case::new(&BASE.replace(
        "password = \"imap-secret\"",
        "password_file = \"/nonexistent/imap-password\"",
    ));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.password_file = \"/nonexistent/imap-password\": cannot read: No such file or directory",
            case.prefix()
        )
    );
}

#[test]
fn secret_file_empty_or_multiline() {
    let case = Case::new("");
    let empty = case.file("empty", "\n");
    let two = case.file("two", "first\nsecond\n");
    for (file, what) in [
        (&empty, "the file is empty"),
        (
            &two,
            "the file holds more than one line; expected the secret alone",
        ),
    ] {
        std::fs::write(
            &case.path,
            BASE.replace(
                "password = \"imap-secret\"",
                &format!("password_file = {:?}", display(file)),
            ),
        )
        .unwrap();
        assert_eq!(
            case.error(&[]),
            format!(
                "{}imap.password_file = {:?}: {what}",
                case.prefix(),
                display(file)
            )
        );
    }
}

#[test]
fn password_from_file_trims_newline() {
    let case = Case::new("");
    let secret = case.file("imap-password", "s3cret with spaces \r\n");
    std::fs::write(
        &case.path,
        BASE.replace(
            "password = \"imap-secret\"",
            "password_file = \"imap-password\"",
        ),
    )
    .unwrap();
    assert_eq!(case.load(&[]).unwrap().imap.password, "s3cret with spaces ");
    // Also through the environment, as with systemd LoadCredential.
    let case2 = Case::new(&BASE.replace("password = \"imap-secret\"\n", ""));
    let config = case2
        .load(&[
            ("SECINTAKE_IMAP__PASSWORD_FILE", &display(&secret)),
            ("SECINTAKE_SMTP__USERNAME", "relay"),
        ])
        .unwrap_err();
    assert_eq!(
        config.to_string(),
        "config error in environment variable SECINTAKE_SMTP__PASSWORD: \
         smtp.username is set but smtp.password (or smtp.password_file) is not: set both or neither"
    );
    let smtp_secret = case.file("smtp-password", "relay-pass\n");
    let config = case2
        .load(&[
            ("SECINTAKE_IMAP__PASSWORD_FILE", &display(&secret)),
            ("SECINTAKE_SMTP__USERNAME", "relay"),
            ("SECINTAKE_SMTP__PASSWORD_FILE", &display(&smtp_secret)),
        ])
        .unwrap();
    assert_eq!(config.imap.password, "s3cret with spaces ");
    assert_eq!(config.smtp.username.as_deref(), Some("relay"));
    assert_eq!(config.smtp.password.as_deref(), Some("relay-pass"));
}

#[test]
fn smtp_password_without_username() {
    let case = Case::new(&with("smtp", "password = \"relay-pass\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}missing required key smtp.username (smtp.password is set: set both or neither)",
            case.prefix()
        )
    );
}

#[test]
fn duplicate_handler() {
    let toml = format!(
        "{BASE}\n[[handlers]]\nname = \"Alice\"\nemail = \"alice@example.org\"\n\n\
         [[handlers]]\nname = \"Bob\"\nemail = \"bob@example.org\"\n\n\
         [[handlers]]\nname = \"Alice again\"\nemail = \"Alice@Example.ORG\"\n"
    );
    let case = Case::new(&toml);
    assert_eq!(
        case.error(&[]),
        format!(
            "{}handlers[2].email = \"Alice@Example.ORG\": duplicate of handlers[0].email",
            case.prefix()
        )
    );
}

#[test]
fn handler_missing_email_and_unknown_key() {
    let case = Case::new(&format!("{BASE}\n[[handlers]]\nname = \"Alice\"\n"));
    assert_eq!(
        case.error(&[]),
        format!("{}missing required key handlers[0].email", case.prefix())
    );
    let case = Case::new(&format!(
        "{BASE}\n[[handlers]]\nname = \"Alice\"\nmail = \"a@example.org\"\n"
    ));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}unknown key \"handlers[0].mail\" (expected one of: name, email, pgp_key)",
            case.prefix()
        )
    );
}

#[test]
fn handlers_are_lowercased() {
    let toml = format!("{BASE}\n[[handlers]]\nname = \"Alice\"\nemail = \"Alice@Example.ORG\"\n");
    let config = Case::new(&toml).load(&[]).unwrap();
    assert_eq!(config.handlers.len(), 1);
    assert_eq!(config.handlers[0].name, "Alice");
    assert_eq!(config.handlers[0].email, "alice@example.org");
}

#[test]
fn bad_address() {
    let case = Case::new(&BASE.replace(
        "\"Security@Example.org\"",
        "\"Security Team <security@example.org>\"",
    ));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}mailbox.address = \"Security Team <security@example.org>\": \
             expected a bare email address like \"security@example.org\"",
            case.prefix()
        )
    );
    for bad in [
        "security",
        "security@",
        "@example.org",
        "se..c@example.org",
        "a@-x.org",
        "a@b@c.org",
    ] {
        let case = Case::new(&BASE.replace("\"Security@Example.org\"", &format!("{bad:?}")));
        assert!(
            case.error(&[]).contains("expected a bare email address"),
            "{bad} was accepted"
        );
    }
}

#[test]
fn bad_port() {
    let case = Case::new(&with("imap", "port = 70000"));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.port = 70000: expected a port number from 1 to 65535",
            case.prefix()
        )
    );
    let case = Case::new(BASE);
    assert_eq!(
        case.error(&[("SECINTAKE_SMTP__PORT", "abc")]),
        "config error in environment variable SECINTAKE_SMTP__PORT: \
         smtp.port = \"abc\": expected a port number from 1 to 65535"
    );
}

#[test]
fn env_override_wins_over_file() {
    let case = Case::new(&with("imap", "port = 993"));
    let config = case
        .load(&[
            ("SECINTAKE_IMAP__PORT", "1143"),
            ("SECINTAKE_IMAP__PASSWORD", "from-env"),
            ("SECINTAKE_IMAP__IDLE", "false"),
            ("SECINTAKE_SMTP__PASSWORD", "relay-pass"),
            ("SECINTAKE_SMTP__USERNAME", "relay"),
            ("SECINTAKE_INTAKE__BATCH_SIZE", "25"),
            ("SECINTAKE_LIMITS__MAX_MESSAGE_SIZE", "1GiB"),
            // Not configuration keys: left for other parts of the program.
            ("SECINTAKE_CONFIG", "/etc/secintake/secintake.toml"),
            ("SECINTAKE_LOG", "debug"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
    assert_eq!(config.imap.port, 1143);
    assert_eq!(config.imap.password, "from-env");
    assert!(!config.imap.idle);
    assert_eq!(config.smtp.password.as_deref(), Some("relay-pass"));
    assert_eq!(config.intake.batch_size, 25);
    assert_eq!(config.limits.max_message_size, 1 << 30);
}

#[test]
fn env_password_keeps_leading_zeros() {
    // Numbers from the environment are not parsed eagerly: a numeric
    // password must survive as written.
    let config = Case::new(BASE)
        .load(&[("SECINTAKE_IMAP__PASSWORD", "007")])
        .unwrap();
    assert_eq!(config.imap.password, "007");
}

#[test]
fn env_single_underscore_is_refused() {
    let case = Case::new(BASE);
    assert_eq!(
        case.error(&[("SECINTAKE_IMAP_PASSWORD", "x")]),
        "config error in environment variable SECINTAKE_IMAP_PASSWORD: \
         write one underscore after SECINTAKE and two between section and key, e.g. SECINTAKE_IMAP__PASSWORD"
    );
    assert_eq!(
        case.error(&[("SECINTAKE__IMAP__PASSWORD", "x")]),
        "config error in environment variable SECINTAKE__IMAP__PASSWORD: \
         write one underscore after SECINTAKE and two between section and key, e.g. SECINTAKE_IMAP__PASSWORD"
    );
    assert_eq!(
        case.error(&[("SECINTAKE_LIMITS_ALERT_AFTER", "1h")]),
        "config error in environment variable SECINTAKE_LIMITS_ALERT_AFTER: \
         write one underscore after SECINTAKE and two between section and key, e.g. SECINTAKE_LIMITS__ALERT_AFTER"
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let case = Case::new(&BASE.replace("password = \"imap-secret\"", "password = \"\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.password = <redacted>: must not be empty",
            case.prefix()
        )
    );
    let case = Case::new(BASE);
    let err = case.error(&[("SECINTAKE_IMAP__PASSWORD", "line1\nline2")]);
    assert_eq!(
        err,
        "config error in environment variable SECINTAKE_IMAP__PASSWORD: \
         imap.password = <redacted>: must not contain line breaks or NUL"
    );
    let config = Case::new(&with(
        "smtp",
        "username = \"relay\"\npassword = \"relay-secret\"",
    ))
    .load(&[])
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("imap-secret"), "{debug}");
    assert!(!debug.contains("relay-secret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[test]
fn host_with_port_is_refused() {
    let case = Case::new(&BASE.replace("\"imap.example.org\"", "\"imap.example.org:993\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}imap.host = \"imap.example.org:993\": expected a host name or IP address, \
             without scheme or port (the port goes in imap.port)",
            case.prefix()
        )
    );
}

#[test]
fn templates_dir_must_exist() {
    let case = Case::new(&with("templates", "dir = \"/nonexistent/templates\""));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}templates.dir = \"/nonexistent/templates\": cannot read: No such file or directory",
            case.prefix()
        )
    );
}

#[test]
fn batch_size_bounds() {
    let case = Case::new(&with("intake", "batch_size = 0"));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}intake.batch_size = 0: expected a whole number from 1 to 10000",
            case.prefix()
        )
    );
}

#[test]
fn wrong_type_for_section() {
    let case = Case::new(&format!("storage = \"/var/lib/x\"\n{BASE}"));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}storage = \"/var/lib/x\": expected a table [storage]",
            case.prefix()
        )
    );
}

#[test]
fn env_malformed_name_is_refused_not_ignored() {
    let case = Case::new(BASE);
    for name in [
        "SECINTAKE_IMAP__P@SS",
        "SECINTAKE_IMAP__",
        "SECINTAKE_IMAP__TLS__MODE",
    ] {
        assert_eq!(
            case.error(&[(name, "x")]),
            format!(
                "config error in environment variable {name}: expected a name of the form \
                 SECINTAKE_<SECTION>__<KEY> (letters, digits and single underscores), \
                 e.g. SECINTAKE_IMAP__PASSWORD_FILE"
            )
        );
    }
}

/// Issue 7: a password in a config file other users can read is named, with
/// its mode and the way out; a private file, or the password from the
/// environment, gives no such warning.
#[test]
fn a_password_in_a_world_readable_file_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let case = Case::new(BASE);
    let warned = |c: &Config| {
        c.warnings()
            .into_iter()
            .find(|w| w.contains("imap.password and other users can read it"))
    };
    std::fs::set_permissions(&case.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let w = warned(&case.load(&[]).unwrap()).expect("a warning for the 0644 file");
    assert!(w.contains("mode 644") && w.contains("chmod 600"), "{w}");
    assert!(w.contains(&case.path.display().to_string()), "{w}");
    std::fs::set_permissions(&case.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(warned(&case.load(&[]).unwrap()), None);
}

/// `[alert_relay]` is read as `[smtp]` is, and its errors name its own
/// keys; it takes no OAuth2 and no `from_name`, and its password may come
/// from a file through the environment, as a unit's credential would.
#[test]
fn alert_relay_keys_are_smtp_keys_named_as_its_own() {
    let case = Case::new(&with(
        "alert_relay",
        "host = \"smtp2.example.net\"\nusername = \"alerts\"",
    ));
    assert_eq!(
        case.error(&[]),
        format!(
            "{}alert_relay.username is set but alert_relay.password (or \
             alert_relay.password_file) is not: set both or neither",
            case.prefix()
        )
    );
    let case = Case::new(&with(
        "alert_relay",
        "host = \"smtp2.example.net\"\ntls = \"none\"",
    ));
    assert!(
        case.error(&[]).contains(
            "alert_relay.tls = \"none\": only allowed when alert_relay.host is a loopback address"
        ),
        "{}",
        case.error(&[])
    );
    let case = Case::new(&with(
        "alert_relay",
        "host = \"smtp2.example.net\"\nauth = \"oauth2\"",
    ));
    assert!(
        case.error(&[]).contains("unknown key \"alert_relay.auth\""),
        "{}",
        case.error(&[])
    );
    let case = Case::new(&with(
        "alert_relay",
        "host = \"smtp2.example.net\"\nusername = \"alerts\"",
    ));
    let secret = case.file("relay-password", "relay-secret\n");
    let config = case
        .load(&[("SECINTAKE_ALERT_RELAY__PASSWORD_FILE", &display(&secret))])
        .unwrap();
    let relay = config.alerts.relay.clone().expect("the relay");
    assert_eq!(relay.password.as_deref(), Some("relay-secret"));
    assert_eq!((relay.port, relay.tls), (587, TlsMode::Starttls));
    assert!(Case::new(BASE).load(&[]).unwrap().alerts.relay.is_none());
    // The [smtp] server itself is no second path.
    let same = Case::new(&with("alert_relay", "host = \"SMTP.example.org\""))
        .load(&[])
        .unwrap();
    assert!(
        same.warnings()
            .iter()
            .any(|w| w.starts_with("alert_relay is SMTP.example.org:587, the [smtp] server itself")),
        "{:?}",
        same.warnings()
    );
    assert!(!config
        .warnings()
        .iter()
        .any(|w| w.starts_with("alert_relay")));
}
