//! What is checked beyond a single value's type: addresses and host names,
//! the conventions of ports and TLS modes, and the non-fatal problems of a
//! loaded configuration ([`Config::warnings`], secret files others can read).

use std::net::IpAddr;
use std::path::Path;

use config::FileFormat;

use super::{Config, TlsMode};

impl Config {
    /// Non-fatal problems worth logging at startup.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.file_warnings.clone();
        let other_proof = self.handler_auth.accept_dkim
            || self.handler_auth.microsoft365
            || !self.handler_auth.arc_sealers.is_empty()
            || (self.handler_auth.accept_pgp_signature
                && self.handlers.iter().any(|h| h.pgp_key.is_some()));
        if !self.handlers.is_empty()
            && self.handler_auth.trusted_authserv_id.is_none()
            && !self.handler_auth.trust_unauthenticated
            && !other_proof
        {
            out.push(
                "handler_auth.trusted_authserv_id is not set: no handler mail can be \
                 authenticated, so commands, relays and notes by email will all be ignored"
                    .to_string(),
            );
        }
        if self.handler_auth.trust_unauthenticated {
            out.push(
                "handler_auth.trust_unauthenticated = true: anyone who forges a handler's From \
                 address is believed"
                    .to_string(),
            );
        }
        out.extend(self.pgp_warnings(chrono::Utc::now()));
        if self.handlers.is_empty() {
            out.push(
                "no [[handlers]] configured: new reports have nobody to handle them".to_string(),
            );
        }
        if self.mailbox.policy_url.is_empty() {
            out.push(
                "mailbox.policy_url is not set: outgoing mail cannot link to the security policy"
                    .into(),
            );
        } else if self.mailbox.policy_url.starts_with("http://") {
            out.push(format!(
                "mailbox.policy_url = {:?} uses plain http: reporters cannot trust what they read there",
                self.mailbox.policy_url
            ));
        }
        let relay = self.alerts.relay.as_ref().map(|r| {
            (
                "alert_relay",
                r.tls,
                r.port,
                &r.ca_file,
                smtp_port_ok(r.tls, r.port),
            )
        });
        let servers = [
            (
                "imap",
                self.imap.tls,
                self.imap.port,
                &self.imap.ca_file,
                imap_port_ok(self.imap.tls, self.imap.port),
            ),
            (
                "smtp",
                self.smtp.tls,
                self.smtp.port,
                &self.smtp.ca_file,
                smtp_port_ok(self.smtp.tls, self.smtp.port),
            ),
        ];
        for (section, tls, port, ca_file, conventional) in servers.into_iter().chain(relay) {
            if tls == TlsMode::None {
                out.push(format!(
                    "{section}.tls = \"none\": the connection is not encrypted (accepted because the host is loopback)"
                ));
                if ca_file.is_some() {
                    out.push(format!(
                        "{section}.ca_file is ignored because {section}.tls = \"none\""
                    ));
                }
            }
            if !conventional {
                out.push(format!(
                    "{section}.port = {port} is unusual with {section}.tls = \"{}\": check that the server speaks that mode on that port",
                    tls_name(tls)
                ));
            }
        }
        if self.sla.respond < self.sla.acknowledge {
            out.push(format!(
                "sla.respond ({}) is shorter than sla.acknowledge ({})",
                humantime::format_duration(self.sla.respond),
                humantime::format_duration(self.sla.acknowledge)
            ));
        }
        if self.limits.acks_per_sender_per_day == 0 {
            out.push(
                "limits.acks_per_sender_per_day = 0: no reporter will ever be acknowledged".into(),
            );
        }
        if let Some(r) = &self.alerts.relay {
            if r.host.eq_ignore_ascii_case(&self.smtp.host) && r.port == self.smtp.port {
                out.push(format!(
                    "alert_relay is {}:{}, the [smtp] server itself: it cannot carry the alerts \
                     about that server failing; name another relay",
                    r.host, r.port
                ));
            }
        }
        out
    }
}

fn tls_name(tls: TlsMode) -> &'static str {
    match tls {
        TlsMode::Implicit => "implicit",
        TlsMode::Starttls => "starttls",
        TlsMode::None => "none",
    }
}

fn imap_port_ok(tls: TlsMode, port: u16) -> bool {
    !matches!(
        (tls, port),
        (TlsMode::Implicit, 143) | (TlsMode::Starttls | TlsMode::None, 993)
    )
}

fn smtp_port_ok(tls: TlsMode, port: u16) -> bool {
    !matches!(
        (tls, port),
        (TlsMode::Implicit, 25 | 587) | (TlsMode::Starttls | TlsMode::None, 465)
    )
}

