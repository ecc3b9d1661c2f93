//! The one adapter over the `oauth2` crate (RFC 6749), with `ureq` as its
//! HTTP client: access tokens for logging in to IMAP and SMTP with SASL
//! XOAUTH2 or OAUTHBEARER (RFC 7628) instead of a password, as Microsoft 365
//! requires and Google prefers.
//!
//! A [`TokenSource`] hands out an access token, asking the provider's token
//! endpoint for a new one shortly before the old one expires, and once more
//! when a server refuses the one it was given ([`TokenSource::renew`]). It
//! keeps the refresh token in `token_file`: providers that rotate it
//! (Microsoft does; so does any server with refresh token rotation on)
//! answer each refresh with a new one and refuse the old one from then on,
//! so the new one is written (atomically, 0600) before its access token is
//! used, and each refresh reads the file under a lock shared with other
//! secintake processes. A rotated token that cannot be saved is kept in
//! memory and saved before anything else; its access token is not used.
//!
//! Errors are one line and never carry a token or a secret: the provider's
//! own `error_description` is passed on (it names the problem: an expired
//! grant, a missing consent, a wrong tenant), cut to one short line.

pub mod authorize;
mod http;
pub mod sasl;
mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, ErrorResponseType, RefreshToken, RequestTokenError, Scope,
    StandardErrorResponse, TokenResponse, TokenUrl,
};
use tokio::time::Instant;

pub use store::save_refresh_token;

/// How a token is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A user's refresh token (`secintake oauth2 authorize` gets the first).
    RefreshToken,
    /// The client's own credentials (Microsoft's app-only access).
    ClientCredentials,
}

/// How the client proves itself at the token endpoint (RFC 6749 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// In the form body (`client_secret_post`), as Google and Microsoft
    /// document it.
    Post,
}

/// What a [`TokenSource`] needs to know.
#[derive(Clone)]
pub struct Settings {
    /// The token endpoint.
    pub token_url: String,
    pub client_id: String,
    /// None for a public client (no secret).
    pub client_secret: Option<String>,
    pub client_auth: ClientAuth,
    /// Scopes asked for; empty = what the grant already holds.
    pub scopes: Vec<String>,
    pub grant: Grant,
    /// The current refresh token, kept up to date here (in the state
    /// directory, 0600).
    pub token_file: PathBuf,
    /// A refresh token the operator provides (a systemd credential, the
    /// output of another tool): used when `token_file` does not exist yet,
    /// or when this file is newer than it (a fresh authorization).
    pub seed_file: Option<PathBuf>,
    /// For one request to the token endpoint.
    pub timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("grant", &self.grant)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The provider refused the client or the grant: no retry helps until
    /// the operator acts (a new authorization, a secret, consent, scopes).
    #[error("{0}")]
    Rejected(String),
    /// The endpoint could not be asked, answered something unusable, or
    /// the rotated refresh token could not be saved: try again later.
    #[error("{0}")]
    Unavailable(String),
}

/// A token is renewed this long before it expires (tokens live an hour at
/// Google and Microsoft), or at three quarters of its life when that is
/// shorter (the tests' tokens live seconds).
const RENEW_MARGIN: Duration = Duration::from_secs(120);
/// When the endpoint does not say how long a token lives.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(300);

/// Access tokens for one account (see the module docs).
pub struct TokenSource {
    settings: Settings,
    state: tokio::sync::Mutex<State>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    access: Option<(String, Instant)>,
    /// A rotated refresh token whose save failed: saved before anything
    /// else (the file holds only the spent one).
    unsaved: Option<String>,
}

