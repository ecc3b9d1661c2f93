//! Is this mail really from a handler? (pure, no I/O)
//!
//! Anyone can write a handler's address in a From line, and mail from a
//! handler changes things (commands, relays to the reporter, advisories).
//! So handler mail counts only when the operator's own receiving server
//! says so, in an `Authentication-Results` header (RFC 8601) that this
//! server wrote:
//!
//! - Only fields naming the trusted authserv-id count, and only those
//!   above every `Received` field added by another host (the receiving
//!   server prepends its verdict; anything below came with the message).
//! - Any other field claiming the trusted id (below a foreign `Received`,
//!   or under an obsolete spelling like `Authentication-Results :` that a
//!   border filter matching `^Authentication-Results:` would not strip),
//!   and two verdicts for the same method, make the mail forged: nothing
//!   it asks for is done, and the handlers are alerted.
//! - Alignment is strict: DKIM `d=` is the From domain itself (never a
//!   parent, never a public suffix) and `header.i` names no other user;
//!   SPF counts only for an `smtp.mailfrom` that is the From address.
//!
//! The border MTA must remove `Authentication-Results` fields that claim
//! its id on arrival (RFC 8601 section 5); `check-config` repeats this.

use crate::config::{Config, HandlerAuth};
use crate::mail::message::{ParsedMessage, TraceField};

/// The verdict on a message's From address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// A configured handler, authenticated (or trusted by configuration).
    Handler { email: String, how: String },
    /// From names a handler, but nothing proves it (or a verdict was
    /// forged); `why` says which, in one line.
    ForgedHandler { email: String, why: String },
    /// Not a handler address.
    Other,
}

/// Decides whether `msg` comes from a configured handler.
pub fn sender(cfg: &Config, msg: &ParsedMessage) -> Sender {
    let Some(from) = &msg.from else {
        return Sender::Other;
    };
    let Some(handler) = cfg.handler(&from.email) else {
        return Sender::Other;
    };
    let email = from.email.clone();
    if cfg.handler_auth.accept_pgp_signature {
        match signed_by(handler, msg) {
            Some(Ok(how)) => return Sender::Handler { email, how },
            Some(Err(why)) => return Sender::ForgedHandler { email, why },
            None => {}
        }
    }
    let mut dkim_why = None;
    if cfg.handler_auth.accept_dkim {
        match &msg.dkim {
            Some(crate::dkim::DkimCheck::Pass { domain }) => {
                let how = format!("DKIM signature by {domain}, verified by secintake");
                return Sender::Handler { email, how };
            }
            Some(crate::dkim::DkimCheck::Fail(why)) => dkim_why = Some(why.clone()),
            None => dkim_why = Some("its DKIM signature was not checked".into()),
        }
    }
    if !cfg.handler_auth.accept_authentication_results {
        let why = match dkim_why {
            Some(why) => format!("{why}, and it carries no OpenPGP signature by their key"),
            None => "it carries no OpenPGP signature by their key, the only proof \
                     handler_auth.accept allows"
                .to_string(),
        };
        return Sender::ForgedHandler { email, why };
    }
    let own = match own_verdicts(&cfg.handler_auth, &msg.trace) {
        Ok(own) => own,
        Err(why) => return Sender::ForgedHandler { email, why },
    };
    let how = authenticated(&cfg.handler_auth, &from.email, &own)
        .or_else(|| arc_authenticated(&cfg.handler_auth, &from.email, msg.arc.as_ref()));
    match how {
        Some(how) => Sender::Handler { email, how },
        None if cfg.handler_auth.trust_unauthenticated => Sender::Handler {
            email,
            how: "trusted without authentication (handler_auth.trust_unauthenticated)".into(),
        },
        None if !cfg.handler_auth.arc_sealers.is_empty() => {
            let arc = match &msg.arc {
                Some(crate::dkim::ArcCheck::Pass { sealer, .. })
                    if !cfg.handler_auth.arc_sealers.contains(sealer) =>
                {
                    format!("it was sealed by {sealer}, which is not in handler_auth.arc_sealers")
                }
                Some(crate::dkim::ArcCheck::Pass { sealer, .. }) => {
                    format!("the verdict {sealer} sealed shows no aligned pass for {email}")
                }
                Some(crate::dkim::ArcCheck::Fail(why)) => why.clone(),
                None => "its ARC chain was not checked".into(),
            };
            let why = format!("no verdict vouches for {email}: {arc}");
            Sender::ForgedHandler { email, why }
        }
        None => {
            let why = match cfg.handler_auth.trusted_authserv_id.as_deref() {
                _ if cfg.handler_auth.microsoft365 => format!(
                    "no aligned DKIM or SPF pass for {email} in the Authentication-Results \
                     header Microsoft 365 wrote on receipt"
                ),
                Some(id) => format!(
                    "no DKIM, SPF or auth pass for {email} in an Authentication-Results \
                     header from {id}"
                ),
                None => "handler_auth.trusted_authserv_id is not set".to_string(),
            };
            Sender::ForgedHandler { email, why }
        }
    }
}

