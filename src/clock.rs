//! Time, injected.
//!
//! Every decision that depends on "now" (deadlines, retry backoff, the
//! per-sender acknowledgement limit, alerting) asks a [`Clock`] instead of
//! calling `Utc::now()` directly, so tests can move time by hours without
//! sleeping.

use chrono::{DateTime, TimeZone, Utc};
#[cfg(test)]
use std::sync::{Arc, Mutex};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
#[cfg(test)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

#[cfg(test)]
impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub fn advance(&self, d: std::time::Duration) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *g += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero());
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `default`, or in a debug build the milliseconds the environment
/// variable `var` names: waits of minutes (a refused login's retry, the
/// mailbox lease's expiry) that the end-to-end tests shorten. Release
/// builds never read it.
pub fn test_duration(var: &str, default: std::time::Duration) -> std::time::Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok()) {
        return std::time::Duration::from_millis(ms);
    }
    #[cfg(not(debug_assertions))]
    let _ = var;
    default
}

/// The canonical text form of a time in the database and in JSON output:
/// RFC 3339, UTC, millisecond precision. Fixed width, so text order is time order.
pub fn fmt_ts(t: DateTime<Utc>) -> String {
    // Not `format("…")`: that re-parses the format string on every call, and
    // intake formats several times per message (4% of backlog CPU).
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses what [`fmt_ts`] wrote (any RFC 3339 time is accepted).
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `t + d`, saturating instead of panicking on absurd durations.
pub fn add(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The date forms [`parse_date`] accepts, for error messages.
pub const DATE_FORMS: &str = "YYYY-MM-DD, \"YYYY-MM-DD HH:MM\" (UTC) or RFC 3339";

/// Parses a date given on the command line: RFC 3339, `YYYY-MM-DD HH:MM`
/// (UTC) or `YYYY-MM-DD` (midnight UTC).
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    use chrono::Datelike;
    // Years outside 1970-9999 would not survive the fixed-width text form
    // the database keeps: refuse them instead of silently dropping later.
    parse_date_any(s).filter(|t| (1970..=9999).contains(&t.year()))
}

fn parse_date_any(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Some(t) = parse_ts(s) {
        return Some(t);
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M") {
        return Some(Utc.from_utc_datetime(&t));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_sort_as_text() {
        let a = parse_ts("2026-01-02T03:04:05.006Z").unwrap();
        assert_eq!(fmt_ts(a), "2026-01-02T03:04:05.006Z");
        let b = add(a, std::time::Duration::from_millis(994));
        assert_eq!(fmt_ts(b), "2026-01-02T03:04:06.000Z");
        assert!(fmt_ts(a) < fmt_ts(b));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(parse_ts("2026-01-01T00:00:00Z").unwrap());
        let t0 = c.now();
        c.advance(std::time::Duration::from_secs(3600));
        assert_eq!((c.now() - t0).num_seconds(), 3600);
        c.set(t0);
        assert_eq!(c.now(), t0);
    }

    #[test]
    fn dates_on_the_command_line() {
        let t = |s: &str| parse_ts(s).unwrap();
        assert_eq!(parse_date("2026-12-01"), Some(t("2026-12-01T00:00:00Z")));
        assert_eq!(
            parse_date("2026-12-01 14:30"),
            Some(t("2026-12-01T14:30:00Z"))
        );
        assert_eq!(
            parse_date("2026-12-01T14:30:00+01:00"),
            Some(t("2026-12-01T13:30:00Z"))
        );
        assert_eq!(parse_date("tomorrow"), None);
        assert_eq!(parse_date("+10000-01-01T00:00:00Z"), None);
        assert_eq!(parse_date("1969-12-31"), None);
    }
}
