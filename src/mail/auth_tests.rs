//! Unit tests of `mail::auth` (a file of their own: auth.rs stays under
//! 700 lines).

use super::*;

fn auth(id: &str) -> HandlerAuth {
    HandlerAuth {
        trusted_authserv_id: Some(id.into()),
        ..HandlerAuth::default()
    }
}

fn ok(a: &HandlerAuth, from: &str, h: &str) -> bool {
    authenticated(a, from, &[h]).is_some()
}

#[test]
fn dkim_spf_or_auth_pass_from_the_trusted_host_counts() {
    let a = auth("mx.example.org");
    for h in [
        "mx.example.org; dkim=pass header.d=example.org header.s=k1; spf=fail",
        "mx.example.org 1; spf=pass smtp.mailfrom=alice@example.org",
        "MX.example.org; dkim=pass header.d=Example.org",
        "mx.example.org (postfix); auth=pass (PLAIN) smtp.auth=Alice@example.org",
        "mx.example.org; dkim=pass (good sig) header.d=\"example.org\"",
        "mx.example.org; dkim=pass header.d=example.org header.i=@example.org",
        "mx.example.org; dkim=pass header.d=example.org header.i=alice@example.org",
    ] {
        assert!(ok(&a, "alice@example.org", h), "{h}");
    }
}

#[test]
fn failures_foreign_domains_and_loose_alignment_do_not() {
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
        // Issue 7, finding 3: each of these was accepted as Alice.
        "mx.example.org; dkim=pass header.d=org",
        "mx.example.org; spf=pass smtp.mailfrom=example.org",
        "mx.example.org; dkim=pass header.d=example.org header.i=mallory@example.org",
        "mx.example.org; dkim=pass header.i=mallory@example.org",
    ] {
        assert!(!ok(&a, "alice@example.org", h), "{h}");
    }
    // A parent domain does not vouch for a subdomain's users.
    let parent = "mx.example.org; dkim=pass header.d=example.org";
    assert!(!ok(&a, "alice@mail.example.org", parent));
    let none = HandlerAuth::default();
    assert_eq!(
        authenticated(
            &none,
            "alice@example.org",
            &["mx.example.org; dkim=pass header.d=example.org"]
        ),
        None
    );
    // Nobody at a public suffix is a handler by DKIM.
    assert!(!ok(
        &a,
        "alice@github.io",
        "mx.example.org; dkim=pass header.d=github.io"
    ));
}

fn rcv(by: &str) -> TraceField {
    TraceField::Received {
        by: Some(by.into()),
    }
}
fn ar(v: &str) -> TraceField {
    TraceField::AuthResults {
        value: v.into(),
        exact_name: true,
    }
}

#[test]
fn only_verdicts_above_foreign_received_fields_are_the_servers() {
    let a = auth("mx.example.org");
    let own = "mx.example.org; dkim=pass header.d=example.org";
    let trace = [rcv("mx.example.org"), ar(own), rcv("mail.sender.example")];
    assert_eq!(own_verdicts(&a, &trace), Ok(vec![own.to_string()]));
    // Other hosts' verdicts are ignored, wherever they are.
    let trace = [
        ar("other.example; dkim=pass header.d=example.org"),
        rcv("x.example"),
    ];
    assert_eq!(own_verdicts(&a, &trace), Ok(vec![]));
    // Finding 2: a forged verdict below the server's own, or below a
    // foreign Received, or spelled `Authentication-Results :`.
    let forged = [
        vec![
            ar("mx.example.org; dkim=none; spf=softfail smtp.mailfrom=alice@example.org"),
            ar("mx.example.org; dkim=pass header.d=example.org"),
        ],
        vec![rcv("relay.example.net"), ar(own)],
        vec![TraceField::AuthResults {
            value: own.into(),
            exact_name: false,
        }],
        vec![
            rcv("mx.example.org"),
            TraceField::Received { by: None },
            ar(own),
        ],
    ];
    for trace in forged {
        assert!(own_verdicts(&a, &trace).is_err(), "{trace:?}");
    }
    // A border host named in border_hosts is not foreign.
    let mut b = auth("mx.example.org");
    b.border_hosts = vec!["lmtp.example.org".into()];
    let trace = [rcv("lmtp.example.org"), ar(own), rcv("mx.example.org")];
    assert_eq!(own_verdicts(&b, &trace), Ok(vec![own.to_string()]));
    // Several milters of one server: one method each is fine.
    let trace = [
        ar("mx.example.org; dmarc=pass header.from=example.org"),
        ar(own),
    ];
    assert_eq!(own_verdicts(&a, &trace).map(|v| v.len()), Ok(2));
}

