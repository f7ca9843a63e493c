//! Postgres `numeric` in its binary form, both ways, exactly: any length and
//! scale, NaN and ±Infinity. (rust_decimal, sqlx's numeric type, holds 28
//! digits, so a longer value could neither be read nor written.)
//!
//! The form: digit count, weight (the power of 10000 of the first digit),
//! sign (or NaN, ±Infinity), display scale, then the base-10000 digits, each
//! a big-endian 16-bit word.

/// The type's oid in `pg_type`.
pub const OID: sqlx::postgres::types::Oid = sqlx::postgres::types::Oid(1700);

const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
const INFINITY: u16 = 0xD000;
const NEGATIVE_INFINITY: u16 = 0xF000;

/// The largest display scale Postgres keeps (`NUMERIC_DSCALE_MAX`).
const MAX_SCALE: i64 = 0x3FFF;

/// The most decimal digits before the point Postgres takes (131072).
const MAX_INTEGER_DIGITS: i64 = 131_072;

/// The most base-10000 digits Postgres reads in the binary form
/// (`NUMERIC_MAX_PRECISION + NUMERIC_MAX_RESULT_SCALE`).
const MAX_GROUPS: usize = 3_000;

/// A numeric as Postgres writes it: every digit, with exactly its display
/// scale of fractional digits. `None` when the bytes are not a numeric.
pub fn decode(bytes: &[u8]) -> Option<String> {
    let word = |at: usize| Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let count = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let scale = usize::from(word(6)?);
    let sign = match word(4)? {
        POSITIVE => "",
        NEGATIVE => "-",
        NAN => return Some("NaN".to_owned()),
        INFINITY => return Some("Infinity".to_owned()),
        NEGATIVE_INFINITY => return Some("-Infinity".to_owned()),
        _ => return None,
    };
    let digits = (0..count)
        .map(|k| word(8 + 2 * k).filter(|d| *d < 10_000))
        .collect::<Option<Vec<u16>>>()?;
    // The base-10000 digit of power `weight - index`, zero outside those given.
    let digit = |index: i64| {
        usize::try_from(index)
            .ok()
            .and_then(|index| digits.get(index))
            .copied()
            .unwrap_or(0)
    };
    use std::fmt::Write;
    let mut out = String::from(sign);
    if weight < 0 {
        out.push('0');
    } else {
        let _ = write!(out, "{}", digit(0));
        for index in 1..=weight {
            let _ = write!(out, "{:04}", digit(index));
        }
    }
    if scale > 0 {
        out.push('.');
        let end = out.len() + scale;
        let mut index = weight + 1;
        while out.len() < end {
            let _ = write!(out, "{:04}", digit(index));
            index += 1;
        }
        out.truncate(end);
    }
    Some(out)
}

/// Why a text is not a numeric Postgres would take.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("not a decimal number")]
    Malformed,
    #[error(
        "past what numeric takes as a parameter (131072 digits before the point, 16383 after, about 12000 from the first nonzero digit to the last)"
    )]
    OutOfRange,
}

