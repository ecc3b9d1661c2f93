//! The daemon logging in with OAuth2 (issue 11): Dovecot checks every
//! access token against a real authorization server (oidc-provider, with
//! refresh token rotation and reuse detection) by introspection, and
//! Postfix submission authenticates through Dovecot. Both XOAUTH2 and
//! OAUTHBEARER; tokens that expire mid-run; the rotated refresh token
//! across a restart; a revoked grant; check-config naming a wrong secret.

use crate::common;

use common::daemon::{cli, eventually};
use common::oauth2::{StackOptions, TokenServerApi, TokenServerOptions, DEFAULT_SCOPES};
use common::world::{World, T};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const SECURITY: &str = "security@example.org";

/// A World whose daemon logs in to IMAP and SMTP with tokens of `api`'s
/// server, starting from a freshly minted refresh token (the consent a
/// person gives once). `extra` is appended to the config.
fn oauth2_world(ttl: Duration, mechanism: &str, extra: &str) -> (World, TokenServerApi) {
    let opts = StackOptions {
        oauth2: Some(TokenServerOptions {
            access_ttl: ttl,
            ..TokenServerOptions::default()
        }),
    };
    let mut api = None;
    let w = World::start_ready_with(&opts, |c| {
        let server = c.oauth2.clone().expect("the stack's token server");
        let dir = c.storage_path.parent().expect("state dir").to_path_buf();
        let secret = dir.join("client-secret");
        std::fs::write(&secret, server.client_secret()).unwrap();
        let seed = dir.join("seed-token");
        std::fs::write(&seed, server.mint_refresh_token(SECURITY, DEFAULT_SCOPES)).unwrap();
        c.oauth2_login = true;
        c.extra = format!(
            "[oauth2]\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret_file = \"{}\"\n\
             refresh_token_file = \"{}\"\nmechanism = \"{mechanism}\"\n{extra}",
            server.token_url(),
            server.client_id(),
            secret.display(),
            seed.display(),
        );
        api = Some(server);
    });
    (w, api.expect("token server"))
}

fn token_file(w: &World) -> PathBuf {
    let mut p = w.db().into_os_string();
    p.push(".oauth2-token");
    PathBuf::from(p)
}

fn seed(w: &World) -> String {
    std::fs::read_to_string(w.dir.path().join("seed-token")).unwrap()
}

/// The acknowledgements `reporter` got (messages in their INBOX).
fn acks(w: &World, reporter: &str) -> usize {
    w.stack.fetch_all(reporter).len()
}

#[test]
fn reports_are_fetched_and_acknowledged_with_tokens_and_the_rotated_token_survives_a_restart() {
    let (mut w, api) = oauth2_world(Duration::from_secs(3600), "xoauth2", "");
    w.report("one@example.net", "Found with a token");
    w.wait_acked_cases(1);
    w.wait_mail("one@example.net", T, |m| !m.is_empty());

    // The server rotated the refresh token: the new one is saved, 0600,
    // and is not the spent seed.
    let file = token_file(&w);
    let rotated = std::fs::read_to_string(&file).expect("the rotated refresh token");
    assert_ne!(rotated.trim(), seed(&w).trim(), "not rotated");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(api.introspections() >= 2, "IMAP and SMTP both used a token");

    // After a restart the saved token is used (the seed is spent: using
    // it again would make the server revoke the whole grant).
    w.daemon.kill9();
    w.restart();
    w.daemon.wait_running(T);
    w.report("two@example.net", "Found after a restart");
    w.wait_acked_cases(2);
    w.wait_mail("two@example.net", T, |m| !m.is_empty());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(acks(&w, "one@example.net"), 1);
    assert_eq!(acks(&w, "two@example.net"), 1);
    let st = w.status().expect("status");
    assert!(st["imap"]["last_error"].is_null(), "{st}");

    // No refresh token ever reaches the log.
    let log = w.log();
    let now = std::fs::read_to_string(&file).unwrap();
    for token in [seed(&w), rotated, now] {
        assert!(!log.contains(token.trim()), "a refresh token in the log");
    }
}

