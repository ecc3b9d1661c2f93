//! The letters secintake sends: what each one says, who it is from, how
//! it is threaded, and queueing it.
//!
//! Every letter is built here, one function per kind: [`handlers`] for
//! mail to the team about a case, [`outside`] for mail that leaves the
//! team (to the reporter and the announce list), [`operations`] for
//! secintake's own reminders, digests and outage notices. Every body comes from a template in `config/templates/`
//! ([`crate::templates`]), so an operator can edit all of them. The
//! modules that decide (`workflow`, `cases`, `health`, `scheduler`) choose
//! *when* a letter goes and to whom; *what* it is comes from here.
//! [`Voice`] is the one place that picks a letter's From display name and
//! its Auto-Submitted header.
//!
//! Every outgoing message is stored (direction `out`) and put in the
//! durable outbox in the caller's transaction, so a letter exists exactly
//! when the effect that caused it was recorded.

pub mod handlers;
pub mod operations;
pub mod outside;

use crate::config::Config;
use crate::context::Context;
use crate::mail::compose::{self, ComposeError, Draft};
use crate::model::MessageKind;
use crate::store::{self, CaseRow, NewMessage, StoreError};
use crate::templates::TemplateError;
use rusqlite::Connection;

/// A letter built and ready to store and queue.
#[derive(Debug, Clone)]
pub struct Letter {
    /// What kind of letter it is (`ack`, `relay`, `note`, `reminder`, …):
    /// stored with the message, and the mark the leak guard and the
    /// threading rules look for.
    pub purpose: MessageKind,
    /// The case it belongs to; `None` for digests, outage notices and
    /// replies to mail that named no case.
    pub case_id: Option<String>,
    pub out: compose::Outgoing,
}

/// Why a letter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    /// Its template failed (an operator's edit): a configuration problem,
    /// reported as such.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The message could not be put together (an unusable address).
    /// (Or it must be encrypted and cannot be: it is not sent at all,
    /// never in cleartext instead.)
    #[error(transparent)]
    Compose(#[from] ComposeError),
}

/// `letter` PGP/MIME-encrypted to its recipients' keys (handlers'
/// `pgp_key`, or `keys` given for others, e.g. the reporter's), signed
/// with the team key.
pub fn sealed(
    ctx: &Context<'_>,
    mut letter: Letter,
    keys: &[crate::openpgp::PublicKey],
) -> Result<Letter, LetterError> {
    let team = ctx
        .cfg
        .pgp
        .as_ref()
        .ok_or_else(|| ComposeError::NoKey(ctx.cfg.mailbox.address.clone()))?;
    let mut to_keys = Vec::new();
    for addr in &letter.out.to {
        let key = ctx
            .cfg
            .handler(addr)
            .and_then(|h| h.pgp_key.as_ref())
            .or_else(|| keys.iter().find(|k| k.emails().iter().any(|e| e == addr)))
            .ok_or_else(|| ComposeError::NoKey(addr.clone()))?;
        to_keys.push(key);
    }
    letter.out.raw = crate::mail::seal::seal(&letter.out.raw, &to_keys, &team.team)
        .map_err(ComposeError::Seal)?;
    Ok(letter)
}

/// Who a letter speaks as: the one rule for its From display name and its
/// `Auto-Submitted` header (RFC 3834), so no builder picks either itself.
#[derive(Debug, Clone, Copy)]
enum Voice<'a> {
    /// The team answering a message that just arrived (the
    /// acknowledgement, "which case?"): the team's name, `auto-replied`.
    TeamReply,
    /// The team on its own initiative (mail to handlers about a case, an
    /// update to the reporter): the team's name, `auto-generated`.
    TeamNotice,
    /// secintake about its own work (reminders, escalations, digests,
    /// outage notices): "secintake", `auto-generated`.
    Robot,
    /// A handler's words relayed to the reporter, under the handler's
    /// name ("Alice via Example security", after the team's name): a
    /// person wrote them, so no `Auto-Submitted`.
    Handler(&'a str),
    /// An advisory a handler wrote, to the announce list: the team's name,
    /// no `Auto-Submitted` (a person wrote it).
    Announcement,
}

impl Voice<'_> {
    /// The display name on the From line.
    fn display_name(self, cfg: &Config) -> String {
        match self {
            Voice::TeamReply | Voice::TeamNotice | Voice::Announcement => team_name(cfg),
            Voice::Robot => "secintake".to_owned(),
            Voice::Handler(name) => format!("{name} via {}", team_name(cfg)),
        }
    }

    /// The `Auto-Submitted` value; "no" leaves the header out.
    fn auto_submitted(self) -> &'static str {
        match self {
            Voice::TeamReply => "auto-replied",
            Voice::TeamNotice | Voice::Robot => "auto-generated",
            Voice::Handler(_) | Voice::Announcement => "no",
        }
    }
}

