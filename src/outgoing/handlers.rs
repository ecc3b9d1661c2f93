//! Letters to the handlers: about a case, in the case's thread (its root
//! is the new-case notification; everything else answers it), and the
//! reply to handler mail that named no case. Internal: none of this ever
//! goes to a reporter, and the leak guard keeps its lines from being
//! relayed.

use super::{
    build, handler_name, new_id, Audience, Letter, LetterError, Parts, Rendition, Thread, Voice,
};
use crate::context::Context;
use crate::deadlines::thread_root;
use crate::mail::compose;
use crate::mail::message::{Decryption, ParsedMessage};
use crate::model::MessageKind;
use crate::store::{CaseRow, EventRow};
use crate::templates::TemplateError;

/// A received message to attach to a mail for handlers: `bytes` may be
/// only the start of it when `len` is more (see `store::message_prefix`);
/// such a prefix is never attached.
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    pub bytes: &'a [u8],
    pub len: usize,
}

impl<'a> Original<'a> {
    pub fn whole(bytes: &'a [u8]) -> Self {
        Original {
            bytes,
            len: bytes.len(),
        }
    }
}

/// Originals larger than this are not attached to mail for handlers.
/// Many mail systems cap a message at 25-35 MB (Microsoft 365's default
/// is 35 MB; a handler forwarding it from Gmail may send at most 25 MB),
/// and base64 makes a 20 MiB report 27 MiB; building such a mail also
/// took three more copies of the report in memory (186 MiB peak for a
/// 27 MiB report, issue 7).
pub const ATTACH_ORIGINAL_MAX: usize = 10 << 20;

/// About how large a mail with `body` and an attachment of `raw` bytes
/// is: base64 in 76-character lines, plus room for the headers.
fn attached_size(raw: usize, body: usize) -> u64 {
    let b64 = raw.div_ceil(3) * 4;
    (b64 + b64 / 76 * 2 + body + 8 * 1024) as u64
}

/// What a handler's mail did with its text, for the confirmation and the
/// team copy.
#[derive(Debug)]
pub enum Outcome {
    /// Relayed to the reporter: this exact text, and these files.
    Relayed { text: String, files: Vec<String> },
    /// Recorded as an internal note, and why it was internal.
    Note { why: String, text: String },
    /// The handler answered the reporter directly; recorded as such.
    Direct,
    /// Only commands (or an advisory) in the mail.
    CommandsOnly,
    /// Nothing done with the text, and the one step to do it right.
    NothingDone(String),
}

impl Outcome {
    /// The `outcome` variable of `confirmation.txt`.
    fn name(&self) -> &'static str {
        match self {
            Outcome::Relayed { .. } => "relayed",
            Outcome::Note { .. } => "note",
            Outcome::Direct => "direct",
            Outcome::CommandsOnly => "commands",
            Outcome::NothingDone(_) => "nothing",
        }
    }
}

/// A command line of a handler's mail and its result: what was done, or
/// the handler's mistake.
pub type CommandResult = (String, Result<String, String>);

/// Builds mail to handlers about `case`, in the case's thread: the
/// notification is its root, the rest answer it (or the message named by
/// `reply_to_mid`).
#[allow(clippy::too_many_arguments)]
fn to_handlers(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    purpose: MessageKind,
    subject: String,
    mut body: String,
    original: Option<Original<'_>>,
    reply_to_mid: Option<&str>,
) -> Result<Letter, LetterError> {
    // What handlers write about an encrypted case (notes, the copies of
    // what one of them did) may quote the report: it travels in
    // cleartext only with [pgp] cleartext_to_handlers (issue 10).
    let Audience { to, rendition } = to;
    if rendition == Rendition::Facts
        && matches!(
            purpose,
            MessageKind::Note | MessageKind::TeamCopy | MessageKind::CommandReply
        )
    {
        body = facts_only(ctx, &case.id, purpose, 0, false)?;
        body.push('\n');
    }
    // No mail to handlers is larger than limits.max_message_size (base64
    // makes an attachment a third larger, and a 56 MB header once became
    // a 58 MB notification), nor carries an original over
    // ATTACH_ORIGINAL_MAX (see there).
    let mut attach = None;
    if let Some(o) = original {
        let fits = o.bytes.len() == o.len
            && o.len <= ATTACH_ORIGINAL_MAX
            && attached_size(o.len, body.len()) <= ctx.cfg.limits.max_message_size;
        if fits {
            attach = Some(o.bytes);
        } else {
            let note = ctx.templates.part(
                "not-attached.txt",
                minijinja::context! { size => o.len, case_id => case.id },
            )?;
            body.push('\n');
            body.push_str(&note);
            body.push('\n');
        }
    }
    let root = thread_root(case, &ctx.cfg.mailbox.address);
    let (message_id, thread) = if purpose == MessageKind::Notification {
        (root, Thread::default())
    } else {
        let mut references = vec![root.clone()];
        references.extend(reply_to_mid.map(str::to_owned));
        let thread = Thread {
            in_reply_to: Some(reply_to_mid.unwrap_or(&root).to_owned()),
            references,
        };
        (new_id(ctx, purpose.as_str(), Some(&case.id)), thread)
    };
    let letter = build(
        ctx,
        Parts {
            purpose,
            case_id: Some(&case.id),
            voice: Voice::TeamNotice,
            to,
            subject,
            body,
            message_id,
            thread,
            attach,
            files: &[],
        },
    )?;
    match rendition {
        Rendition::Sealed => super::sealed(ctx, letter, &[]),
        Rendition::Open | Rendition::Facts => Ok(letter),
    }
}

