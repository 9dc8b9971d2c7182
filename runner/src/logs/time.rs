//! Times in logs: the RFC3339 forms json-file stores and `--timestamps` prints (formatted
//! without allocation), their fast parse, and Docker's `--since`/`--until` values.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

/// Go's `time.RFC3339Nano` (what json-file stores): trailing zeros of the fraction dropped, no
/// fraction at all on a whole second. Returns the length written.
pub(super) fn format_rfc3339_nano(t: &DateTime<Utc>, buf: &mut [u8; 40]) -> usize {
    let mut n = format_seconds(t, buf);
    let mut nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let mut digits = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            digits -= 1;
        }
        buf[n] = b'.';
        write_digits(&mut buf[n + 1..n + 1 + digits], nanos);
        n += 1 + digits;
    }
    buf[n] = b'Z';
    n + 1
}

/// Docker's `RFC3339NanoFixed` (what `logs --timestamps` prints): always nine fraction digits.
pub(super) fn format_rfc3339_fixed(t: &DateTime<Utc>, buf: &mut [u8; 40]) -> usize {
    let n = format_seconds(t, buf);
    buf[n] = b'.';
    write_digits(&mut buf[n + 1..n + 10], t.nanosecond() % 1_000_000_000);
    buf[n + 10] = b'Z';
    n + 11
}

/// `YYYY-MM-DDTHH:MM:SS`; years outside 0..=9999 are clamped, as no log entry has one.
pub(super) fn format_seconds(t: &DateTime<Utc>, buf: &mut [u8; 40]) -> usize {
    write_digits(&mut buf[0..4], t.year().clamp(0, 9999) as u32);
    buf[4] = b'-';
    write_digits(&mut buf[5..7], t.month());
    buf[7] = b'-';
    write_digits(&mut buf[8..10], t.day());
    buf[10] = b'T';
    write_digits(&mut buf[11..13], t.hour());
    buf[13] = b':';
    write_digits(&mut buf[14..16], t.minute());
    buf[16] = b':';
    write_digits(&mut buf[17..19], t.second());
    19
}

pub(super) fn write_digits(dst: &mut [u8], mut v: u32) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses the RFC3339 times in log entries; a fast path for our own `…Z` form, chrono otherwise.
pub(super) fn parse_time(s: &[u8]) -> Option<DateTime<Utc>> {
    parse_time_z(s).or_else(|| {
        let s = std::str::from_utf8(s).ok()?;
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

pub(super) fn parse_time_z(s: &[u8]) -> Option<DateTime<Utc>> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        s.get(r)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let nanos = parse_fraction_z(&s[19..])?;
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    Some(
        date.and_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?
            .and_utc(),
    )
}

/// The end of a `…Z` time after the seconds: `Z` or `.digits Z`, as nanoseconds (digits past
/// the ninth are dropped, as Go does).
pub(super) fn parse_fraction_z(s: &[u8]) -> Option<u32> {
    let Some(frac) = s.strip_prefix(b".") else {
        return (s == b"Z").then_some(0);
    };
    let digits = frac.strip_suffix(b"Z")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.len().min(9);
    let v = digits[..n]
        .iter()
        .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
    Some(v * 10u32.pow(9 - n as u32))
}

/// Docker's `--since`/`--until` values (`timetypes.GetTimestamp`): a Go duration before `now`
/// (`10m`, `1h30m`, `1.5h`; Docker keeps whole seconds of it), an RFC3339 time with or without
/// fraction and zone, a date `2006-01-02`, `2006-01-02T15[:04[:05]]`, or a Unix time with an
/// optional fraction (`1700000000.5`). Times without a zone are in the local zone, as the Docker
/// CLI reads them.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    use chrono::TimeZone;
    let local = chrono::Local.offset_from_utc_datetime(&now.naive_utc());
    parse_since_in(s, now, local)
}

pub(super) fn parse_since_in(
    s: &str,
    now: DateTime<Utc>,
    local: chrono::FixedOffset,
) -> Result<DateTime<Utc>, String> {
    // "0" is a Unix time, not a zero duration (Docker special-cases it).
    if s != "0"
        && let Some(nanos) = parse_go_duration(s)
    {
        let t = now
            .timestamp_nanos_opt()
            .ok_or("the current time is out of range")? as i128
            - nanos;
        let secs = i64::try_from(t.div_euclid(1_000_000_000))
            .map_err(|_| format!("duration {s:?} is out of range"))?;
        return DateTime::from_timestamp(secs, 0)
            .ok_or_else(|| format!("duration {s:?} is out of range"));
    }
    if let Some(t) = parse_datetime(s, local) {
        return Ok(t);
    }
    if s.contains('-') {
        return Err(format!(
            "cannot parse {s:?} as a time: expected RFC3339 (2006-01-02T15:04:05.999999999Z07:00), \
             2006-01-02, or 2006-01-02T15[:04[:05]]"
        ));
    }
    parse_unix(s).ok_or_else(|| format!("failed to parse value as time or duration: {s:?}"))
}

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?unit)+`.
pub(super) fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, r) = rest.split_at(int_len);
        let (frac, r) = match r.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", r),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = r
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(r.len());
        let (unit, r) = r.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part = whole.checked_mul(scale)?;
        if !frac.is_empty() {
            // Go scales the fraction in floating point too.
            let f: f64 = format!("0.{frac}").parse().ok()?;
            part += (f * scale as f64) as i128;
        }
        total = total.checked_add(part)?;
        if total > i64::MAX as i128 {
            return None;
        }
        rest = r;
    }
    Some(if neg { -total } else { total })
}

/// `YYYY-MM-DD[THH[:MM[:SS[.fraction]]]][Z|±HH:MM]`; no zone means `local`.
pub(super) fn parse_datetime(s: &str, local: chrono::FixedOffset) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (mut h, mut m, mut sec, mut nanos) = (0, 0, 0, 0u32);
    let mut i = 10;
    if b.get(i) == Some(&b'T') {
        h = num(i + 1..i + 3)?;
        i += 3;
        if b.get(i) == Some(&b':') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            m = num(i + 1..i + 3)?;
            i += 3;
            if b.get(i) == Some(&b':') {
                sec = num(i + 1..i + 3)?;
                i += 3;
                if b.get(i) == Some(&b'.') {
                    let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    if digits == 0 || digits > 9 {
                        return None;
                    }
                    nanos = num(i + 1..i + 1 + digits)? * 10u32.pow(9 - digits as u32);
                    i += 1 + digits;
                }
            }
        }
    }
    let naive = date.and_hms_nano_opt(h, m, sec, nanos)?;
    let offset = match &b[i..] {
        [] => local,
        [b'Z'] => chrono::FixedOffset::east_opt(0)?,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let secs = (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60) as i32;
            chrono::FixedOffset::east_opt(if *sign == b'-' { -secs } else { secs })?
        }
        _ => return None,
    };
    Some((naive - offset).and_utc())
}

/// `seconds[.fraction]` since the epoch.
pub(super) fn parse_unix(s: &str) -> Option<DateTime<Utc>> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|c| c.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32)
    };
    DateTime::from_timestamp(secs.parse().ok()?, nanos)
}