/// The team's display name: `smtp.from_name`, or "<project> security".
fn team_name(cfg: &Config) -> String {
    cfg.smtp
        .from_name
        .clone()
        .unwrap_or_else(|| format!("{} security", cfg.mailbox.project))
}

/// A handler's name from `[[handlers]]`, or the address when it is none.
pub fn handler_name(cfg: &Config, email: &str) -> String {
    cfg.handler(email)
        .map(|h| h.name.clone())
        .unwrap_or_else(|| email.to_owned())
}

/// How a letter about a case reaches one group of handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rendition {
    /// As written, in cleartext: a case that was not encrypted, a letter
    /// that carries nothing of what the case's mail says, or
    /// `[pgp] cleartext_to_handlers`.
    Open,
    /// As written, PGP/MIME-encrypted to the recipients' keys (and the
    /// team's), subject protected, signed with the team key.
    Sealed,
    /// The facts only, in cleartext: what an encrypted case's mail says
    /// stays out, and the letter says where to read it.
    Facts,
}

/// Who a letter to handlers goes to, and in which rendition.
#[derive(Debug, Clone)]
pub struct Audience {
    pub to: Vec<String>,
    pub rendition: Rendition,
}

impl Audience {
    pub fn open(to: Vec<String>) -> Audience {
        Audience {
            to,
            rendition: Rendition::Open,
        }
    }
}

/// The addresses of `to` grouped by how a `purpose` letter about `case`
/// reaches them: for an encrypted case, mail that may carry what the
/// case's mail says goes sealed to handlers whose `pgp_key` can encrypt,
/// and as the facts to everyone else (issue 10). Empty groups are left
/// out.
pub fn audiences(
    ctx: &Context<'_>,
    case: &CaseRow,
    purpose: MessageKind,
    to: Vec<String>,
) -> Vec<Audience> {
    if !case.encrypted || !purpose.is_confidential() || ctx.cfg.cleartext_to_handlers() {
        return vec![Audience::open(to)];
    }
    let can_seal = |addr: &String| {
        ctx.cfg.pgp.is_some()
            && ctx
                .cfg
                .handler(addr)
                .and_then(|h| h.pgp_key.as_ref())
                .is_some_and(|k| k.can_encrypt(ctx.now))
    };
    let (sealed, facts): (Vec<String>, Vec<String>) = to.into_iter().partition(can_seal);
    [(sealed, Rendition::Sealed), (facts, Rendition::Facts)]
        .into_iter()
        .filter(|(to, _)| !to.is_empty())
        .map(|(to, rendition)| Audience { to, rendition })
        .collect()
}

/// Where a letter sits in a conversation: the message it answers and the
/// chain before it (Message-IDs without brackets, oldest first).
#[derive(Debug, Clone, Default)]
pub struct Thread {
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
}

/// Everything of a letter but the date, sender address and headers that
/// [`Voice`] decides.
struct Parts<'a> {
    purpose: MessageKind,
    case_id: Option<&'a str>,
    voice: Voice<'a>,
    to: Vec<String>,
    subject: String,
    body: String,
    message_id: String,
    thread: Thread,
    attach: Option<&'a [u8]>,
    files: &'a [crate::mail::message::Attachment],
}

/// A new Message-ID in our own domain, `prefix` and the case id in it.
fn new_id(ctx: &Context<'_>, prefix: &str, case_id: Option<&str>) -> String {
    compose::new_message_id(prefix, case_id, &ctx.cfg.mailbox.address)
}

/// The one place a [`Draft`] is filled in.
fn build(ctx: &Context<'_>, p: Parts<'_>) -> Result<Letter, ComposeError> {
    let from_name = p.voice.display_name(ctx.cfg);
    let out = compose::build(Draft {
        from_name: Some(&from_name),
        from: &ctx.cfg.mailbox.address,
        to: p.to,
        subject: p.subject,
        body: p.body,
        message_id: p.message_id,
        in_reply_to: p.thread.in_reply_to,
        references: p.thread.references,
        auto_submitted: p.voice.auto_submitted(),
        date: ctx.now,
        attach: p.attach,
        files: p.files,
    })?;
    Ok(Letter {
        purpose: p.purpose,
        case_id: p.case_id.map(str::to_owned),
        out,
    })
}