pub(super) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks a bare addr-spec (dot-atom local part, host-name domain) and
/// returns it lowercased. Quoted local parts, domain literals and non-ASCII
/// addresses are refused: they are valid but not worth the risk here.
pub(super) fn valid_address(s: &str) -> Option<String> {
    let (local, domain) = s.rsplit_once('@')?;
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    (local_ok && domain_ok).then(|| s.to_ascii_lowercase())
}

/// Checks a host name or IP address written without scheme, port or user
/// and returns it; an IPv6 address may come in brackets, which are dropped.
pub(super) fn valid_host(s: &str) -> Option<String> {
    let host = s
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s);
    let ip = host.parse::<IpAddr>().is_ok();
    let bad = host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
        || (host.contains(':') && !ip);
    (!bad).then(|| host.to_string())
}

impl Config {
    /// What will stop working with the configured OpenPGP keys: a team key
    /// others can read, keys that expired or soon will (a key that cannot
    /// encrypt only costs its owner the report text, so it is a warning,
    /// not a refusal to start).
    fn pgp_warnings(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        let soon = now + chrono::Duration::days(30);
        let expiry = |what: String, at: Option<chrono::DateTime<chrono::Utc>>| match at {
            Some(t) if t <= now => Some(format!("{what} expired on {}", t.format("%Y-%m-%d"))),
            Some(t) if t <= soon => Some(format!("{what} expires on {}", t.format("%Y-%m-%d"))),
            _ => None,
        };
        if let Some(p) = &self.pgp {
            let mode = std::fs::metadata(&p.secret_key_file)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o044 != 0 {
                out.push(format!(
                    "pgp.secret_key_file {} can be read by other users (mode {mode:o}): chmod 600 it",
                    p.secret_key_file.display()
                ));
            }
            let what = format!("the team key {}", p.team.fingerprint());
            out.extend(expiry(what, p.team.expires_at()));
        }
        for h in &self.handlers {
            let Some(k) = &h.pgp_key else { continue };
            let what = format!("{}'s key {}", h.email, k.fingerprint());
            if let Some(w) = expiry(what.clone(), k.expires_at()) {
                out.push(w);
            } else if !k.can_encrypt(now) {
                out.push(format!("{what} has no subkey that can encrypt"));
            }
        }
        if self.pgp.is_none() && self.handlers.iter().any(|h| h.pgp_key.is_some()) {
            out.push(
                "handlers have pgp_key but [pgp] secret_key_file is not set: encrypted reports \
                 cannot be read, so there is nothing to encrypt to them"
                    .to_string(),
            );
        }
        out
    }
}

/// Whether two IMAP folder names name the same folder (INBOX is
/// case-insensitive, RFC 3501 5.1).
pub fn same_folder(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

/// Warnings for secrets other users can read: the config file holding
/// `imap.password`, `smtp.password` or `alert_relay.password` itself, or
/// a `*.password_file`,
/// with group or other read permission.
pub(super) fn secret_file_warnings(path: &Path, text: &str) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let readable_by_others = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
            .filter(|mode| mode & 0o044 != 0)
    };
    let file_only = config::Config::builder()
        .add_source(config::File::from_str(text, FileFormat::Toml))
        .build();
    let Ok(file_only) = file_only else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for section in ["imap", "smtp", "alert_relay"] {
        if file_only.get_string(&format!("{section}.password")).is_ok() {
            if let Some(mode) = readable_by_others(path) {
                out.push(format!(
                    "{} holds {section}.password and other users can read it (mode {mode:o}): \
                     chmod 600 it, or move the password to {section}.password_file",
                    path.display()
                ));
            }
        }
        if let Ok(secret) = file_only.get_string(&format!("{section}.password_file")) {
            let p = path.parent().unwrap_or(Path::new("")).join(secret);
            if let Some(mode) = readable_by_others(&p) {
                out.push(format!(
                    "{section}.password_file {} can be read by other users (mode {mode:o}): chmod 600 it",
                    p.display()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            valid_address("Security@Example.org").as_deref(),
            Some("security@example.org")
        );
        assert_eq!(
            valid_address("first.last+tag@sub.example.org").as_deref(),
            Some("first.last+tag@sub.example.org")
        );
        for bad in [
            "",
            "a",
            "a@",
            "@b",
            "a b@c.org",
            ".a@c.org",
            "a.@c.org",
            "a@c..org",
            "a@c_d.org",
            "ä@c.org",
            "<a@c.org>",
        ] {
            assert_eq!(valid_address(bad), None, "{bad:?} accepted");
        }
    }
}
