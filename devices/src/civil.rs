//! Calendar dates from day counts, for the timestamps devices and certificates carry
//! (Tasmota's `Time`, a certificate's validity).

/// Days since 1970-01-01 (negative before) to (year, month 1-12, day 1-31) in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
#[must_use]
pub fn from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // d is 1..=31 and m 1..=12 by construction.
    (y, m as u8, d as u8)
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC, no zone suffix) for a Unix time in seconds, as Tasmota writes
/// `Time`.
#[must_use]
pub fn iso_seconds(unix: u64) -> String {
    let (y, m, d) = from_days(i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2));
    let secs = unix % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(from_days(-1), (1969, 12, 31));
        assert_eq!(from_days(19_723), (2024, 1, 1));
        assert_eq!(from_days(19_782), (2024, 2, 29));
        assert_eq!(from_days(11_016), (2000, 2, 29));
        assert_eq!(iso_seconds(1_700_000_000), "2023-11-14T22:13:20");
    }

    #[test]
    fn consecutive_days_are_consecutive_dates() {
        let mut last = from_days(-800_000);
        for n in -799_999..800_000 {
            let next = from_days(n);
            let (y, m, d) = last;
            let ok = next == (y, m, d + 1)
                || (next.2 == 1 && (next == (y, m + 1, 1) || next == (y + 1, 1, 1)));
            assert!(ok, "{last:?} then {next:?}");
            last = next;
        }
    }
}
