//! The authorizer of SQLite pool connections: the pragmas a plugin may not
//! run. Everything else is allowed; a call that ran any other `PRAGMA`
//! closes its connection after it, so a per-connection setting never
//! reaches the next caller.
//!
//! Refused are the pragmas whose effect outlives that connection:
//! `hard_heap_limit`, `soft_heap_limit` and `temp_store_directory` set the
//! whole process's SQLite, so one plugin could starve every database of
//! memory or of temporary files; and `case_sensitive_like` would register
//! SQLite's own `like` over the one that stops at the statement timeout
//! (see [`super::sqlite_functions`]).

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
pub(super) const REFUSED: &str = "this PRAGMA is not available to plugins: \
     hard_heap_limit, soft_heap_limit and temp_store_directory would change every \
     SQLite database of the host, and case_sensitive_like would replace the LIKE \
     that stops at statement_timeout_ms (compare with GLOB for a case-sensitive match)";

/// The authorizer: SQLITE_DENY for a refused pragma, SQLITE_OK otherwise.
pub(super) unsafe extern "C" fn authorize(
    _: *mut c_void,
    action: c_int,
    name: *const c_char,
    _: *const c_char,
    _: *const c_char,
    _: *const c_char,
) -> c_int {
    if action == ffi::SQLITE_PRAGMA && !name.is_null() {
        // SAFETY: for SQLITE_PRAGMA SQLite passes the pragma's name.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        if REFUSED_PRAGMAS
            .iter()
            .any(|refused| name.eq_ignore_ascii_case(refused.as_bytes()))
        {
            return ffi::SQLITE_DENY;
        }
    }
    ffi::SQLITE_OK
}
