//! Postgres times and dates, `interval`, `inet`, `cidr`, `json` and `jsonb`
//! between their binary forms (what sqlx sends and receives) and text: a
//! time or date in RFC 3339 or ISO 8601 (`infinity` and `-infinity` as
//! Postgres writes them), an interval as an ISO 8601 duration
//! (`IntervalStyle = iso_8601`), an address as `inet_out` and `cidr_out` do,
//! JSON as the database holds it.

use sqlx::types::chrono;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `PGSQL_AF_INET` and `PGSQL_AF_INET6`: the family byte of the binary form.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 3;

/// 2000-01-01, where Postgres counts times and dates from, in days from
/// 0001-01-01 and in microseconds from 1970.
const EPOCH_DAYS_FROM_CE: i32 = 730_120;
const EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// `24:00:00`, which a Postgres `time` may hold, in microseconds.
const MIDNIGHT_AFTER: i64 = 86_400_000_000;

/// A `timestamptz`, `timestamp`, `date`, `time` or `timetz` (the `kind`
/// sqlx names) in its binary form (microseconds or days from 2000-01-01,
/// microseconds from midnight) as text: RFC 3339 in UTC for a
/// `timestamptz`, ISO 8601 for the others (`10:30:00+01:00` for a
/// `timetz`), and `infinity` / `-infinity` as Postgres writes them.
/// sqlx's own decoding panics on those and on years chrono cannot hold;
/// `None` for the latter and for a malformed form.
pub fn time(kind: &str, bytes: &[u8]) -> Option<String> {
    if kind == "TIMETZ" {
        // The time, then the zone's offset in seconds west of UTC.
        let (time, zone) = bytes.split_at_checked(8)?;
        let east = i32::from_be_bytes(zone.try_into().ok()?).checked_neg()?;
        let (sign, offset) = (if east < 0 { '-' } else { '+' }, east.unsigned_abs());
        let mut text = format!(
            "{}{sign}{:02}:{:02}",
            self::time("TIME", time)?,
            offset / 3600,
            offset / 60 % 60
        );
        if offset % 60 != 0 {
            text.push_str(&format!(":{:02}", offset % 60));
        }
        return Some(text);
    }
    if kind == "DATE" {
        return match i32::from_be_bytes(bytes.try_into().ok()?) {
            i32::MAX => Some("infinity".to_owned()),
            i32::MIN => Some("-infinity".to_owned()),
            days => {
                chrono::NaiveDate::from_num_days_from_ce_opt(days.checked_add(EPOCH_DAYS_FROM_CE)?)
                    .map(|day| day.to_string())
            }
        };
    }
    let micros = i64::from_be_bytes(bytes.try_into().ok()?);
    if kind == "TIME" && micros == MIDNIGHT_AFTER {
        return Some("24:00:00".to_owned());
    }
    if kind == "TIME" {
        let seconds = u32::try_from(micros.div_euclid(1_000_000)).ok()?;
        let nanos = u32::try_from(micros.rem_euclid(1_000_000) * 1_000).ok()?;
        return chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
            .map(|time| time.format("%H:%M:%S%.f").to_string());
    }
    let at = match micros {
        i64::MAX => return Some("infinity".to_owned()),
        i64::MIN => return Some("-infinity".to_owned()),
        micros => chrono::DateTime::from_timestamp_micros(micros.checked_add(EPOCH_UNIX_MICROS)?)?,
    };
    Some(match kind {
        "TIMESTAMPTZ" => at.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string(),
        _ => at.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string(),
    })
}

