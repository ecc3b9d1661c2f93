//! `[oauth2]`, and `auth = "oauth2"` in `[imap]`/`[smtp]`: logging in with
//! an access token instead of a password (Microsoft 365 has no password
//! login for IMAP; Google Workspace only app passwords).
//!
//! The provider presets fill in what Google and Microsoft document (token
//! endpoint, scopes, how the client proves itself), so an operator names
//! the provider, the client and where the refresh token is.

use std::path::PathBuf;
use std::time::Duration;

use secintake_oauth2::{ClientAuth, Grant, Settings};

use super::keys;
use super::loader::{Field, Section};
use super::validate::is_loopback;
use super::{ConfigError, Storage};

/// How `[imap]` or `[smtp]` logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `password` / `password_file` (default).
    Password,
    /// An access token from `[oauth2]`.
    OAuth2,
}

/// Whose token endpoint and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Google,
    Microsoft,
    Generic,
}

/// The SASL mechanism IMAP logs in with (SMTP always uses XOAUTH2: it is
/// the one Google, Microsoft and lettre share).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Google's and Microsoft's XOAUTH2 (default).
    XOAuth2,
    /// RFC 7628 OAUTHBEARER.
    OAuthBearer,
}

/// `[oauth2]`.
#[derive(Clone)]
pub struct OAuth2 {
    pub provider: Provider,
    pub token_url: String,
    pub client_id: String,
    /// From `client_secret_file`; None for a public client. Never logged.
    pub client_secret: Option<String>,
    pub client_auth: ClientAuth,
    pub grant: Grant,
    pub scopes: Vec<String>,
    /// A refresh token the operator provides; rotations are kept in the
    /// state directory (see [`Storage::oauth2_token_file`]).
    pub refresh_token_file: Option<PathBuf>,
    pub mechanism: Mechanism,
    /// For `secintake oauth2 authorize`: the authorization endpoint (the
    /// browser flow) and the device authorization endpoint (RFC 8628).
    pub auth_url: Option<String>,
    pub device_url: Option<String>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("provider", &self.provider)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("grant", &self.grant)
            .field("scopes", &self.scopes)
            .field("refresh_token_file", &self.refresh_token_file)
            .field("mechanism", &self.mechanism)
            .field("auth_url", &self.auth_url)
            .field("device_url", &self.device_url)
            .finish()
    }
}

/// A token request waits at most this long for the endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

impl OAuth2 {
    /// What the token source needs, with the rotated refresh token kept
    /// beside the state file.
    pub fn settings(&self, storage: &Storage) -> Settings {
        Settings {
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            client_auth: self.client_auth,
            scopes: self.scopes.clone(),
            grant: self.grant,
            token_file: storage.oauth2_token_file(),
            seed_file: self.refresh_token_file.clone(),
            timeout: TOKEN_TIMEOUT,
        }
    }
}

impl Storage {
    /// Where the current OAuth2 refresh token is kept (0600): beside the
    /// state file, so a backup of the directory holds both.
    pub fn oauth2_token_file(&self) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(".oauth2-token");
        PathBuf::from(name)
    }
}