/// Text of a message for people, capped. What an encrypted message said
/// goes to handlers in cleartext only with `[pgp] cleartext_to_handlers`:
/// otherwise they get the facts (issue 10).
fn readable(
    ctx: &Context<'_>,
    case: &CaseRow,
    purpose: MessageKind,
    p: &ParsedMessage,
    rendition: Rendition,
) -> Result<String, TemplateError> {
    const CAP: usize = 100_000;
    match &p.decryption {
        Some(Decryption::Failed(why)) => {
            return Ok(format!(
                "[encrypted, and secintake could not decrypt it: {why}. The original is attached.]"
            ))
        }
        Some(Decryption::NoKey) => {
            return Ok(
                "[encrypted: secintake holds no team key ([pgp] secret_key_file); decrypt \
                    the attached original with it]"
                    .into(),
            )
        }
        _ if rendition == Rendition::Facts && p.text_body.is_some() => {
            let size = p.text_body.as_ref().map_or(0, String::len);
            let report = purpose == MessageKind::Notification;
            return facts_only(ctx, &case.id, purpose, size, report);
        }
        _ => {}
    }
    Ok(match &p.text_body {
        Some(t) if t.len() > CAP => {
            let mut end = CAP;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            format!(
                "{}\n[… cut at {CAP} bytes; the whole message is attached]",
                &t[..end]
            )
        }
        Some(t) => t.clone(),
        None if p.encrypted => "[encrypted: see the attached original]".into(),
        None => "[no readable text: see the attached original]".into(),
    })
}

/// What a handler without a key gets instead of the text of mail about
/// an encrypted case (`facts-only.txt`).
fn facts_only(
    ctx: &Context<'_>,
    case_id: &str,
    purpose: MessageKind,
    size: usize,
    report: bool,
) -> Result<String, TemplateError> {
    ctx.templates.part(
        "facts-only.txt",
        minijinja::context! {
            what => purpose.as_str(), case_id => case_id, size => size, report => report,
        },
    )
}

/// How to act on a case by email (`footer.txt`): closes the notification
/// and every forwarded follow-up.
fn footer(ctx: &Context<'_>, case_id: &str) -> Result<String, TemplateError> {
    ctx.templates.part(
        "footer.txt",
        minijinja::context! {
            address => ctx.cfg.mailbox.address,
            comment_address => ctx.cfg.mailbox.comment_address,
            case_id => case_id,
        },
    )
}

/// The one line every internal mail carries about reaching the reporter
/// (`reach-reporter.txt`).
fn reach_reporter(ctx: &Context<'_>, case_id: &str) -> Result<String, TemplateError> {
    ctx.templates.part(
        "reach-reporter.txt",
        minijinja::context! { address => ctx.cfg.mailbox.address, case_id => case_id },
    )
}

/// First lines for the notification: what intake noted about the report
/// (the folder it was found in, its signature, why it could not be read)
/// and, for a case opened by someone who threaded into another case
/// without taking part in it (issue 7), which case, so a handler can
/// merge them.
fn refers_to(events: &[EventRow]) -> String {
    let lines: String = events
        .iter()
        .filter(|e| e.what == "intake note" || e.what == "refers to another case")
        .filter_map(|e| e.detail.as_deref())
        .map(|d| format!("[secintake: {d}]\n"))
        .collect();
    if lines.is_empty() {
        lines
    } else {
        lines + "\n"
    }
}

