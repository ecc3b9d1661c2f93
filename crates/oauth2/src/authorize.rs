//! Getting the first refresh token, once, with a person at the keyboard
//! (`secintake oauth2 authorize`): the device flow (RFC 8628) where the
//! provider allows it for mail scopes (Microsoft), otherwise the loopback
//! redirect flow (RFC 8252 7.3) with PKCE (RFC 7636), which Google
//! requires for mail. Both block: the CLI runs them on its own thread.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use oauth2::url::Url;
use oauth2::{
    AuthUrl, AuthorizationCode, CsrfToken, DeviceAuthorizationUrl, PkceCodeChallenge, RedirectUrl,
    Scope, StandardDeviceAuthorizationResponse, TokenResponse,
};

use crate::{client, describe, http, Settings, TokenError};

/// How long a person has to approve.
const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// What the flow found: the refresh token to keep.
pub struct Authorized {
    pub refresh_token: String,
}

/// RFC 8628: asks `device_url` for a code, shows the person where to enter
/// it (`show(verification_uri, user_code)`), and polls the token endpoint
/// until they approved, refused, or the code expired.
pub fn device_flow(
    s: &Settings,
    device_url: &str,
    show: impl Fn(&str, &str),
) -> Result<Authorized, TokenError> {
    let url = DeviceAuthorizationUrl::new(device_url.to_string()).map_err(|e| {
        TokenError::Rejected(format!("the device authorization URL {device_url:?}: {e}"))
    })?;
    let client = client(s)?.set_device_authorization_url(url);
    let agent = http::agent(s.timeout);
    let call = |req| http::call(&agent, req);
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(s.scopes.iter().map(|x| Scope::new(x.clone())))
        .request(&call)
        .map_err(|e| describe(device_url, e))?;
    show(
        details.verification_uri().as_str(),
        details.user_code().secret(),
    );
    let token = client
        .exchange_device_access_token(&details)
        .request(&call, std::thread::sleep, Some(PATIENCE))
        .map_err(|e| describe(&s.token_url, e))?;
    refresh_of(token.refresh_token().map(|r| r.secret().clone()))
}

/// RFC 8252 7.3 with PKCE: `listener` (bound on 127.0.0.1) receives the
/// redirect; `show(url)` tells the person which page to open. `extra`
/// are provider parameters (Google: `access_type=offline`,
/// `prompt=consent`, or it returns no refresh token).
pub fn browser_flow(
    s: &Settings,
    auth_url: &str,
    listener: TcpListener,
    extra: &[(&str, &str)],
    show: impl Fn(&str),
) -> Result<Authorized, TokenError> {
    let port = listener
        .local_addr()
        .map_err(|e| TokenError::Unavailable(format!("the loopback listener: {e}")))?
        .port();
    let auth = AuthUrl::new(auth_url.to_string())
        .map_err(|e| TokenError::Rejected(format!("the authorization URL {auth_url:?}: {e}")))?;
    let redirect = RedirectUrl::new(format!("http://127.0.0.1:{port}/"))
        .map_err(|e| TokenError::Unavailable(format!("the redirect URL: {e}")))?;
    let client = client(s)?.set_auth_uri(auth).set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(s.scopes.iter().map(|x| Scope::new(x.clone())))
        .set_pkce_challenge(challenge);
    for (k, v) in extra {
        request = request.add_extra_param(*k, *v);
    }
    let (url, state) = request.url();
    show(url.as_str());
    let code = wait_for_redirect(&listener, state.secret())?;
    let agent = http::agent(s.timeout);
    let call = |req| http::call(&agent, req);
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request(&call)
        .map_err(|e| describe(&s.token_url, e))?;
    refresh_of(token.refresh_token().map(|r| r.secret().clone()))
}

fn refresh_of(token: Option<String>) -> Result<Authorized, TokenError> {
    token
        .map(|refresh_token| Authorized { refresh_token })
        .ok_or_else(|| {
            TokenError::Rejected(
                "the provider granted access but sent no refresh token: ask for offline access \
             (Microsoft: the offline_access scope)"
                    .into(),
            )
        })
}

/// Answers browser requests on `listener` until one carries the
/// authorization response for `state`; returns its code.
fn wait_for_redirect(listener: &TcpListener, state: &str) -> Result<String, TokenError> {
    let started = Instant::now();
    listener
        .set_nonblocking(false)
        .map_err(|e| TokenError::Unavailable(format!("the loopback listener: {e}")))?;
    while started.elapsed() < PATIENCE {
        let (stream, _) = listener
            .accept()
            .map_err(|e| TokenError::Unavailable(format!("the loopback listener: {e}")))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut line = String::new();
        if BufReader::new(&stream).read_line(&mut line).is_err() {
            continue;
        }
        let outcome = redirect_outcome(&line, state);
        let page = match &outcome {
            Some(Ok(_)) => "secintake is authorized. You can close this page.",
            Some(Err(_)) => "secintake was not authorized; the terminal says why.",
            None => "Waiting for the authorization response.",
        };
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
    Err(TokenError::Rejected(
        "nobody completed the authorization within 15 minutes".into(),
    ))
}

/// Reads an HTTP request line: None when it is not the redirect (a
/// favicon, say); else the code, or why there is none.
fn redirect_outcome(request_line: &str, state: &str) -> Option<Result<String, TokenError>> {
    let target = request_line.strip_prefix("GET ")?.split(' ').next()?;
    let url = Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(error) = get("error") {
        return Some(Err(crate::refusal(
            "the authorization endpoint",
            error,
            get("error_description"),
        )));
    }
    let code = get("code")?;
    if get("state") != Some(state) {
        return Some(Err(TokenError::Rejected(
            "the redirect's state does not match this request (a stale or forged redirect); \
             run the command again"
                .into(),
        )));
    }
    Some(Ok(code.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_read_and_checked() {
        let ok = redirect_outcome("GET /?code=abc%2F1&state=S1 HTTP/1.1\r\n", "S1");
        assert_eq!(ok.unwrap().unwrap(), "abc/1");
        assert!(redirect_outcome("GET /favicon.ico HTTP/1.1\r\n", "S1").is_none());
        let forged = redirect_outcome("GET /?code=abc&state=OTHER HTTP/1.1\r\n", "S1");
        assert!(forged.unwrap().unwrap_err().to_string().contains("state"));
        let denied = redirect_outcome(
            "GET /?error=access_denied&error_description=no+thanks HTTP/1.1\r\n",
            "S1",
        );
        let e = denied.unwrap().unwrap_err().to_string();
        assert!(
            e.contains("access_denied") && e.contains("no thanks"),
            "{e}"
        );
    }
}
