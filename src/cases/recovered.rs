//! Mail the server marks handled by secintake ([`super::HANDLED_KEYWORD`])
//! that this state file does not know: the state was restored from a
//! backup older than it (issue 12: a restore once re-opened 89 reports
//! and re-sent 89 acknowledgements). It is recorded, attached to its case
//! or opening one, but nothing it caused is done again: no
//! acknowledgement, no notification, no relay, no command.

use super::open::open_recovered;
use super::{Incoming, Outcome};
use crate::context::{CaseError, Context};
use crate::mail::message::ParsedMessage;
use crate::model::MessageKind;
use crate::store::{self, NewMessage};
use rusqlite::Connection;

const WHY: &str = "recovered after a restore: the mail server marks it handled by secintake, \
    and this state file does not remember it; nothing was sent or done again";

pub(super) fn recovered(
    conn: &Connection,
    ctx: &Context<'_>,
    m: &Incoming<'_>,
    p: &ParsedMessage,
    mut rec: NewMessage<'_>,
    case: Option<String>,
) -> Result<Outcome, CaseError> {
    let case_id = match case {
        Some(case_id) => {
            rec.kind = MessageKind::FollowUp;
            rec.case_id = Some(case_id.clone());
            store::insert_message(conn, &rec)?;
            case_id
        }
        None => {
            rec.kind = MessageKind::Report;
            let received = m.internal_date.unwrap_or(m.seen_at).min(m.seen_at);
            open_recovered(conn, ctx, rec, p, received)?
        }
    };
    store::add_event(
        conn,
        &case_id,
        ctx.now,
        "secintake",
        "message recovered",
        Some(WHY),
        p.message_id.as_deref(),
    )?;
    Ok(Outcome::Recovered { case_id })
}
