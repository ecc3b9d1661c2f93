//! `/announce`: the advisory to the announce list (or, as a dry run, to
//! the handlers), once the fix is ready and the embargo over.

use super::leak::quotes_the_report;
use super::notify::all_handlers;
use super::state::{move_state, Reply};
use crate::context::{CaseError, Context};
use crate::deadlines;
use crate::mail::compose;
use crate::mail::quote::strip_quote;
use crate::model::{Kind, State};
use crate::outgoing::outside;
use crate::outgoing::{queue_outgoing, LetterError};
use crate::store::{self, CaseRow, StoreError};
use rusqlite::Connection;

/// `/announce [dry-run]`: the text below the command is the advisory.
pub(super) fn announce(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    actor: &str,
    text: &str,
    (dry_run, now): (bool, bool),
    source: Option<&str>,
) -> Result<Reply, CaseError> {
    let Some((first, summary)) = advisory_text(conn, case, text)? else {
        return Ok(Reply::Refused(
            "no advisory: write it below the /announce line (its first line becomes \
             the subject), or set /summary <text> first to have it drafted"
                .into(),
        ));
    };
    let credit = store::fact(conn, &case.id, "credit")?.filter(|c| c != "none");
    let body = outside::advisory(ctx, case, &summary, credit.as_deref())?;
    if let Some(line) = quotes_the_report(conn, ctx.cfg, case, &body)? {
        return Ok(Reply::Refused(format!(
            "the advisory repeats the unfixed report (\"{}…\"): nothing was sent; \
             write the advisory above any quoted text",
            line.chars().take(40).collect::<String>()
        )));
    }
    let to = if dry_run {
        all_handlers(ctx)
    } else {
        if let Some(why) = not_yet(conn, ctx, case, now)? {
            return Ok(Reply::Refused(why));
        }
        match &ctx.cfg.announce.list {
            Some(l) => vec![l.clone()],
            None => {
                return Ok(Reply::Refused(
                    "announce.list is not configured; nothing was sent".into(),
                ))
            }
        }
    };
    let letter = match outside::announcement(ctx, case, to.clone(), dry_run, &first, body) {
        Ok(letter) => letter,
        Err(LetterError::Template(e)) => return Err(e.into()),
        Err(LetterError::Compose(e)) => {
            return Ok(Reply::Refused(format!(
                "cannot build the announcement: {e}"
            )))
        }
    };
    queue_outgoing(conn, ctx, &letter)?;
    let subject = letter.out.subject;
    if dry_run {
        store::add_event(
            conn,
            &case.id,
            ctx.now,
            actor,
            "announcement dry run",
            Some(&subject),
            source,
        )?;
        return Ok(Reply::Done(format!(
            "dry run: \"{subject}\" sent to the handlers only"
        )));
    }
    announced(conn, ctx, case, (&subject, &to), actor, source)
}

/// The advisory's subject line and text, from the handler's text below
/// `/announce`, or else from the case's `/summary`; `None` without either.
fn advisory_text(
    conn: &Connection,
    case: &CaseRow,
    text: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let text = strip_quote(text);
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    // Without text, the advisory is drafted from the case's facts and its
    // /summary; with text, the facts are appended to it.
    let summary = store::fact(conn, &case.id, "summary")?;
    Ok(match lines.next() {
        Some(first) => Some((
            compose::clean_subject(first.trim()),
            lines.collect::<Vec<_>>().join("\n").trim().to_owned(),
        )),
        None => summary.map(|summary| {
            (
                compose::clean_subject(case.subject.as_deref().unwrap_or(&case.id)),
                summary,
            )
        }),
    })
}

/// Why the case may not be announced to the list yet, if it may not: the
/// fix is not ready, or the embargo lasts and `now` was not said.
fn not_yet(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    now: bool,
) -> Result<Option<String>, StoreError> {
    let state = case.state;
    if state != State::FixReady {
        return Ok(Some(format!(
            "/announce needs state fix-ready; {} is {} (use /announce dry-run to preview)",
            case.id,
            state.as_str()
        )));
    }
    // The embargo agreed with the reporter holds unless the handler
    // says otherwise: /announce once went out two weeks early.
    let embargo = deadlines::of_case(conn, &case.id)?
        .into_iter()
        .find(|d| d.kind == Kind::Embargo && d.met_at.is_none())
        .filter(|d| crate::clock::parse_ts(&d.due_at).is_some_and(|t| t > ctx.now));
    if let (Some(e), false) = (embargo, now) {
        return Ok(Some(format!(
            "the embargo lasts until {}: announce after it, or send /announce now to \
             publish before it; nothing was sent",
            e.due_at
        )));
    }
    Ok(None)
}

/// Records the announcement queued to `to`: the case is announced and its
/// embargo met.
fn announced(
    conn: &Connection,
    ctx: &Context<'_>,
    case: &CaseRow,
    (subject, to): (&str, &[String]),
    actor: &str,
    source: Option<&str>,
) -> Result<Reply, CaseError> {
    let moved = move_state(conn, ctx.now, &case.id, State::Announced, actor, source)?;
    store::add_event(
        conn,
        &case.id,
        ctx.now,
        actor,
        "announced",
        Some(&format!("\"{subject}\" to {}", to.join(", "))),
        source,
    )?;
    deadlines::meet(conn, &case.id, Kind::Embargo, ctx.now, "announced")?;
    Ok(Reply::Done(format!(
        "\"{subject}\" queued to {}; {}",
        to.join(", "),
        moved.into_text()
    )))
}
