//! Is this mail from a robot? Pure functions over a [`ParsedMessage`].
//!
//! A robot's mail is stored but never answered and opens no case, so the two
//! mistakes cost very differently: taking a person for a robot loses a
//! vulnerability report, taking a robot for a person costs one acknowledgement
//! (and the per-sender limit stops a loop). Every rule here therefore needs a
//! marker that people's mail programs do not produce:
//!
//! - standard headers (RFC 3834 Auto-Submitted, Precedence, RFC 2919/2369
//!   list fields, RFC 6522 multipart/report), the null reverse path, and
//!   daemon sender names;
//! - vendor markers (X-Auto-Response-Suppress and friends, see
//!   [`ParsedMessage::x_autoreply`]);
//! - subjects, but only fixed machine-made forms anchored at the start
//!   ("Undeliverable: ", "Automatic reply: ", "Delivery Status Notification
//!   (Failure)"), never a keyword anywhere: a person's "Fwd: Returned mail" or
//!   a spam "Your Vacation Winning" stays a person.
//!
//! Deliberately *not* a rule: a missing From. Nobody can be answered then
//! anyway, and a report that lost its From is still a report.
//! Body text is never looked at: reports about mail software quote bounces.

use crate::mail::message::ParsedMessage;

/// Why a message was taken for a robot. The first matching rule wins, in the
/// order listed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RobotRule {
    /// From or Sender is one of our own addresses (a loop, or our own copy).
    OwnAddress,
    /// `Auto-Submitted` with any value but `no` (RFC 3834).
    AutoSubmitted,
    /// multipart/report (RFC 6522: DSN, MDN, ARF, TLSRPT ...) or a bare
    /// message/delivery-status, message/disposition-notification,
    /// message/feedback-report body.
    DeliveryReport,
    /// A vendor auto-reply, NDR or challenge-response header
    /// (see [`ParsedMessage::x_autoreply`]).
    AutoReplyHeader,
    /// Return-Path `<>` or `<MAILER-DAEMON@...>`.
    NullReturnPath,
    /// From/Sender is MAILER-DAEMON, postmaster, bounces, owner-*,
    /// *-request ..., or `From: <>`; or a no-reply sender, unless Reply-To
    /// names someone who reads mail (web forms send as noreply@ with the
    /// reporter in Reply-To).
    DaemonSender,
    /// `Precedence: bulk`, `junk`, `list` or `auto_reply`.
    Precedence,
    /// `List-Id` (RFC 2919).
    ListId,
    /// Other mailing-list fields: List-Post, List-Subscribe, Mailing-List ...
    ListHeaders,
    /// `List-Unsubscribe` (RFC 2369), newsletters and bulk senders.
    ListUnsubscribe,
    /// A fixed auto-reply subject form: "Automatic reply:", "Auto-Reply:",
    /// localized Outlook forms, Lotus Notes "AUTO: ... out of the office",
    /// Outlook "Read:" receipts sent as TNEF.
    AutoReplySubject,
    /// A fixed bounce or complaint subject form: "Undelivered Mail Returned to
    /// Sender", "Undeliverable:", "Returned mail:", "failure notice",
    /// Hotmail's "complaint about message from <IP>" ...
    BounceSubject,
}

impl RobotRule {
    /// Stable kebab-case name, shown in the CLI and JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            RobotRule::OwnAddress => "own-address",
            RobotRule::AutoSubmitted => "auto-submitted",
            RobotRule::DeliveryReport => "delivery-report",
            RobotRule::AutoReplyHeader => "auto-reply-header",
            RobotRule::NullReturnPath => "null-return-path",
            RobotRule::DaemonSender => "daemon-sender",
            RobotRule::Precedence => "precedence",
            RobotRule::ListId => "list-id",
            RobotRule::ListHeaders => "list-headers",
            RobotRule::ListUnsubscribe => "list-unsubscribe",
            RobotRule::AutoReplySubject => "auto-reply-subject",
            RobotRule::BounceSubject => "bounce-subject",
        }
    }

    /// Every rule, in evaluation order.
    pub const ALL: [RobotRule; 12] = [
        RobotRule::OwnAddress,
        RobotRule::AutoSubmitted,
        RobotRule::DeliveryReport,
        RobotRule::AutoReplyHeader,
        RobotRule::NullReturnPath,
        RobotRule::DaemonSender,
        RobotRule::Precedence,
        RobotRule::ListId,
        RobotRule::ListHeaders,
        RobotRule::ListUnsubscribe,
        RobotRule::AutoReplySubject,
        RobotRule::BounceSubject,
    ];
}

