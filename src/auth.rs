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

/// Splits an Authentication-Results value into its `;`-separated parts,
/// dropping RFC 8601 comments `( … )` (nested) and keeping quoted strings
/// whole, so a quoted value cannot smuggle in a `;` or a result.
fn parts(value: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut word = String::new();
    let mut depth = 0u32;
    let mut quoted = false;
    let mut escaped = false;
    let flush = |word: &mut String, out: &mut Vec<Vec<String>>| {
        if !word.is_empty() {
            if let Some(last) = out.last_mut() {
                last.push(std::mem::take(word));
            }
        }
    };
    for c in value.chars() {
        if quoted {
            if escaped {
                escaped = false;
                word.push(c);
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                quoted = false;
                word.push(c);
            } else {
                word.push(c);
            }
            continue;
        }
        if depth > 0 {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            continue;
        }
        match c {
            '(' => depth = 1,
            '"' => {
                quoted = true;
                word.push(c);
            }
            ';' => {
                flush(&mut word, &mut out);
                out.push(Vec::new());
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A property value without its quotes, lowercased.
fn unquote(v: &str) -> String {
    v.trim_matches('"').to_ascii_lowercase()
}

/// Returns how `from` is authenticated by a trusted header, if it is:
/// `auth=pass` with `smtp.auth` = the address itself, `dkim=pass` for its
/// domain, or `spf=pass` for its domain (with a full `smtp.mailfrom`
/// address, that exact address).
pub fn authenticated(auth: &HandlerAuth, from: &str, headers: &[String]) -> Option<String> {
    let trusted = auth.trusted_authserv_id.as_deref()?;
    let from = from.to_ascii_lowercase();
    let domain = from.rsplit_once('@')?.1.to_owned();
    let aligned = |d: &str| d == domain || domain.ends_with(&format!(".{d}"));
    for h in headers {
        let mut parts = parts(h).into_iter();
        let Some(id) = parts.next().and_then(|p| p.into_iter().next()) else {
            continue;
        };
        if id.to_ascii_lowercase() != trusted {
            continue;
        }
        for resinfo in parts {
            let Some((method, result)) = resinfo.first().and_then(|w| w.split_once('=')) else {
                continue;
            };
            let method = method.split('/').next().unwrap_or("").to_ascii_lowercase();
            if !result.eq_ignore_ascii_case("pass") {
                continue;
            }
            let prop = |name: &str| {
                resinfo[1..].iter().find_map(|w| {
                    let (k, v) = w.split_once('=')?;
                    k.eq_ignore_ascii_case(name).then(|| unquote(v))
                })
            };
            match method.as_str() {
                "auth" if prop("smtp.auth").is_some_and(|a| a == from) => {
                    return Some(format!("auth=pass smtp.auth={from} ({trusted})"));
                }
                "dkim" => {
                    let d = prop("header.d").or_else(|| {
                        prop("header.i").map(|i| i.rsplit('@').next().unwrap_or("").to_owned())
                    });
                    if let Some(d) = d.filter(|d| aligned(d)) {
                        return Some(format!("dkim=pass header.d={d} ({trusted})"));
                    }
                }
                "spf" => {
                    if let Some(mf) = prop("smtp.mailfrom") {
                        let ok = match mf.rsplit_once('@') {
                            Some(_) => mf == from,
                            None => aligned(&mf),
                        };
                        if ok {
                            return Some(format!("spf=pass smtp.mailfrom={mf} ({trusted})"));
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
        let h = vec![
            "mx.example.org (postfix); auth=pass (PLAIN) smtp.auth=Alice@example.org".to_string(),
        ];
        assert!(authenticated(&a, "alice@example.org", &h).is_some());
        let h = vec!["mx.example.org; dkim=pass (good sig) header.d=\"example.org\"".to_string()];
        assert!(authenticated(&a, "alice@example.org", &h).is_some());
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
            // A quoted value cannot smuggle in a second result.
            "mx.example.org; spf=pass smtp.mailfrom=\"x;dkim=pass header.d=example.org;\"@evil.example",
            "mx.example.org; spf=fail (dkim=pass header.d=example.org) smtp.mailfrom=a@example.org",
            // SPF vouches for the envelope address, not its neighbours.
            "mx.example.org; spf=pass smtp.mailfrom=mallory@example.org",
            "mx.example.org; auth=pass smtp.auth=bob@example.org",
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