/// What the message's OpenPGP signature says of `handler`: `None` when it
/// is unsigned (other proof may do), `Ok(how)` when their own key made
/// it, `Err(why)` when it does not verify or another key made it: a
/// signature that fails never authenticates, and the mail is forged.
fn signed_by(
    handler: &crate::config::Handler,
    msg: &ParsedMessage,
) -> Option<Result<String, String>> {
    use crate::openpgp::SignatureCheck;
    let sig = msg.signature()?;
    let fp = |issuer: &Option<String>| issuer.clone().unwrap_or_else(|| "unknown".into());
    Some(match sig {
        SignatureCheck::Unsigned => return None,
        SignatureCheck::Valid { fingerprint } => match &handler.pgp_key {
            Some(k) if k.fingerprint() == *fingerprint => {
                Ok(format!("OpenPGP signature by their key {fingerprint}"))
            }
            _ => Err(format!(
                "it is signed with the OpenPGP key {fingerprint}, which is not {}'s pgp_key",
                handler.email
            )),
        },
        SignatureCheck::Invalid { issuer } => Err(format!(
            "its OpenPGP signature (key {}) does not verify",
            fp(issuer)
        )),
        SignatureCheck::UnknownKey { issuer } if handler.pgp_key.is_some() => Err(format!(
            "it is signed with the OpenPGP key {}, which is not {}'s pgp_key",
            fp(issuer),
            handler.email
        )),
        // Signed, but the handler has no key configured to check it by:
        // the signature proves nothing either way.
        SignatureCheck::UnknownKey { .. } => return None,
    })
}

