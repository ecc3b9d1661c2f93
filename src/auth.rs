//! Is this mail really from a handler? (pure, no I/O)
//!
//! Anyone can write a handler's address in a From line, and mail from a
//! handler changes things (a direct reply to the reporter stops the
//! response reminders). So handler mail counts only when it is
//! authenticated: DKIM or SPF `pass` for the From domain in an
//! `Authentication-Results` header (RFC 8601) whose authserv-id is the
//! operator's own mail server. Headers naming any other host are ignored:
//! a sender can write them too. The operator's border MTA strips headers
//! that claim its own id on arrival (RFC 8601 section 5).

use crate::config::{Config, HandlerAuth};
use crate::message::ParsedMessage;

/// The verdict on a message's From address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A configured handler, authenticated (or trusted by configuration).
    Handler { email: String, how: String },
    /// From names a handler, but nothing proves it.
    ForgedHandler { email: String },
    /// Not a handler address.
    Other,
}

/// Decides whether `msg` comes from a configured handler.
pub fn sender(cfg: &Config, msg: &ParsedMessage) -> Sender {
    let Some(from) = &msg.from else {
        return Sender::Other;
    };
    if !cfg.handlers.iter().any(|h| h.email == from.email) {
        return Sender::Other;
    }
    match authenticated(&cfg.handler_auth, &from.email, &msg.authentication_results) {
        Some(how) => Sender::Handler {
            email: from.email.clone(),
            how,
        },
        None if cfg.handler_auth.trust_unauthenticated => Sender::Handler {
            email: from.email.clone(),
            how: "trusted without authentication (handler_auth.trust_unauthenticated)".into(),
        },
        None => Sender::ForgedHandler {
            email: from.email.clone(),
        },
    }
}

/// Returns how `from` is authenticated by a trusted header, if it is.
pub fn authenticated(auth: &HandlerAuth, from: &str, headers: &[String]) -> Option<String> {
    let trusted = auth.trusted_authserv_id.as_deref()?;
    let domain = from.rsplit_once('@')?.1.to_ascii_lowercase();
    for h in headers {
        let mut parts = h.split(';');
        let id = parts
            .next()
            .and_then(|p| p.split_whitespace().next())
            .unwrap_or("")
            .to_ascii_lowercase();
        if id != trusted {
            continue;
        }
        for resinfo in parts {
            let words: Vec<String> = resinfo
                .split_whitespace()
                .map(|w| w.to_ascii_lowercase())
                .collect();
            let Some((method, result)) = words.first().and_then(|w| w.split_once('=')) else {
                continue;
            };
            if result != "pass" {
                continue;
            }
            let prop = |name: &str| {
                words
                    .iter()
                    .find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
                    .map(|v| v.trim_matches('"').to_owned())
            };
            let aligned = |d: &str| {
                let d = d.rsplit('@').next().unwrap_or(d);
                d == domain || domain.ends_with(&format!(".{d}"))
            };
            match method {
                "dkim" => {
                    if let Some(d) = prop("header.d").or_else(|| prop("header.i")) {
                        if aligned(&d) {
                            return Some(format!("dkim=pass header.d={d} ({trusted})"));
                        }
                    }
                }
                "spf" => {
                    if let Some(d) = prop("smtp.mailfrom") {
                        if aligned(&d) {
                            return Some(format!("spf=pass smtp.mailfrom={d} ({trusted})"));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(id: &str) -> HandlerAuth {
        HandlerAuth {
            trusted_authserv_id: Some(id.into()),
            trust_unauthenticated: false,
        }
    }

    #[test]
    fn dkim_or_spf_pass_from_the_trusted_host_counts() {
        let a = auth("mx.example.org");
        let h = vec![
            "mx.example.org; dkim=pass header.d=example.org header.s=k1; spf=fail".to_string(),
        ];
        assert!(authenticated(&a, "alice@example.org", &h).is_some());
        let h = vec!["mx.example.org 1; spf=pass smtp.mailfrom=alice@example.org".to_string()];
        assert!(authenticated(&a, "alice@example.org", &h).is_some());
        let h = vec!["MX.example.org; dkim=pass header.d=example.org".to_string()];
        assert!(authenticated(&a, "alice@mail.example.org", &h).is_some());
    }

    #[test]
    fn other_hosts_failures_and_foreign_domains_do_not() {
        let a = auth("mx.example.org");
        for h in [
            "evil.example.net; dkim=pass header.d=example.org",
            "mx.example.org; dkim=fail header.d=example.org",
            "mx.example.org; dkim=pass header.d=evil.example.net",
            "mx.example.org; dkim=pass header.d=notexample.org",
            "mx.example.org; spf=pass smtp.mailfrom=x@evil.net",
            "mx.example.org; none",
        ] {
            assert_eq!(
                authenticated(&a, "alice@example.org", &[h.to_string()]),
                None,
                "{h}"
            );
        }
        let none = HandlerAuth::default();
        let h = vec!["mx.example.org; dkim=pass header.d=example.org".to_string()];
        assert_eq!(authenticated(&none, "alice@example.org", &h), None);
    }
}
