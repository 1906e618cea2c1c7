//! Parsing single CSV cells: token counts, arrival seconds and Azure wall-clock timestamps.
//!
//! Each parser returns the reason as a plain `String` on failure; the caller adds the line and column.

use std::borrow::Cow;

use super::columns::TimeUnit;

/// Longest excerpt of input quoted in an error message, in characters.
pub(crate) const MAX_QUOTED_CHARS: usize = 60;

/// `raw` for an error message: whole when short, else its first [`MAX_QUOTED_CHARS`] characters, an ellipsis
/// and its size, so a message never grows with the input (a CR-only file is one huge "line").
pub(crate) fn excerpt(raw: &str) -> Cow<'_, str> {
    match raw.char_indices().nth(MAX_QUOTED_CHARS) {
        None => Cow::Borrowed(raw),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes)", &raw[..cut], raw.len())),
    }
}

/// Trims whitespace and one pair of surrounding double quotes (no embedded commas or escapes are supported).
pub(super) fn clean(cell: &str) -> &str {
    let t = cell.trim();
    t.strip_prefix('"').and_then(|s| s.strip_suffix('"')).map_or(t, str::trim)
}

/// `raw` without thousands separators: `1,234,567` becomes `1234567`. Commas must group the integer digits by
/// three (`1,000`, `12,345.5`); any other comma (`1,00`, `,5`, `1,,000`) is an error quoting the value. Only a
/// quoted CSV field can hold a comma (`"1,000"`); unquoted, the comma separates fields.
pub(super) fn strip_thousands(raw: &str) -> Result<Cow<'_, str>, String> {
    if !raw.contains(',') {
        return Ok(Cow::Borrowed(raw));
    }
    let unsigned = raw.strip_prefix(['+', '-']).unwrap_or(raw);
    let int_end = unsigned.find(['.', 'e', 'E']).unwrap_or(unsigned.len());
    let (int_part, rest) = unsigned.split_at(int_end);
    let mut groups = int_part.split(',');
    let first = groups.next().unwrap_or_default();
    let well_grouped = (1..=3).contains(&first.len())
        && first.bytes().all(|b| b.is_ascii_digit())
        && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
        && !rest.contains(',');
    if !well_grouped {
        return Err(format!(
            "misplaced comma in \"{}\": a number may contain commas only as thousands separators (1,000 or \
             12,345,678)",
            excerpt(raw)
        ));
    }
    Ok(Cow::Owned(raw.replace(',', "")))
}

/// A non-negative whole number, written as an integer (`12`) or an integral float (`12.0`, `1.2e1`), optionally
/// with thousands separators (`1,000`).
pub(super) fn parse_count(raw: &str) -> Result<u64, String> {
    // Built only for an error message: the happy path never pays for it.
    let shown = || excerpt(raw);
    if raw.is_empty() {
        return Err("empty value; expected a whole number of tokens".into());
    }
    let raw = &*strip_thousands(raw)?;
    if let Ok(v) = raw.parse::<u64>() {
        return Ok(v);
    }
    let v: f64 = raw.parse().map_err(|_| format!("not a number: found \"{}\"", shown()))?;
    if !v.is_finite() {
        return Err(format!("not a finite number: found \"{}\"", shown()));
    }
    if v < 0.0 {
        return Err(format!("negative value: found \"{}\"; lengths must be >= 0", shown()));
    }
    if v.fract() != 0.0 {
        return Err(format!("fractional token count: found \"{}\"; token columns must hold whole numbers", shown()));
    }
    if v > u64::MAX as f64 {
        return Err(too_large(raw));
    }
    Ok(v as u64)
}

/// The message for a count that does not fit in `u32`.
pub(super) fn too_large(raw: &str) -> String {
    let shown = excerpt(raw);
    format!("value too large: found \"{shown}\"; token counts must be at most {}", u32::MAX)
}

/// A finite, non-negative arrival time in `unit`s (Vidur's `arrived_at` in seconds, Mooncake's `timestamp` in
/// milliseconds), thousands separators allowed; returned in the same unit.
pub(super) fn parse_arrival(raw: &str, unit: TimeUnit) -> Result<f64, String> {
    // Built only for an error message: the happy path never pays for it.
    let shown = || excerpt(raw);
    if raw.is_empty() {
        return Err(format!("empty value; expected an arrival time in {}", unit.long_name()));
    }
    let raw = &*strip_thousands(raw)?;
    let v: f64 = raw.parse().map_err(|_| format!("not a number: found \"{}\"", shown()))?;
    if !v.is_finite() {
        return Err(format!("not a finite number: found \"{}\"", shown()));
    }
    if v < 0.0 {
        return Err(format!("negative value: found \"{}\"; arrival times must be >= 0", shown()));
    }
    Ok(v)
}

