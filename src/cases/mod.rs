//! Cases: what an incoming message does, recorded in one transaction.
//!
//! [`ingest`] is the heart of secintake. Given one message, already read
//! by [`read`] outside the transaction, and an open transaction it decides (new report, follow-up of a case, robot, duplicate
//! or too old to answer) and records everything that follows from that
//! decision: the raw bytes, the case, its audit events and the
//! acknowledgement in the outbox. The caller commits together with the
//! folder's new last UID, so the message counts as processed exactly when
//! its effects exist.
//!
//! The steps, one file each: [`dedup`] (a second delivery?), [`thread`]
//! (which case?), [`open`] (a new case), [`acks`] (its acknowledgement),
//! [`promote`] (a case from a stored message). They import one another
//! downward only; this file runs them in order.

mod acks;
mod dedup;
mod open;
mod promote;
mod recovered;
mod thread;

use crate::context::{CaseError, Context};
use crate::mail::auth;
use crate::mail::classify;
use crate::mail::compose;
use crate::mail::message::{self, Decryption, ParsedMessage};
use crate::model::Direction;
use crate::model::MessageKind;
use crate::openpgp::SignatureCheck;
use crate::store::{self, NewMessage, StoreError};
use crate::workflow;
use chrono::{DateTime, Utc};
use dedup::{dedup_key, DedupKey};
use open::{open_case, Report};
use rusqlite::Connection;
use thread::{case_of, case_of_robot};

pub use acks::release_held;
pub use promote::promote;
pub use thread::embedded_message_ids;

/// One message as fetched from the mailbox.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub folder: &'a str,
    pub uidvalidity: u32,
    pub uid: u32,
    /// IMAP INTERNALDATE: when the server received it.
    pub internal_date: Option<DateTime<Utc>>,
    /// When the daemon fetched it.
    pub seen_at: DateTime<Utc>,
    /// Mail received before this is older than `intake.backfill` before
    /// the folder's first sync: stored, not answered. None: no limit.
    pub not_before: Option<DateTime<Utc>>,
    pub raw: &'a [u8],
    /// Size on the server (RFC822.SIZE); larger than `raw` when truncated.
    pub size: u64,
    /// Only the first bytes were fetched (a partial FETCH) because the
    /// message exceeds `limits.max_message_size`; it stays on the server.
    pub truncated: bool,
    /// Processing this UID killed the daemon twice (intake's poison
    /// guard): store it without handing it to the parser again.
    pub poisoned: bool,
    /// The server marks it handled by secintake ([`HANDLED_KEYWORD`]).
    pub handled_before: bool,
}

/// The IMAP keyword secintake sets on every message it has recorded, with
/// `imap.after`: a state file restored from an older backup then knows
/// which mail was handled already (issue 12).
pub const HANDLED_KEYWORD: &str = "$SecintakeDone";

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already stored (same Message-ID, or same bytes when it has none).
    Duplicate,
    NewCase {
        case_id: String,
        ack_queued: bool,
    },
    FollowUp {
        case_id: String,
    },
    Robot {
        rule: &'static str,
        case_id: Option<String>,
    },
    /// Older than the backfill window: stored, not answered, no case.
    Old,
    /// A handler's commands or note naming no case: stored, answered.
    HandlerWithoutCase,
    /// Marked handled on the server ([`HANDLED_KEYWORD`]) but unknown to
    /// this state file (restored from an older backup): recorded, nothing
    /// done again.
    Recovered {
        case_id: String,
    },
}

impl Outcome {
    /// Whether the message may have queued mail or changed a case (new
    /// cases and follow-ups do: acknowledgements, notifications, relays,
    /// command replies).
    pub fn changed_cases(&self) -> bool {
        matches!(
            self,
            Outcome::NewCase { .. } | Outcome::FollowUp { .. } | Outcome::HandlerWithoutCase
        )
    }
}