impl super::Imap {
    /// The SASL name of [`Self::mechanism`].
    pub fn mechanism_name(&self) -> &'static str {
        match self.mechanism {
            Mechanism::XOAuth2 => "XOAUTH2",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

impl super::Config {
    /// The access tokens of `[oauth2]`, shared by every IMAP connection
    /// and the outbox: one cache, one refresh token.
    pub fn token_source(&self) -> Option<std::sync::Arc<secintake_oauth2::TokenSource>> {
        let o = self.oauth2.as_ref()?;
        Some(std::sync::Arc::new(secintake_oauth2::TokenSource::new(
            o.settings(&self.storage),
        )))
    }
}

/// `auth` in `[imap]` or `[smtp]`.
pub(super) fn auth(f: &Field<'_>) -> Result<Auth, ConfigError> {
    match f.text()?.as_str() {
        "password" => Ok(Auth::Password),
        "oauth2" => Ok(Auth::OAuth2),
        _ => Err(f.fail("expected \"password\" or \"oauth2\"")),
    }
}

/// Microsoft's scopes for a user's mailbox (delegated access).
const MICROSOFT_USER_SCOPES: &[&str] = &[
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
];

/// `[oauth2]`, or None when the section is absent.
pub(super) fn oauth2_from(mut s: Section<'_>) -> Result<Option<OAuth2>, ConfigError> {
    if s.is_empty() {
        return Ok(None);
    }
    let provider = match s.get(keys::oauth2::provider) {
        None => None,
        Some(f) => Some(match f.text()?.as_str() {
            "google" => Provider::Google,
            "microsoft" => Provider::Microsoft,
            "generic" => Provider::Generic,
            _ => return Err(f.fail("expected \"google\", \"microsoft\" or \"generic\"")),
        }),
    };
    let provider = provider.unwrap_or(Provider::Generic);
    let client_id = s
        .get(keys::oauth2::client_id)
        .map(|f| f.line())
        .transpose()?;
    let token_url_field = s
        .get(keys::oauth2::token_url)
        .map(|f| endpoint_url(&f))
        .transpose()?;
    let auth_url = s
        .get(keys::oauth2::auth_url)
        .map(|f| endpoint_url(&f))
        .transpose()?;
    let device_url = s
        .get(keys::oauth2::device_url)
        .map(|f| endpoint_url(&f))
        .transpose()?;
    let grant = read_grant(&mut s, provider)?;
    let tenant = read_tenant(&mut s, provider, grant)?;
    let client_secret = match s.get(keys::oauth2::client_secret_file) {
        None => None,
        Some(f) => match f.secret_file() {
            // Offline commands beside a unit that holds it as a credential.
            Err(_) if s.loader.offline => Some(String::new()),
            other => Some(other?),
        },
    };
    let client_auth = match s.get(keys::oauth2::client_auth) {
        Some(f) => match f.text()?.as_str() {
            "basic" => ClientAuth::Basic,
            "post" => ClientAuth::Post,
            _ => return Err(f.fail("expected \"basic\" or \"post\"")),
        },
        None if provider == Provider::Generic => ClientAuth::Basic,
        None => ClientAuth::Post,
    };
    if grant == Grant::ClientCredentials && client_secret.is_none() {
        return Err(s.loader.missing(
            &s.key(keys::oauth2::client_secret_file),
            " (the client_credentials grant needs the client's secret)",
        ));
    }
    let scopes = read_scopes(&mut s, provider, grant)?;
    let refresh_token_file = match s.get(keys::oauth2::refresh_token_file) {
        Some(_) if grant == Grant::ClientCredentials => {
            return Err(s.loader.error(
                &s.key(keys::oauth2::refresh_token_file),
                None,
                "the client_credentials grant uses no refresh token: remove it".into(),
            ))
        }
        Some(f) => Some(f.path()?),
        None => None,
    };
    let mechanism = read_mechanism(&mut s)?;
    let (token_url, auth_url, device_url) = endpoints(
        &s,
        provider,
        tenant.as_deref(),
        [token_url_field, auth_url, device_url],
    )?;
    let Some(client_id) = client_id else {
        return Err(s.loader.missing(&s.key(keys::oauth2::client_id), ""));
    };
    Ok(Some(OAuth2 {
        provider,
        token_url,
        client_id,
        client_secret,
        client_auth,
        grant,
        scopes,
        refresh_token_file,
        mechanism,
        auth_url,
        device_url,
    }))
}

fn read_grant(s: &mut Section<'_>, provider: Provider) -> Result<Grant, ConfigError> {
    let grant = match s.get(keys::oauth2::grant) {
        None => Grant::RefreshToken,
        Some(f) => match f.text()?.as_str() {
            "refresh_token" => Grant::RefreshToken,
            "client_credentials" if provider == Provider::Google => {
                return Err(f.fail(
                    "Google does not give mail access to the client_credentials grant; use \"refresh_token\"",
                ))
            }
            "client_credentials" => Grant::ClientCredentials,
            _ => return Err(f.fail("expected \"refresh_token\" or \"client_credentials\"")),
        },
    };
    Ok(grant)
}

fn read_tenant(
    s: &mut Section<'_>,
    provider: Provider,
    grant: Grant,
) -> Result<Option<String>, ConfigError> {
    let tenant = s.get(keys::oauth2::tenant);
    let tenant = match (provider, tenant) {
        (Provider::Microsoft, Some(f)) => {
            let t = f.line()?;
            if !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
            {
                return Err(f.fail(
                    "expected a tenant id (a GUID) or domain, e.g. \"example.onmicrosoft.com\"",
                ));
            }
            if grant == Grant::ClientCredentials
                && ["common", "organizations", "consumers"].contains(&t.as_str())
            {
                return Err(
                    f.fail("the client_credentials grant needs the tenant's own id or domain")
                );
            }
            Some(t)
        }
        (Provider::Microsoft, None) if grant == Grant::ClientCredentials => {
            return Err(s.loader.missing(
                &s.key(keys::oauth2::tenant),
                " (the client_credentials grant needs the tenant's id or domain)",
            ))
        }
        (Provider::Microsoft, None) => Some("organizations".to_string()),
        (_, Some(f)) => return Err(f.fail("only used with provider = \"microsoft\"")),
        (_, None) => None,
    };
    Ok(tenant)
}

fn read_scopes(
    s: &mut Section<'_>,
    provider: Provider,
    grant: Grant,
) -> Result<Vec<String>, ConfigError> {
    let scopes = match s.get(keys::oauth2::scopes) {
        Some(f) => {
            let list = f.list()?;
            if list
                .iter()
                .any(|x| x.is_empty() || x.contains(char::is_whitespace))
            {
                return Err(f.fail("scopes must not be empty or hold spaces"));
            }
            list
        }
        None => match (provider, grant) {
            (Provider::Google, _) => vec!["https://mail.google.com/".to_string()],
            (Provider::Microsoft, Grant::RefreshToken) => MICROSOFT_USER_SCOPES
                .iter()
                .map(|x| x.to_string())
                .collect(),
            (Provider::Microsoft, Grant::ClientCredentials) => {
                vec!["https://outlook.office365.com/.default".to_string()]
            }
            (Provider::Generic, _) => Vec::new(),
        },
    };
    Ok(scopes)
}

fn read_mechanism(s: &mut Section<'_>) -> Result<Mechanism, ConfigError> {
    let mechanism = match s.get(keys::oauth2::mechanism) {
        None => Mechanism::XOAuth2,
        Some(f) => match f.text()?.to_ascii_lowercase().as_str() {
            "xoauth2" => Mechanism::XOAuth2,
            "oauthbearer" => Mechanism::OAuthBearer,
            _ => return Err(f.fail("expected \"xoauth2\" or \"oauthbearer\"")),
        },
    };
    Ok(mechanism)
}

/// The token endpoint, and the authorization and device endpoints for
/// `oauth2 authorize`: as configured, else the provider's.
fn endpoints(
    s: &Section<'_>,
    provider: Provider,
    tenant: Option<&str>,
    [token_url_field, auth_url, device_url]: [Option<String>; 3],
) -> Result<(String, Option<String>, Option<String>), ConfigError> {
    let token_url = match (token_url_field, provider) {
        (Some(url), _) => url,
        (None, Provider::Google) => "https://oauth2.googleapis.com/token".to_string(),
        (None, Provider::Microsoft) => format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            tenant.unwrap_or("organizations")
        ),
        (None, Provider::Generic) => {
            return Err(s.loader.missing(
                &s.key(keys::oauth2::token_url),
                " (provider \"generic\" has no default)",
            ))
        }
    };
    let microsoft = |endpoint: &str| {
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/{endpoint}",
            tenant.unwrap_or("organizations")
        )
    };
    let (auth_url, device_url) = match provider {
        // Google's device flow does not grant mail scopes.
        Provider::Google => (
            auth_url.or_else(|| Some("https://accounts.google.com/o/oauth2/v2/auth".into())),
            device_url,
        ),
        Provider::Microsoft => (
            auth_url.or_else(|| Some(microsoft("authorize"))),
            device_url.or_else(|| Some(microsoft("devicecode"))),
        ),
        Provider::Generic => (auth_url, device_url),
    };
    Ok((token_url, auth_url, device_url))
}