/// The reporter as the new-case notification shows it: the address, and
/// why the acknowledgement did not go out when it did not (no usable
/// address, the project's own address, a limit; issue 7).
fn reporter_line(case: &CaseRow, events: &[EventRow]) -> String {
    let why = events
        .iter()
        .rev()
        .find(|e| e.what == "not acknowledged" || e.what == "acknowledgement held")
        .map(|e| format!("{}: {}", e.what, e.detail.as_deref().unwrap_or_default()));
    match (&case.reporter, why) {
        (Some(r), None) => r.clone(),
        (Some(r), Some(why)) => format!("{r} ({why})"),
        (None, Some(why)) => format!("none ({why})"),
        (None, None) => "none (no usable reply address: not acknowledged)".into(),
    }
}

/// The new-case notification (`notification.txt`): the thread root, the
/// report as text and the original attached. `events` are the case's so
/// far.
pub fn notification(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    p: &ParsedMessage,
    events: &[EventRow],
    original: Original<'_>,
) -> Result<Letter, LetterError> {
    // The real subject of an encrypted report only travels encrypted.
    let shown = match to.rendition {
        Rendition::Sealed => case.protected_subject.as_ref().or(case.subject.as_ref()),
        Rendition::Open | Rendition::Facts => case.subject.as_ref(),
    };
    let subject = format!(
        "[{}] New report: {}",
        case.id,
        shown.map_or("(no subject)", String::as_str)
    );
    let primary = case
        .primary_handler
        .as_deref()
        .map(|e| format!("{} <{e}>", handler_name(ctx.cfg, e)))
        .unwrap_or_else(|| "nobody yet (send /take)".into());
    let body = ctx.templates.render(
        "notification.txt",
        minijinja::context! {
            case_id => case.id,
            reporter => reporter_line(case, events),
            from => p.from.as_ref().map(|a| a.email.as_str()).unwrap_or("(none)"),
            subject => shown.map_or("", String::as_str),
            received_at => case.received_at,
            ack_due_at => case.ack_due_at,
            respond_due_at => case.respond_due_at,
            primary => primary,
            encrypted => p.encrypted,
            decrypted => p.decryption.as_ref().is_some_and(Decryption::is_decrypted),
            unparsed => !p.parsed_ok,
            text => refers_to(events) + &readable(ctx, case, MessageKind::Notification, p, to.rendition)?,
            footer => footer(ctx, &case.id)?,
        },
    )?;
    to_handlers(
        ctx,
        case,
        to,
        MessageKind::Notification,
        subject,
        body,
        Some(original),
        None,
    )
}

/// A reporter's (or anyone's) follow-up, forwarded (`follow-up.txt`) with
/// the original attached.
pub fn follow_up(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    p: &ParsedMessage,
    raw: &[u8],
) -> Result<Letter, LetterError> {
    let from = p
        .from
        .as_ref()
        .map(|a| a.email.as_str())
        .unwrap_or("(unknown sender)");
    let subject = format!(
        "[{}] Follow-up from {}: {}",
        case.id,
        from,
        p.subject
            .as_deref()
            .map(compose::clean_subject)
            .unwrap_or_default()
    );
    let body = ctx.templates.render(
        "follow-up.txt",
        minijinja::context! {
            case_id => case.id, from => from, text => readable(ctx, case, MessageKind::Forward, p, to.rendition)?,
            footer => footer(ctx, &case.id)?,
        },
    )?;
    to_handlers(
        ctx,
        case,
        to,
        MessageKind::Forward,
        subject,
        body,
        Some(Original::whole(raw)),
        None,
    )
}

/// The alert about mail from a handler address that nothing
/// authenticates (`forged.txt`); `why` says what was missing.
pub fn forged(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    email: &str,
    why: &str,
) -> Result<Letter, LetterError> {
    let body = ctx.templates.render(
        "forged.txt",
        minijinja::context! { case_id => case.id, from => email, why => why },
    )?;
    let subject = format!("[{}] Forged handler mail ignored", case.id);
    to_handlers(ctx, case, to, MessageKind::Alert, subject, body, None, None)
}

/// The alert that acknowledgements are being held (`held-acks.txt`),
/// threaded in the case that tripped the limit; `why` names the limit.
pub fn held_acks(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    why: &str,
) -> Result<Letter, LetterError> {
    let body = ctx.templates.render(
        "held-acks.txt",
        minijinja::context! { case_id => case.id, why => why },
    )?;
    let subject = format!("[{}] Acknowledgements held", case.id);
    to_handlers(ctx, case, to, MessageKind::Alert, subject, body, None, None)
}

/// The copy of an internal note by `author` (`note.txt`).
pub fn note(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    author: &str,
    text: &str,
) -> Result<Letter, LetterError> {
    let name = handler_name(ctx.cfg, author);
    let body = ctx.templates.render(
        "note.txt",
        minijinja::context! {
            case_id => case.id, name => name, text => text,
            reach_reporter => reach_reporter(ctx, &case.id)?,
        },
    )?;
    let subject = format!("[{}] Note from {name}", case.id);
    to_handlers(ctx, case, to, MessageKind::Note, subject, body, None, None)
}