/// What the handlers should know about how a message was read, recorded
/// as an event on the case it opens or joins.
fn intake_notes(
    ctx: &Context<'_>,
    m: &Incoming<'_>,
    p: &ParsedMessage,
    reused_id: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let main = &ctx.cfg.imap.folder;
    if !crate::config::same_folder(m.folder, main) {
        notes.push(format!(
            "found in the folder {:?}, not {main:?}: the provider may have filed it as spam",
            m.folder
        ));
    }
    if m.poisoned {
        notes.push(
            "processing this message stopped the daemon twice; it was stored raw without \
             being read again (see the attached original)"
                .to_string(),
        );
    }
    if p.too_complex {
        notes.push(format!(
            "the message declares more than {} MIME parts; only its header was read",
            message::MAX_MIME_PARTS
        ));
    }
    match &p.decryption {
        Some(Decryption::Failed(why)) => notes.push(format!(
            "the message is encrypted and secintake could not decrypt it: {why}"
        )),
        Some(Decryption::NoKey) => notes.push(
            "the message is encrypted and secintake holds no team key ([pgp] secret_key_file)"
                .to_string(),
        ),
        Some(Decryption::Decrypted { .. }) | None => {}
    }
    let issuer = |i: &Option<String>| i.clone().unwrap_or_else(|| "not named".into());
    match p.signature() {
        Some(SignatureCheck::Valid { fingerprint }) => {
            notes.push(format!("OpenPGP signature: valid, by key {fingerprint}"))
        }
        Some(SignatureCheck::Invalid { issuer: i }) => notes.push(format!(
            "OpenPGP signature: INVALID (key {}): the signed text was changed, or the \
             signature forged",
            issuer(i)
        )),
        Some(SignatureCheck::UnknownKey { issuer: i }) => notes.push(format!(
            "OpenPGP signature by key {}, which secintake does not hold: not checked",
            issuer(i)
        )),
        Some(SignatureCheck::Unsigned) | None => {}
    }
    if reused_id {
        notes.push(
            "an earlier, different message carried the same Message-ID; this one was \
             treated as new"
                .to_string(),
        );
    }
    notes
}

/// Reads a fetched message: the parse and the decryption, the costly
/// part of intake that needs no database, so intake runs it before it takes the store and
/// opens the write transaction. A poisoned message is not parsed again.
pub fn read(raw: &[u8], poisoned: bool, cfg: &crate::config::Config) -> ParsedMessage {
    crate::mail::decrypt::read(raw, !poisoned, cfg)
}

/// Records one incoming message, read by [`read`], and its effects. Runs
/// inside the caller's transaction; the caller commits.
pub fn ingest(
    conn: &Connection,
    ctx: &Context<'_>,
    m: &Incoming<'_>,
    p: &ParsedMessage,
) -> Result<Outcome, CaseError> {
    let Some(DedupKey { key, reused }) = dedup_key(conn, p)? else {
        return Ok(Outcome::Duplicate);
    };
    let notes = intake_notes(ctx, m, p, reused);
    let own = ctx.own_addresses();
    let rule = classify::robot_rule(p, &own);
    let mut rec = new_record(m, p, key);

    if let Some(rule) = rule {
        return robot(conn, ctx, m, p, rec, rule);
    }
    let (case_id, refers_to) = case_of(conn, ctx, p)?;
    if m.handled_before {
        return recovered::recovered(conn, ctx, m, p, rec, case_id);
    }
    if let Some(c) = case_id {
        return follow_up(conn, ctx, m, p, rec, c, &notes);
    }

    // A handler's commands or note that names no case: say so instead of
    // opening a case for it.
    if let auth::Sender::Handler { email, .. } = auth::sender(ctx.cfg, p) {
        let body = p.text_body.as_deref().unwrap_or("");
        let to_comment = workflow::to_comment_address(ctx, p);
        if to_comment || !crate::commands::parse(body).commands.is_empty() {
            rec.kind = MessageKind::Handler;
            store::insert_message(conn, &rec)?;
            workflow::no_case_reply(conn, ctx, &email, p)?;
            return Ok(Outcome::HandlerWithoutCase);
        }
    }

    // Deadlines count from receipt (the server's INTERNALDATE), never from
    // a time in the future.
    let received = m.internal_date.unwrap_or(m.seen_at).min(m.seen_at);
    if m.not_before.is_some_and(|nb| received < nb) {
        rec.kind = MessageKind::Old;
        store::insert_message(conn, &rec)?;
        return Ok(Outcome::Old);
    }

    rec.kind = MessageKind::Report;
    let (case_id, ack_queued) = open_case(
        conn,
        ctx,
        Report::New(Box::new(rec)),
        p,
        received,
        "secintake",
    )?;
    add_notes(conn, ctx, &case_id, &notes, p.message_id.as_deref())?;
    if let Some(other) = refers_to {
        let from = p.from.as_ref().map(|a| a.email.as_str());
        store::add_event(
            conn,
            &case_id,
            ctx.now,
            "secintake",
            "refers to another case",
            Some(&format!(
                "this mail threads into {other}, but its sender ({}) is neither that case's \
                 reporter nor a handler, so it opened a case of its own",
                from.unwrap_or("no address")
            )),
            p.message_id.as_deref(),
        )?;
    }
    Ok(Outcome::NewCase {
        case_id,
        ack_queued,
    })
}

