//! Postgres arrays as JSON text, both ways. An array of booleans, integers,
//! reals, text, uuids, numerics, JSON, times and dates, addresses or enum
//! labels arrives as a JSON array (`[1,null,3]`, nested for more
//! dimensions), and a parameter of such an array type takes one (one
//! dimension), so `WHERE id = ANY($1)` takes `[1,2,3]`. A time, a date or
//! an address is a string in the form its scalar takes (see [`pg_text`]).
//!
//! The binary form (`array_send`): the number of dimensions, a has-nulls
//! flag and the element type's OID; each dimension's length and lower
//! bound; then each element as a length (-1 for NULL) and its own binary
//! form.

use super::{numeric, pg_text};
use serde_json::Value as Json;
use serde_json::value::RawValue;
use sqlx::TypeInfo;
use sqlx::postgres::{PgTypeInfo, PgTypeKind};
use sqlx::types::Uuid;

/// Whether arrays of `element` map. An enum's label is its binary form, so
/// its elements go as the text types' do (Postgres checks the labels).
pub fn maps(element: &PgTypeInfo) -> bool {
    matches!(element.kind(), PgTypeKind::Enum(_))
        || matches!(
            element.name(),
            "BOOL"
                | "INT2"
                | "INT4"
                | "INT8"
                | "FLOAT4"
                | "FLOAT8"
                | "TEXT"
                | "VARCHAR"
                | "CHAR"
                | "NAME"
                | "UUID"
                | "NUMERIC"
                | "JSON"
                | "JSONB"
                | "TIMESTAMPTZ"
                | "TIMESTAMP"
                | "DATE"
                | "TIME"
                | "TIMETZ"
                | "INTERVAL"
                | "INET"
                | "CIDR"
        )
}

/// An array of `element`s in binary form as JSON text; `None` when
/// malformed. A `json` or `jsonb` element is written as Postgres holds it,
/// as its scalar is: every digit, a `json`'s key order and spacing.
pub fn decode(bytes: &[u8], element: &str) -> Option<String> {
    let mut at = Reader(bytes);
    let dimensions = usize::try_from(at.i32()?).ok()?;
    let _has_nulls = at.i32()?;
    let _oid = at.i32()?;
    if dimensions == 0 {
        return Some("[]".to_owned());
    }
    let mut lengths = Vec::with_capacity(dimensions.min(6));
    for _ in 0..dimensions {
        lengths.push(usize::try_from(at.i32()?).ok()?);
        let _lower_bound = at.i32()?;
    }
    let mut text = String::with_capacity(bytes.len());
    nested(&mut at, &lengths, element, &mut text)?;
    at.0.is_empty().then_some(text)
}

/// Writes the elements of one dimension (and those under it).
fn nested(at: &mut Reader, lengths: &[usize], element: &str, text: &mut String) -> Option<()> {
    let (&length, inner) = lengths.split_first()?;
    text.push('[');
    for i in 0..length {
        if i > 0 {
            text.push(',');
        }
        match inner.is_empty() {
            true => match at.i32()? {
                -1 => text.push_str("null"),
                size => item(at.take(usize::try_from(size).ok()?)?, element, text)?,
            },
            false => nested(at, inner, element, text)?,
        }
    }
    text.push(']');
    Some(())
}

/// Writes one element's binary form as JSON.
fn item(bytes: &[u8], element: &str, text: &mut String) -> Option<()> {
    let real = |value: f64| match value.is_finite() {
        true => Json::from(value),
        false => Json::from(value.to_string().replace("inf", "Infinity")),
    };
    // Postgres checked the JSON; it goes on as it is.
    let json = match element {
        "JSON" => Some(bytes),
        "JSONB" => Some(bytes.strip_prefix(&[1])?),
        _ => None,
    };
    if let Some(json) = json {
        text.push_str(std::str::from_utf8(json).ok()?);
        return Some(());
    }
    let value = match element {
        "BOOL" => Json::Bool(*bytes.first()? != 0),
        "INT2" => Json::from(i16::from_be_bytes(bytes.try_into().ok()?)),
        "INT4" => Json::from(i32::from_be_bytes(bytes.try_into().ok()?)),
        "INT8" => Json::from(i64::from_be_bytes(bytes.try_into().ok()?)),
        "FLOAT4" => real(f32::from_be_bytes(bytes.try_into().ok()?).into()),
        "FLOAT8" => real(f64::from_be_bytes(bytes.try_into().ok()?)),
        "UUID" => Json::from(Uuid::from_slice(bytes).ok()?.to_string()),
        "NUMERIC" => Json::from(numeric::decode(bytes)?),
        "TIMESTAMPTZ" | "TIMESTAMP" | "DATE" | "TIME" | "TIMETZ" => {
            Json::from(pg_text::time(element, bytes)?)
        }
        "INTERVAL" => Json::from(pg_text::interval(bytes)?),
        "INET" | "CIDR" => Json::from(pg_text::address(bytes)?),
        _ => Json::from(std::str::from_utf8(bytes).ok()?),
    };
    text.push_str(&value.to_string());
    Some(())
}

