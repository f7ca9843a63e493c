//! The plugin's own key-value store (`[grants] kv = true`).

use crate::bindings::gatehouse::plugin::kv as wit;
pub use wit::{Error, delete, get, increment, list_keys, set};

/// The value of `key` as UTF-8 text, if set.
pub fn get_string(key: &str) -> Result<Option<String>, Error> {
    Ok(get(key)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Sets `key` to `value`, for `ttl_ms` milliseconds when given.
pub fn set_string(key: &str, value: &str, ttl_ms: Option<u64>) -> Result<(), Error> {
    set(key, value.as_bytes(), ttl_ms)
}

/// The integer at `key` (0 when unset or not a number).
pub fn get_int(key: &str) -> Result<i64, Error> {
    Ok(get_string(key)?
        .and_then(|text| text.parse().ok())
        .unwrap_or(0))
}
