//! Cases: what an incoming message does, recorded in one transaction.
//!
//! [`ingest`] is the heart of secintake. Given one raw message and an open
//! transaction it decides (new report, follow-up of a case, robot, duplicate
//! or too old to answer) and records everything that follows from that
//! decision: the raw bytes, the case, its audit events and the
//! acknowledgement in the outbox. The caller commits together with the
//! folder's new last UID, so the message counts as processed exactly when
//! its effects exist.

use crate::auth;
use crate::classify;
use crate::clock::{add, fmt_ts};
use crate::compose;
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::message::{self, ParsedMessage};
use crate::model::{format_case_id, subject_tags, Kind, State};
use crate::outgoing::{outside, queue_outgoing, store_outgoing, LetterError};
use crate::store::{self, CaseRow, NewMessage, StoreError};
use crate::workflow;
use chrono::{DateTime, Datelike, Utc};
use rusqlite::Connection;

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
}

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

/// The key to store `p` under, or `None` when it is a second delivery of
/// a stored message. A Message-ID alone does not make a duplicate: anyone
/// can send a message first under the Message-ID a victim's report will
/// carry. A known Message-ID with other content (trace fields aside) is a
/// new message, stored under a key that adds its content; `reused` says so.
fn dedup_key(conn: &Connection, p: &ParsedMessage) -> Result<Option<DedupKey>, StoreError> {
    let Some(mid) = &p.message_id else {
        let key = format!("sha256:{}", p.content_hash);
        return Ok((!store::message_seen(conn, &key)?).then_some(DedupKey { key, reused: false }));
    };
    let key = format!("mid:{mid}");
    match store::content_key_of(conn, &key)? {
        None => Ok(Some(DedupKey { key, reused: false })),
        // Stored before content keys existed: the old rule, a duplicate.
        Some(None) => Ok(None),
        Some(Some(k)) if k == p.content_key => Ok(None),
        Some(Some(_)) => {
            let key = format!("mid:{mid}#{}", p.content_key);
            Ok((!store::message_seen(conn, &key)?).then_some(DedupKey { key, reused: true }))
        }
    }
}

struct DedupKey {
    key: String,
    /// Another, different message was stored under the same Message-ID.
    reused: bool,
}

/// What the handlers should know about how a message was read, recorded
/// as an event on the case it opens or joins.
fn intake_notes(m: &Incoming<'_>, p: &ParsedMessage, reused_id: bool) -> Vec<String> {
    let mut notes = Vec::new();
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
    if reused_id {
        notes.push(
            "an earlier, different message carried the same Message-ID; this one was \
             treated as new"
                .to_string(),
        );
    }
    notes
}

/// Message-IDs quoted inside a message's body: a bounce returns our
/// acknowledgement's headers (message/rfc822 or text/rfc822-headers) and
/// that is how it finds its case.
pub fn embedded_message_ids(raw: &[u8]) -> Vec<String> {
    const SCAN_LIMIT: usize = 1 << 20;
    let raw = &raw[..raw.len().min(SCAN_LIMIT)];
    let body_start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    let body = String::from_utf8_lossy(&raw[body_start..]);
    let mut out = Vec::new();
    for line in body.lines() {
        let l = line.trim_start_matches('>').trim_start();
        // `get`, not slicing: byte 11 may fall inside a multi-byte
        // character (a Japanese bounce crashed intake this way).
        if l.get(..11)
            .is_some_and(|h| h.eq_ignore_ascii_case("message-id:"))
        {
            out.extend(message::message_id_list(&l[11..]));
        }
        if out.len() >= 20 {
            break;
        }
    }
    out
}