/// The binary form of `text`, a JSON array, as a one-dimensional array of
/// `element`s (whose type OID is `oid`); the error says what does not fit.
/// Each element is read from its own text, so a `json` element or a
/// numeric written as a number keeps every digit (and a `json` its keys'
/// order).
pub fn encode(text: &str, element: &str, oid: u32) -> Result<Vec<u8>, String> {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(text) else {
        return Err(format!(
            "`{}` is not a JSON array; an array parameter takes one, e.g. [1, 2, 3]",
            text.chars().take(40).collect::<String>()
        ));
    };
    let is_null = |item: &&RawValue| item.get() == "null";
    let has_nulls = items.iter().any(is_null);
    let mut form = Vec::with_capacity(20 + items.len() * 12);
    let dimensions: i32 = if items.is_empty() { 0 } else { 1 };
    for word in [dimensions, i32::from(has_nulls)] {
        form.extend_from_slice(&word.to_be_bytes());
    }
    form.extend_from_slice(&oid.to_be_bytes());
    if !items.is_empty() {
        let length = i32::try_from(items.len()).map_err(|_| "too many elements".to_owned())?;
        form.extend_from_slice(&length.to_be_bytes());
        form.extend_from_slice(&1i32.to_be_bytes());
    }
    for (i, item) in items.iter().enumerate() {
        if is_null(item) {
            form.extend_from_slice(&(-1i32).to_be_bytes());
            continue;
        }
        let bytes = element_form(item.get(), element).map_err(|what| {
            let shown: String = item.get().chars().take(40).collect();
            format!("element {i} ({shown}) is not {what}")
        })?;
        let size = i32::try_from(bytes.len()).map_err(|_| format!("element {i} is too large"))?;
        form.extend_from_slice(&size.to_be_bytes());
        form.extend_from_slice(&bytes);
    }
    Ok(form)
}

/// One element's binary form, from its JSON text, or what it should have
/// been.
fn element_form(raw: &str, element: &str) -> Result<Vec<u8>, &'static str> {
    match element {
        "JSON" => return Ok(raw.as_bytes().to_vec()),
        "JSONB" => return Ok([&[1u8][..], raw.as_bytes()].concat()),
        // A number goes as written, every digit of it.
        "NUMERIC" if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
            return numeric::encode(raw).map_err(|_| "a number Postgres can hold");
        }
        _ => {}
    }
    // The array parsed, so only a number past a double's range fails here.
    let value: Json = serde_json::from_str(raw).map_err(|_| "a number within a double's range")?;
    let integer = |what| value.as_i64().ok_or(what);
    let real = |what| match &value {
        Json::Number(number) => number.as_f64().ok_or(what),
        Json::String(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            _ => Err(what),
        },
        _ => Err(what),
    };
    Ok(match element {
        "BOOL" => match &value {
            Json::Bool(flag) => vec![u8::from(*flag)],
            Json::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                vec![u8::from(n.as_i64() == Some(1))]
            }
            _ => return Err("a boolean"),
        },
        "INT2" => i16::try_from(integer("an int2")?)
            .map_err(|_| "an int2")?
            .to_be_bytes()
            .to_vec(),
        "INT4" => i32::try_from(integer("an int4")?)
            .map_err(|_| "an int4")?
            .to_be_bytes()
            .to_vec(),
        "INT8" => integer("an int8")?.to_be_bytes().to_vec(),
        "FLOAT4" => (real("a real")? as f32).to_be_bytes().to_vec(),
        "FLOAT8" => real("a real")?.to_be_bytes().to_vec(),
        "UUID" => value
            .as_str()
            .and_then(|text| Uuid::parse_str(text).ok())
            .ok_or("a uuid")?
            .as_bytes()
            .to_vec(),
        "NUMERIC" => numeric::encode(value.as_str().ok_or("a number")?)
            .map_err(|_| "a number Postgres can hold")?,
        "TIMESTAMPTZ" | "TIMESTAMP" | "DATE" | "TIME" | "TIMETZ" => {
            pg_text::encode_time(element, value.as_str().unwrap_or_default())?
        }
        "INTERVAL" => pg_text::encode_interval(value.as_str().ok_or("a duration")?)?,
        "INET" => pg_text::encode_address(value.as_str().ok_or("an address")?, false)
            .map_err(|_| "an IPv4 or IPv6 address")?,
        "CIDR" => pg_text::encode_address(value.as_str().ok_or("a network")?, true)
            .map_err(|_| "a network with no bits set past its prefix")?,
        _ => value.as_str().ok_or("a string")?.as_bytes().to_vec(),
    })
}