impl std::fmt::Display for RobotRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first robot rule the message matches, or `None` for a person.
/// `own_addresses` are compared case-insensitively.
pub fn robot_rule(msg: &ParsedMessage, own_addresses: &[String]) -> Option<RobotRule> {
    RobotRule::ALL
        .into_iter()
        .find(|rule| matches_rule(*rule, msg, own_addresses))
}

fn matches_rule(rule: RobotRule, msg: &ParsedMessage, own: &[String]) -> bool {
    match rule {
        RobotRule::OwnAddress => [&msg.from, &msg.sender].into_iter().flatten().any(|a| {
            own.iter()
                .any(|o| o.trim().eq_ignore_ascii_case(a.email.trim()))
        }),
        RobotRule::AutoSubmitted => msg
            .auto_submitted
            .as_deref()
            .is_some_and(|v| !matches!(first_token(v).as_str(), "" | "no")),
        RobotRule::DeliveryReport => msg.content_type.as_deref().is_some_and(|ct| {
            matches!(
                ct,
                "multipart/report"
                    | "message/delivery-status"
                    | "message/global-delivery-status"
                    | "message/disposition-notification"
                    | "message/global-disposition-notification"
                    | "message/feedback-report"
            )
        }),
        RobotRule::AutoReplyHeader => msg.x_autoreply,
        RobotRule::NullReturnPath => msg
            .return_path
            .as_deref()
            .is_some_and(|rp| rp.is_empty() || local_part(rp) == "mailer-daemon"),
        RobotRule::DaemonSender => {
            let senders = || [&msg.from, &msg.sender].into_iter().flatten();
            // A no-reply sender that names a person in Reply-To wants answers:
            // web forms and report platforms send as noreply@ with the
            // reporter in Reply-To. MAILER-DAEMON and friends copy Reply-To
            // from the bounced message, so they get no such pass.
            let wants_replies = msg.reply_to.as_ref().is_some_and(|r| {
                !is_daemon_local_part(local_part(&r.email))
                    && !is_no_reply_local_part(local_part(&r.email))
                    && is_usable_addr_spec(&r.email)
            });
            senders().any(|a| is_daemon_local_part(local_part(&a.email)))
                || (!wants_replies
                    && senders().any(|a| is_no_reply_local_part(local_part(&a.email))))
                || (msg.from.is_none() && msg.from_raw.as_deref().is_some_and(is_null_mailbox))
        }
        RobotRule::Precedence => msg.precedence.as_deref().is_some_and(|v| {
            matches!(
                first_token(v).as_str(),
                "bulk" | "junk" | "list" | "auto_reply" | "auto-reply"
            )
        }),
        RobotRule::ListId => msg.list_id.is_some(),
        RobotRule::ListHeaders => !msg.list_headers.is_empty(),
        RobotRule::ListUnsubscribe => msg.list_unsubscribe.is_some(),
        RobotRule::AutoReplySubject => msg
            .subject
            .as_deref()
            .is_some_and(|s| is_auto_reply_subject(s, msg)),
        RobotRule::BounceSubject => msg.subject.as_deref().is_some_and(is_bounce_subject),
    }
}

/// First word of a header value, lowercased, comments and parameters dropped:
/// `auto-generated (failure)` -> `auto-generated`, `Bulk;` -> `bulk`.
fn first_token(v: &str) -> String {
    v.trim()
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == ',')
        .next()
        .unwrap_or("")
        .trim_matches('"')
        .to_ascii_lowercase()
}

fn local_part(email: &str) -> &str {
    email.rsplit_once('@').map_or(email, |(l, _)| l)
}

/// `<>` possibly with a display name or comment: `"Mail System" <>`.
fn is_null_mailbox(raw: &str) -> bool {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    compact.ends_with("<>") || compact.contains("<>(")
}

/// Mail systems and list managers: they never read what they are sent.
fn is_daemon_local_part(local: &str) -> bool {
    let l = local.trim().trim_matches('"').to_ascii_lowercase();
    const EXACT: &[&str] = &[
        "mailer-daemon",
        "mailer_daemon",
        "mailerdaemon",
        "mail-daemon",
        "maildaemon",
        "postmaster",
        "post_master",
        "bounce",
        "bounces",
    ];
    const PREFIXES: &[&str] = &[
        "mailer-daemon",
        "bounce-",
        "bounce+",
        "bounces-",
        "bounces+",
        "owner-",
    ];
    const SUFFIXES: &[&str] = &["-bounces", "-bounce", "-request"];
    EXACT.contains(&l.as_str())
        || PREFIXES.iter().any(|p| l.starts_with(p))
        || SUFFIXES.iter().any(|s| l.ends_with(s))
}