/// The case a message threads into by its headers (In-Reply-To, then
/// References, newest first).
fn thread_by_headers(conn: &Connection, p: &ParsedMessage) -> Result<Option<String>, StoreError> {
    for mid in p.in_reply_to.iter().chain(p.references.iter().rev()) {
        if let Some(c) = store::case_of_message_id(conn, mid)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Records one incoming message and its effects. Runs inside the caller's
/// transaction; the caller commits.
pub fn ingest(
    conn: &Connection,
    ctx: &Context<'_>,
    m: &Incoming<'_>,
) -> Result<Outcome, CaseError> {
    let p = if m.poisoned {
        message::unparsed(m.raw)
    } else {
        message::parse(m.raw)
    };
    let Some(DedupKey { key, reused }) = dedup_key(conn, &p)? else {
        return Ok(Outcome::Duplicate);
    };
    let notes = intake_notes(m, &p, reused);
    let own = ctx.own_addresses();
    let rule = classify::robot_rule(&p, &own);
    let mut rec = new_record(m, &p, key);

    if let Some(rule) = rule {
        let mut case_id = thread_by_headers(conn, &p)?;
        if case_id.is_none() {
            for mid in embedded_message_ids(m.raw) {
                if let Some(c) = store::case_of_message_id(conn, &mid)? {
                    case_id = Some(c);
                    break;
                }
            }
        }
        rec.kind = "robot";
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
        return Ok(Outcome::Robot {
            rule: rule.as_str(),
            case_id,
        });
    }

    // A case belongs to its participants: the reporter and the handlers
    // (a handler's address is checked for forgery below). Anyone else who
    // threads into a case, by Message-ID or by its tag, opens a new case
    // that names the one referred to, and never joins it.
    let from = p.from.as_ref().map(|a| a.email.as_str());
    let handler_address = from.is_some_and(|f| ctx.cfg.handlers.iter().any(|h| h.email == f));
    let participant = |c: &str| -> Result<bool, StoreError> {
        Ok(handler_address || from.map_or(Ok(false), |f| store::takes_part(conn, c, f))?)
    };
    let mut refers_to = None;
    let mut case_id = thread_by_headers(conn, &p)?;
    if let Some(c) = &case_id {
        if !participant(c)? {
            refers_to = case_id.take();
        }
    }
    if case_id.is_none() {
        for tag in p.subject.as_deref().map(subject_tags).unwrap_or_default() {
            if store::case(conn, &tag)?.is_none() {
                continue;
            }
            if participant(&tag)? {
                case_id = Some(tag);
                break;
            }
            refers_to.get_or_insert(tag);
        }
    }
    if let Some(c) = case_id {
        rec.kind = "follow-up";
        rec.case_id = Some(c.clone());
        store::insert_message(conn, &rec)?;
        add_notes(conn, ctx, &c, &notes, p.message_id.as_deref())?;
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
            match auth::sender(ctx.cfg, &p) {
                auth::Sender::Handler { email, .. } => {
                    let to_comment = workflow::to_comment_address(ctx, &p);
                    workflow::handler_mail(conn, ctx, &c, &p, m.raw, &email, to_comment)?;
                }
                auth::Sender::ForgedHandler { email, why } => {
                    workflow::forged(conn, ctx, &case, &email, &why, p.message_id.as_deref())?;
                }
                auth::Sender::Other => workflow::forward_follow_up(conn, ctx, &case, &p, m.raw)?,
            }
        }
        return Ok(Outcome::FollowUp { case_id: c });
    }

    // A handler's commands or note that names no case: say so instead of
    // opening a case for it.
    if let auth::Sender::Handler { email, .. } = auth::sender(ctx.cfg, &p) {
        let body = p.text_body.as_deref().unwrap_or("");
        let to_comment = workflow::to_comment_address(ctx, &p);
        if to_comment || !crate::commands::parse(body).commands.is_empty() {
            rec.kind = "handler";
            store::insert_message(conn, &rec)?;
            workflow::no_case_reply(conn, ctx, &email, &p)?;
            return Ok(Outcome::HandlerWithoutCase);
        }
    }

    // Deadlines count from receipt (the server's INTERNALDATE), never from
    // a time in the future.
    let received = m.internal_date.unwrap_or(m.seen_at).min(m.seen_at);
    if m.not_before.is_some_and(|nb| received < nb) {
        rec.kind = "old";
        store::insert_message(conn, &rec)?;
        return Ok(Outcome::Old);
    }

    rec.kind = "report";
    let (case_id, ack_queued) = open_case(
        conn,
        ctx,
        Report::New(Box::new(rec)),
        &p,
        received,
        "secintake",
    )?;
    add_notes(conn, ctx, &case_id, &notes, p.message_id.as_deref())?;
    if let Some(other) = refers_to {
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
        direction: "in",
        dedup_key: key,
        folder: Some(m.folder),
        uidvalidity: Some(m.uidvalidity),
        uid: Some(m.uid),
        message_id: p.message_id.clone(),
        case_id: None,
        kind: "report",
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

/// The message a case is opened for.
enum Report<'a> {
    /// Not stored yet: stored with the case's id already set. Updating a
    /// stored row later makes SQLite read and rewrite the whole row, raw
    /// bytes included: two more copies of a 27 MiB report at the peak.
    New(Box<NewMessage<'a>>),
    /// Already stored, by id (`mail promote`).
    Stored(i64),
}

/// Opens a case for `report`, queues its acknowledgement and promises the
/// handlers' notification. Returns the case id and whether an
/// acknowledgement was queued.
fn open_case(
    conn: &Connection,
    ctx: &Context<'_>,
    report: Report<'_>,
    p: &ParsedMessage,
    received: DateTime<Utc>,
    actor: &str,
) -> Result<(String, bool), CaseError> {
    let (case_id, msg_id, acked) = open_and_acknowledge(conn, ctx, report, p, received, actor)?;
    if !ctx.cfg.handlers.is_empty() {
        // Built after this commit (workflow::build_pending_notifications):
        // intake records a backlog faster without composing a second mail
        // per report, and the promise is as durable as the case.
        store::add_pending_notification(conn, &case_id, msg_id)?;
    }
    Ok((case_id, acked))
}

fn open_and_acknowledge(
    conn: &Connection,
    ctx: &Context<'_>,
    report: Report<'_>,
    p: &ParsedMessage,
    received: DateTime<Utc>,
    actor: &str,
) -> Result<(String, i64, bool), CaseError> {
    let now = ctx.now;
    let seq = store::next_case_seq(conn, now.year())?;
    let case_id = format_case_id(now.year(), seq);
    // Never answer ourselves: a Reply-To (or From) naming the mailbox, the
    // comment address, the announce list or a handler would turn the
    // acknowledgement, and every later relay, against the project.
    let mut reply = classify::reply_address(p);
    let refused = reply
        .as_deref()
        .and_then(|r| ctx.project_address(r).map(|what| (r.to_string(), what)));
    if refused.is_some() {
        reply = None;
    }
    let ack_due = add(received, ctx.cfg.sla.acknowledge);
    let respond_due = add(received, ctx.cfg.sla.respond);
    store::insert_case(
        conn,
        &CaseRow {
            id: case_id.clone(),
            state: State::New,
            reporter: reply.clone(),
            subject: p.subject.as_deref().map(compose::clean_subject),
            received_at: fmt_ts(received),
            ack_due_at: fmt_ts(ack_due),
            respond_due_at: fmt_ts(respond_due),
            acknowledged_at: None,
            responded_at: None,
            unparsed: !p.parsed_ok,
            primary_handler: workflow::next_primary(conn, ctx)?,
            severity: None,
            affected: None,
            fixed_in: None,
            cve: None,
            duplicate_of: None,
            thread_root: Some(compose::new_message_id(
                "case",
                Some(&case_id),
                &ctx.cfg.mailbox.address,
            )),
        },
    )?;
    let msg_id = match report {
        Report::New(mut rec) => {
            rec.case_id = Some(case_id.clone());
            store::insert_message(conn, &rec)?
        }
        Report::Stored(id) => {
            store::set_message_case(conn, id, &case_id)?;
            id
        }
    };
    let sla = &ctx.cfg.sla;
    deadlines::set(conn, sla, &case_id, Kind::Acknowledge, ack_due, now)?;
    deadlines::set(conn, sla, &case_id, Kind::Respond, respond_due, now)?;
    let mid = p.message_id.as_deref();
    let opened_detail = if p.parsed_ok {
        None
    } else {
        Some("the message could not be parsed; its raw bytes are stored")
    };
    store::add_event(
        conn,
        &case_id,
        now,
        actor,
        "case opened",
        opened_detail,
        mid,
    )?;

    let Some(reply) = reply else {
        let why = match refused {
            Some((addr, what)) => format!(
                "the report asks for answers at {addr}, {what}: nothing is sent there, and \
                 the case has no reporter address"
            ),
            None => "no usable reply address".to_string(),
        };
        not_acknowledged(conn, &case_id, now, &why, mid)?;
        return Ok((case_id, msg_id, false));
    };
    let limit = ctx.cfg.limits.acks_per_sender_per_day;
    let since = now - chrono::Duration::days(1);
    let key = crate::model::mailbox_key(&reply);
    if store::acks_to_since(conn, &key, since)? >= limit {
        let why = format!(
            "{reply} already got {limit} acknowledgements in the last 24 hours \
             (limits.acks_per_sender_per_day)"
        );
        not_acknowledged(conn, &case_id, now, &why, mid)?;
        return Ok((case_id, msg_id, false));
    }
    let ack = match outside::acknowledgement(ctx, &case_id, p, &reply, respond_due) {
        Ok(ack) => ack,
        // Never let one bad message (or template) stop intake: the case is
        // recorded, the reason is on it, the handlers still get notified.
        Err(e) => {
            let why = match e {
                LetterError::Compose(e) => e.to_string(),
                LetterError::Template(e) => {
                    tracing::error!(case = %case_id, error = %e, "acknowledgement template failed");
                    e.to_string()
                }
            };
            not_acknowledged(conn, &case_id, now, &why, mid)?;
            return Ok((case_id, msg_id, false));
        }
    };
    if let Some(why) = hold_reason(conn, ctx, p)? {
        let message = store_outgoing(conn, ctx, &ack)?;
        let held = store::HeldAck {
            case_id: case_id.clone(),
            message,
            recipient: reply.clone(),
            reason: why.clone(),
            held_at: fmt_ts(now),
        };
        store::hold_ack(conn, &held, &key)?;
        store::add_event(
            conn,
            &case_id,
            now,
            "secintake",
            "acknowledgement held",
            Some(&format!(
                "{why}; `secintake mail release {case_id}` sends it to {reply}"
            )),
            mid,
        )?;
        workflow::acks_held_alert(conn, ctx, &case_id, &why)?;
        return Ok((case_id, msg_id, false));
    }
    queue_outgoing(conn, ctx, &ack)?;
    deadlines::set(
        conn,
        sla,
        &case_id,
        Kind::AckQueued,
        add(now, sla.ack_alert_after),
        now,
    )?;
    store::add_event(
        conn,
        &case_id,
        now,
        "secintake",
        "acknowledgement queued",
        Some(&format!("to {reply}, Message-ID <{}>", ack.out.message_id)),
        mid,
    )?;
    Ok((case_id, msg_id, true))
}

/// Why an acknowledgement must be held rather than sent, if it must:
/// the sender is not verified while `limits.ack_only_if = "dmarc-pass"`,
/// or `limits.acks_per_hour` acknowledgements went out in the last hour
/// (300 spoofed reports in 9 s made 300 acknowledgements to 300 victims).
fn hold_reason(
    conn: &Connection,
    ctx: &Context<'_>,
    p: &ParsedMessage,
) -> Result<Option<String>, StoreError> {
    let limits = &ctx.cfg.limits;
    if limits.ack_only_if_dmarc_pass && !auth::dmarc_pass(&ctx.cfg.handler_auth, p) {
        return Ok(Some(
            "the receiving server did not verify the sender's From by DMARC \
             (limits.ack_only_if = \"dmarc-pass\")"
                .into(),
        ));
    }
    if store::acks_last_hour(conn, ctx.now)? >= limits.acks_per_hour {
        return Ok(Some(format!(
            "{} acknowledgements already went out in the last hour (limits.acks_per_hour)",
            limits.acks_per_hour
        )));
    }
    Ok(None)
}

/// Sends held acknowledgements: `case_id`'s, or all of them. Returns the
/// cases whose acknowledgement was queued.
pub fn release_held(
    conn: &Connection,
    ctx: &Context<'_>,
    case_id: Option<&str>,
    actor: &str,
) -> Result<Vec<String>, StoreError> {
    let sla = &ctx.cfg.sla;
    let mut released = Vec::new();
    for h in store::held_acks(conn, case_id)? {
        store::enqueue(
            conn,
            h.message,
            Some(&h.case_id),
            "ack",
            &ctx.cfg.mailbox.address,
            std::slice::from_ref(&h.recipient),
            ctx.now,
        )?;
        store::unhold_ack(conn, &h.case_id)?;
        deadlines::set(
            conn,
            sla,
            &h.case_id,
            Kind::AckQueued,
            add(ctx.now, sla.ack_alert_after),
            ctx.now,
        )?;
        store::add_event(
            conn,
            &h.case_id,
            ctx.now,
            actor,
            "acknowledgement released",
            Some(&format!(
                "to {}; it was held because {}",
                h.recipient, h.reason
            )),
            None,
        )?;
        released.push(h.case_id);
    }
    Ok(released)
}

/// Records why no acknowledgement goes out, and waives the acknowledgement
/// deadline: there is nothing the handlers could do to meet it by mail.
fn not_acknowledged(
    conn: &Connection,
    case_id: &str,
    now: DateTime<Utc>,
    why: &str,
    mid: Option<&str>,
) -> Result<(), StoreError> {
    store::add_event(
        conn,
        case_id,
        now,
        "secintake",
        "not acknowledged",
        Some(why),
        mid,
    )?;
    deadlines::meet(
        conn,
        case_id,
        Kind::Acknowledge,
        now,
        &format!("waived: {why}"),
    )?;
    Ok(())
}

/// Opens a case from a stored message that was filed as auto-generated or
/// too old (`secintake mail promote`): a forwarder that stamps robot
/// headers on a real report must not make the report vanish.
pub fn promote(
    conn: &Connection,
    ctx: &Context<'_>,
    msg_id: i64,
    actor: &str,
) -> Result<(String, bool), CaseError> {
    let max = message::MAX_PARSE_BYTES;
    let (row, raw, _) =
        store::message_prefix(conn, msg_id, max)?.ok_or(CaseError::NoSuchMessage(msg_id))?;
    if row.direction != "in" || !(row.kind == "robot" || row.kind == "old") || row.case_id.is_some()
    {
        return Err(CaseError::NotPromotable {
            id: msg_id,
            kind: if row.case_id.is_some() {
                format!(
                    "{} already attached to {}",
                    row.kind,
                    row.case_id.unwrap_or_default()
                )
            } else {
                row.kind
            },
        });
    }
    let p = message::reparse(&raw, row.parsed_ok);
    store::set_message_kind(conn, msg_id, "report")?;
    let (case_id, acked) = open_case(conn, ctx, Report::Stored(msg_id), &p, ctx.now, actor)?;
    store::add_event(
        conn,
        &case_id,
        ctx.now,
        actor,
        "promoted",
        Some(&format!(
            "message {msg_id} was filed as {}{}",
            row.kind,
            row.robot_rule
                .map(|r| format!(" (rule {r})"))
                .unwrap_or_default()
        )),
        p.message_id.as_deref(),
    )?;
    Ok((case_id, acked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_ts;
    use crate::config::Config;
    use crate::templates::Templates;

    /// The example configuration (two handlers), loaded for real.
    fn config() -> Config {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/secintake.example.toml");
        let env = [
            ("SECINTAKE_IMAP__PASSWORD", "x"),
            ("SECINTAKE_SMTP__PASSWORD", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::load_with_env(&path, env).unwrap()
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
        }
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
        let o = ingest(
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
        let o = ingest(
            &tx,
            &ctx,
            &incoming(report, 2, "2026-03-01T11:00:00Z", None),
        )
        .unwrap();
        assert_eq!(o, Outcome::Duplicate);
        // A reply threading by In-Reply-To, no tag in the subject.
        let reply = b"From: rep@example.net\r\nSubject: more\r\nIn-Reply-To: <r1@example.net>\r\nMessage-ID: <r2@example.net>\r\n\r\nx\r\n";
        let o = ingest(&tx, &ctx, &incoming(reply, 3, "2026-03-01T11:30:00Z", None)).unwrap();
        assert_eq!(
            o,
            Outcome::FollowUp {
                case_id: case_id.clone()
            }
        );
        // The case tag from a stranger opens a new case.
        let stranger = b"From: x@example.net\r\nSubject: [SEC-2026-0001] hi\r\nMessage-ID: <s1@example.net>\r\n\r\nx\r\n";
        let o = ingest(
            &tx,
            &ctx,
            &incoming(stranger, 4, "2026-03-01T11:40:00Z", None),
        )
        .unwrap();
        assert!(matches!(o, Outcome::NewCase { .. }), "{o:?}");
        // A robot is stored, opens nothing, answers nothing.
        let ooo = b"From: ooo@example.net\r\nAuto-Submitted: auto-replied\r\nSubject: Out of office\r\nMessage-ID: <o1@example.net>\r\n\r\nx\r\n";
        let o = ingest(&tx, &ctx, &incoming(ooo, 5, "2026-03-01T11:50:00Z", None)).unwrap();
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
        let o = ingest(&tx, &ctx, &incoming(old, 6, "2026-01-01T00:00:00Z", nb)).unwrap();
        assert_eq!(o, Outcome::Old);
        let late =
            b"From: b@example.net\r\nSubject: late\r\nMessage-ID: <b1@example.net>\r\n\r\nx\r\n";
        let o = ingest(&tx, &ctx, &incoming(late, 7, "2026-02-21T00:00:00Z", nb)).unwrap();
        assert!(matches!(o, Outcome::NewCase { .. }), "{o:?}");
    }

    #[test]
    fn subject_tags_are_strict() {
        assert_eq!(
            subject_tags("Re: bug [SEC-2026-0007] and [SEC-2026-12345]"),
            vec!["SEC-2026-0007", "SEC-2026-12345"]
        );
        assert!(subject_tags("[SEC-26-0007] [SEC-2026-07] [SEC-2026-0007x] [SEC-").is_empty());
    }

    #[test]
    fn case_id_format() {
        assert_eq!(format_case_id(2026, 7), "SEC-2026-0007");
    }

    #[test]
    fn non_ascii_body_lines_do_not_panic() {
        let raw = "From: x@y\r\n\r\n連絡しようとしたグループ\r\nMessage-ID: <a@b>\r\n".as_bytes();
        assert_eq!(embedded_message_ids(raw), vec!["a@b"]);
    }

    #[test]
    fn finds_message_ids_quoted_in_a_bounce() {
        let raw = b"From: MAILER-DAEMON@x\r\nMessage-ID: <bounce@x>\r\n\r\nbody\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <ack.SEC-2026-0001.1@example.org>\r\n";
        assert_eq!(
            embedded_message_ids(raw),
            vec!["ack.SEC-2026-0001.1@example.org"]
        );
    }
}