/// Reads big-endian words and byte runs off the front of a slice.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encoded_decodes_to_the_same_json() {
        for (element, oid, text) in [
            ("INT4", 23, "[1,null,-3]"),
            ("INT8", 20, "[9007199254740993]"),
            ("BOOL", 16, "[true,false,null]"),
            ("FLOAT8", 701, "[0.25,\"NaN\",\"-Infinity\"]"),
            ("TEXT", 25, "[\"a\",\"zoë\",null]"),
            ("UUID", 2950, "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]"),
            ("NUMERIC", 1700, "[\"12.50\",\"NaN\"]"),
            ("JSONB", 3802, "[{\"a\":[1,2]},null]"),
            // Every digit, and the keys in their order.
            (
                "JSON",
                114,
                "[{\"b\": 1, \"a\": 12345678901234567890.5},null]",
            ),
            ("INT2", 21, "[]"),
            (
                "TIMESTAMPTZ",
                1184,
                "[\"2026-11-22T09:30:00Z\",\"infinity\",null]",
            ),
            ("DATE", 1082, "[\"2026-11-22\",\"-infinity\"]"),
            ("TIME", 1083, "[\"10:30:00.250\"]"),
            ("INET", 869, "[\"192.168.0.1\",\"2001:db8::1/64\"]"),
            ("CIDR", 650, "[\"10.0.0.0/8\"]"),
        ] {
            let form = encode(text, element, oid).unwrap();
            let back = decode(&form, element).unwrap();
            assert_eq!(back, text, "{element}");
        }
    }

    #[test]
    fn a_numeric_written_as_a_number_keeps_every_digit() {
        let form = encode("[12345678901234567890.123456789, 1e-3]", "NUMERIC", 1700).unwrap();
        assert_eq!(
            decode(&form, "NUMERIC").as_deref(),
            Some("[\"12345678901234567890.123456789\",\"0.001\"]")
        );
    }

    #[test]
    fn what_does_not_fit_is_named() {
        assert!(
            encode("1,2", "INT4", 23)
                .unwrap_err()
                .contains("not a JSON array")
        );
        let error = encode("[1, 70000]", "INT2", 21).unwrap_err();
        assert!(
            error.contains("element 1 (70000) is not an int2"),
            "{error}"
        );
        assert!(
            encode("[\"x\"]", "UUID", 2950)
                .unwrap_err()
                .contains("a uuid")
        );
        assert!(encode("[[1]]", "INT4", 23).unwrap_err().contains("an int4"));
        let error = encode("[\"2026-11-22\", 3]", "DATE", 1082).unwrap_err();
        assert!(
            error.contains("element 1 (3) is not a date (YYYY-MM-DD)"),
            "{error}"
        );
        let error = encode("[1e400]", "FLOAT8", 701).unwrap_err();
        assert!(error.contains("(1e400) is not a number within"), "{error}");
        let error = encode("[true]", "NUMERIC", 1700).unwrap_err();
        assert!(error.contains("(true) is not a number"), "{error}");
        let error = encode("[\"10.1.0.0/8\"]", "CIDR", 650).unwrap_err();
        assert!(error.contains("no bits set past its prefix"), "{error}");
        assert_eq!(decode(&[0, 0, 0, 1], "INT4"), None);
        // Two dimensions arrive nested: [[1], [2]] is two rows of one.
        let words = |words: &[i32]| {
            words
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect::<Vec<u8>>()
        };
        let form = words(&[2, 0, 23, 2, 1, 1, 1, 4, 1, 4, 2]);
        assert_eq!(decode(&form, "INT4").as_deref(), Some("[[1],[2]]"));
        assert_eq!(decode(&form[..form.len() - 1], "INT4"), None);
    }
}
