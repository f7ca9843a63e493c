//! Postgres ranges as text, both ways, in Postgres's own range form:
//! `[1,10)`, `(,5]`, `empty`, each bound written as its scalar is (an
//! integer, an exact numeric, a date or time in the forms of [`pg_text`]),
//! so a `tstzrange` is `[2026-11-22T09:30:00Z,2026-11-23T00:00:00Z)`. What
//! arrives reads back as a parameter. None of those forms holds a character
//! a range quotes, so Postgres's own `'…'::tstzrange` reads it too, for
//! years 1 to 9999 (it takes a signed year, `-0044-03-15`, for a zone).
//!
//! The binary form (`range_send`): a flags byte; then, unless the range is
//! empty, each finite bound, lower first, as a length and its subtype's
//! binary form.

use super::arrays::Reader;
use super::{numeric, pg_text};
use sqlx::TypeInfo;
use sqlx::postgres::PgTypeInfo;

const EMPTY: u8 = 0x01;
const LOWER_INCLUSIVE: u8 = 0x02;
const UPPER_INCLUSIVE: u8 = 0x04;
const LOWER_UNBOUNDED: u8 = 0x08;
const UPPER_UNBOUNDED: u8 = 0x10;

/// The form a range parameter takes, for errors.
const SHAPE: &str = "a range such as [1,10), (,5] or empty";

/// Whether ranges of `subtype` map: the built-in ranges' subtypes, which a
/// range of the operator's own (`CREATE TYPE … AS RANGE`) may share.
pub fn maps(subtype: &PgTypeInfo) -> bool {
    matches!(
        subtype.name(),
        "INT4" | "INT8" | "NUMERIC" | "DATE" | "TIMESTAMP" | "TIMESTAMPTZ"
    )
}

/// A range of `subtype`s in binary form as text; `None` when malformed.
pub fn decode(bytes: &[u8], subtype: &str) -> Option<String> {
    let (&flags, rest) = bytes.split_first()?;
    if flags & EMPTY != 0 {
        return rest.is_empty().then(|| "empty".to_owned());
    }
    let mut at = Reader(rest);
    let mut text = String::with_capacity(bytes.len() * 2);
    text.push(if flags & LOWER_INCLUSIVE != 0 {
        '['
    } else {
        '('
    });
    if flags & LOWER_UNBOUNDED == 0 {
        bound(&mut at, subtype, &mut text)?;
    }
    text.push(',');
    if flags & UPPER_UNBOUNDED == 0 {
        bound(&mut at, subtype, &mut text)?;
    }
    text.push(if flags & UPPER_INCLUSIVE != 0 {
        ']'
    } else {
        ')'
    });
    at.0.is_empty().then_some(text)
}

/// Writes one bound, read from its length and binary form.
fn bound(at: &mut Reader, subtype: &str, text: &mut String) -> Option<()> {
    let size = usize::try_from(at.i32()?).ok()?;
    let bytes = at.take(size)?;
    let value = match subtype {
        "INT4" => i32::from_be_bytes(bytes.try_into().ok()?).to_string(),
        "INT8" => i64::from_be_bytes(bytes.try_into().ok()?).to_string(),
        "NUMERIC" => numeric::decode(bytes)?,
        time => pg_text::time(time, bytes)?,
    };
    text.push_str(&value);
    Some(())
}

/// The binary form of `text` as a range of `subtype`s; the error says what
/// does not fit. It takes what [`decode`] writes, Postgres's own spellings
/// (`EMPTY`, a bound in double quotes, `[,5]` for `(,5]`) and whitespace
/// around the range and its bounds. Postgres checks the order of the bounds
/// and makes a discrete range canonical (`[1,5]` is `[1,6)`).
pub fn encode(text: &str, subtype: &str) -> Result<Vec<u8>, String> {
    let shown = || text.chars().take(60).collect::<String>();
    let range = text.trim();
    if range.eq_ignore_ascii_case("empty") {
        return Ok(vec![EMPTY]);
    }
    let (lower, upper, mut flags) =
        bounds(range).ok_or_else(|| format!("`{}` is not {SHAPE}", shown()))?;
    let mut form = vec![0];
    for (bound, side, inclusive, unbounded) in [
        (lower, "lower", LOWER_INCLUSIVE, LOWER_UNBOUNDED),
        (upper, "upper", UPPER_INCLUSIVE, UPPER_UNBOUNDED),
    ] {
        let Some(bound) = bound else {
            // An unbounded side includes nothing more.
            flags = (flags & !inclusive) | unbounded;
            continue;
        };
        let bytes = bound_form(&bound, subtype).map_err(|what| {
            format!(
                "the {side} bound of `{}` (`{bound}`) is not {what}",
                shown()
            )
        })?;
        let size =
            i32::try_from(bytes.len()).map_err(|_| format!("the {side} bound is too large"))?;
        form.extend_from_slice(&size.to_be_bytes());
        form.extend_from_slice(&bytes);
    }
    form[0] = flags;
    Ok(form)
}