/// The binary form of `text` as a `timestamptz`, `timestamp`, `date`,
/// `time` or `timetz` (the `kind` sqlx names): what [`time`] writes reads
/// back, a `timestamp` may have a space for its `T`, and a `timetz`'s zone
/// may be `Z`, `+01`, `+0100` or `+01:00`. The error names the form
/// expected.
pub fn encode_time(kind: &str, text: &str) -> Result<Vec<u8>, &'static str> {
    let micros_from_epoch = |unix_micros: i64| {
        unix_micros
            .checked_sub(EPOCH_UNIX_MICROS)
            .ok_or("a time Postgres can hold")
    };
    match (kind, text) {
        ("DATE", "infinity") => Ok(i32::MAX.to_be_bytes().to_vec()),
        ("DATE", "-infinity") => Ok(i32::MIN.to_be_bytes().to_vec()),
        ("TIMESTAMPTZ" | "TIMESTAMP", "infinity") => Ok(i64::MAX.to_be_bytes().to_vec()),
        ("TIMESTAMPTZ" | "TIMESTAMP", "-infinity") => Ok(i64::MIN.to_be_bytes().to_vec()),
        ("TIME", "24:00:00") => Ok(MIDNIGHT_AFTER.to_be_bytes().to_vec()),
        ("DATE", _) => {
            let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| "a date (YYYY-MM-DD)")?;
            let epoch =
                chrono::NaiveDate::from_num_days_from_ce_opt(EPOCH_DAYS_FROM_CE).ok_or("a date")?;
            let days =
                i32::try_from((date - epoch).num_days()).map_err(|_| "a date Postgres can hold")?;
            Ok(days.to_be_bytes().to_vec())
        }
        ("TIME", _) => {
            let time = chrono::NaiveTime::parse_from_str(text, "%H:%M:%S%.f")
                .map_err(|_| "a time (HH:MM:SS)")?;
            let micros = (time - chrono::NaiveTime::MIN)
                .num_microseconds()
                .ok_or("a time (HH:MM:SS)")?;
            Ok(micros.to_be_bytes().to_vec())
        }
        // Also as Postgres writes one: `2026-11-22 09:30:00+00`.
        ("TIMESTAMPTZ", _) => {
            let at = chrono::DateTime::parse_from_rfc3339(text)
                .or_else(|_| chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z"))
                .map_err(|_| "an RFC 3339 timestamp (2026-11-22T09:30:00Z)")?;
            Ok(micros_from_epoch(at.timestamp_micros())?
                .to_be_bytes()
                .to_vec())
        }
        ("TIMESTAMP", _) => {
            let at = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                .map_err(|_| "a timestamp (YYYY-MM-DDTHH:MM:SS)")?;
            Ok(micros_from_epoch(at.and_utc().timestamp_micros())?
                .to_be_bytes()
                .to_vec())
        }
        ("TIMETZ", _) => {
            const WHAT: &str = "a time with its zone (HH:MM:SS+HH:MM)";
            let (time, east) = match text.strip_suffix(['Z', 'z']) {
                Some(time) => (time, 0),
                None => {
                    let (time, zone) = text.split_at(text.rfind(['+', '-']).ok_or(WHAT)?);
                    (time, zone_offset(zone).ok_or(WHAT)?)
                }
            };
            let mut form = encode_time("TIME", time).map_err(|_| WHAT)?;
            form.extend_from_slice(&(-east).to_be_bytes());
            Ok(form)
        }
        _ => Err("a time or date"),
    }
}

/// A zone's offset east of UTC in seconds, from `+01`, `-05:30`, `+0530`
/// or `+05:30:15`; `None` past the ±15:59:59 Postgres holds.
fn zone_offset(zone: &str) -> Option<i32> {
    let (sign, digits) = match zone.split_at_checked(1)? {
        ("+", digits) => (1, digits),
        ("-", digits) => (-1, digits),
        _ => return None,
    };
    let parts: Vec<&str> = match digits.split(':').collect::<Vec<_>>() {
        parts if parts.len() > 1 => parts,
        _ if digits.len() == 4 => vec![digits.get(..2)?, digits.get(2..)?],
        parts => parts,
    };
    let mut seconds = 0;
    for (part, (unit, limit)) in parts.iter().zip([(3600, 16), (60, 60), (1, 60)]) {
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let amount: i32 = part.parse().ok()?;
        if amount >= limit {
            return None;
        }
        seconds += amount * unit;
    }
    (parts.len() <= 3).then_some(sign * seconds)
}