/// Stores a letter and queues it for delivery; returns the stored
/// message's id.
pub fn queue_outgoing(
    conn: &Connection,
    ctx: &Context<'_>,
    letter: &Letter,
) -> Result<i64, StoreError> {
    let id = store_outgoing(conn, ctx, letter)?;
    store::enqueue(
        conn,
        id,
        letter.case_id.as_deref(),
        letter.purpose,
        &ctx.cfg.mailbox.address,
        &letter.out.to,
        ctx.now,
    )?;
    // The message's id, which reminders.message refers to (it returned the
    // outbox row's id, which only happened to name a message).
    Ok(id)
}

/// Stores a letter without queueing it (a held acknowledgement); returns
/// its id.
pub fn store_outgoing(
    conn: &Connection,
    ctx: &Context<'_>,
    letter: &Letter,
) -> Result<i64, StoreError> {
    let out = &letter.out;
    let rec = NewMessage {
        direction: crate::model::Direction::Out,
        // One Message-ID may go out twice: a notification about an encrypted
        // case, sealed to handlers with a key and as the facts to the others.
        dedup_key: format!("out:{}:{}", out.message_id, out.to.join(",")),
        message_id: Some(out.message_id.clone()),
        case_id: letter.case_id.clone(),
        kind: letter.purpose,
        from_addr: Some(ctx.cfg.mailbox.address.clone()),
        to_addrs: Some(out.to.join(" ")),
        subject: Some(out.subject.clone()),
        parsed_ok: true,
        size: out.raw.len() as u64,
        at: ctx.now,
        raw: &out.raw,
        folder: None,
        uidvalidity: None,
        uid: None,
        robot_rule: None,
        in_reply_to: None,
        refs: None,
        encrypted: false,
        truncated: false,
        content_key: None,
    };
    store::insert_message(conn, &rec)
}

#[cfg(test)]
mod tests {
    use super::handlers::{self, Outcome};
    use super::operations::{self, Reminder};
    use super::outside;
    use super::*;
    use crate::model::{Kind, State};
    use crate::store::CaseRow;
    use crate::templates::Templates;

    fn config() -> Config {
        Config::example()
    }

    fn case() -> CaseRow {
        CaseRow {
            id: "SEC-2026-0007".into(),
            state: State::Triage,
            reporter: Some("rep@example.net".into()),
            subject: Some("XSS in login".into()),
            received_at: "2026-01-01T00:00:00.000Z".into(),
            ack_due_at: "2026-01-03T00:00:00.000Z".into(),
            respond_due_at: "2026-01-04T00:00:00.000Z".into(),
            acknowledged_at: None,
            responded_at: None,
            unparsed: false,
            primary_handler: Some("alice@example.org".into()),
            severity: None,
            affected: None,
            fixed_in: None,
            cve: None,
            duplicate_of: None,
            thread_root: Some("case.SEC-2026-0007.1@example.org".into()),
            encrypted: false,
            protected_subject: None,
            reporter_key: None,
        }
    }

    fn now() -> chrono::DateTime<chrono::Utc> {
        crate::clock::parse_ts("2026-01-05T10:00:00.000Z").unwrap()
    }

    /// The letter's text body, line breaks as `\n`.
    fn body(l: &Letter) -> String {
        let p = crate::mail::message::parse(&l.out.raw);
        p.text_body.unwrap_or_default().replace("\r\n", "\n")
    }