/// An https:// URL, or http:// to a loopback host (a local token broker):
/// `token_url`, `auth_url`, `device_url`.
fn endpoint_url(f: &Field<'_>) -> Result<String, ConfigError> {
    let url = f.line()?;
    let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match scheme {
        "https" if !host.is_empty() => Ok(url),
        "http" if is_loopback(host) => Ok(url),
        "http" => Err(f.fail(format_args!(
            "plain http:// sends the client secret and tokens unencrypted; only a loopback host \
             may use it, and {host:?} is not one: use https://"
        ))),
        _ => Err(f.fail("expected an https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::Config;

    const BASE: &str = "[mailbox]\naddress = \"security@example.org\"\nproject = \"P\"\n\
        [smtp]\nhost = \"smtp.example.org\"\n[storage]\npath = \"/var/lib/s/s.db\"\n\
        [[handlers]]\nname = \"A\"\nemail = \"a@example.org\"\n";

    fn load(imap: &str, rest: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = format!(
            "{BASE}[imap]\nhost = \"imap.example.org\"\nusername = \"security@example.org\"\n{imap}{rest}"
        );
        std::fs::write(&path, text).unwrap();
        Config::load_with_env(&path, HashMap::new())
    }

    fn error(imap: &str, rest: &str) -> String {
        load(imap, rest)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn presets_fill_in_what_providers_document() {
        let cfg = load(
            "auth = \"oauth2\"\n",
            "[oauth2]\nprovider = \"microsoft\"\ntenant = \"example.onmicrosoft.com\"\nclient_id = \"c\"\n",
        )
        .unwrap();
        let o = cfg.oauth2.as_ref().unwrap();
        assert_eq!(
            o.token_url,
            "https://login.microsoftonline.com/example.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(o
            .scopes
            .iter()
            .any(|x| x.ends_with("IMAP.AccessAsUser.All")));
        assert_eq!(o.client_auth, ClientAuth::Post);
        assert_eq!(cfg.imap.mechanism_name(), "XOAUTH2");
        let settings = o.settings(&cfg.storage);
        assert_eq!(
            settings.token_file,
            PathBuf::from("/var/lib/s/s.db.oauth2-token")
        );

        let cfg = load(
            "auth = \"oauth2\"\n",
            "[oauth2]\nprovider = \"google\"\nclient_id = \"c\"\nmechanism = \"oauthbearer\"\n",
        )
        .unwrap();
        let o = cfg.oauth2.unwrap();
        assert_eq!(o.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(o.scopes, ["https://mail.google.com/"]);
        assert_eq!(cfg.imap.mechanism_name(), "OAUTHBEARER");
        assert_eq!(cfg.imap.password, "");
    }

    #[test]
    fn mistakes_are_named() {
        let e = error("auth = \"oauth2\"\n", "");
        assert!(
            e.contains("oauth2.client_id") && e.contains("imap.auth"),
            "{e}"
        );
        let e = error(
            "auth = \"oauth2\"\npassword = \"p\"\n",
            "[oauth2]\nprovider = \"google\"\nclient_id = \"c\"\n",
        );
        assert!(
            e.contains("imap.password") && e.contains("remove one"),
            "{e}"
        );
        let e = error(
            "password = \"p\"\n",
            "[oauth2]\nclient_id = \"c\"\ntoken_url = \"http://auth.example.org/t\"\n",
        );
        assert!(
            e.contains("oauth2.token_url") && e.contains("loopback"),
            "{e}"
        );
        let e = error("password = \"p\"\n", "[oauth2]\nclient_id = \"c\"\n");
        assert!(
            e.contains("oauth2.token_url") && e.contains("generic"),
            "{e}"
        );
        let e = error(
            "password = \"p\"\n",
            "[oauth2]\nprovider = \"microsoft\"\nclient_id = \"c\"\ngrant = \"client_credentials\"\n",
        );
        assert!(e.contains("oauth2.tenant"), "{e}");
        let e = error("password = \"p\"\n", "[oauth2]\nprovider = \"google\"\n");
        assert!(e.contains("oauth2.client_id"), "{e}");
        let e = error("password = \"p\"\nauth = \"token\"\n", "");
        assert!(e.contains("imap.auth") && e.contains("\"oauth2\""), "{e}");
        // A loopback token broker may use http.
        assert!(load(
            "password = \"p\"\n",
            "[oauth2]\nclient_id = \"c\"\ntoken_url = \"http://127.0.0.1:8080/token\"\n"
        )
        .is_ok());
    }
}