/// An `interval` (microseconds, days, months, each big-endian) as an ISO
/// 8601 duration: `P1Y2M3DT4H5M6.5S`, `PT0S`, `P-1Y-2M3DT-4H` (each part
/// keeps its own sign, as Postgres keeps them apart). `None` when the bytes
/// are not 16 long.
pub fn interval(bytes: &[u8]) -> Option<String> {
    let bytes: &[u8; 16] = bytes.try_into().ok()?;
    let micros = i64::from_be_bytes(bytes[0..8].try_into().ok()?);
    let days = i32::from_be_bytes(bytes[8..12].try_into().ok()?);
    let months = i32::from_be_bytes(bytes[12..16].try_into().ok()?);
    if micros == 0 && days == 0 && months == 0 {
        return Some("PT0S".to_owned());
    }
    let mut text = String::from("P");
    for (amount, unit) in [(months / 12, 'Y'), (months % 12, 'M'), (days, 'D')] {
        if amount != 0 {
            text.push_str(&format!("{amount}{unit}"));
        }
    }
    if micros != 0 {
        text.push('T');
        let hours = micros / 3_600_000_000;
        let minutes = micros / 60_000_000 % 60;
        let seconds = micros % 60_000_000;
        for (amount, unit) in [(hours, 'H'), (minutes, 'M')] {
            if amount != 0 {
                text.push_str(&format!("{amount}{unit}"));
            }
        }
        if seconds != 0 {
            let sign = if seconds < 0 { "-" } else { "" };
            let (whole, fraction) = (seconds.abs() / 1_000_000, seconds.abs() % 1_000_000);
            text.push_str(&format!("{sign}{whole}"));
            if fraction != 0 {
                let digits = format!("{fraction:06}");
                text.push('.');
                text.push_str(digits.trim_end_matches('0'));
            }
            text.push('S');
        }
    }
    Some(text)
}

/// The binary form of an ISO 8601 duration as an `interval`: what
/// [`interval`] writes reads back (`P1Y2M3DT4H5M6.5S`, `PT0S`, each part
/// with its own sign), and weeks (`P2W`) count as 7 days. The error names
/// the form expected.
pub fn encode_interval(text: &str) -> Result<Vec<u8>, &'static str> {
    const WHAT: &str = "an ISO 8601 duration (P1Y2M3DT4H5M6.5S)";
    let rest = text.strip_prefix('P').ok_or(WHAT)?;
    let (date, time) = match rest.split_once('T') {
        Some((date, time)) if !time.is_empty() => (date, time),
        Some(_) => return Err(WHAT),
        None if !rest.is_empty() => (rest, ""),
        None => return Err(WHAT),
    };
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    for (amount, unit) in parts(date).ok_or(WHAT)? {
        let (field, factor) = match unit {
            'Y' => (&mut months, 12),
            'M' => (&mut months, 1),
            'W' => (&mut days, 7),
            'D' => (&mut days, 1),
            _ => return Err(WHAT),
        };
        *field = amount
            .parse::<i64>()
            .ok()
            .and_then(|n| field.checked_add(n.checked_mul(factor)?))
            .ok_or(WHAT)?;
    }
    for (amount, unit) in parts(time).ok_or(WHAT)? {
        let scale = match unit {
            'H' => 3_600_000_000,
            'M' => 60_000_000,
            'S' => 1_000_000,
            _ => return Err(WHAT),
        };
        micros = scaled(amount, scale)
            .and_then(|n| micros.checked_add(n))
            .ok_or(WHAT)?;
    }
    let months = i32::try_from(months).map_err(|_| "a duration Postgres can hold")?;
    let days = i32::try_from(days).map_err(|_| "a duration Postgres can hold")?;
    let mut form = micros.to_be_bytes().to_vec();
    form.extend_from_slice(&days.to_be_bytes());
    form.extend_from_slice(&months.to_be_bytes());
    Ok(form)
}