/// The commands of a handler's mail for a template: `line`, `ok` and
/// `result` (what was done, or the error).
fn command_values(results: &[CommandResult]) -> Vec<minijinja::Value> {
    results
        .iter()
        .map(|(line, r)| {
            let (ok, result) = match r {
                Ok(done) => (true, done),
                Err(e) => (false, e),
            };
            minijinja::context! { line => line, ok => ok, result => result }
        })
        .collect()
}

/// The reply to `handler` saying exactly what their mail did
/// (`confirmation.txt`): the text relayed (verbatim), the note recorded,
/// each command's result, or why nothing was done; `answers` is the
/// mail's Message-ID and `state` the case's state after it.
pub fn confirmation(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    answers: Option<&str>,
    results: &[CommandResult],
    outcome: &Outcome,
    state: &str,
) -> Result<Letter, LetterError> {
    let (text, files, why) = match outcome {
        Outcome::Relayed { text, files } => (text.as_str(), files.as_slice(), ""),
        Outcome::Note { why, text } => (text.as_str(), &[][..], why.as_str()),
        Outcome::NothingDone(why) => ("", &[][..], why.as_str()),
        Outcome::Direct | Outcome::CommandsOnly => ("", &[][..], ""),
    };
    let body = ctx.templates.render(
        "confirmation.txt",
        minijinja::context! {
            case_id => case.id, reporter => case.reporter, outcome => outcome.name(),
            text => text, files => files, why => why,
            commands => command_values(results), state => state,
            reach_reporter => reach_reporter(ctx, &case.id)?,
        },
    )?;
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    let subject = if !results.is_empty() {
        format!(
            "[{}] Commands: {}",
            case.id,
            if failed == 0 {
                "done".to_owned()
            } else {
                format!("{failed} error(s)")
            }
        )
    } else {
        let what = match outcome {
            Outcome::Relayed { .. } => "Relayed to the reporter",
            Outcome::Note { .. } => "Internal note recorded",
            Outcome::Direct => "Direct answer recorded",
            Outcome::CommandsOnly | Outcome::NothingDone(_) => "Nothing done",
        };
        format!("[{}] {what}", case.id)
    };
    to_handlers(
        ctx,
        case,
        to,
        MessageKind::CommandReply,
        subject,
        body,
        None,
        answers,
    )
}

/// The copy to the other handlers of what `author`'s mail did for
/// everyone to see (`team-copy.txt`): the text relayed to the reporter
/// (with its files), and `done`, the commands that changed the case.
pub fn team_copy(
    ctx: &Context<'_>,
    case: &CaseRow,
    to: Audience,
    author: &str,
    relayed: Option<(&str, &[String])>,
    done: &[CommandResult],
) -> Result<Letter, LetterError> {
    let name = handler_name(ctx.cfg, author);
    let (text, files) = relayed.unwrap_or(("", &[]));
    let body = ctx.templates.render(
        "team-copy.txt",
        minijinja::context! {
            case_id => case.id, name => name, relayed => relayed.is_some(),
            text => text, files => files, commands => command_values(done),
            reach_reporter => reach_reporter(ctx, &case.id)?,
        },
    )?;
    let subject = format!("[{}] {name}: what was done", case.id);
    to_handlers(
        ctx,
        case,
        to,
        MessageKind::TeamCopy,
        subject,
        body,
        None,
        None,
    )
}

/// The reply to a handler's commands or note that thread into no case
/// (`no-case.txt`): how to name one.
pub fn no_case(ctx: &Context<'_>, email: &str, p: &ParsedMessage) -> Result<Letter, LetterError> {
    let body = ctx.templates.render(
        "no-case.txt",
        minijinja::context! {
            project => ctx.cfg.mailbox.project, address => ctx.cfg.mailbox.address,
        },
    )?;
    let subject = format!(
        "Re: {} (no case found)",
        p.subject
            .as_deref()
            .map(compose::clean_subject)
            .unwrap_or_default()
    );
    Ok(build(
        ctx,
        Parts {
            purpose: MessageKind::CommandReply,
            case_id: None,
            voice: Voice::TeamReply,
            to: vec![email.to_owned()],
            subject,
            body,
            message_id: new_id(ctx, "command-reply", None),
            thread: Thread {
                in_reply_to: p.message_id.clone(),
                references: p.message_id.iter().cloned().collect(),
            },
            attach: None,
            files: &[],
        },
    )?)
}
