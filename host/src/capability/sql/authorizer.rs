//! The authorizer of SQLite pool connections: what a plugin's statement
//! may not do there. Everything else is allowed; a call that ran any other
//! `PRAGMA`, or attached a database, closes its connection after it, so a
//! per-connection setting never reaches the next caller.
//!
//! Refused are, first, the pragmas whose effect outlives that connection:
//! `hard_heap_limit`, `soft_heap_limit` and `temp_store_directory` set the
//! whole process's SQLite, so one plugin could starve every database of
//! memory or of temporary files; and `case_sensitive_like` would register
//! SQLite's own `like` over the one that stops at the statement timeout
//! (see [`super::sqlite_functions`]).
//!
//! Second, `ATTACH` of any file: a granted database must not reach another
//! (the host's own, or a new file anywhere), and `VACUUM INTO 'file'`
//! attaches the file it writes. Only `ATTACH ''` is allowed, a private
//! temporary database that no other connection sees: plain `VACUUM`
//! rebuilds the database through one.

use libsqlite3_sys as ffi;
use std::ffi::{CStr, c_char, c_int, c_void};

/// The pragmas refused, by name (SQLite compares pragma names without
/// case).
const REFUSED_PRAGMAS: [&str; 5] = [
    "case_sensitive_like",
    "hard_heap_limit",
    "soft_heap_limit",
    "temp_store_directory",
    "data_store_directory",
];

/// What the plugin is told: SQLite itself only says "not authorized".
pub(super) const REFUSED: &str = "this statement is not available to plugins: \
     ATTACH (of anything but '', a private temporary database) and VACUUM INTO \
     would reach files outside the granted database (plain VACUUM works); \
     PRAGMA hard_heap_limit, soft_heap_limit and temp_store_directory would \
     change every SQLite database of the host; and PRAGMA case_sensitive_like \
     would replace the LIKE that stops at statement_timeout_ms (compare with \
     GLOB for a case-sensitive match)";

/// The authorizer: SQLITE_DENY for a refused pragma or attachment,
/// SQLITE_OK otherwise.
pub(super) unsafe extern "C" fn authorize(
    _: *mut c_void,
    action: c_int,
    name: *const c_char,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
) -> c_int {
    // SAFETY: for SQLITE_PRAGMA SQLite passes the pragma's name, for
    // SQLITE_ATTACH the file name when it is a string literal (NULL for an
    // expression, which is refused: its value is known only when it runs).
    let name = (!name.is_null()).then(|| unsafe { CStr::from_ptr(name) }.to_bytes());
    let refused = match action {
        ffi::SQLITE_PRAGMA => name.is_some_and(|name| {
            REFUSED_PRAGMAS
                .iter()
                .any(|refused| name.eq_ignore_ascii_case(refused.as_bytes()))
        }),
        ffi::SQLITE_ATTACH => name != Some(b""),
        _ => false,
    };
    if refused {
        ffi::SQLITE_DENY
    } else {
        ffi::SQLITE_OK
    }
}