/// The `(amount, unit)` pairs of a run like `1Y-2M3D`; `None` when a unit
/// has no amount or an amount no unit.
fn parts(run: &str) -> Option<Vec<(&str, char)>> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (at, c) in run.char_indices() {
        if c.is_ascii_uppercase() {
            let amount = &run[start..at];
            if amount.is_empty() || amount == "-" {
                return None;
            }
            parts.push((amount, c));
            start = at + 1;
        }
    }
    (start == run.len()).then_some(parts)
}

/// `amount` (digits, a sign, at most six decimals) times `scale`.
fn scaled(amount: &str, scale: i64) -> Option<i64> {
    let (negative, digits) = match amount.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, amount),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let is_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !is_digits(whole) || !is_digits(fraction) || fraction.len() > 6 {
        return None;
    }
    if !fraction.is_empty() && scale != 1_000_000 {
        return None;
    }
    let fraction = format!("{fraction:0<6}").parse::<i64>().ok()?;
    let value = whole
        .parse::<i64>()
        .ok()?
        .checked_mul(scale)?
        .checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

/// An `inet` or `cidr` (family, prefix bits, is-cidr, address length,
/// address) as text: `192.168.0.1`, `10.0.0.0/8`, `2001:db8::1/64`. An
/// `inet` omits a prefix that covers the whole address; a `cidr` always
/// shows it. `None` for a malformed form.
pub fn address(bytes: &[u8]) -> Option<String> {
    let [family, bits, is_cidr, length, addr @ ..] = bytes else {
        return None;
    };
    let (ip, whole) = match (*family, *length, addr.len()) {
        (AF_INET, 4, 4) => (
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?)),
            32,
        ),
        (AF_INET6, 16, 16) => (
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)),
            128,
        ),
        _ => return None,
    };
    if *bits > whole {
        return None;
    }
    Some(match *is_cidr != 0 || *bits != whole {
        true => format!("{ip}/{bits}"),
        false => ip.to_string(),
    })
}

/// The binary form of `text` as an `inet` (`cidr` when `cidr`): an address
/// with an optional `/bits`. A `cidr` must have no bits set past its
/// prefix, as Postgres requires.
pub fn encode_address(text: &str, cidr: bool) -> Result<Vec<u8>, String> {
    let (ip, bits) = match text.trim().split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IPv4 or IPv6 address"))?;
    let (family, octets, whole): (u8, Vec<u8>, u8) = match ip {
        IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec(), 32),
        IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec(), 128),
    };
    let bits = match bits {
        Some(bits) => bits
            .parse::<u8>()
            .ok()
            .filter(|bits| *bits <= whole)
            .ok_or_else(|| format!("`/{bits}` is not a prefix length of 0 to {whole}"))?,
        None => whole,
    };
    if cidr {
        let host_bits = octets.iter().enumerate().any(|(i, octet)| {
            let kept = (usize::from(bits).saturating_sub(i * 8)).min(8);
            let mask = if kept == 0 { 0 } else { 0xffu8 << (8 - kept) };
            octet & !mask != 0
        });
        if host_bits {
            return Err(format!(
                "`{text}` has bits set to the right of its /{bits} prefix, which a cidr cannot have"
            ));
        }
    }
    let mut form = vec![family, bits, u8::from(cidr), octets.len() as u8];
    form.extend_from_slice(&octets);
    Ok(form)
}

/// The version byte that starts a `jsonb` in binary form.
const JSONB_VERSION: u8 = 1;

