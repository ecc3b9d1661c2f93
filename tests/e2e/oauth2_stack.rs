//! Self-test of the OAuth2 part of the test harness (common/oauth2.rs,
//! tests/mailstack/oauth2/server.mjs, mailstack.sh with
//! MAILSTACK_OAUTH2_URL): proves the token server and the mail stack
//! behave as the daemon's OAuth2 tests will assume.  The token endpoint
//! rotates refresh tokens and refuses old ones and wrong client secrets;
//! Dovecot IMAP and Postfix submission accept XOAUTH2 and OAUTHBEARER
//! tokens the server vouches for (asking it every time), and refuse
//! garbage, revoked and expired tokens with the SASL error challenge.

use crate::common;

use common::daemon::eventually;
use common::oauth2::{
    ClientAuth, Mech, StackOptions, TokenServer, TokenServerOptions, DEFAULT_SCOPES, MAIL_SCOPE,
};
use common::MailStack;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);
const USER: &str = "security@example.org";

/// A token server without a mail stack, logging into `dir`.
fn token_server(dir: &tempfile::TempDir, opts: &TokenServerOptions) -> TokenServer {
    TokenServer::start(&dir.path().join("oauth2.log"), opts)
}

#[test]
fn refresh_rotates_and_the_old_refresh_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ts = token_server(&dir, &TokenServerOptions::default());
    let first = ts.mint_refresh_token(USER, DEFAULT_SCOPES);

    // HTTP Basic (the registered method): an access token and a new
    // refresh token.
    let t1 = ts.refresh(&first);
    let second = t1.refresh_token.clone().expect("a rotated refresh token");
    assert_ne!(second, first);
    assert_eq!(t1.expires_in, 3600);
    assert_eq!(t1.scope.as_deref(), Some(DEFAULT_SCOPES));
    let v = ts.introspect(&t1.access_token);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["username"], USER, "{v}");
    assert_eq!(v["sub"], USER, "{v}");
    assert!(
        v["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == MAIL_SCOPE),
        "{v}"
    );

    // client_secret_post works too, and rotates again.
    let r = ts.post_as_client(
        "/token",
        ClientAuth::Post,
        None,
        &[("grant_type", "refresh_token"), ("refresh_token", &second)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let third = r.json()["refresh_token"].as_str().unwrap().to_string();
    let t2_access = r.json()["access_token"].as_str().unwrap().to_string();
    assert!(third != second && third != first);
    // Refresh tokens are no passwords for Dovecot: its client may not
    // introspect them.
    assert_eq!(ts.introspect(&third)["active"], false);

    // The first refresh token is dead.
    let err = ts.try_refresh(&first).unwrap_err();
    assert_eq!(err.status, 400, "{}", err.body);
    assert_eq!(err.json()["error"], "invalid_grant", "{}", err.body);
    // And presenting a rotated-away token counts as theft: oidc-provider
    // revokes the whole grant, so the newest tokens die with it.  (The
    // daemon must never reuse an old refresh token.)
    assert_eq!(ts.introspect(&t2_access)["active"], false);
    let err = ts.try_refresh(&third).unwrap_err();
    assert_eq!(err.json()["error"], "invalid_grant", "{}", err.body);
}

#[test]
fn wrong_client_secret_is_invalid_client() {
    let dir = tempfile::tempdir().unwrap();
    let ts = token_server(&dir, &TokenServerOptions::default());
    let rt = ts.mint_refresh_token(USER, DEFAULT_SCOPES);
    for auth in [ClientAuth::Basic, ClientAuth::Post] {
        let r = ts.post_as_client(
            "/token",
            auth,
            Some("not-the-secret"),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        );
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_client", "{auth:?}: {}", r.body);
    }
    // The refresh token itself was not touched.
    assert!(ts.refresh(&rt).refresh_token.is_some());
}

#[test]
fn device_flow_yields_tokens_once_approved() {
    let dir = tempfile::tempdir().unwrap();
    let ts = token_server(&dir, &TokenServerOptions::default());
    let r = ts.post_as_client(
        "/device/auth",
        ClientAuth::Basic,
        None,
        &[("scope", DEFAULT_SCOPES)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let device_code = v["device_code"].as_str().unwrap().to_string();
    let user_code = v["user_code"].as_str().unwrap().to_string();
    let poll = || {
        ts.post_as_client(
            "/token",
            ClientAuth::Basic,
            None,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
            ],
        )
    };
    let pending = poll();
    assert_eq!(pending.status, 400, "{}", pending.body);
    assert_eq!(pending.json()["error"], "authorization_pending");
    ts.approve_device(&user_code, USER);
    let done = poll();
    assert_eq!(done.status, 200, "{}", done.body);
    let rt = done.json()["refresh_token"].as_str().unwrap().to_string();
    assert!(ts.refresh(&rt).refresh_token.is_some());
}

#[test]
fn imap_accepts_xoauth2_and_oauthbearer_and_refuses_bad_tokens() {
    let ms = MailStack::start_with(&StackOptions::oauth2());
    let ts = ms.token_server();
    let asked_before = ts.introspections();

    for mech in [Mech::XOAuth2, Mech::OAuthBearer] {
        let token = ts.access_token(USER);
        let out = ms.imap_sasl(mech, USER, &token);
        assert!(out.ok, "{mech:?} refused: {out:?}\n{}", ms.logs());
        assert_eq!(out.error_challenge, None);
    }
    // Dovecot asked the token server each time (no auth cache).
    assert!(
        ts.introspections() >= asked_before + 2,
        "Dovecot did not introspect:\n{}",
        ms.logs()
    );

    // Garbage: the error challenge, then NO once the client gives up.
    for mech in [Mech::XOAuth2, Mech::OAuthBearer] {
        let out = ms.imap_sasl(mech, USER, "garbage-token");
        assert!(!out.ok, "{mech:?} accepted garbage: {out:?}");
        assert!(out.reply.starts_with("a NO"), "{out:?}");
        let challenge = out.error_challenge.expect("an error challenge");
        let json: serde_json::Value = serde_json::from_str(&challenge).unwrap();
        assert!(json["status"].is_string(), "{challenge}");
    }

    // A valid token of another account is no key to this one.
    let alice = ts.access_token("alice@example.org");
    let out = ms.imap_sasl(Mech::XOAuth2, USER, &alice);
    assert!(!out.ok, "someone else's token accepted: {out:?}");
    // A token without the mail scope is refused.
    let rt = ts.mint_refresh_token(USER, "offline_access");
    let no_mail = ts.refresh(&rt).access_token;
    let out = ms.imap_sasl(Mech::XOAuth2, USER, &no_mail);
    assert!(!out.ok, "token without the mail scope accepted: {out:?}");
    // Dovecot logs why.
    let log = std::fs::read_to_string(ms.dir.join("log/dovecot.log")).unwrap();
    assert!(log.contains("oauth2 failed"), "{}", ms.logs());

    // Passwords still work on the same stack.
    ms.fetch_all(USER);
}

#[test]
fn submission_accepts_a_valid_token_and_refuses_a_revoked_one() {
    let ms = MailStack::start_with(&StackOptions::oauth2());
    let ts = ms.token_server();
    let token = ts.access_token(USER);
    let out = ms.submission_sasl(Mech::XOAuth2, USER, &token);
    assert!(out.ok, "refused: {out:?}\n{}", ms.logs());
    assert!(out.reply.starts_with("235"), "{out:?}");
    let out = ms.submission_sasl(Mech::OAuthBearer, USER, &token);
    assert!(out.ok, "OAUTHBEARER refused: {out:?}\n{}", ms.logs());

    ts.revoke(&token);
    assert_eq!(ts.introspect(&token)["active"], false);
    let out = ms.submission_sasl(Mech::XOAuth2, USER, &token);
    assert!(!out.ok, "revoked token accepted: {out:?}");
    assert!(out.error_challenge.is_some(), "{out:?}");
    assert!(out.reply.starts_with("535"), "{out:?}");

    // Revoking a grant through the test endpoint works the same way.
    let token = ts.access_token(USER);
    assert!(ms.submission_sasl(Mech::XOAuth2, USER, &token).ok);
    assert!(ts.revoke_grants(USER) >= 1);
    let out = ms.submission_sasl(Mech::XOAuth2, USER, &token);
    assert!(out.reply.starts_with("535"), "{out:?}");

    // Password submission is unchanged.
    let raw = common::simple_message(USER, "reporter@example.net", "pw still works", "x");
    ms.submit(USER, USER, &["reporter@example.net"], &raw);
}

#[test]
fn an_expired_access_token_is_refused() {
    let ttl = Duration::from_secs(3);
    let ms = MailStack::start_with(&StackOptions {
        oauth2: Some(TokenServerOptions {
            access_ttl: ttl,
            ..TokenServerOptions::default()
        }),
    });
    let ts = ms.token_server();
    let rt = ts.mint_refresh_token(USER, DEFAULT_SCOPES);
    let t = ts.refresh(&rt);
    assert_eq!(t.expires_in, ttl.as_secs());
    let out = ms.imap_sasl(Mech::XOAuth2, USER, &t.access_token);
    assert!(out.ok, "fresh token refused: {out:?}\n{}", ms.logs());

    eventually(T, "the access token to expire", None, || {
        (ts.introspect(&t.access_token)["active"] == false).then_some(())
    });
    let out = ms.imap_sasl(Mech::XOAuth2, USER, &t.access_token);
    assert!(!out.ok, "expired token accepted: {out:?}");
    assert!(out.reply.starts_with("a NO"), "{out:?}");

    // The refresh token still works: a new access token logs in again.
    let t2 = ts.refresh(t.refresh_token.as_deref().unwrap());
    let out = ms.imap_sasl(Mech::XOAuth2, USER, &t2.access_token);
    assert!(out.ok, "refreshed token refused: {out:?}\n{}", ms.logs());
}
