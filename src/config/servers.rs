//! `[imap]` and `[smtp]`: the two servers, which share how a connection is
//! described (host, TLS mode, port, CA file) and how a password is given.

use std::path::PathBuf;
use std::time::Duration;

use super::keys;
use super::loader::{Field, Section};
use super::oauth2::{self, Auth};
use super::validate::{is_loopback, same_folder};
use super::{After, ConfigError, Imap, Smtp, TlsMode};

/// RFC 2177: servers may log out an idle client after 30 minutes.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(29 * 60);

/// Refuses `tls = "none"` unless the host is loopback.
fn check_plaintext(
    tls: &Option<Field<'_>>,
    mode: TlsMode,
    section: &str,
    host: &str,
) -> Result<(), ConfigError> {
    if let (Some(field), TlsMode::None) = (tls, mode) {
        if !is_loopback(host) {
            return Err(field.fail(format_args!(
                "only allowed when {section}.host is a loopback address (127.0.0.0/8, ::1 or localhost), \
                 and {section}.host is {host:?}; use \"implicit\" or \"starttls\""
            )));
        }
    }
    Ok(())
}

/// The connection keys `[imap]` and `[smtp]` share, as found: host, tls,
/// port and ca_file. Each section takes its own keys; [`Endpoint::read`]
/// reads them the same way for both.
struct EndpointFields<'l> {
    host: Field<'l>,
    tls: Option<Field<'l>>,
    port: Option<Field<'l>>,
    ca_file: Option<Field<'l>>,
}

/// Those keys read: the port defaulted from the TLS mode.
struct Endpoint {
    host: String,
    tls: TlsMode,
    port: u16,
    ca_file: Option<PathBuf>,
}

impl Endpoint {
    /// Reads host, tls (refusing plaintext to a remote host), port and
    /// ca_file, in that order: the order in which their errors are found.
    fn read(
        fields: EndpointFields<'_>,
        section: &str,
        default_tls: TlsMode,
        default_port: fn(TlsMode) -> u16,
    ) -> Result<Endpoint, ConfigError> {
        let host = fields.host.host()?;
        let tls = fields
            .tls
            .as_ref()
            .map(Field::tls)
            .transpose()?
            .unwrap_or(default_tls);
        check_plaintext(&fields.tls, tls, section, &host)?;
        let port = match fields.port {
            Some(f) => f.port()?,
            None => default_port(tls),
        };
        let ca_file = fields.ca_file.map(|f| f.ca_file()).transpose()?;
        Ok(Endpoint {
            host,
            tls,
            port,
            ca_file,
        })
    }
}

pub(super) fn imap_from(mut s: Section<'_>) -> Result<Imap, ConfigError> {
    let Endpoint {
        host,
        tls,
        port,
        ca_file,
    } = Endpoint::read(
        EndpointFields {
            host: s.require(keys::imap::host)?,
            tls: s.get(keys::imap::tls),
            port: s.get(keys::imap::port),
            ca_file: s.get(keys::imap::ca_file),
        },
        keys::imap::NAME,
        TlsMode::Implicit,
        |tls| match tls {
            TlsMode::Implicit => 993,
            _ => 143,
        },
    )?;
    let username = s.require(keys::imap::username)?.line()?;
    let auth = read_auth(&mut s, keys::imap::auth)?;
    let password = s.secret(keys::imap::password, keys::imap::password_file)?;
    let password = match (auth, password) {
        (Auth::Password, Some(p)) => p,
        (Auth::Password, None) => {
            return Err(s
                .loader
                .missing(&s.key(keys::imap::password), " (or imap.password_file)"))
        }
        (Auth::OAuth2, None) => String::new(),
        (Auth::OAuth2, Some(_)) => return Err(password_with_oauth2(&s, keys::imap::password)),
    };
    let (folder, more_folders) = imap_folders(&mut s)?;
    let junk_auto = match s.get(keys::imap::junk) {
        None => false,
        Some(f) => match f.text()?.as_str() {
            "auto" => true,
            "none" => false,
            _ => {
                return Err(
                    f.fail("expected \"auto\" or \"none\" (or name the folder in imap.folders)")
                )
            }
        },
    };
    let idle = s
        .get(keys::imap::idle)
        .map(|f| f.boolean())
        .transpose()?
        .unwrap_or(true);
    let poll_interval = s
        .get(keys::imap::poll_interval)
        .map(|f| f.duration_min(Duration::from_secs(1)))
        .transpose()?
        .unwrap_or(Duration::from_secs(60));
    let idle_timeout = match s.get(keys::imap::idle_timeout) {
        None => Duration::from_secs(25 * 60),
        Some(f) => {
            let d = f.duration_min(Duration::from_secs(1))?;
            if d >= MAX_IDLE_TIMEOUT {
                return Err(f.fail(
                    "must be less than 29m (RFC 2177: servers may end an IDLE after 30 minutes)",
                ));
            }
            d
        }
    };
    let io_timeout = s
        .get(keys::imap::io_timeout)
        .map(|f| f.duration_min(Duration::from_secs(1)))
        .transpose()?
        .unwrap_or(Duration::from_secs(60));
    let after = match s.get(keys::imap::after) {
        None => After::Seen,
        Some(f) => after_from(&f, &folder, &more_folders)?,
    };
    Ok(Imap {
        host,
        port,
        tls,
        ca_file,
        username,
        auth,
        // Set from [oauth2] once it is read.
        mechanism: super::Mechanism::XOAuth2,
        password,
        folder,
        more_folders,
        junk_auto,
        idle,
        poll_interval,
        idle_timeout,
        io_timeout,
        after,
    })
}