#[test]
fn oauthbearer_logins_go_on_after_the_access_token_expires() {
    const TTL: Duration = Duration::from_secs(6);
    let (w, api) = oauth2_world(TTL, "oauthbearer", "");
    w.report("early@example.net", "Before the token expires");
    w.wait_acked_cases(1);
    let first = Instant::now();
    // The token the daemon holds expires; the IMAP session is dropped
    // (as a provider does at expiry) and the next login needs a new one.
    while first.elapsed() < TTL + Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = api.introspections();
    w.stack.doveadm(&["kick", SECURITY], None);
    w.report("late@example.net", "After the token expired");
    w.wait_acked_cases(2);
    w.wait_mail("late@example.net", T, |m| !m.is_empty());
    assert!(api.introspections() > before, "no new login");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(acks(&w, "early@example.net"), 1);
    assert_eq!(acks(&w, "late@example.net"), 1);
    let log = w.log();
    assert!(!log.contains("credential rejected"), "{log}");
}

#[test]
fn a_revoked_grant_is_credential_rejected_and_alerted_within_10_s() {
    let sink = common::AlertSink::new();
    let extra = format!("\n{}", sink.config());
    let (w, api) = oauth2_world(Duration::from_secs(3600), "xoauth2", &extra);
    w.report("before@example.net", "While the grant holds");
    w.wait_acked_cases(1);

    // The account's grant is revoked at the provider (an administrator,
    // a password change); the next login finds out.
    assert!(api.revoke_grants(SECURITY) >= 1);
    let revoked = Instant::now();
    w.stack.doveadm(&["kick", SECURITY], None);
    let alert = eventually(
        Duration::from_secs(10),
        "the alert through [alerts] command",
        Some(&w.daemon),
        || sink.text().filter(|t| t.contains("credential rejected")),
    );
    assert!(revoked.elapsed() < Duration::from_secs(10));
    assert!(alert.contains("invalid_grant"), "{alert}");
    assert!(alert.contains("refused secintake's login"), "{alert}");
    assert!(!alert.contains("alert threshold"), "{alert}");
    let (code, out, _) = cli(&w.config, &["status", "--json"]);
    assert_eq!(code, 3, "{out}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    let e = st["imap"]["last_error"].as_str().unwrap_or_default();
    assert!(
        e.starts_with("credential rejected") && e.contains("authorize"),
        "{st}"
    );
}

#[test]
fn check_config_logs_in_with_a_token_and_names_a_wrong_client_secret() {
    let (w, _api) = oauth2_world(Duration::from_secs(3600), "xoauth2", "");
    let (code, out, err) = cli(&w.config, &["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("with an OAuth2 access token"), "{out}");

    std::fs::write(w.dir.path().join("client-secret"), "not-the-secret").unwrap();
    let (code, out, _) = cli(&w.config, &["check-config"]);
    assert_ne!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("IMAP FAILED"))
        .unwrap_or_else(|| panic!("no IMAP line: {out}"));
    assert!(
        line.contains("invalid_client") && line.contains("client secret"),
        "{line}"
    );
    assert!(!line.contains("not-the-secret"), "{line}");
}

/// `secintake oauth2 authorize` by the device flow: it shows a code, the
/// person approves it at the provider, and the refresh token it saves is
/// the one the daemon then logs in with.
#[test]
fn authorize_by_the_device_flow_saves_a_token_the_daemon_uses() {
    use std::io::{BufRead, BufReader};
    let (mut w, api) = oauth2_world(Duration::from_secs(3600), "xoauth2", "");
    w.daemon.kill9();
    let device = api.device_url();
    w.reconfigure(|c| {
        // No seed this time: only what authorize saves.
        c.extra = c
            .extra
            .lines()
            .filter(|l| !l.starts_with("refresh_token_file"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            + &format!("device_url = \"{device}\"\n");
    });
    let _ = std::fs::remove_file(token_file(&w));
    let mut child = std::process::Command::new(common::secintake_bin())
        .arg("--config")
        .arg(&w.config)
        .args(["oauth2", "authorize"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut code = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(c) = line.strip_prefix("and enter the code ") {
            code = Some(c.trim().to_string());
            break;
        }
    }
    let code = code.expect("authorize printed no code");
    api.approve_device(&code, SECURITY);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("refresh token saved"),
        "{out:?}"
    );
    let mode = std::fs::metadata(token_file(&w))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    w.restart();
    w.daemon.wait_running(T);
    w.report("after-authorize@example.net", "With the authorized token");
    w.wait_acked_cases(1);
    w.wait_mail("after-authorize@example.net", T, |m| !m.is_empty());
}