/// A range's bounds (`None` for an unbounded side) and its inclusive flags.
fn bounds(range: &str) -> Option<(Option<String>, Option<String>, u8)> {
    let mut flags = match range.as_bytes().first()? {
        b'[' => LOWER_INCLUSIVE,
        b'(' => 0,
        _ => return None,
    };
    flags |= match range.as_bytes().last()? {
        b']' => UPPER_INCLUSIVE,
        b')' => 0,
        _ => return None,
    };
    let inner = range.get(1..range.len().checked_sub(1)?)?;
    let (lower, rest) = one_bound(inner)?;
    let rest = rest.strip_prefix(',')?;
    let (upper, rest) = one_bound(rest)?;
    rest.is_empty().then_some((lower, upper, flags))
}

/// The bound at the start of `text` (up to an unquoted `,` or the end) and
/// what follows it; `None` for an empty, unbounded one.
fn one_bound(text: &str) -> Option<(Option<String>, &str)> {
    let mut bound = String::new();
    let (mut quoted, mut was_quoted) = (false, false);
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' if quoted && chars.peek().is_some_and(|&(_, next)| next == '"') => {
                chars.next();
                bound.push('"');
            }
            '"' => (quoted, was_quoted) = (!quoted, true),
            '\\' => bound.push(chars.next()?.1),
            ',' if !quoted => return Some((finish(bound, was_quoted), &text[at..])),
            c => bound.push(c),
        }
    }
    (!quoted).then(|| (finish(bound, was_quoted), ""))
}

/// A bound as read: trimmed unless quoted, and unbounded when empty.
fn finish(bound: String, was_quoted: bool) -> Option<String> {
    match was_quoted {
        true => Some(bound),
        false => Some(bound.trim().to_owned()).filter(|bound| !bound.is_empty()),
    }
}

/// One bound's binary form, from its text, or what it should have been.
fn bound_form(bound: &str, subtype: &str) -> Result<Vec<u8>, &'static str> {
    Ok(match subtype {
        "INT4" => bound
            .parse::<i32>()
            .map_err(|_| "a 32-bit integer")?
            .to_be_bytes()
            .to_vec(),
        "INT8" => bound
            .parse::<i64>()
            .map_err(|_| "a 64-bit integer")?
            .to_be_bytes()
            .to_vec(),
        "NUMERIC" => numeric::encode(bound).map_err(|_| "a number Postgres can hold")?,
        time => pg_text::encode_time(time, bound)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encoded_decodes_to_the_same_text() {
        for (subtype, text) in [
            ("INT4", "[1,10)"),
            ("INT4", "(,5]"),
            ("INT4", "[-3,)"),
            ("INT4", "(,)"),
            ("INT4", "empty"),
            ("INT8", "[9007199254740993,9223372036854775807)"),
            ("NUMERIC", "(0.10000000000000000000000000001,2.5]"),
            ("DATE", "[2026-11-22,infinity)"),
            ("TIMESTAMP", "[2026-11-22T09:30:00,2026-11-22T10:00:00.500)"),
            ("TIMESTAMPTZ", "[2026-11-22T09:30:00Z,2026-11-23T00:00:00Z)"),
        ] {
            let form = encode(text, subtype).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(decode(&form, subtype).as_deref(), Some(text), "{subtype}");
        }
    }

    #[test]
    fn postgres_spellings_read_as_the_same_range() {
        for (subtype, text, same) in [
            ("INT4", " [ 1 , 10 ) ", "[1,10)"),
            ("INT4", "EMPTY", "empty"),
            ("INT4", "[,5]", "(,5]"),
            ("INT4", "[\"1\",\"10\")", "[1,10)"),
            (
                "TIMESTAMP",
                "[\"2026-11-22 09:30:00\",)",
                "[2026-11-22T09:30:00,)",
            ),
            (
                "TIMESTAMPTZ",
                "(2026-11-22 09:30:00+00,]",
                "(2026-11-22T09:30:00Z,)",
            ),
        ] {
            let form = encode(text, subtype).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(decode(&form, subtype).as_deref(), Some(same), "{text}");
        }
    }

    #[test]
    fn what_is_not_a_range_says_what_is_wrong() {
        for (subtype, text, says) in [
            (
                "INT4",
                "1,10",
                "is not a range such as [1,10), (,5] or empty",
            ),
            ("INT4", "[1,10", "is not a range"),
            ("INT4", "[1,2,3)", "is not a range"),
            ("INT4", "[\"1,10)", "is not a range"),
            (
                "INT4",
                "[1,x)",
                "the upper bound of `[1,x)` (`x`) is not a 32-bit integer",
            ),
            ("INT4", "[4294967296,)", "lower bound"),
            ("DATE", "[yesterday,)", "lower bound"),
            ("NUMERIC", "[1,abc]", "a number Postgres can hold"),
        ] {
            let error = encode(text, subtype).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn a_malformed_binary_form_is_none() {
        assert_eq!(decode(&[], "INT4"), None);
        assert_eq!(decode(&[EMPTY, 0], "INT4"), None);
        assert_eq!(decode(&[LOWER_INCLUSIVE, 0, 0, 0, 4, 0, 0], "INT4"), None);
        assert_eq!(decode(&[UPPER_UNBOUNDED, 0, 0, 0, 2, 0, 1], "INT4"), None);
    }
}