/// `[smtp]`, or `[alert_relay]` (the same keys but `auth` and
/// `from_name`, which its schema leaves out).
pub(super) fn smtp_from(mut s: Section<'_>) -> Result<Smtp, ConfigError> {
    let section = s.name().to_owned();
    let Endpoint {
        host,
        tls,
        port,
        ca_file,
    } = Endpoint::read(
        EndpointFields {
            host: s.require(keys::smtp::host)?,
            tls: s.get(keys::smtp::tls),
            port: s.get(keys::smtp::port),
            ca_file: s.get(keys::smtp::ca_file),
        },
        &section,
        TlsMode::Starttls,
        |tls| match tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        },
    )?;
    let username_field = s.get(keys::smtp::username);
    let username = username_field.as_ref().map(Field::line).transpose()?;
    let auth = read_auth(&mut s, keys::smtp::auth)?;
    let password = s.secret(keys::smtp::password, keys::smtp::password_file)?;
    if auth == Auth::OAuth2 {
        if password.is_some() {
            return Err(password_with_oauth2(&s, keys::smtp::password));
        }
        if username.is_none() {
            return Err(s.loader.missing(
                &s.key(keys::smtp::username),
                &format!(
                    " ({} = \"oauth2\" logs in as that user)",
                    s.key(keys::smtp::auth)
                ),
            ));
        }
    }
    match (&username_field, &password) {
        _ if auth == Auth::OAuth2 => {}
        (Some(f), None) => {
            return Err(s.loader.error(
                &s.key(keys::smtp::password),
                Some(&f.value),
                format!(
                    "{section}.username is set but {section}.password (or \
                     {section}.password_file) is not: set both or neither"
                ),
            ))
        }
        (None, Some(_)) => {
            return Err(s.loader.missing(
                &s.key(keys::smtp::username),
                &format!(" ({section}.password is set: set both or neither)"),
            ));
        }
        _ => {}
    }
    let timeout = s
        .get(keys::smtp::timeout)
        .map(|f| f.duration_min(Duration::from_secs(1)))
        .transpose()?
        .unwrap_or(Duration::from_secs(30));
    let from_name = s.get(keys::smtp::from_name).map(|f| f.line()).transpose()?;
    Ok(Smtp {
        host,
        port,
        tls,
        ca_file,
        username,
        auth,
        password,
        timeout,
        from_name,
    })
}

/// `auth` of `[imap]` or `[smtp]`: default "password".
fn read_auth(s: &mut Section<'_>, key: &str) -> Result<Auth, ConfigError> {
    s.get(key)
        .map(|f| oauth2::auth(&f))
        .transpose()
        .map(|a| a.unwrap_or(Auth::Password))
}

/// A password given where `auth = "oauth2"` says none is used.
fn password_with_oauth2(s: &Section<'_>, key: &str) -> ConfigError {
    let name = s.key(key);
    s.loader.error(
        &name,
        None,
        format!(
            "{name} (or {name}_file) is set but {} is \"oauth2\": remove one",
            s.key("auth")
        ),
    )
}

/// `imap.folder` or `imap.folders` (not both): the main folder and the
/// others to watch, none twice.
fn imap_folders(s: &mut Section<'_>) -> Result<(String, Vec<String>), ConfigError> {
    let one = s.get(keys::imap::folder);
    let many = s.get(keys::imap::folders);
    match (one, many) {
        (Some(_), Some(f)) => {
            Err(f.fail("imap.folder and imap.folders are both set: set only one"))
        }
        (Some(f), None) => Ok((f.folder()?, Vec::new())),
        (None, None) => Ok(("INBOX".into(), Vec::new())),
        (None, Some(f)) => {
            let mut names: Vec<String> = Vec::new();
            for name in f.list()? {
                let name = name.trim().to_string();
                if name.is_empty() || name.chars().any(char::is_control) {
                    return Err(f.fail("folder names must not be empty or hold control characters"));
                }
                if names.iter().any(|n| same_folder(n, &name)) {
                    return Err(f.fail(format_args!("{name:?} is listed twice")));
                }
                names.push(name);
            }
            if names.is_empty() {
                return Err(f.fail("must name at least one folder"));
            }
            let first = names.remove(0);
            Ok((first, names))
        }
    }
}

/// `imap.after`: "seen", "keep" or "move:<folder>", where the folder is
/// not the watched `folder` itself.
fn after_from(f: &Field<'_>, folder: &str, more: &[String]) -> Result<After, ConfigError> {
    let text = f.text()?;
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "seen" => Ok(After::Seen),
        "keep" => Ok(After::Keep),
        _ if lower.starts_with("move:") => {
            let target = &text["move:".len()..];
            if target.trim().is_empty() || target.chars().any(char::is_control) {
                return Err(f.fail("expected a folder name after \"move:\""));
            }
            if same_folder(target, folder) {
                return Err(f.fail(format_args!(
                    "moves messages into imap.folder ({folder:?}) itself"
                )));
            }
            if let Some(w) = more.iter().find(|w| same_folder(target, w)) {
                return Err(f.fail(format_args!(
                    "moves messages into {w:?}, which is watched too (imap.folders)"
                )));
            }
            Ok(After::Move(target.to_string()))
        }
        _ => Err(f.fail("expected \"seen\", \"keep\" or \"move:<folder>\"")),
    }
}
