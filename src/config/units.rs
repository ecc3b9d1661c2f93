//! Durations and sizes as the operator writes them ("48h", "50MiB"), and
//! the texts that say what was expected when one does not parse.

use std::time::Duration;

pub(super) const DURATION_EXPECTED: &str =
    "expected a duration like \"60s\", \"25m\", \"48h\", \"7d\" or \"1h 30m\"";
pub(super) const SIZE_EXPECTED: &str =
    "expected a size like \"50MiB\" (units: B, KB, KiB, MB, MiB, GB, GiB; no unit = bytes)";

/// Parses a humantime duration: "48h", "60s", "7d", "1h 30m".
/// A bare number is refused: the unit is never guessed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DURATION_EXPECTED.to_string());
    }
    humantime::parse_duration(s).map_err(|_| DURATION_EXPECTED.to_string())
}

/// Parses a size: a whole number with an optional unit B, KB, KiB, MB, MiB,
/// GB or GiB (case-insensitive, optional space); no unit means bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let unit = unit.trim_start();
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return Err(SIZE_EXPECTED.to_string()),
    };
    let number: u64 = digits.parse().map_err(|_| SIZE_EXPECTED.to_string())?;
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{SIZE_EXPECTED}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("48h"), Ok(Duration::from_secs(48 * 3600)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("60"), Err(DURATION_EXPECTED.to_string()));
        assert_eq!(parse_duration(""), Err(DURATION_EXPECTED.to_string()));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("50MiB"), Ok(50 << 20));
        assert_eq!(parse_size("50 MiB"), Ok(50 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "-1",
            "10 M",
            "10TB",
            "99999999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }
}