/// Whether the receiving server verified the From domain by DMARC
/// (`dmarc=pass` with `header.from` equal to the From domain), for
/// `limits.ack_only_if = "dmarc-pass"`.
pub fn dmarc_pass(auth: &HandlerAuth, msg: &ParsedMessage) -> bool {
    let Some(domain) = msg
        .from
        .as_ref()
        .and_then(|a| a.email.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
    else {
        return false;
    };
    let Ok(own) = own_verdicts(auth, &msg.trace) else {
        return false;
    };
    own.iter().any(|h| {
        results(h).any(|r| {
            r.method == "dmarc" && r.pass && r.prop("header.from").is_some_and(|d| d == domain)
        })
    })
}

/// The `Authentication-Results` values the receiving server wrote, topmost
/// first; `Err` says why the header block holds a forged one. Empty when
/// no authserv-id is trusted.
pub fn own_verdicts(auth: &HandlerAuth, trace: &[TraceField]) -> Result<Vec<String>, String> {
    if auth.microsoft365 {
        return Ok(microsoft365_verdict(auth, trace).into_iter().collect());
    }
    let Some(trusted) = auth.trusted_authserv_id.as_deref() else {
        return Ok(Vec::new());
    };
    let own_host = |h: &str| h == trusted || auth.border_hosts.iter().any(|b| b == h);
    let mut foreign: Option<&str> = None;
    let mut own = Vec::new();
    for field in trace {
        match field {
            TraceField::Received { by } => {
                if foreign.is_none() && !by.as_deref().is_some_and(own_host) {
                    foreign = Some(by.as_deref().unwrap_or("an unnamed host"));
                }
            }
            TraceField::AuthResults { value, exact_name } => {
                if authserv_id(value).as_deref() != Some(trusted) {
                    continue;
                }
                if !exact_name {
                    return Err(format!(
                        "an Authentication-Results field with a non-standard name claims {trusted}"
                    ));
                }
                if let Some(host) = foreign {
                    return Err(format!(
                        "an Authentication-Results field claiming {trusted} sits below a Received \
                         field added by {host}: it came with the message"
                    ));
                }
                own.push(value.clone());
            }
        }
    }
    let mut methods: Vec<String> = Vec::new();
    for value in &own {
        let mut here: Vec<String> = results(value).map(|r| r.method).collect();
        here.sort();
        here.dedup();
        for m in here {
            if methods.contains(&m) {
                return Err(format!(
                    "two Authentication-Results fields claiming {trusted} both give a {m} result"
                ));
            }
            methods.push(m);
        }
    }
    Ok(own)
}

/// The authserv-id under which a Microsoft 365 verdict is read.
pub const MICROSOFT365: &str = "microsoft365";

/// `results_form = "microsoft365"`: Exchange Online writes its verdict
/// without an authserv-id (`spf=pass ...; dkim=pass header.d=...;
/// dmarc=pass ...; compauth=pass`), so none can be matched. What is
/// trusted instead: only the topmost Authentication-Results field, only
/// when it has that form, and only when no Received field above it was
/// added outside Microsoft's own hosts (`*.outlook.com`,
/// `*.office365.com`) or `border_hosts`. Exchange prepends its verdict on
/// receipt, so a field that came with the message is always below it and
/// is never read. The value comes back with [`MICROSOFT365`] as its id.
fn microsoft365_verdict(auth: &HandlerAuth, trace: &[TraceField]) -> Option<String> {
    let own_host = |h: &str| {
        [".outlook.com", ".office365.com"]
            .iter()
            .any(|s| h.ends_with(s))
            || auth.border_hosts.iter().any(|b| b == h)
    };
    for field in trace {
        match field {
            TraceField::Received { by } => {
                if !by.as_deref().is_some_and(own_host) {
                    return None;
                }
            }
            TraceField::AuthResults { value, exact_name } => {
                let first = parts(value).into_iter().next()?.into_iter().next()?;
                if !exact_name || !first.contains('=') {
                    return None;
                }
                return Some(format!("{MICROSOFT365}; {value}"));
            }
        }
    }
    None
}

/// The authserv-id of an Authentication-Results value, lowercased.
fn authserv_id(value: &str) -> Option<String> {
    parts(value)
        .into_iter()
        .next()
        .and_then(|p| p.into_iter().next())
        .map(|id| id.to_ascii_lowercase())
}

/// One `method=result prop=value ...` of an Authentication-Results value.
struct Resinfo {
    /// Lowercased method, without a version (`dkim/1` -> `dkim`).
    method: String,
    pass: bool,
    props: Vec<(String, String)>,
}

impl Resinfo {
    /// A property value without quotes, lowercased.
    fn prop(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The results of one Authentication-Results value (its authserv-id part
/// skipped).
fn results(value: &str) -> impl Iterator<Item = Resinfo> {
    parts(value).into_iter().skip(1).filter_map(|words| {
        let (method, result) = words.first()?.split_once('=')?;
        let props = words[1..]
            .iter()
            .filter_map(|w| {
                let (k, v) = w.split_once('=')?;
                Some((k.to_ascii_lowercase(), unquote(v)))
            })
            .collect();
        Some(Resinfo {
            method: method.split('/').next().unwrap_or("").to_ascii_lowercase(),
            pass: result.eq_ignore_ascii_case("pass"),
            props,
        })
    })
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

/// Returns how `from` is authenticated by one of the receiving server's
/// own verdicts (see [`own_verdicts`]), if it is: `auth=pass` with
/// `smtp.auth` the address itself; `dkim=pass` whose `d=` is the From
/// domain exactly, not a public suffix, with no `header.i` naming another
/// user; or `spf=pass` whose `smtp.mailfrom` is the From address itself.
pub fn authenticated<S: AsRef<str>>(auth: &HandlerAuth, from: &str, own: &[S]) -> Option<String> {
    let trusted = if auth.microsoft365 {
        MICROSOFT365
    } else {
        auth.trusted_authserv_id.as_deref()?
    };
    // Exchange never writes auth=: one that claims it is not its.
    aligned_pass(from, own, trusted, !auth.microsoft365)
}

/// `[handler_auth] arc_sealers`: a verified ARC chain (RFC 8617) whose
/// latest set was sealed by a listed sealer vouches for `from` as that
/// sealer's own Authentication-Results would: the same strict alignment,
/// and never an `auth=` result (the sealer did not see the handler log
/// in to us). The sealer saw the message before the hops that changed it
/// (a list, a forwarder), which is what ARC is for.
fn arc_authenticated(
    auth: &HandlerAuth,
    from: &str,
    arc: Option<&crate::dkim::ArcCheck>,
) -> Option<String> {
    let crate::dkim::ArcCheck::Pass { sealer, results } = arc? else {
        return None;
    };
    if !auth.arc_sealers.contains(sealer) {
        return None;
    }
    let id = authserv_id(results)?;
    aligned_pass(from, &[results.as_str()], &id, false)
        .map(|how| format!("{how}, by ARC from {sealer}"))
}

/// A pass in `own` (fields naming `trusted`) aligned with `from`.
fn aligned_pass<S: AsRef<str>>(
    from: &str,
    own: &[S],
    trusted: &str,
    allow_auth: bool,
) -> Option<String> {
    let from = from.to_ascii_lowercase();
    let (local, domain) = from.rsplit_once('@')?;
    if secintake_suffix::is_public_suffix(domain) {
        return None;
    }
    let own = own
        .iter()
        .map(AsRef::as_ref)
        .filter(|h| authserv_id(h).as_deref() == Some(trusted));
    for r in own.flat_map(results).filter(|r| r.pass) {
        match r.method.as_str() {
            "auth" if !allow_auth => {}
            "auth" if r.prop("smtp.auth") == Some(from.as_str()) => {
                return Some(format!("auth=pass smtp.auth={from} ({trusted})"));
            }
            "dkim" => {
                let i = r.prop("header.i");
                let d = r
                    .prop("header.d")
                    .or_else(|| i.and_then(|i| i.rsplit_once('@')).map(|(_, d)| d));
                let i_ok = i.is_none_or(|i| match i.rsplit_once('@') {
                    Some((il, id)) => (il.is_empty() || il == local) && id == domain,
                    None => false,
                });
                if d == Some(domain) && i_ok {
                    return Some(format!("dkim=pass header.d={domain} ({trusted})"));
                }
            }
            "spf" if r.prop("smtp.mailfrom") == Some(from.as_str()) => {
                return Some(format!("spf=pass smtp.mailfrom={from} ({trusted})"));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
