//! Deadlines: the stage plan every unmet deadline follows (pure) and the
//! deadline rows. The loop that fires stages is `scheduler`; the SLA report
//! is `sla`.
//!
//! Every case gets an acknowledgement and a response deadline when it opens
//! (`sla.acknowledge`, `sla.respond`); operators add `fix` and `embargo`
//! dates. Each unmet deadline walks through numbered **stages**:
//!
//! ```text
//! stage 0 .. R-1   reminder   at due - remind_before[i]   (longest first)
//! stage R + k      escalation at due + k * escalate_every  (k = 0, 1, 2 …)
//! ```
//!
//! The deadline row stores the next stage and when it fires (`next_at`,
//! indexed), so the scheduler sleeps until `min(next_at)` instead of
//! scanning cases. Firing a stage inserts a `reminders` row (UNIQUE on
//! deadline + stage), queues the mail and advances the stage in ONE
//! transaction: a restart never repeats a reminder. When several stages
//! fell due while the daemon was down (or the wall clock jumped forward)
//! only the latest is sent, once, saying it is late; a clock jumping back
//! never lowers the stage, so nothing repeats.

use crate::clock::add;
use crate::config::Sla;
use crate::model::Kind;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The stage plan (pure)

/// When `stage` of a deadline due at `due` fires; None when there is no
/// such stage.
pub fn fire_time(kind: Kind, due: DateTime<Utc>, stage: u32, sla: &Sla) -> Option<DateTime<Utc>> {
    if kind == Kind::AckQueued {
        return (stage == 0).then_some(due);
    }
    let r = sla.remind_before.len() as u32;
    if stage < r {
        let before = chrono::Duration::from_std(sla.remind_before[stage as usize]).ok()?;
        due.checked_sub_signed(before)
    } else {
        let k = (stage - r) as u64;
        let every = sla.escalate_every.as_secs().max(1);
        Some(add(due, Duration::from_secs(every.saturating_mul(k))))
    }
}

/// The first stage that fires at or after `now` (stages already in the
/// past when a deadline is set are skipped, not sent late).
pub fn first_stage(kind: Kind, due: DateTime<Utc>, now: DateTime<Utc>, sla: &Sla) -> u32 {
    let r = sla.remind_before.len() as u32;
    let mut s = 0;
    while s < r {
        match fire_time(kind, due, s, sla) {
            Some(t) if t >= now => return s,
            _ => s += 1,
        }
    }
    if kind == Kind::AckQueued {
        return 0;
    }
    // Already past due: the next escalation from now on.
    if now <= due {
        return r;
    }
    r + escalations_passed(due, now, sla)
}

fn escalations_passed(due: DateTime<Utc>, now: DateTime<Utc>, sla: &Sla) -> u32 {
    let past = (now - due).num_seconds().max(0) as u64;
    let every = sla.escalate_every.as_secs().max(1);
    u32::try_from(past / every).unwrap_or(u32::MAX)
}

/// The stage to fire now, if any: the LATEST stage at or after `stage`
/// whose time has come. Earlier stages that also came are skipped, so a
/// daemon that was down sends one late reminder, not a burst.
pub fn due_stage(
    kind: Kind,
    due: DateTime<Utc>,
    stage: u32,
    now: DateTime<Utc>,
    sla: &Sla,
) -> Option<u32> {
    if fire_time(kind, due, stage, sla)? > now {
        return None;
    }
    if kind == Kind::AckQueued {
        return Some(0);
    }
    let r = sla.remind_before.len() as u32;
    let latest = if now >= due {
        r + escalations_passed(due, now, sla)
    } else {
        // Reminders only: the last one whose time has come.
        (stage..r)
            .take_while(|s| fire_time(kind, due, *s, sla).is_some_and(|t| t <= now))
            .last()
            .unwrap_or(stage)
    };
    Some(latest.max(stage))
}

// ---------------------------------------------------------------------------
// Recording

/// Sets (or moves) a deadline of a case. Moving it restarts its reminders
/// from the first stage still ahead.
pub fn set(
    conn: &Connection,
    sla: &Sla,
    case_id: &str,
    kind: Kind,
    due: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let stage = first_stage(kind, due, now, sla);
    let next = fire_time(kind, due, stage, sla);
    crate::store::put_deadline(conn, case_id, kind, due, stage, next)
}

