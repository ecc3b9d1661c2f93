//! The one adapter over `mail-auth` (0.7, the last on mail-parser 0.11):
//! verifying a handler's DKIM signature ourselves, through DNS, so that
//! handler mail can be trusted on providers whose own verdicts secintake
//! cannot read (`[handler_auth] accept = ["dkim"]`), and verifying an ARC
//! chain (RFC 8617) whose sealer's recorded verdict may count
//! (`[handler_auth] arc_sealers`).
//!
//! The rule is strict alignment: a signature passes only when it verifies
//! and its `d=` is the From domain itself (a parent domain, or a third
//! party's signature, proves nothing about who wrote From), which is what
//! DMARC's strict DKIM alignment asks.

use std::net::SocketAddr;
use std::time::Duration;

use mail_auth::hickory_resolver::config::{
    NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

/// What a DKIM check found for a handler's mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimCheck {
    /// A valid signature by the From domain itself.
    Pass { domain: String },
    /// None: one line saying why (no signature, a signature that does not
    /// verify, one by another domain, DNS failing).
    Fail(String),
}

/// A DKIM verifier with its DNS resolver.
pub struct Verifier(MessageAuthenticator);

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dkim::Verifier")
    }
}

/// A DNS answer later than this fails the check (it is retried with the
/// next message, never waited on for long: intake waits for it).
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

impl Verifier {
    /// A verifier asking `servers` (UDP), or the system's resolvers
    /// (`/etc/resolv.conf`) when there are none.
    pub fn new(servers: &[SocketAddr]) -> Result<Verifier, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = DNS_TIMEOUT;
        opts.attempts = 2;
        let auth = if servers.is_empty() {
            let (config, mut sys) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read the system's DNS resolvers: {e}"))?;
            sys.timeout = DNS_TIMEOUT;
            sys.attempts = 2;
            MessageAuthenticator::new(config, sys)
        } else {
            let group: Vec<NameServerConfig> = servers
                .iter()
                .map(|s| NameServerConfig::new(*s, ProtocolConfig::Udp))
                .collect();
            let config = ResolverConfig::from_parts(None, Vec::new(), group);
            MessageAuthenticator::new(config, opts)
        };
        auth.map(Verifier)
            .map_err(|e| format!("cannot set up DNS: {e}"))
    }

    /// Whether `raw` carries a valid DKIM signature by `domain` itself.
    pub async fn check(&self, raw: &[u8], domain: &str) -> DkimCheck {
        // mail-auth parses hostile bytes: a panic in it fails this check
        // instead of stopping intake.
        AssertUnwindSafe(self.check_inner(raw, domain))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| DkimCheck::Fail("the DKIM check failed on this message".into()))
    }

    async fn check_inner(&self, raw: &[u8], domain: &str) -> DkimCheck {
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return DkimCheck::Fail("the message could not be read for DKIM".into());
        };
        let results = self.0.verify_dkim(&msg).await;
        if results.is_empty() {
            return DkimCheck::Fail("it carries no DKIM signature".into());
        }
        let mut seen = Vec::new();
        for r in &results {
            let d = r.signature().map(|s| s.d.to_ascii_lowercase());
            match (r.result(), d) {
                (DkimResult::Pass, Some(d)) if d == domain => {
                    return DkimCheck::Pass { domain: d };
                }
                (DkimResult::Pass, Some(d)) => seen.push(format!("d={d} (another domain)")),
                (other, d) => seen.push(format!(
                    "d={} ({})",
                    d.unwrap_or_else(|| "?".into()),
                    outcome(other)
                )),
            }
        }
        DkimCheck::Fail(format!(
            "no valid DKIM signature by {domain}: {}",
            seen.join(", ")
        ))
    }
}

/// What an ARC check (RFC 8617) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArcCheck {
    /// The whole chain verifies; its latest set was sealed by `sealer`
    /// (the ARC-Seal's `d=`, lowercased), whose
    /// ARC-Authentication-Results say `results` (the value without its
    /// `i=` tag: an authserv-id, then the results, as in RFC 8601).
    Pass { sealer: String, results: String },
    /// No ARC set, or a chain that does not verify: one line saying why.
    Fail(String),
}

impl Verifier {
    /// Verifies the ARC chain of `raw` through DNS: every seal and the
    /// latest message signature.
    pub async fn check_arc(&self, raw: &[u8]) -> ArcCheck {
        AssertUnwindSafe(self.check_arc_inner(raw))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| ArcCheck::Fail("the ARC check failed on this message".into()))
    }

    async fn check_arc_inner(&self, raw: &[u8]) -> ArcCheck {
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return ArcCheck::Fail("the message could not be read for ARC".into());
        };
        let arc = self.0.verify_arc(&msg).await;
        let Some(last) = arc.sets().last() else {
            return ArcCheck::Fail("it carries no ARC set".into());
        };
        if arc.result() != &DkimResult::Pass {
            return ArcCheck::Fail(format!("its ARC chain {}", outcome(arc.result())));
        }
        let sealer = last.seal.header.d.to_ascii_lowercase();
        let value = String::from_utf8_lossy(last.results.value);
        // "i=N; authserv-id; results": drop the instance tag.
        let results = match value.split_once(';') {
            Some((i, rest)) if i.trim().starts_with("i=") => rest.trim().to_string(),
            _ => {
                return ArcCheck::Fail("its ARC-Authentication-Results has no instance tag".into())
            }
        };
        ArcCheck::Pass { sealer, results }
    }
}

/// A failed result in a few words (mail-auth's own text may quote header
/// bytes).
fn outcome(r: &DkimResult) -> &'static str {
    use mail_auth::Error as E;
    match r {
        DkimResult::Pass => "pass",
        // mail-auth calls a changed body "neutral" (RFC 6376 6.3 lets a
        // verifier treat it so); for trust it is a signature that fails.
        DkimResult::Neutral(E::FailedBodyHashMatch) => "does not verify: the body was changed",
        DkimResult::Neutral(E::SignatureExpired) => "expired",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "does not verify",
        DkimResult::PermError(_) => "unusable signature or key",
        DkimResult::TempError(_) => "DNS failed",
        DkimResult::None => "none",
    }
}