/// A robot's mail: stored (attached to the case it is about, if any),
/// never answered.
fn robot(
    conn: &Connection,
    ctx: &Context<'_>,
    m: &Incoming<'_>,
    p: &ParsedMessage,
    mut rec: NewMessage<'_>,
    rule: classify::RobotRule,
) -> Result<Outcome, CaseError> {
    let case_id = case_of_robot(conn, p, m.raw)?;
    rec.kind = MessageKind::Robot;
    rec.robot_rule = Some(rule.as_str());
    rec.case_id = case_id.clone();
    store::insert_message(conn, &rec)?;
    if let Some(c) = &case_id {
        store::add_event(
            conn,
            c,
            ctx.now,
            "secintake",
            "auto-generated mail attached",
            Some(&format!("rule {}; not answered", rule.as_str())),
            p.message_id.as_deref(),
        )?;
    }
    Ok(Outcome::Robot {
        rule: rule.as_str(),
        case_id,
    })
}

/// A participant's mail in case `c`: stored with it, then a handler's
/// acts ([`workflow::handler_mail`]), a forged one is only recorded, and
/// anyone else's is forwarded to the handlers.
fn follow_up(
    conn: &Connection,
    ctx: &Context<'_>,
    m: &Incoming<'_>,
    p: &ParsedMessage,
    mut rec: NewMessage<'_>,
    c: String,
    notes: &[String],
) -> Result<Outcome, CaseError> {
    rec.kind = MessageKind::FollowUp;
    rec.case_id = Some(c.clone());
    store::insert_message(conn, &rec)?;
    add_notes(conn, ctx, &c, notes, p.message_id.as_deref())?;
    let who = p
        .from
        .as_ref()
        .map(|a| a.email.as_str())
        .unwrap_or("unknown sender");
    store::add_event(
        conn,
        &c,
        ctx.now,
        who,
        "follow-up received",
        None,
        p.message_id.as_deref(),
    )?;
    if let Some(case) = store::case(conn, &c)? {
        if p.from.as_ref().map(|a| &a.email) == case.reporter.as_ref() {
            workflow::keys::adopt(conn, ctx, &case, p, who, false)?;
        }
        match auth::sender(ctx.cfg, p) {
            auth::Sender::Handler { email, .. } => {
                let to_comment = workflow::to_comment_address(ctx, p);
                workflow::handler_mail(conn, ctx, &c, p, m.raw, &email, to_comment)?;
            }
            auth::Sender::ForgedHandler { email, why } => {
                workflow::forged(conn, ctx, &case, &email, &why, p.message_id.as_deref())?;
            }
            auth::Sender::Other => workflow::forward_follow_up(conn, ctx, &case, p, m.raw)?,
        }
    }
    Ok(Outcome::FollowUp { case_id: c })
}

fn add_notes(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: &str,
    notes: &[String],
    mid: Option<&str>,
) -> Result<(), StoreError> {
    for note in notes {
        store::add_event(
            conn,
            case_id,
            ctx.now,
            "secintake",
            "intake note",
            Some(note),
            mid,
        )?;
    }
    Ok(())
}