    fn header<'a>(l: &'a Letter, name: &str) -> Option<&'a str> {
        let raw = std::str::from_utf8(&l.out.raw).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap();
        head.split("\r\n")
            .find_map(|h| h.strip_prefix(name)?.strip_prefix(": "))
    }

    #[test]
    fn each_voice_has_its_from_name_and_auto_submitted() {
        let mut cfg = config();
        let t = Templates::builtin();
        let case = case();
        for team in [None, Some("Example Security Team")] {
            cfg.smtp.from_name = team.map(str::to_owned);
            let ctx = Context {
                cfg: &cfg,
                templates: &t,
                now: now(),
            };
            let team = team.unwrap_or("Example security");
            let p = crate::mail::message::ParsedMessage {
                message_id: Some("m@example.org".into()),
                ..Default::default()
            };
            let no_case = handlers::no_case(&ctx, "alice@example.org", &p).unwrap();
            assert!(header(&no_case, "From").unwrap().contains(team));
            assert_eq!(header(&no_case, "Auto-Submitted"), Some("auto-replied"));
            let relay = outside::relay(
                &ctx,
                &case,
                Thread::default(),
                "alice@example.org",
                "Fixed in 2.4.1.",
                &[],
            )
            .unwrap();
            let from = header(&relay, "From").unwrap();
            assert!(
                from.contains(&format!("Alice Example via {team}")),
                "{from}"
            );
            assert_eq!(header(&relay, "Auto-Submitted"), None);
            assert_eq!(body(&relay), "Fixed in 2.4.1.\n");
            let update = outside::Update {
                event: "confirmed",
                reason: "",
                advisory: "",
                fix_date: "",
                announce_date: "",
            };
            let update = outside::update(&ctx, &case, Thread::default(), update).unwrap();
            assert!(header(&update, "From").unwrap().contains(team));
            assert_eq!(header(&update, "Auto-Submitted"), Some("auto-generated"));
            let reminder = Reminder {
                kind: Kind::Fix,
                stage: "reminder",
                due: now(),
                fire_at: now(),
                late: false,
                overdue: false,
                gap: "4 hours",
                also: &[],
                also_total: 0,
            };
            let to = vec!["alice@example.org".to_owned()];
            let reminder = operations::reminder(&ctx, &case, to, reminder).unwrap();
            assert!(header(&reminder, "From")
                .unwrap()
                .starts_with("secintake <"));
            assert_eq!(header(&reminder, "Auto-Submitted"), Some("auto-generated"));
        }
    }

    #[test]
    fn the_confirmation_says_what_was_relayed_and_what_each_command_did() {
        let cfg = config();
        let t = Templates::builtin();
        let ctx = Context {
            cfg: &cfg,
            templates: &t,
            now: now(),
        };
        let outcome = Outcome::Relayed {
            text: "Fixed in 2.4.1.\nThanks!".into(),
            files: vec!["fix.patch (text/x-patch, 120 bytes)".into()],
        };
        let results = [
            (
                "/take".to_owned(),
                Ok("primary handler is now Alice".to_owned()),
            ),
            (
                "/state nonsense".to_owned(),
                Err("unknown state".to_owned()),
            ),
        ];
        let letter = handlers::confirmation(
            &ctx,
            &case(),
            Audience::open(vec!["alice@example.org".into()]),
            Some("m@example.org"),
            &results,
            &outcome,
            "triage",
        )
        .unwrap();
        assert_eq!(letter.out.subject, "[SEC-2026-0007] Commands: 1 error(s)");
        assert_eq!(header(&letter, "In-Reply-To"), Some("<m@example.org>"));
        assert_eq!(
            body(&letter),
            "Relayed to the reporter (rep@example.net), exactly this:\n\
             \n  | Fixed in 2.4.1.\n  | Thanks!\n\n  attached: fix.patch (text/x-patch, 120 bytes)\n\
             \n/take\n  done: primary handler is now Alice\n\
             /state nonsense\n  ERROR: unknown state\n\
             \nSEC-2026-0007 is now in state \"triage\".\n\
             To answer the reporter: reply to the [SEC-2026-0007] New report notification \
             (your new text, without the quoted part, is relayed), or write to them yourself \
             with security@example.org in Cc.\n"
        );
    }

    #[test]
    fn the_digest_greets_by_the_local_hour() {
        let t = Templates::builtin();
        let greeting = |hour: u32| {
            t.part("greeting.txt", minijinja::context! { hour => hour })
                .unwrap()
        };
        assert_eq!(greeting(9), "Good morning");
        assert_eq!(greeting(14), "Good afternoon");
        assert_eq!(greeting(21), "Good evening");
        assert_eq!(greeting(2), "Good evening");
    }

    #[test]
    fn a_reminder_says_the_next_step_for_its_deadline() {
        let cfg = config();
        let t = Templates::builtin();
        let ctx = Context {
            cfg: &cfg,
            templates: &t,
            now: now(),
        };
        let reminder = Reminder {
            kind: Kind::Respond,
            stage: "escalation",
            due: now(),
            fire_at: now(),
            late: false,
            overdue: true,
            gap: "4 hours",
            also: &[],
            also_total: 0,
        };
        let to = vec!["alice@example.org".to_owned()];
        let letter = operations::reminder(&ctx, &case(), to, reminder).unwrap();
        assert_eq!(
            letter.out.subject,
            "[SEC-2026-0007] OVERDUE: response to the reporter was due 2026-01-05 10:00 UTC"
        );
        assert!(body(&letter).contains(
            "Next step: send the reporter a detailed response: reply to rep@example.net from \
             your own mail client with security@example.org in Cc and [SEC-2026-0007] in the \
             subject; secintake records it as the response and the reminders stop. If you \
             answered another way, run `secintake cases responded SEC-2026-0007`.\n"
        ));
    }
}
