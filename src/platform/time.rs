//! Wall-clock helpers: RFC 3339 parsing and formatting without allocation.
//!
//! Times are carried as signed Unix milliseconds (`i64`) everywhere in sluice.

use std::time::{SystemTime, UNIX_EPOCH};

/// Length of a timestamp written by [`format_rfc3339_ms`]: `2025-10-24T11:37:21.183Z`.
pub const RFC3339_MS_LEN: usize = 24;

/// The current wall-clock time in Unix milliseconds. A clock before 1970 reads as 0.
pub fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        _ => 28,
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0')))
}

/// Parses an RFC 3339 `date-time` (`2025-10-24T11:37:21Z`, `...21.5+03:00`; `t`/`z` in
/// lower case allowed as the RFC permits) into Unix milliseconds. Fractions beyond
/// milliseconds are truncated; a leap second (`:60`) counts as the following second.
/// Returns `None` for anything else, including out-of-range fields (month 13, Feb 30).
pub fn parse_rfc3339_ms(text: &[u8]) -> Option<i64> {
    if text.len() < 20 || text.len() > 40 {
        return None;
    }
    let dash_ok = text[4] == b'-' && text[7] == b'-' && text[13] == b':' && text[16] == b':';
    if !dash_ok || !matches!(text[10], b'T' | b't') {
        return None;
    }
    let year = i64::from(digits(&text[0..4])?);
    let month = digits(&text[5..7])?;
    let day = digits(&text[8..10])?;
    let hour = digits(&text[11..13])?;
    let minute = digits(&text[14..16])?;
    let second = digits(&text[17..19])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0u32;
    if rest.first() == Some(&b'.') {
        let fraction_len = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if fraction_len == 0 || fraction_len > 9 {
            return None;
        }
        for position in 0..3 {
            let digit = rest.get(1 + position).filter(|b| b.is_ascii_digit());
            millis = millis * 10 + digit.map_or(0, |b| u32::from(b - b'0'));
        }
        rest = &rest[1 + fraction_len..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = i64::from(digits(&[*h1, *h2])?);
            let minutes = i64::from(digits(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'+' { total } else { -total }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Some((seconds - offset_minutes * 60) * 1000 + i64::from(millis))
}

/// Writes `unix_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, always 24 bytes). Years outside
/// 0..=9999 are clamped to that range: no gateway clock is that far off.
pub fn format_rfc3339_ms(unix_ms: i64) -> [u8; RFC3339_MS_LEN] {
    const MS_MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const MS_MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let unix_ms = unix_ms.clamp(MS_MIN, MS_MAX);
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, value: i64| {
        let mut value = value;
        for index in (at..at + width).rev() {
            out[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, i64::from(month));
    put(8, 2, i64::from(day));
    put(11, 2, ms_of_day / 3_600_000);
    put(14, 2, ms_of_day / 60_000 % 60);
    put(17, 2, ms_of_day / 1000 % 60);
    put(20, 3, ms_of_day % 1000);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339_ms(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms(b"2025-10-24T11:37:21Z"), Some(1_761_305_841_000));
        assert_eq!(parse_rfc3339_ms(b"2025-10-24T11:37:21.183Z"), Some(1_761_305_841_183));
        assert_eq!(parse_rfc3339_ms(b"2025-10-24t14:37:21.1834567+03:00"), Some(1_761_305_841_183));
        assert_eq!(parse_rfc3339_ms(b"2025-10-24T11:37:21.1z"), Some(1_761_305_841_100));
        assert_eq!(parse_rfc3339_ms(b"2024-02-29T00:00:00-00:30"), Some(1_709_166_600_000));
    }

    #[test]
    fn rejects_malformed_and_out_of_range() {
        for bad in [
            &b""[..],
            b"2025-10-24",
            b"2025-10-24 11:37:21Z",
            b"2025-13-01T00:00:00Z",
            b"2025-02-29T00:00:00Z",
            b"2025-10-24T24:00:00Z",
            b"2025-10-24T11:37:21",
            b"2025-10-24T11:37:21.Z",
            b"2025-10-24T11:37:21+0300",
            b"2025-10-24T11:37:21+24:00",
            b"+025-10-24T11:37:21Z",
            b"2025-10-24T11:37:21Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn formats_and_round_trips() {
        assert_eq!(&format_rfc3339_ms(0), b"1970-01-01T00:00:00.000Z");
        assert_eq!(&format_rfc3339_ms(1_761_305_841_183), b"2025-10-24T11:37:21.183Z");
        assert_eq!(&format_rfc3339_ms(-1), b"1969-12-31T23:59:59.999Z");
        for ms in [0, 951_782_400_000, 1_709_166_600_123, 4_102_444_800_000, -86_400_001] {
            assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(ms)), Some(ms));
        }
    }
}