/// Senders that say nobody reads replies: no-reply, do-not-reply ...
fn is_no_reply_local_part(local: &str) -> bool {
    let l = local.trim().trim_matches('"').to_ascii_lowercase();
    const PREFIXES: &[&str] = &[
        "noreply",
        "no-reply",
        "no_reply",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
    ];
    const SUFFIXES: &[&str] = &["-noreply", "-no-reply", "_noreply"];
    PREFIXES.iter().any(|p| l.starts_with(p)) || SUFFIXES.iter().any(|s| l.ends_with(s))
}

/// Lowercased subject with runs of whitespace collapsed.
fn norm_subject(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn is_auto_reply_subject(subject: &str, msg: &ParsedMessage) -> bool {
    let s = norm_subject(subject);
    // Outlook/Exchange and common webmail auto-replies, localized; each is
    // followed by the original subject. Anchored: "Re: Automatic reply: ..."
    // is a person answering a robot.
    const PREFIXES: &[&str] = &[
        "automatic reply:",
        "auto reply:",
        "auto-reply:",
        "autoreply:",
        "auto response:",
        "auto-response:",
        "autoresponse:",
        "out of office:",
        "out of office reply:",
        "out of office autoreply:",
        "automatische antwort:",
        "réponse automatique :",
        "réponse automatique:",
        "respuesta automática:",
        "risposta automatica:",
        "automatyczna odpowiedź:",
        "resposta automática:",
        "automatisch antwoord:",
        "automatisk svar:",
        "autosvar:",
        "automaattinen vastaus:",
        "automatikus válasz:",
        "automatická odpověď:",
        "автоматический ответ:",
        "自动回复:",
        "自動回覆:",
        "自動応答:",
    ];
    if PREFIXES.iter().any(|p| s.starts_with(p)) {
        return true;
    }
    // Lotus Notes: "AUTO: Jane Doe is out of the office (returning 05/01/2010)".
    if s.starts_with("auto:") && s.contains("out of the office") {
        return true;
    }
    // Outlook read receipts: "Read: <subject>" / "Not read: <subject>". Only
    // with a receipt's body (TNEF, or Outlook's "was read on" text), since
    // "Read: ..." alone could be a person's subject.
    if s.starts_with("read:") || s.starts_with("not read:") {
        let tnef = msg.content_type.as_deref() == Some("application/ms-tnef");
        let receipt_text = msg
            .text_body
            .as_deref()
            .is_some_and(|b| b.len() < 4096 && b.contains("was read on"));
        return tnef || receipt_text;
    }
    false
}

fn is_bounce_subject(subject: &str) -> bool {
    let s = norm_subject(subject);
    // Whole-subject forms of MTAs that put nothing else in the subject.
    const EXACT: &[&str] = &[
        "failure notice",
        "mail could not be delivered",
        "delivery failure notification",
        "undeliverable mail",
        "returned mail",
    ];
    // Prefixes of MTA subjects; the rest is a reason or the original subject.
    const PREFIXES: &[&str] = &[
        "undelivered mail returned to sender",
        "delivery status notification (",
        "mail delivery failed: returning message to sender",
        "mail delivery failed :",
        "returned mail:",
        "returned mail -",
        "undeliverable:",
        "undeliverable message",
        "delivery failure:",
        "delivery notification: delivery has failed",
        "message status - undeliverable",
        "warning: could not send message for past",
        "delayed mail (still being retried)",
        "mail system error - returned mail",
        "nondeliverable mail",
        "non-delivery notification:",
        "unzustellbar:",
        "nicht zustellbar:",
        "non recapitabile:",
        "non remis :",
        "non remis:",
        "onbestelbaar:",
        "no se puede entregar:",
    ];
    if EXACT.contains(&s.as_str()) || PREFIXES.iter().any(|p| s.starts_with(p)) {
        return true;
    }
    // Exim delay warnings: "Warning: message 1Abc-000-XY delayed 24 hours".
    if s.starts_with("warning: message ") && s.contains(" delayed ") {
        return true;
    }
    // Hotmail/Outlook.com JMRP complaints: "complaint about message from <IP>".
    if let Some(rest) = s.strip_prefix("complaint about message from ") {
        return rest.parse::<std::net::IpAddr>().is_ok();
    }
    false
}

/// Where an acknowledgement may go: Reply-To, else From, whichever is first
/// to be a usable addr-spec (exactly one `@`, non-empty local and domain
/// parts, no whitespace, control or bracket characters). Lowercased.
pub fn reply_address(msg: &ParsedMessage) -> Option<String> {
    [&msg.reply_to, &msg.from]
        .into_iter()
        .flatten()
        .map(|a| a.email.to_lowercase())
        .find(|e| is_usable_addr_spec(e))
}

fn is_usable_addr_spec(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && email.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !crate::mail::compose::invisible(c)
                && !"<>()[],;:\\\"".contains(c)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::message::{parse, Address};

    fn rule(raw: &str) -> Option<RobotRule> {
        robot_rule(&parse(raw.as_bytes()), &["security@project.example".into()])
    }

    #[test]
    fn a_plain_report_is_a_person() {
        assert_eq!(
            rule("From: Alice <alice@example.org>\nSubject: RCE in parser\n\nDetails\n"),
            None
        );
    }

    #[test]
    fn standard_markers() {
        let cases = [
            (
                "Auto-Submitted: auto-replied (vacation)\n",
                Some(RobotRule::AutoSubmitted),
            ),
            ("Auto-Submitted: no\n", None),
            ("Auto-Submitted: No (comment)\n", None),
            ("Precedence: bulk\n", Some(RobotRule::Precedence)),
            ("Precedence: Junk\n", Some(RobotRule::Precedence)),
            ("Precedence: first-class\n", None),
            (
                "List-Id: Dev <dev.lists.example>\n",
                Some(RobotRule::ListId),
            ),
            (
                "Mailing-List: contact dev-help@example; run by ezmlm\n",
                Some(RobotRule::ListHeaders),
            ),
            (
                "List-Unsubscribe: <mailto:u@example>\n",
                Some(RobotRule::ListUnsubscribe),
            ),
            ("Return-Path: <>\n", Some(RobotRule::NullReturnPath)),
            (
                "Return-Path: <MAILER-DAEMON@mx.example>\n",
                Some(RobotRule::NullReturnPath),
            ),
            ("Return-Path: <alice@example.org>\n", None),
            ("X-Autoreply: yes\n", Some(RobotRule::AutoReplyHeader)),
            (
                "X-Auto-Response-Suppress: All\n",
                Some(RobotRule::AutoReplyHeader),
            ),
            (
                "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n",
                Some(RobotRule::DeliveryReport),
            ),
        ];
        for (header, want) in cases {
            let raw = format!("From: alice@example.org\nSubject: hello\n{header}\nbody\n");
            assert_eq!(rule(&raw), want, "{header}");
        }
    }

    #[test]
    fn daemon_senders() {
        for from in [
            "MAILER-DAEMON@mx.example",
            "Mail Delivery System <mailer-daemon@mx.example>",
            "postmaster@example.org",
            "no-reply@sns.amazonaws.com",
            "noreply-dmarc@example.com",
            "DoNotReply@example.com",
            "bounces+123@mail.example",
            "dev-bounces@lists.example",
            "owner-dev@lists.example",
            "dev-request@lists.example",
            "<>",
            "\"Mail System\" <>",
        ] {
            let raw = format!("From: {from}\nSubject: hello\n\nbody\n");
            assert_eq!(rule(&raw), Some(RobotRule::DaemonSender), "{from}");
        }
        for from in [
            "alice@example.org",
            "replyguy@example.org",
            "bouncer@example.org",
        ] {
            let raw = format!("From: {from}\nSubject: hello\n\nbody\n");
            assert_eq!(rule(&raw), None, "{from}");
        }
    }

    #[test]
    fn no_reply_sender_with_a_person_in_reply_to_is_a_person() {
        let form =
            "From: Web Form <noreply@project.example>\nReply-To: Alice <alice@example.org>\n\
                    Subject: Vulnerability report\n\nbody\n";
        assert_eq!(rule(form), None);
        let robot = "From: no-reply@a.example\nReply-To: no-reply@b.example\nSubject: x\n\nbody\n";
        assert_eq!(rule(robot), Some(RobotRule::DaemonSender));
        let bounce =
            "From: MAILER-DAEMON@mx.example\nReply-To: alice@example.org\nSubject: x\n\nbody\n";
        assert_eq!(rule(bounce), Some(RobotRule::DaemonSender));
    }

    #[test]
    fn own_address_is_a_robot() {
        let raw = "From: Security Team <Security@Project.Example>\nSubject: Re: x\n\nbody\n";
        assert_eq!(rule(raw), Some(RobotRule::OwnAddress));
    }

    #[test]
    fn subjects_are_anchored() {
        let robots = [
            ("Automatic reply: Your report", RobotRule::AutoReplySubject),
            ("Auto-Reply: hi", RobotRule::AutoReplySubject),
            (
                "AUTO: Jane Doe is out of the office (returning 05/01/2010)",
                RobotRule::AutoReplySubject,
            ),
            (
                "Undelivered Mail Returned to Sender",
                RobotRule::BounceSubject,
            ),
            ("Undeliverable: RCE in parser", RobotRule::BounceSubject),
            (
                "Returned mail: see transcript for details",
                RobotRule::BounceSubject,
            ),
            (
                "Delivery Status Notification (Failure)",
                RobotRule::BounceSubject,
            ),
            (
                "complaint about message from 192.0.2.1",
                RobotRule::BounceSubject,
            ),
            (
                "Warning: message 1AbCdE-0001 delayed 24 hours",
                RobotRule::BounceSubject,
            ),
        ];
        for (subject, want) in robots {
            let raw = format!("From: alice@example.org\nSubject: {subject}\n\nbody\n");
            assert_eq!(rule(&raw), Some(want), "{subject}");
        }
        for subject in [
            "Fwd: Returned mail: see transcript for details",
            "Re: Automatic reply: Your report",
            "4000           Your Vacation Winning !             35001",
            "Delivery Status Notification parsing overflow",
            "Undeliverable mail crashes the queue manager",
            "complaint about message from our CEO",
            "Read: my analysis of CVE-2024-0001",
            "Out of office replies leak the internal hostname",
        ] {
            let raw = format!("From: alice@example.org\nSubject: {subject}\n\nbody\n");
            assert_eq!(rule(&raw), None, "{subject}");
        }
    }

    #[test]
    fn read_receipt_needs_a_receipt_body() {
        let raw =
            "From: a@example.org\nSubject: Read: invitation\nContent-Type: application/ms-tnef\n\
                   Content-Transfer-Encoding: base64\n\neJ8+IgAA\n";
        assert_eq!(rule(raw), Some(RobotRule::AutoReplySubject));
        let raw = "From: a@example.org\nSubject: Read: invitation\n\nYour message\n\n  To: b\n\nwas read on 1 Jan.\n";
        assert_eq!(rule(raw), Some(RobotRule::AutoReplySubject));
    }

    #[test]
    fn rule_names_are_unique_kebab_case() {
        let names: Vec<_> = RobotRule::ALL.iter().map(RobotRule::as_str).collect();
        for n in &names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{n}");
            assert_eq!(names.iter().filter(|m| *m == n).count(), 1, "{n}");
        }
    }

    fn with(reply_to: Option<&str>, from: Option<&str>) -> ParsedMessage {
        let addr = |e: &str| Address {
            name: None,
            email: e.to_string(),
        };
        ParsedMessage {
            reply_to: reply_to.map(addr),
            from: from.map(addr),
            ..ParsedMessage::default()
        }
    }

    #[test]
    fn reply_address_prefers_usable_reply_to() {
        assert_eq!(
            reply_address(&with(Some("r@example.org"), Some("f@example.org"))).as_deref(),
            Some("r@example.org")
        );
        assert_eq!(
            reply_address(&with(Some("not an address"), Some("f@example.org"))).as_deref(),
            Some("f@example.org")
        );
        assert_eq!(reply_address(&with(None, None)), None);
        for bad in [
            "",
            "@example.org",
            "a@",
            "a@@b",
            "a@b@c",
            "a b@c.d",
            "a@c.d\n",
            "a@.c",
            "a@c.",
            "a@c..d",
            "a<b@c.d",
            "undisclosed-recipients",
        ] {
            assert_eq!(reply_address(&with(None, Some(bad))), None, "{bad:?}");
        }
        assert_eq!(
            reply_address(&parse(b"From: Alice <Alice@Example.org>\n\nx")).as_deref(),
            Some("alice@example.org")
        );
    }
}