/// A `json` or `jsonb` (the `kind` sqlx names) in binary form as its text,
/// unchanged: every digit of a number, and a `json`'s spacing, key order
/// and repeated keys, stay as Postgres has them. `None` for a malformed form.
pub fn json(kind: &str, bytes: &[u8]) -> Option<String> {
    let text = match kind {
        "JSONB" => bytes.strip_prefix(&[JSONB_VERSION])?,
        _ => bytes,
    };
    String::from_utf8(text.to_vec()).ok()
}

/// Whether `text` is JSON, read for its syntax only (no number is
/// converted, so none is too big), to name the parameter in the error;
/// Postgres parses it again. Nesting deeper than the reader follows is left
/// to Postgres, which allows more.
pub fn check_json(text: &str) -> Result<(), serde_json::Error> {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// JSON `text` in the binary form of a `json` or `jsonb`. Postgres parses
/// it, and refuses what is not JSON with its own message.
pub fn encode_json(kind: &str, text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    if kind == "JSONB" {
        bytes.push(JSONB_VERSION);
    }
    bytes.extend_from_slice(text.as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(micros: i64, days: i32, months: i32) -> Vec<u8> {
        [
            &micros.to_be_bytes()[..],
            &days.to_be_bytes(),
            &months.to_be_bytes(),
        ]
        .concat()
    }

    #[test]
    fn json_is_checked_for_syntax_only() {
        assert!(check_json(r#"{"a": 1e400, "b": 123456789012345678901234567890}"#).is_ok());
        assert!(check_json(&format!("{}1{}", "[".repeat(1000), "]".repeat(1000))).is_ok());
        let error = check_json("{likes: 3}").unwrap_err();
        assert!(error.to_string().contains("line 1 column 2"), "{error}");
        assert!(check_json("[1,]").is_err());
        assert_eq!(
            json("JSONB", &encode_json("JSONB", "[1]")).as_deref(),
            Some("[1]")
        );
    }

    #[test]
    fn times_with_a_zone_read_back_as_written() {
        for (text, back) in [
            ("10:30:00+01:00", "10:30:00+01:00"),
            ("10:30:00.25-05:30", "10:30:00.250-05:30"),
            ("23:59:59Z", "23:59:59+00:00"),
            ("00:00:00+0530", "00:00:00+05:30"),
            ("12:00:00-03", "12:00:00-03:00"),
            ("24:00:00+15:59:59", "24:00:00+15:59:59"),
        ] {
            let form = encode_time("TIMETZ", text).unwrap();
            assert_eq!(time("TIMETZ", &form).as_deref(), Some(back), "{text}");
        }
        for wrong in [
            "10:30:00",
            "10:30:00+16:00",
            "10:30:00+1",
            "10:30:00+€1",
            "10:30:00+1é1",
            "25:00:00+01",
            "+01:00",
        ] {
            assert!(encode_time("TIMETZ", wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn durations_read_back_as_written() {
        for text in [
            "PT0S",
            "P1Y2M3DT4H5M6.5S",
            "P-1Y-2M3DT-4H",
            "PT-1H-30M",
            "P3D",
            "PT0.000001S",
            "P178000000Y",
        ] {
            let form = encode_interval(text).unwrap();
            assert_eq!(interval(&form).as_deref(), Some(text));
        }
        assert_eq!(
            interval(&encode_interval("P2W").unwrap()).as_deref(),
            Some("P14D")
        );
        for wrong in [
            "",
            "P",
            "PT",
            "1D",
            "P1",
            "PD",
            "P1H",
            "PT1D",
            "PT1.5M",
            "PT0.0000001S",
            "P-T1H",
            "P1é",
        ] {
            assert!(encode_interval(wrong).is_err(), "{wrong}");
        }
        assert!(encode_interval("P999999999999Y").is_err());
    }

    #[test]
    fn intervals_read_as_postgres_writes_them_in_iso_8601() {
        let cases = [
            (form(0, 0, 0), "PT0S"),
            (form(14_706_789_000, 3, 14), "P1Y2M3DT4H5M6.789S"),
            (form(-14_706_000_000, 3, -14), "P-1Y-2M3DT-4H-5M-6S"),
            (form(-500_000, 0, 0), "PT-0.5S"),
            (form(1, 0, 0), "PT0.000001S"),
            (form(0, -1, 0), "P-1D"),
            (form(3_600_000_000, 0, 0), "PT1H"),
        ];
        for (bytes, text) in cases {
            assert_eq!(interval(&bytes).as_deref(), Some(text));
        }
        assert_eq!(interval(&[0; 15]), None);
    }

    #[test]
    fn times_and_dates_go_both_ways() {
        for (kind, text, shown) in [
            (
                "TIMESTAMPTZ",
                "2026-11-22T10:30:00+01:00",
                "2026-11-22T09:30:00Z",
            ),
            (
                "TIMESTAMPTZ",
                "1999-12-31T23:59:59.5Z",
                "1999-12-31T23:59:59.500Z",
            ),
            ("TIMESTAMPTZ", "infinity", "infinity"),
            (
                "TIMESTAMP",
                "2026-11-22 10:30:00.25",
                "2026-11-22T10:30:00.250",
            ),
            ("TIMESTAMP", "-infinity", "-infinity"),
            ("DATE", "1970-01-01", "1970-01-01"),
            ("DATE", "infinity", "infinity"),
            ("TIME", "23:59:59.000001", "23:59:59.000001"),
            ("TIME", "00:00:00", "00:00:00"),
            ("TIME", "24:00:00", "24:00:00"),
            (
                "TIMESTAMPTZ",
                "2026-11-22 10:30:00+01",
                "2026-11-22T09:30:00Z",
            ),
        ] {
            let bytes = encode_time(kind, text).unwrap();
            assert_eq!(time(kind, &bytes).as_deref(), Some(shown), "{kind} {text}");
        }
        // Postgres counts from 2000-01-01.
        assert_eq!(
            encode_time("DATE", "2000-01-02").unwrap(),
            1i32.to_be_bytes()
        );
        assert_eq!(
            encode_time("TIMESTAMP", "2000-01-01T00:00:01").unwrap(),
            1_000_000i64.to_be_bytes()
        );
        assert_eq!(encode_time("TIME", "tomorrow"), Err("a time (HH:MM:SS)"));
        assert_eq!(
            encode_time("DATE", "2026-02-30"),
            Err("a date (YYYY-MM-DD)")
        );
        assert!(encode_time("TIMESTAMPTZ", "2026-11-22 10:30").is_err());
        assert_eq!(time("DATE", &[0, 0, 1]), None);
        assert_eq!(time("TIME", &(-1i64).to_be_bytes()), None);
    }

    #[test]
    fn addresses_go_both_ways() {
        for (text, cidr, shown) in [
            ("192.168.0.1", false, "192.168.0.1"),
            ("192.168.0.1/24", false, "192.168.0.1/24"),
            ("10.0.0.0/8", true, "10.0.0.0/8"),
            ("10.1.2.3", true, "10.1.2.3/32"),
            ("2001:db8::1", false, "2001:db8::1"),
            ("2001:db8::/32", true, "2001:db8::/32"),
        ] {
            let bytes = encode_address(text, cidr).unwrap();
            assert_eq!(address(&bytes).as_deref(), Some(shown), "{text}");
        }
        assert!(
            encode_address("10.1.0.0/8", true)
                .unwrap_err()
                .contains("right of")
        );
        assert!(
            encode_address("10.0.0.1/33", false)
                .unwrap_err()
                .contains("prefix")
        );
        assert!(encode_address("example.com", false).is_err());
        assert_eq!(address(&[AF_INET, 33, 0, 4, 1, 2, 3, 4]), None);
        assert_eq!(address(&[AF_INET, 32, 0, 4, 1, 2, 3]), None);
    }
}
