//! Unit tests against a canned token endpoint on loopback (the real
//! OAuth2 server is in the integration tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// Serves the given (status, JSON) answers in turn; records the request
/// bodies.
fn endpoint(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for (status, body) in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut form = vec![0; len];
            reader.read_exact(&mut form).unwrap();
            log.lock().unwrap().push(String::from_utf8(form).unwrap());
            let mut stream = reader.into_inner();
            write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (url, seen)
}

fn settings(url: String, dir: &tempfile::TempDir) -> Settings {
    Settings {
        token_url: url,
        client_id: "cid".into(),
        client_secret: Some("csecret".into()),
        client_auth: ClientAuth::Post,
        scopes: vec!["mail".into()],
        grant: Grant::RefreshToken,
        token_file: dir.path().join("token"),
        seed_file: None,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn rotated_refresh_token_is_saved_before_use_and_the_access_token_is_kept() {
    let (url, seen) = endpoint(vec![(
        200,
        r#"{"access_token":"A1","token_type":"Bearer","expires_in":3600,"refresh_token":"R2"}"#,
    )]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "R1\n").unwrap();
    let source = TokenSource::new(settings(url, &dir));
    assert_eq!(source.token().await.unwrap(), "A1");
    // Held, not asked again (the endpoint answers only once).
    assert_eq!(source.token().await.unwrap(), "A1");
    let saved = std::fs::read_to_string(dir.path().join("token")).unwrap();
    assert_eq!(saved, "R2\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let form = seen.lock().unwrap()[0].clone();
    assert!(form.contains("grant_type=refresh_token"), "{form}");
    assert!(form.contains("refresh_token=R1"), "{form}");
    assert!(form.contains("client_secret=csecret"), "{form}");
}

#[tokio::test]
async fn a_refused_token_is_renewed_once() {
    let (url, _) = endpoint(vec![
        (
            200,
            r#"{"access_token":"A1","token_type":"Bearer","expires_in":3600}"#,
        ),
        (
            200,
            r#"{"access_token":"A2","token_type":"Bearer","expires_in":3600}"#,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "R1").unwrap();
    let source = TokenSource::new(settings(url, &dir));
    assert_eq!(source.token().await.unwrap(), "A1");
    assert_eq!(source.renew("A1").await.unwrap(), "A2");
    // Another login that also saw A1 refused gets A2 without a request.
    assert_eq!(source.renew("A1").await.unwrap(), "A2");
}

#[tokio::test]
async fn provider_refusals_are_credential_problems_and_outages_are_not() {
    let (url, _) = endpoint(vec![
        (
            400,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        ),
        (
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\nTrace ID: x"}"#,
        ),
        (503, "<html>busy</html>"),
        (400, r#"{"error":"temporarily_unavailable"}"#),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "R1").unwrap();
    let source = TokenSource::new(settings(url, &dir));
    let TokenError::Rejected(e) = source.token().await.unwrap_err() else {
        panic!("invalid_grant is a credential problem")
    };
    assert!(
        e.contains("invalid_grant") && e.contains("authorize"),
        "{e}"
    );
    let TokenError::Rejected(e) = source.token().await.unwrap_err() else {
        panic!("invalid_client is a credential problem")
    };
    assert!(
        e.contains("wrong client secret") && !e.contains("Trace"),
        "{e}"
    );
    assert!(matches!(
        source.token().await,
        Err(TokenError::Unavailable(_))
    ));
    assert!(matches!(
        source.token().await,
        Err(TokenError::Unavailable(_))
    ));
}

#[tokio::test]
async fn no_refresh_token_names_the_command_and_a_dead_endpoint_is_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let source = TokenSource::new(settings("http://127.0.0.1:9/token".into(), &dir));
    let TokenError::Rejected(e) = source.token().await.unwrap_err() else {
        panic!("no token is the operator's to fix")
    };
    assert!(e.contains("secintake oauth2 authorize"), "{e}");
    std::fs::write(dir.path().join("token"), "R1").unwrap();
    let TokenError::Unavailable(e) = source.token().await.unwrap_err() else {
        panic!("a refused connection is an outage")
    };
    assert!(e.contains("127.0.0.1:9"), "{e}");
}

#[test]
fn a_newer_seed_file_wins_over_the_saved_token() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("token");
    let seed = dir.path().join("seed");
    std::fs::write(&seed, "SEED\n").unwrap();
    assert_eq!(
        store::read_refresh_token(&own, Some(&seed)).unwrap(),
        "SEED"
    );
    std::thread::sleep(Duration::from_millis(20));
    save_refresh_token(&own, "ROTATED").unwrap();
    assert_eq!(
        store::read_refresh_token(&own, Some(&seed)).unwrap(),
        "ROTATED"
    );
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&seed, "FRESH\n").unwrap();
    assert_eq!(
        store::read_refresh_token(&own, Some(&seed)).unwrap(),
        "FRESH"
    );
}

#[test]
fn microsoft_codes_are_matched_whole() {
    assert!(microsoft_hint("AADSTS70008: expired").contains("expired"));
    assert!(microsoft_hint("AADSTS700082: inactive").contains("inactivity"));
    assert_eq!(microsoft_hint("AADSTS700089: other"), "");
}

#[tokio::test]
async fn after_a_refusal_the_token_file_is_read_again() {
    let (url, seen) = endpoint(vec![
        (400, r#"{"error":"invalid_grant"}"#),
        (
            200,
            r#"{"access_token":"A1","token_type":"Bearer","expires_in":3600}"#,
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "OLD").unwrap();
    let source = TokenSource::new(settings(url, &dir));
    assert!(matches!(source.token().await, Err(TokenError::Rejected(_))));
    save_refresh_token(&dir.path().join("token"), "NEW").unwrap();
    assert_eq!(source.token().await.unwrap(), "A1");
    assert!(seen.lock().unwrap()[1].contains("refresh_token=NEW"));
}