fn new_record<'a>(m: &Incoming<'a>, p: &ParsedMessage, key: String) -> NewMessage<'a> {
    let join = |v: &[String]| (!v.is_empty()).then(|| v.join(" "));
    let to: Vec<String> =
        p.to.iter()
            .chain(p.cc.iter())
            .map(|a| a.email.clone())
            .collect();
    NewMessage {
        direction: Direction::In,
        dedup_key: key,
        folder: Some(m.folder),
        uidvalidity: Some(m.uidvalidity),
        uid: Some(m.uid),
        message_id: p.message_id.clone(),
        case_id: None,
        kind: MessageKind::Report,
        robot_rule: None,
        from_addr: p.from.as_ref().map(|a| a.email.clone()),
        to_addrs: join(&to),
        subject: p.subject.as_deref().map(compose::clean_subject),
        in_reply_to: join(&p.in_reply_to),
        refs: join(&p.references),
        parsed_ok: p.parsed_ok,
        encrypted: p.encrypted,
        size: m.size,
        truncated: m.truncated,
        at: m.seen_at,
        raw: m.raw,
        content_key: Some(p.content_key.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_ts;
    use crate::config::Config;
    use crate::templates::Templates;

    fn config() -> Config {
        Config::example()
    }

    fn incoming<'a>(
        raw: &'a [u8],
        uid: u32,
        received: &str,
        not_before: Option<&str>,
    ) -> Incoming<'a> {
        Incoming {
            folder: "INBOX",
            uidvalidity: 1,
            uid,
            internal_date: parse_ts(received),
            seen_at: parse_ts("2026-03-01T12:00:00Z").unwrap(),
            not_before: not_before.and_then(parse_ts),
            raw,
            size: raw.len() as u64,
            truncated: false,
            poisoned: false,
            handled_before: false,
        }
    }

    /// Reads and records `m`, as intake does.
    fn record(tx: &Connection, ctx: &Context<'_>, m: &Incoming<'_>) -> Result<Outcome, CaseError> {
        ingest(tx, ctx, m, &read(m.raw, m.poisoned, ctx.cfg))
    }

    #[test]
    fn ingest_decides_report_duplicate_follow_up_robot_and_old() {
        let cfg = config();
        let templates = Templates::builtin();
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::store::Store::open(&dir.path().join("s.db")).unwrap();
        let ctx = Context {
            cfg: &cfg,
            templates: &templates,
            now: parse_ts("2026-03-01T12:00:00Z").unwrap(),
        };
        let tx = store.transaction().unwrap();
        let report = b"From: rep@example.net\r\nTo: security@example.org\r\nSubject: XSS\r\nMessage-ID: <r1@example.net>\r\n\r\nbody\r\n";
        let o = record(
            &tx,
            &ctx,
            &incoming(report, 1, "2026-03-01T11:00:00Z", None),
        )
        .unwrap();
        let Outcome::NewCase {
            case_id,
            ack_queued: true,
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!(case_id, "SEC-2026-0001");
        // Deadlines count from receipt (11:00), not from processing (12:00).
        let case = store::case(&tx, &case_id).unwrap().unwrap();
        assert_eq!(case.received_at, "2026-03-01T11:00:00.000Z");
        assert_eq!(case.ack_due_at, "2026-03-03T11:00:00.000Z");
        // Same Message-ID again: nothing new.
        let o = record(
            &tx,
            &ctx,
            &incoming(report, 2, "2026-03-01T11:00:00Z", None),
        )
        .unwrap();
        assert_eq!(o, Outcome::Duplicate);
        // A reply threading by In-Reply-To, no tag in the subject.
        let reply = b"From: rep@example.net\r\nSubject: more\r\nIn-Reply-To: <r1@example.net>\r\nMessage-ID: <r2@example.net>\r\n\r\nx\r\n";
        let o = record(&tx, &ctx, &incoming(reply, 3, "2026-03-01T11:30:00Z", None)).unwrap();
        assert_eq!(
            o,
            Outcome::FollowUp {
                case_id: case_id.clone()
            }
        );
        // The case tag from a stranger opens a new case.
        let stranger = b"From: x@example.net\r\nSubject: [SEC-2026-0001] hi\r\nMessage-ID: <s1@example.net>\r\n\r\nx\r\n";
        let o = record(
            &tx,
            &ctx,
            &incoming(stranger, 4, "2026-03-01T11:40:00Z", None),
        )
        .unwrap();
        assert!(matches!(o, Outcome::NewCase { .. }), "{o:?}");
        // A robot is stored, opens nothing, answers nothing.
        let ooo = b"From: ooo@example.net\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\nMessage-ID: <o1@example.net>\r\n\r\nx\r\n";
        let o = record(&tx, &ctx, &incoming(ooo, 5, "2026-03-01T11:50:00Z", None)).unwrap();
        assert_eq!(
            o,
            Outcome::Robot {
                rule: "auto-submitted",
                case_id: None
            }
        );
        // Received before the backfill limit: old; after it: a report, even
        // when it waited out a long outage (the limit is from first sync).
        let old =
            b"From: a@example.net\r\nSubject: old\r\nMessage-ID: <a1@example.net>\r\n\r\nx\r\n";
        let nb = Some("2026-02-20T00:00:00Z");
        let o = record(&tx, &ctx, &incoming(old, 6, "2026-01-01T00:00:00Z", nb)).unwrap();
        assert_eq!(o, Outcome::Old);
        let late =
            b"From: b@example.net\r\nSubject: late\r\nMessage-ID: <b1@example.net>\r\n\r\nx\r\n";
        let o = record(&tx, &ctx, &incoming(late, 7, "2026-02-21T00:00:00Z", nb)).unwrap();
        assert!(matches!(o, Outcome::NewCase { .. }), "{o:?}");
    }
}