// The rows themselves are the store's; these names stay for the callers.
pub use crate::store::{due_now, meet, next_due, of_case, DeadlineRow};

/// The Message-ID every handler mail about a case refers to, so a case is
/// one conversation in a handler's client. Random per case (set when it
/// opens); cases from before that have the old predictable form.
pub fn thread_root(case: &crate::store::CaseRow, our_address: &str) -> String {
    match &case.thread_root {
        Some(root) => root.clone(),
        None => {
            let domain = our_address.rsplit('@').next().unwrap_or("localhost");
            format!("case.{}@{domain}", case.id)
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn sla() -> Sla {
        Sla {
            acknowledge: Duration::from_secs(48 * 3600),
            respond: Duration::from_secs(72 * 3600),
            remind_before: vec![
                Duration::from_secs(24 * 3600),
                Duration::from_secs(4 * 3600),
            ],
            escalate_every: Duration::from_secs(12 * 3600),
            escalate_to: vec![],
            ack_alert_after: Duration::from_secs(3600),
            digest_at: None,
            timezone: chrono_tz::UTC,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        crate::clock::parse_ts(s).unwrap()
    }

    const H: i64 = 3600;

    #[test]
    fn stage_times_follow_the_plan() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        let at = |st| fire_time(Kind::Respond, due, st, &s).unwrap();
        assert_eq!(at(0), due - chrono::Duration::seconds(24 * H));
        assert_eq!(at(1), due - chrono::Duration::seconds(4 * H));
        assert_eq!(at(2), due);
        assert_eq!(at(3), due + chrono::Duration::seconds(12 * H));
        assert_eq!(fire_time(Kind::AckQueued, due, 1, &s), None);
    }

    #[test]
    fn first_stage_skips_reminders_already_past() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-01T00:00:00Z"), &s),
            0
        );
        // 10 hours before due: the 24h reminder is past, the 4h one is ahead.
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-03T14:00:00Z"), &s),
            1
        );
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-03T22:00:00Z"), &s),
            2
        );
        // 13 hours overdue when set: the latest escalation (due+12h, stage 3)
        // fires at once.
        assert_eq!(
            first_stage(Kind::Respond, due, t("2026-01-04T13:00:00Z"), &s),
            3
        );
    }

    #[test]
    fn a_long_absence_fires_only_the_latest_stage() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        // Nothing yet.
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-02T23:00:00Z"), &s),
            None
        );
        // Exactly at the 24h reminder.
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-03T00:00:00Z"), &s),
            Some(0)
        );
        // Daemon down through both reminders and the deadline: one escalation.
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-04T01:00:00Z"), &s),
            Some(2)
        );
        // 30 hours overdue: escalation k=2 (due+24h).
        assert_eq!(
            due_stage(Kind::Respond, due, 0, t("2026-01-05T06:00:00Z"), &s),
            Some(4)
        );
    }

    #[test]
    fn clock_jumps_neither_lose_nor_repeat() {
        let due = t("2026-01-04T00:00:00Z");
        let s = sla();
        // The 24h reminder fired (stage is now 1). The clock jumps back a day:
        // stage 1 is not due, and stage 0 is never considered again.
        let back = t("2026-01-02T00:00:00Z");
        assert_eq!(due_stage(Kind::Respond, due, 1, back, &s), None);
        // Forward past the 4h reminder and the deadline: one escalation
        // (stage 2), nothing lost: the case is overdue and says so.
        let fwd = t("2026-01-04T02:00:00Z");
        assert_eq!(due_stage(Kind::Respond, due, 1, fwd, &s), Some(2));
        // Having fired stage 2, the same instant fires nothing more.
        assert_eq!(due_stage(Kind::Respond, due, 3, fwd, &s), None);
    }

    #[test]
    fn ack_queued_alerts_once() {
        let due = t("2026-01-01T01:00:00Z");
        let s = sla();
        assert_eq!(
            due_stage(Kind::AckQueued, due, 0, t("2026-01-01T00:59:00Z"), &s),
            None
        );
        assert_eq!(
            due_stage(Kind::AckQueued, due, 0, t("2026-01-01T05:00:00Z"), &s),
            Some(0)
        );
        assert_eq!(
            due_stage(Kind::AckQueued, due, 1, t("2026-01-09T05:00:00Z"), &s),
            None
        );
    }
}
