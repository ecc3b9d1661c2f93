//! The SLA report (`secintake sla`): how each case's acknowledgement and
//! response deadlines ended, with percentiles.

use crate::clock::{fmt_ts, parse_ts};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::Connection;

// ---------------------------------------------------------------------------
// The SLA report

/// One deadline's outcome in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub due_at: String,
    pub done_at: Option<String>,
    /// Seconds from receipt to done.
    pub seconds: Option<i64>,
    /// "met", "missed", "pending" or "waived".
    pub status: &'static str,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseSla {
    pub id: String,
    pub received_at: String,
    pub acknowledge: Outcome,
    pub respond: Outcome,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    pub met: u32,
    pub missed: u32,
    pub pending: u32,
    pub waived: u32,
    /// Seconds from receipt, over the cases where it was done.
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub since: Option<String>,
    pub generated_at: String,
    pub cases: Vec<CaseSla>,
    pub acknowledge: Totals,
    pub respond: Totals,
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median: the mean of the two middle values for an even count.
pub fn median(sorted: &[i64]) -> Option<i64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

fn outcome(
    received: DateTime<Utc>,
    due: &str,
    done: Option<&str>,
    how: Option<&str>,
    now: DateTime<Utc>,
) -> Outcome {
    let due_t = parse_ts(due);
    let done_t = done.and_then(parse_ts);
    let status = match (done_t, due_t) {
        _ if how.is_some_and(|h| h.starts_with("waived")) => "waived",
        (Some(d), Some(due)) if d <= due => "met",
        (Some(_), _) => "missed",
        (None, Some(due)) if now > due => "missed",
        _ => "pending",
    };
    Outcome {
        due_at: due.to_owned(),
        done_at: if status == "waived" {
            None
        } else {
            done.map(str::to_owned)
        },
        seconds: if status == "waived" {
            None
        } else {
            done_t.map(|d| (d - received).num_seconds())
        },
        status,
    }
}

fn totals(outcomes: &[&Outcome]) -> Totals {
    let mut t = Totals::default();
    let mut secs = Vec::new();
    for o in outcomes {
        match o.status {
            "met" => t.met += 1,
            "missed" => t.missed += 1,
            "waived" => t.waived += 1,
            _ => t.pending += 1,
        }
        secs.extend(o.seconds);
    }
    secs.sort_unstable();
    t.median_seconds = median(&secs);
    t.p90_seconds = percentile(&secs, 90.0);
    t
}

/// Time to acknowledgement and to response, per case and in total.
pub fn report(
    conn: &Connection,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Report, StoreError> {
    let mut cases = Vec::new();
    for c in crate::store::cases(conn, None)? {
        let Some(received) = parse_ts(&c.received_at) else {
            continue;
        };
        if since.is_some_and(|s| received < s) {
            continue;
        }
        let how = |kind: &str| crate::store::deadline_met_how(conn, &c.id, kind);
        cases.push(CaseSla {
            acknowledge: outcome(
                received,
                &c.ack_due_at,
                c.acknowledged_at.as_deref(),
                how("acknowledge")?.as_deref(),
                now,
            ),
            respond: outcome(
                received,
                &c.respond_due_at,
                c.responded_at.as_deref(),
                how("respond")?.as_deref(),
                now,
            ),
            id: c.id,
            received_at: c.received_at,
        });
    }
    let acknowledge = totals(&cases.iter().map(|c| &c.acknowledge).collect::<Vec<_>>());
    let respond = totals(&cases.iter().map(|c| &c.respond).collect::<Vec<_>>());
    Ok(Report {
        since: since.map(fmt_ts),
        generated_at: fmt_ts(now),
        cases,
        acknowledge,
        respond,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_ts(s).unwrap()
    }

    #[test]
    fn percentiles() {
        assert_eq!(median(&[1, 2, 3]), Some(2));
        assert_eq!(median(&[1, 2, 3, 5]), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90.0), Some(9));
        assert_eq!(percentile(&[7], 90.0), Some(7));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn outcomes() {
        let rec = t("2026-01-01T00:00:00Z");
        let now = t("2026-01-10T00:00:00Z");
        let o = outcome(
            rec,
            "2026-01-03T00:00:00Z",
            Some("2026-01-01T00:00:05Z"),
            None,
            now,
        );
        assert_eq!((o.status, o.seconds), ("met", Some(5)));
        let o = outcome(
            rec,
            "2026-01-03T00:00:00Z",
            Some("2026-01-04T00:00:00Z"),
            None,
            now,
        );
        assert_eq!(o.status, "missed");
        let o = outcome(rec, "2026-01-03T00:00:00Z", None, None, now);
        assert_eq!(o.status, "missed");
        let o = outcome(rec, "2026-01-30T00:00:00Z", None, None, now);
        assert_eq!(o.status, "pending");
        let o = outcome(
            rec,
            "2026-01-03T00:00:00Z",
            None,
            Some("waived: no address"),
            now,
        );
        assert_eq!(o.status, "waived");
    }
}