/// A wall-clock timestamp `YYYY-MM-DD HH:MM:SS[.fraction]` (a `T` may replace the space; the fraction may
/// have any number of digits; no time zone), as whole seconds since 1970-01-01 plus the fraction in `[0, 1)`.
///
/// Splitting whole seconds from the fraction keeps sub-microsecond precision when two timestamps are
/// subtracted.
pub(super) fn parse_timestamp(raw: &str) -> Result<(i64, f64), String> {
    // Built only for an error message: the happy path never pays for it.
    let shown = || excerpt(raw);
    let bad =
        |why: &str| format!("unparseable timestamp \"{}\": {why} (expected YYYY-MM-DD HH:MM:SS[.fraction])", shown());
    let (date, time) = raw.split_once([' ', 'T']).ok_or_else(|| bad("no space between date and time"))?;
    let mut d = date.split('-');
    let (Some(y), Some(mo), Some(dd), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad("the date is not YYYY-MM-DD"));
    };
    let (whole, frac) = match time.trim_start().split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (time.trim_start(), None),
    };
    let mut t = whole.split(':');
    let (Some(h), Some(mi), Some(s), None) = (t.next(), t.next(), t.next(), t.next()) else {
        return Err(bad("the time is not HH:MM:SS"));
    };
    let year = digits(y, 4, 4).ok_or_else(|| bad("the year is not 4 digits"))? as i64;
    let month = digits(mo, 1, 2).ok_or_else(|| bad("the month is not a number"))?;
    let day = digits(dd, 1, 2).ok_or_else(|| bad("the day is not a number"))?;
    let hour = digits(h, 1, 2).ok_or_else(|| bad("the hour is not a number"))?;
    let minute = digits(mi, 1, 2).ok_or_else(|| bad("the minute is not a number"))?;
    let second = digits(s, 1, 2).ok_or_else(|| bad("the second is not a number"))?;
    if !(1..=12).contains(&month) {
        return Err(bad(&format!("month {month} is not in 1..=12")));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(bad(&format!("day {day} does not exist in {year:04}-{month:02}")));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("hour, minute or second out of range"));
    }
    let fraction = match frac {
        None => 0.0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("0.{f}").parse::<f64>().map_err(|_| bad("bad fractional seconds"))?
        }
        Some(_) => return Err(bad("the fractional seconds are not digits")),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok((secs, fraction))
}

/// `s` as a number when it has between `min` and `max` ASCII digits and nothing else.
fn digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days in `month` (1-based) of the proleptic Gregorian `year`.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_integers_and_integral_floats_only() {
        assert_eq!(parse_count("12"), Ok(12));
        assert_eq!(parse_count("12.0"), Ok(12));
        assert_eq!(parse_count("1.2e1"), Ok(12));
        assert_eq!(parse_count("0"), Ok(0));
        assert!(parse_count("12.5").unwrap_err().contains("fractional"));
        assert!(parse_count("-3").unwrap_err().contains("negative"));
        assert!(parse_count("NaN").unwrap_err().contains("finite"));
        assert!(parse_count("inf").unwrap_err().contains("finite"));
        assert!(parse_count("abc").unwrap_err().contains("not a number"));
        assert!(parse_count("").unwrap_err().contains("empty"));
        assert_eq!(clean("  \"7\" "), "7");
    }

    #[test]
    fn thousands_separators_are_stripped_only_where_they_group_by_three() {
        assert_eq!(parse_count("1,000"), Ok(1000));
        assert_eq!(parse_count("12,345,678"), Ok(12_345_678));
        assert_eq!(parse_count("1,000.0"), Ok(1000));
        assert_eq!(parse_arrival("1,234.5", TimeUnit::Seconds), Ok(1234.5));
        assert_eq!(parse_arrival("+1,234", TimeUnit::Milliseconds), Ok(1234.0));
        for bad in ["1,00", ",100", "1,,000", "1000,000", "1,000,00", "1.000,5", "1,", "a,bcd", "1,000e1,000"] {
            let err = parse_count(bad).unwrap_err();
            assert!(err.contains("misplaced comma") && err.contains(bad), "{bad}: {err}");
        }
        assert!(parse_arrival("-1,000", TimeUnit::Seconds).unwrap_err().contains("negative"));
        assert!(parse_arrival("", TimeUnit::Milliseconds).unwrap_err().contains("milliseconds"));
    }

    #[test]
    fn timestamps_match_known_epoch_seconds() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Ok((0, 0.0)));
        // 2023-11-16 18:15:46 UTC is 1700158546 s after the epoch.
        let (s, f) = parse_timestamp("2023-11-16 18:15:46.6805900").unwrap();
        assert_eq!(s, 1_700_158_546);
        assert!((f - 0.68059).abs() < 1e-12);
        assert_eq!(parse_timestamp("2024-02-29T23:59:59.5"), Ok((1_709_251_199, 0.5)));
        assert_eq!(parse_timestamp("2000-03-01 00:00:00.1234567890123").map(|t| t.0), Ok(951_868_800));
    }

    #[test]
    fn bad_timestamps_are_rejected_with_the_reason() {
        for (raw, why) in [
            ("2023-11-16", "no space"),
            ("2023/11/16 18:15:46", "YYYY-MM-DD"),
            ("2023-13-01 00:00:00", "month 13"),
            ("2023-02-29 00:00:00", "day 29"),
            ("2023-11-16 24:00:00", "out of range"),
            ("2023-11-16 18:15", "HH:MM:SS"),
            ("2023-11-16 18:15:46.", "fractional"),
            ("2023-11-16 18:15:46.12a", "fractional"),
            ("23-11-16 18:15:46", "year"),
        ] {
            let err = parse_timestamp(raw).unwrap_err();
            assert!(err.contains(why) && err.contains(raw), "{raw}: {err}");
        }
    }
}