/// The binary form of a decimal text as Postgres's own input reads it:
/// an optional sign, digits with an optional point, an optional exponent
/// (`1.5e-3`), or `NaN`, `Infinity`, `-Infinity` in any case. The display
/// scale is the text's (`1.50` keeps two places).
pub fn encode(text: &str) -> Result<Vec<u8>, Unfit> {
    let text = text.trim();
    let special = match text.to_ascii_lowercase().as_str() {
        "nan" => Some(NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(INFINITY),
        "-infinity" | "-inf" => Some(NEGATIVE_INFINITY),
        _ => None,
    };
    if let Some(sign) = special {
        return Ok(form(sign, 0, 0, &[]));
    }
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (
            mantissa,
            exponent.parse::<i64>().map_err(|_| Unfit::Malformed)?,
        ),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if integer.len() + fraction.len() == 0 || !is_digits(integer) || !is_digits(fraction) {
        return Err(Unfit::Malformed);
    }
    // Each bound is checked before any digit is laid out, so a huge
    // exponent costs nothing.
    let exponent = exponent.clamp(-(1 << 40), 1 << 40);
    let scale = (fraction.len() as i64 - exponent).max(0);
    let decimal: Vec<u8> = integer
        .bytes()
        .chain(fraction.bytes())
        .map(|b| b - b'0')
        .collect();
    // Where the point falls among the decimal digits, once leading zeros
    // (which say nothing) are gone.
    let leading = decimal.iter().take_while(|d| **d == 0).count();
    let decimal = &decimal[leading..];
    let point = integer.len() as i64 + exponent - leading as i64;
    if scale > MAX_SCALE || (!decimal.is_empty() && point > MAX_INTEGER_DIGITS) {
        return Err(Unfit::OutOfRange);
    }
    let decimal = &decimal[..decimal.len() - decimal.iter().rev().take_while(|d| **d == 0).count()];
    if decimal.is_empty() {
        return Ok(form(POSITIVE, 0, scale as u16, &[]));
    }
    // Zeros before the first digit so that the point falls on a group of
    // four; the weight is then the power of 10000 of the first group.
    let pad = (4 - point.rem_euclid(4)) % 4;
    let weight = (point + pad) / 4 - 1;
    let mut groups = Vec::with_capacity((decimal.len() + pad as usize).div_ceil(4));
    let mut group = 0u16;
    let mut filled = pad;
    for digit in decimal {
        group = group * 10 + u16::from(*digit);
        filled += 1;
        if filled == 4 {
            groups.push(group);
            (group, filled) = (0, 0);
        }
    }
    if filled > 0 {
        groups.push(group * 10u16.pow((4 - filled) as u32));
    }
    if groups.len() > MAX_GROUPS {
        return Err(Unfit::OutOfRange);
    }
    let weight = i16::try_from(weight).map_err(|_| Unfit::OutOfRange)?;
    let sign = if negative { NEGATIVE } else { POSITIVE };
    Ok(form(sign, weight, scale as u16, &groups))
}

fn form(sign: u16, weight: i16, scale: u16, groups: &[u16]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + 2 * groups.len());
    bytes.extend_from_slice(&(groups.len() as u16).to_be_bytes());
    bytes.extend_from_slice(&weight.to_be_bytes());
    bytes.extend_from_slice(&sign.to_be_bytes());
    bytes.extend_from_slice(&scale.to_be_bytes());
    for group in groups {
        bytes.extend_from_slice(&group.to_be_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_survives_the_binary_form() {
        for (text, back) in [
            ("0", "0"),
            ("-0.000", "0.000"),
            ("1.50", "1.50"),
            ("-12345.6789", "-12345.6789"),
            ("0.00001", "0.00001"),
            ("1e-5", "0.00001"),
            ("12e5", "1200000"),
            ("1.5E1", "15"),
            ("+7", "7"),
            ("000123.4500", "123.4500"),
            (".5", "0.5"),
            ("5.", "5"),
            ("NaN", "NaN"),
            ("-inf", "-Infinity"),
            (
                "123456789012345678901234567890.123456789012345678901234567890",
                "123456789012345678901234567890.123456789012345678901234567890",
            ),
        ] {
            let bytes = encode(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(decode(&bytes).as_deref(), Some(back), "{text}");
        }
    }

    #[test]
    fn what_postgres_refuses_is_refused_without_laying_out_digits() {
        for bad in ["", "-", ".", "1.2.3", "1e", "abc", "1_000", "0x10", "1e5.5"] {
            assert_eq!(encode(bad), Err(Unfit::Malformed), "{bad:?}");
        }
        let digits = |n: usize| "7".repeat(n);
        for huge in [
            "1e999999999999".to_owned(),
            "1e-16384".to_owned(),
            "1e131072".to_owned(),
            digits(12_001),
        ] {
            assert_eq!(encode(&huge), Err(Unfit::OutOfRange), "{huge}");
        }
        assert!(encode("1e131071").is_ok());
        assert!(encode(&digits(12_000)).is_ok());
    }
}