impl TokenSource {
    pub fn new(settings: Settings) -> Self {
        TokenSource {
            settings,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A valid access token: the one held, unless it is due for renewal.
    pub async fn token(&self) -> Result<String, TokenError> {
        let mut state = self.state.lock().await;
        self.current(&mut state, None).await
    }

    /// A new access token after a server refused `refused`, unless another
    /// login already renewed it meanwhile. A second refusal of the new one
    /// is the caller's "credential rejected".
    pub async fn renew(&self, refused: &str) -> Result<String, TokenError> {
        let mut state = self.state.lock().await;
        self.current(&mut state, Some(refused)).await
    }

    async fn current(
        &self,
        state: &mut State,
        refused: Option<&str>,
    ) -> Result<String, TokenError> {
        if let Some((token, renew_at)) = &state.access {
            if Instant::now() < *renew_at
                && refused != Some(token.as_str())
                && state.unsaved.is_none()
            {
                return Ok(token.clone());
            }
        }
        let settings = self.settings.clone();
        let unsaved = state.unsaved.take();
        let outcome = tokio::task::spawn_blocking(move || exchange(&settings, unsaved))
            .await
            .map_err(|e| TokenError::Unavailable(format!("token request stopped: {e}")))?;
        match outcome {
            Ok(answer) => {
                let renew_at = Instant::now() + renew_after(answer.lifetime);
                state.access = Some((answer.access.clone(), renew_at));
                Ok(answer.access)
            }
            Err((e, unsaved)) => {
                state.access = None;
                state.unsaved = unsaved;
                Err(e)
            }
        }
    }
}

/// One refresh (blocking): under a lock on the token file shared with
/// every other secintake process (a `check-config` or `oauth2 authorize`
/// beside the daemon), so that two never spend the same refresh token (a
/// rotating provider takes a second use for theft and revokes the grant).
/// The token is read from the file each time, so what another process
/// rotated or authorized is used. `unsaved` is a rotated token a failed
/// save left in memory: saved first. On failure, the token still unsaved
/// comes back with the error.
fn exchange(s: &Settings, unsaved: Option<String>) -> Result<Answer, (TokenError, Option<String>)> {
    if s.grant == Grant::ClientCredentials {
        return request(s, None).map_err(|e| (e, None));
    }
    let _lock = store::lock(&s.token_file).map_err(|e| (e, unsaved.clone()))?;
    if let Some(token) = &unsaved {
        save(s, token).map_err(|e| (e, unsaved.clone()))?;
    }
    let refresh =
        store::read_refresh_token(&s.token_file, s.seed_file.as_deref()).map_err(|e| (e, None))?;
    let answer = request(s, Some(&refresh)).map_err(|e| (e, None))?;
    match &answer.refresh {
        Some(new) if *new != refresh => {
            save(s, new).map_err(|e| (e, Some(new.clone())))?;
        }
        _ => {}
    }
    Ok(answer)
}

/// Saves a rotated refresh token; the error says it is not used until saved.
fn save(s: &Settings, token: &str) -> Result<(), TokenError> {
    save_refresh_token(&s.token_file, token).map_err(|e| {
        TokenError::Unavailable(format!(
            "the provider rotated the refresh token and the new one cannot be saved to {}: {e}; \
             it is not used until it is saved",
            s.token_file.display()
        ))
    })
}

fn renew_after(lifetime: Duration) -> Duration {
    if lifetime > RENEW_MARGIN * 4 {
        lifetime - RENEW_MARGIN
    } else {
        lifetime * 3 / 4
    }
}

/// The client as `s` describes it, with its token endpoint.
fn client(s: &Settings) -> Result<TokenClient, TokenError> {
    let token_url = TokenUrl::new(s.token_url.clone()).map_err(|e| {
        TokenError::Rejected(format!(
            "oauth2.token_url {:?} is not a URL: {e}",
            s.token_url
        ))
    })?;
    let mut client = BasicClient::new(ClientId::new(s.client_id.clone()))
        .set_token_uri(token_url)
        .set_auth_type(match s.client_auth {
            ClientAuth::Basic => AuthType::BasicAuth,
            ClientAuth::Post => AuthType::RequestBody,
        });
    if let Some(secret) = &s.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    Ok(client)
}

type TokenClient = BasicClient<
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// One token endpoint answer.
struct Answer {
    access: String,
    lifetime: Duration,
    refresh: Option<String>,
}

/// Asks the token endpoint (blocking: run on the blocking pool).
fn request(s: &Settings, refresh: Option<&str>) -> Result<Answer, TokenError> {
    let client = client(s)?;
    let agent = http::agent(s.timeout);
    let call = |req| http::call(&agent, req);
    let scopes = s.scopes.iter().map(|x| Scope::new(x.clone()));
    let answer = match refresh {
        Some(r) => {
            let r = RefreshToken::new(r.to_string());
            client
                .exchange_refresh_token(&r)
                .add_scopes(scopes)
                .request(&call)
        }
        None => client
            .exchange_client_credentials()
            .add_scopes(scopes)
            .request(&call),
    }
    .map_err(|e| describe(&s.token_url, e))?;
    Ok(Answer {
        access: answer.access_token().secret().clone(),
        lifetime: answer.expires_in().unwrap_or(ASSUMED_LIFETIME),
        refresh: answer.refresh_token().map(|r| r.secret().clone()),
    })
}

/// One line for a failed request to the provider, naming the likely cause.
fn describe<T: ErrorResponseType + AsRef<str> + std::fmt::Display + Send + Sync + 'static>(
    url: &str,
    e: RequestTokenError<http::CallError, StandardErrorResponse<T>>,
) -> TokenError {
    match e {
        RequestTokenError::ServerResponse(r) => refusal(
            url,
            r.error().as_ref(),
            r.error_description().map(String::as_str),
        ),
        RequestTokenError::Request(e) => TokenError::Unavailable(format!("cannot ask {url}: {e}")),
        RequestTokenError::Parse(_, _) => TokenError::Unavailable(format!(
            "{url} answered something that is not an OAuth2 response"
        )),
        RequestTokenError::Other(e) => TokenError::Unavailable(format!("{url}: {}", one_line(&e))),
    }
}

/// The provider's error answer (RFC 6749 5.2, RFC 8628 3.5) in one line.
fn refusal(url: &str, code: &str, description: Option<&str>) -> TokenError {
    let said = description
        .map(|d| format!(": {}", one_line(d)))
        .unwrap_or_default();
    let why = match code {
        "invalid_client" => "the provider refused the client (invalid_client: a wrong oauth2.client_id or client secret, or a secret that expired)",
        "invalid_grant" => "the provider refused the refresh token (invalid_grant: expired, revoked, or spent by a rotation; run `secintake oauth2 authorize`)",
        "unauthorized_client" => "the client may not use this grant (unauthorized_client: check the app registration)",
        "invalid_scope" => "the provider refused the scopes (invalid_scope: check oauth2.scopes)",
        "unsupported_grant_type" => "the provider does not offer this grant (unsupported_grant_type: check oauth2.grant)",
        "invalid_request" => "the provider found the request malformed (invalid_request)",
        "access_denied" => "access was denied (access_denied: the user or an administrator declined)",
        "expired_token" => "the code expired before it was entered (expired_token: run the command again)",
        "temporarily_unavailable" | "server_error" => {
            return TokenError::Unavailable(format!("{url} is unavailable ({code}){said}"));
        }
        _ => "the provider refused the request",
    };
    let code = if why.contains(code) {
        String::new()
    } else {
        format!(" ({})", one_line(code))
    };
    let hint = microsoft_hint(description.unwrap_or(""));
    TokenError::Rejected(format!("{why}{code}{said}{hint}"))
}

/// Microsoft's descriptions start with an AADSTS code; the common ones
/// get a plain explanation.
fn microsoft_hint(description: &str) -> &'static str {
    const HINTS: &[(&str, &str)] = &[
        (
            "AADSTS65001",
            " (consent missing: an administrator must grant the app's permissions)",
        ),
        ("AADSTS90002", " (tenant not found: check oauth2.tenant)"),
        (
            "AADSTS700016",
            " (the app is not registered in this tenant: check oauth2.client_id and oauth2.tenant)",
        ),
        (
            "AADSTS7000215",
            " (wrong client secret: use the secret's value, not its id)",
        ),
        (
            "AADSTS7000222",
            " (the client secret expired: create a new one)",
        ),
        (
            "AADSTS70008",
            " (the refresh token expired: run `secintake oauth2 authorize`)",
        ),
        (
            "AADSTS700082",
            " (the refresh token expired after inactivity: run `secintake oauth2 authorize`)",
        ),
        (
            "AADSTS50076",
            " (multi-factor authentication is required: run `secintake oauth2 authorize`)",
        ),
    ];
    HINTS
        .iter()
        .find(|(code, _)| {
            description.match_indices(code).any(|(i, _)| {
                !description[i + code.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
        })
        .map_or("", |(_, hint)| hint)
}

/// The first line of a provider's text, printable and at most 200 chars.
fn one_line(text: &str) -> String {
    let line: String = text
        .lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    line.trim().to_string()
}