#[test]
fn dmarc_pass_needs_the_servers_own_verdict_for_the_from_domain() {
    let a = auth("mx.example.org");
    let msg = |trace: Vec<TraceField>, from: &str| ParsedMessage {
        from: Some(crate::mail::message::Address {
            name: None,
            email: from.into(),
        }),
        trace,
        ..ParsedMessage::default()
    };
    let pass = "mx.example.org; dmarc=pass (p=reject) header.from=example.net";
    assert!(dmarc_pass(&a, &msg(vec![ar(pass)], "bob@example.net")));
    assert!(!dmarc_pass(&a, &msg(vec![ar(pass)], "bob@other.example")));
    let fail = "mx.example.org; dmarc=fail header.from=example.net";
    assert!(!dmarc_pass(&a, &msg(vec![ar(fail)], "bob@example.net")));
    // Below a foreign Received: came with the message.
    let forged = vec![rcv("relay.example"), ar(pass)];
    assert!(!dmarc_pass(&a, &msg(forged, "bob@example.net")));
    assert!(!dmarc_pass(
        &HandlerAuth::default(),
        &msg(vec![ar(pass)], "bob@example.net")
    ));
}

fn received(by: &str) -> TraceField {
    TraceField::Received {
        by: Some(by.into()),
    }
}

fn results_field(value: &str) -> TraceField {
    TraceField::AuthResults {
        value: value.into(),
        exact_name: true,
    }
}

const EXCHANGE: &str = "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=example.org; \
    dkim=pass (signature was verified) header.d=example.org;dmarc=pass action=none \
    header.from=example.org;compauth=pass reason=100";

fn m365() -> HandlerAuth {
    HandlerAuth {
        microsoft365: true,
        ..HandlerAuth::default()
    }
}

#[test]
fn microsoft365_form_trusts_only_the_verdict_exchange_prepended() {
    let a = m365();
    let is_alice = |trace: &[TraceField]| {
        let own = own_verdicts(&a, trace).unwrap();
        authenticated(&a, "alice@example.org", &own).is_some()
    };
    // As delivered: Exchange's hops, its verdict, its inbound hop, then
    // the sender's own.
    let delivered = [
        received("bn8pr01mb1234.namprd01.prod.outlook.com"),
        results_field(EXCHANGE),
        received("bn8nam11ft012.mail.protection.outlook.com"),
        received("mx.example.org"),
    ];
    assert!(is_alice(&delivered));
    // A verdict that came with the message sits below Exchange's own
    // and is never read, whatever it claims.
    let forged_below = [
        results_field("spf=fail smtp.mailfrom=evil.example; dkim=none"),
        received("bn8nam11ft012.mail.protection.outlook.com"),
        results_field("dkim=pass header.d=example.org; auth=pass smtp.auth=alice@example.org"),
    ];
    assert!(!is_alice(&forged_below));
    // Above a Received added by another host: it came with the message.
    let foreign_above = [received("relay.evil.example"), results_field(EXCHANGE)];
    assert!(!is_alice(&foreign_above));
    // Exchange never writes auth=; a verdict with an authserv-id is not
    // Exchange's form.
    for value in [
        "auth=pass smtp.auth=alice@example.org",
        "mx.example.org; dkim=pass header.d=example.org",
    ] {
        assert!(!is_alice(&[results_field(value)]), "{value}");
    }
    // Alignment stays strict.
    let other = [results_field(
        "dkim=pass header.d=evil.example; dmarc=pass header.from=evil.example",
    )];
    assert!(!is_alice(&other));
    // The rfc8601 form does not read it.
    let rfc = auth("mx.example.org");
    let own = own_verdicts(&rfc, &delivered).unwrap();
    assert!(authenticated(&rfc, "alice@example.org", &own).is_none());
}

#[test]
fn arc_verdicts_count_only_from_listed_sealers_and_aligned() {
    use crate::dkim::ArcCheck;
    let a = HandlerAuth {
        arc_sealers: vec!["lists.example.net".into()],
        ..HandlerAuth::default()
    };
    let pass = |sealer: &str, results: &str| ArcCheck::Pass {
        sealer: sealer.into(),
        results: results.into(),
    };
    let good = pass(
        "lists.example.net",
        "mx.lists.example.net; dkim=pass header.d=example.org; spf=fail",
    );
    let how = arc_authenticated(&a, "alice@example.org", Some(&good)).unwrap();
    assert!(how.contains("by ARC from lists.example.net"), "{how}");
    for (check, why) in [
        (
            pass(
                "other.example",
                "mx.other.example; dkim=pass header.d=example.org",
            ),
            "unlisted sealer",
        ),
        (
            pass(
                "lists.example.net",
                "mx.lists.example.net; dkim=pass header.d=evil.example",
            ),
            "other domain",
        ),
        (
            pass(
                "lists.example.net",
                "mx.lists.example.net; auth=pass smtp.auth=alice@example.org",
            ),
            "auth=",
        ),
        (
            ArcCheck::Fail("its ARC chain does not verify".into()),
            "broken chain",
        ),
    ] {
        assert!(
            arc_authenticated(&a, "alice@example.org", Some(&check)).is_none(),
            "{why}"
        );
    }
    assert!(arc_authenticated(&a, "alice@example.org", None).is_none());
}
