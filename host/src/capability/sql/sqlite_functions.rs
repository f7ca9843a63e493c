//! SQLite's string functions whose single call can outrun the statement
//! timeout, replaced on every connection that runs a plugin's SQL: the
//! pool's, and the handles that read in place (with the read's budget as
//! their clock).
//!
//! The statement clock (see `limit_connection`) stops a statement between
//! two steps of SQLite's virtual machine, but one call of a built-in
//! function is one step. SQLite's `instr` and `replace` compare at every
//! byte, `trim` with a set of characters at every character, and `like`
//! and `glob` may retry the rest of the pattern at every character: over
//! values of megabytes, chosen by a plugin, one call runs for minutes and
//! holds the connection's worker thread all along. The versions here give
//! the same answers (the tests compare them with SQLite's over generated
//! input), `instr` and `replace` in linear time with `memchr::memmem`,
//! and `trim`, `like` and `glob` stop with SQLITE_INTERRUPT once the
//! statement is past its time: on the pool the plugin then sees
//! `unavailable`, in place the pool runs the read again.
//! `like` and `glob` also walk the pattern with one point to come back to
//! instead of recursing, so no pattern can exhaust the worker's stack.
//!
//! What is lost: SQLite's LIKE and GLOB prefix optimization (a range scan
//! of an index for `name LIKE 'abc%'`) applies to its built-in functions
//! only. `PRAGMA case_sensitive_like` would put SQLite's `like` back, so
//! the pool connections' authorizer refuses it (see
//! [`super::authorizer`]); in place no pragma runs.

use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

/// Whether the running statement is still within its time: the pool's
/// statement clock, or the budget of a read in place.
///
/// An `Arc`, though only one thread calls it at a time: the connection
/// (and with it the last reference) may close on another thread than the
/// one that registered it.
pub(super) type WithinTime = Arc<dyn Fn() -> bool>;

/// What one registered function is, and how it knows its time is up.
struct Function {
    kind: Kind,
    within: WithinTime,
}

#[derive(Clone, Copy)]
enum Kind {
    Instr,
    Replace,
    Trim { left: bool, right: bool },
    Like,
    Glob,
}

/// Registers the bounded functions on one open connection, each stopping
/// once `within` says no.
///
/// # Safety
/// `db` is an open connection that no other thread uses during the call,
/// and `within` may be called on whichever thread uses the connection.
pub(super) unsafe fn register(db: *mut ffi::sqlite3, within: WithinTime) -> Result<(), String> {
    let functions: [(&std::ffi::CStr, c_int, Kind); 8] = [
        (c"instr", 2, Kind::Instr),
        (c"replace", 3, Kind::Replace),
        (
            c"trim",
            2,
            Kind::Trim {
                left: true,
                right: true,
            },
        ),
        (
            c"ltrim",
            2,
            Kind::Trim {
                left: true,
                right: false,
            },
        ),
        (
            c"rtrim",
            2,
            Kind::Trim {
                left: false,
                right: true,
            },
        ),
        (c"like", 2, Kind::Like),
        (c"like", 3, Kind::Like),
        // SQLite's `glob` takes no ESCAPE.
        (c"glob", 2, Kind::Glob),
    ];
    for (name, args, kind) in functions {
        let function = Box::into_raw(Box::new(Function {
            kind,
            within: within.clone(),
        }));
        // SAFETY: `db` is open (the caller's promise); the name outlives
        // the call; SQLite owns `function` from here and frees it through
        // `drop_function`, also when the call fails.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                db,
                name.as_ptr(),
                args,
                // The same flags as SQLite's own: usable in indexes, CHECK
                // constraints and generated columns.
                ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC | ffi::SQLITE_INNOCUOUS,
                function.cast(),
                Some(call),
                None,
                None,
                Some(drop_function),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(format!(
                "SQLite refused to register {}() (result code {rc})",
                name.to_string_lossy()
            ));
        }
    }
    Ok(())
}

unsafe extern "C" fn drop_function(function: *mut c_void) {
    // SAFETY: made by Box::into_raw in `register`; SQLite calls this once.
    drop(unsafe { Box::from_raw(function.cast::<Function>()) });
}

/// The entry point of every bounded function.
unsafe extern "C" fn call(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite passes the user data given at registration and
    // `argc` live arguments.
    let (function, args) = unsafe {
        (
            &*ffi::sqlite3_user_data(ctx).cast::<Function>(),
            std::slice::from_raw_parts(argv, usize::try_from(argc).unwrap_or(0)),
        )
    };
    let context = Context { ctx };
    // A panic must not unwind into SQLite's C frames.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the arguments are SQLite's, live for this call.
        unsafe {
            match function.kind {
                Kind::Instr => instr(&context, args[0], args[1]),
                Kind::Replace => replace(&context, args[0], args[1], args[2]),
                Kind::Trim { left, right } => {
                    let mut budget = Budget::new(&*function.within);
                    trim(&context, args[0], args[1], left, right, &mut budget)
                }
                Kind::Like | Kind::Glob => {
                    let mut budget = Budget::new(&*function.within);
                    let glob = matches!(function.kind, Kind::Glob);
                    like(&context, args, glob, &mut budget)
                }
            }
        }
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(Interrupted)) => context.interrupted(),
        Err(_) => context.error("internal error in a gatehouse SQL function"),
    }
}

/// The running statement went past its timeout.
#[derive(Debug, PartialEq)]
struct Interrupted;

/// Counts the work of one call and asks whether there is time left every
/// [`Budget::EVERY`] units of it.
struct Budget<'a> {
    within: &'a dyn Fn() -> bool,
    spent: u64,
    next_look: u64,
}

impl<'a> Budget<'a> {
    /// Steps of a loop between two looks at the clock: a few hundred
    /// microseconds of work.
    const EVERY: u64 = 1 << 18;

    fn new(within: &'a dyn Fn() -> bool) -> Budget<'a> {
        Budget {
            within,
            spent: 0,
            next_look: Self::EVERY,
        }
    }

    fn spend(&mut self, units: u64) -> Result<(), Interrupted> {
        self.spent += units;
        if self.spent >= self.next_look {
            self.next_look = self.spent + Self::EVERY;
            if !(self.within)() {
                return Err(Interrupted);
            }
        }
        Ok(())
    }
}

/// The call's result, set through SQLite.
struct Context {
    ctx: *mut ffi::sqlite3_context,
}

impl Context {
    fn integer(&self, n: i64) {
        // SAFETY: `ctx` is the live context of this call.
        unsafe { ffi::sqlite3_result_int64(self.ctx, n) }
    }

    fn text(&self, bytes: &[u8]) {
        // SAFETY: as above; SQLite copies the bytes (SQLITE_TRANSIENT).
        // An empty slice may dangle, so it is given as a static "".
        unsafe {
            let ptr = if bytes.is_empty() {
                c"".as_ptr()
            } else {
                bytes.as_ptr().cast::<c_char>()
            };
            ffi::sqlite3_result_text64(
                self.ctx,
                ptr,
                bytes.len() as u64,
                ffi::SQLITE_TRANSIENT(),
                ffi::SQLITE_UTF8 as u8,
            )
        }
    }

    fn error(&self, message: &str) {
        // SAFETY: as above; SQLite copies the message.
        unsafe {
            ffi::sqlite3_result_error(
                self.ctx,
                message.as_ptr().cast(),
                c_int::try_from(message.len()).unwrap_or(0),
            )
        }
    }

    fn too_big(&self) {
        // SAFETY: as above.
        unsafe { ffi::sqlite3_result_error_toobig(self.ctx) }
    }

    fn interrupted(&self) {
        // SAFETY: as above. The statement then ends with SQLITE_INTERRUPT,
        // as when the progress handler stops it.
        unsafe { ffi::sqlite3_result_error_code(self.ctx, ffi::SQLITE_INTERRUPT) }
    }

    /// The connection's limit `id`.
    fn limit(&self, id: c_int) -> usize {
        // SAFETY: as above; -1 reads the limit without changing it.
        let n = unsafe { ffi::sqlite3_limit(ffi::sqlite3_context_db_handle(self.ctx), id, -1) };
        usize::try_from(n).unwrap_or(0)
    }
}

/// A value's UTF-8 text, converted as SQLite converts it (numbers to their
/// text, blobs taken as they are); None for NULL.
///
/// # Safety
/// `value` is live, and stays unchanged while the slice is used.
unsafe fn text<'a>(value: *mut ffi::sqlite3_value) -> Option<&'a [u8]> {
    // SAFETY: the caller's promise; text first, then its length in bytes.
    unsafe {
        let ptr = ffi::sqlite3_value_text(value);
        if ptr.is_null() {
            return None;
        }
        let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
        Some(std::slice::from_raw_parts(ptr, len))
    }
}

/// A blob's bytes (possibly empty).
///
/// # Safety
/// As for [`text`]; `value` is a blob.
unsafe fn blob<'a>(value: *mut ffi::sqlite3_value) -> &'a [u8] {
    // SAFETY: the caller's promise. An empty blob's pointer may be null.
    unsafe {
        let ptr = ffi::sqlite3_value_blob(value);
        let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
        if ptr.is_null() || len == 0 {
            return &[];
        }
        std::slice::from_raw_parts(ptr.cast(), len)
    }
}

/// The part of `bytes` before its first NUL: SQLite's string functions
/// read C strings.
fn to_nul(bytes: &[u8]) -> &[u8] {
    match memchr::memchr(0, bytes) {
        Some(end) => &bytes[..end],
        None => bytes,
    }
}

/// A copy of an argument owned by this call (`sqlite3_value_dup`), so
/// converting it to text leaves the argument as it was.
struct Duplicate(*mut ffi::sqlite3_value);

impl Duplicate {
    /// # Safety
    /// `value` is live.
    unsafe fn of(value: *mut ffi::sqlite3_value) -> Duplicate {
        // SAFETY: the caller's promise.
        Duplicate(unsafe { ffi::sqlite3_value_dup(value) })
    }
}

impl Drop for Duplicate {
    fn drop(&mut self) {
        // SAFETY: made by sqlite3_value_dup (a null pointer is allowed).
        unsafe { ffi::sqlite3_value_free(self.0) }
    }
}

/// `instr(haystack, needle)`: the character position of the first
/// `needle` in `haystack`, from 1; 0 if there is none. Bytes when both are
/// blobs.
unsafe fn instr(
    context: &Context,
    haystack: *mut ffi::sqlite3_value,
    needle: *mut ffi::sqlite3_value,
) -> Result<(), Interrupted> {
    // SAFETY (the whole body): the arguments are live for the call, and
    // each slice is used before the next conversion of its value.
    unsafe {
        let types = (
            ffi::sqlite3_value_type(haystack),
            ffi::sqlite3_value_type(needle),
        );
        if types.0 == ffi::SQLITE_NULL || types.1 == ffi::SQLITE_NULL {
            return Ok(());
        }
        let position = match types {
            (ffi::SQLITE_BLOB, ffi::SQLITE_BLOB) => {
                let (haystack, needle) = (blob(haystack), blob(needle));
                memchr::memmem::find(haystack, needle).map_or(0, |at| at + 1)
            }
            (ffi::SQLITE_BLOB, _) | (_, ffi::SQLITE_BLOB) => {
                // SQLite takes copies of both as text, the blob's bytes as
                // they are.
                let (haystack, needle) = (Duplicate::of(haystack), Duplicate::of(needle));
                match (text(haystack.0), text(needle.0)) {
                    (Some(haystack), Some(needle)) => text_position(haystack, needle),
                    _ => return Ok(()),
                }
            }
            _ => match (text(haystack), text(needle)) {
                (Some(haystack), Some(needle)) => text_position(haystack, needle),
                _ => return Ok(()),
            },
        };
        context.integer(position as i64);
    }
    Ok(())
}

/// Where SQLite's `instr` finds `needle` in text: it tries the first byte
/// and then each byte that starts a character, counting the tries.
fn text_position(haystack: &[u8], needle: &[u8]) -> usize {
    let Some(&first) = needle.first() else {
        return 1;
    };
    if is_continuation(first) {
        // Only the first try can start with a continuation byte.
        return usize::from(haystack.starts_with(needle));
    }
    match memchr::memmem::find(haystack, needle) {
        None => 0,
        Some(0) => 1,
        Some(at) => {
            2 + haystack[1..at]
                .iter()
                .filter(|&&b| !is_continuation(b))
                .count()
        }
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xc0 == 0x80
}

/// `replace(text, pattern, replacement)`: every `pattern` in `text`, left
/// to right without overlaps, replaced.
unsafe fn replace(
    context: &Context,
    string: *mut ffi::sqlite3_value,
    pattern: *mut ffi::sqlite3_value,
    replacement: *mut ffi::sqlite3_value,
) -> Result<(), Interrupted> {
    // SAFETY (the whole body): the three are distinct live arguments, each
    // converted once.
    unsafe {
        let Some(string) = text(string) else {
            return Ok(());
        };
        let Some(pattern) = text(pattern) else {
            return Ok(());
        };
        if pattern.first().is_none_or(|&b| b == 0) {
            context.text(string);
            return Ok(());
        }
        let Some(replacement) = text(replacement) else {
            return Ok(());
        };
        // SQLite's limit on a value: SQLite asks for the input's length
        // and its NUL first, then checks as the result grows, so a short
        // pattern replaced by a long text stops at the limit.
        let limit = context.limit(ffi::SQLITE_LIMIT_LENGTH);
        if string.len() + 1 > limit {
            context.too_big();
            return Ok(());
        }
        let mut out = Vec::with_capacity(string.len());
        let mut copied = 0;
        for at in memchr::memmem::find_iter(string, pattern) {
            out.extend_from_slice(&string[copied..at]);
            out.extend_from_slice(replacement);
            copied = at + pattern.len();
            if replacement.len() > pattern.len() && out.len() + (string.len() - copied) > limit {
                context.too_big();
                return Ok(());
            }
        }
        out.extend_from_slice(&string[copied..]);
        context.text(&out);
    }
    Ok(())
}

/// `trim`, `ltrim` and `rtrim` with a set of characters: the first
/// character of the set that matches is taken off, until none does.
unsafe fn trim(
    context: &Context,
    string: *mut ffi::sqlite3_value,
    set: *mut ffi::sqlite3_value,
    left: bool,
    right: bool,
    budget: &mut Budget,
) -> Result<(), Interrupted> {
    // SAFETY (the whole body): distinct live arguments, each converted
    // once.
    unsafe {
        if ffi::sqlite3_value_type(string) == ffi::SQLITE_NULL {
            return Ok(());
        }
        let Some(mut string) = text(string) else {
            return Ok(());
        };
        let Some(set) = text(set) else {
            return Ok(());
        };
        let set = characters(to_nul(set));
        // SQLite allocates a pointer and a length for each character of the
        // set, within its limit on a value.
        let list = set.len() * (size_of::<usize>() + size_of::<u32>());
        if list > context.limit(ffi::SQLITE_LIMIT_LENGTH) {
            context.too_big();
            return Ok(());
        }
        let starts = |s: &[u8], c: &[u8]| s.starts_with(c);
        let ends = |s: &[u8], c: &[u8]| s.ends_with(c);
        if left {
            while let Some(len) = trimmed(string, &set, starts, budget)? {
                string = &string[len..];
            }
        }
        if right {
            while let Some(len) = trimmed(string, &set, ends, budget)? {
                string = &string[..string.len() - len];
            }
        }
        context.text(string);
    }
    Ok(())
}

/// The length of the first character of `set` at the end `at` looks at.
fn trimmed(
    string: &[u8],
    set: &[&[u8]],
    at: impl Fn(&[u8], &[u8]) -> bool,
    budget: &mut Budget,
) -> Result<Option<usize>, Interrupted> {
    if string.is_empty() {
        return Ok(None);
    }
    for character in set {
        budget.spend(character.len() as u64)?;
        if at(string, character) {
            return Ok(Some(character.len()));
        }
    }
    Ok(None)
}

/// A string split into characters as SQLite steps over them: a byte, and
/// the continuation bytes after it when it starts a multi-byte character.
fn characters(string: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < string.len() {
        let next = skip_character(string, at);
        out.push(&string[at..next]);
        at = next;
    }
    out
}

/// SQLITE_SKIP_UTF8: the position after the character at `at`.
fn skip_character(string: &[u8], at: usize) -> usize {
    let mut next = at + 1;
    if string[at] >= 0xc0 {
        while string.get(next).is_some_and(|&b| is_continuation(b)) {
            next += 1;
        }
    }
    next
}

/// sqlite3Utf8Read: the character at `*at` and the position after it, or
/// 0 at the end. Like SQLite it reads invalid UTF-8 leniently: a stray
/// continuation byte is a character of its own, an over-long or surrogate
/// encoding is U+FFFD.
fn read_character(string: &[u8], at: &mut usize) -> u32 {
    /// The value bits of each first byte from 0xc0.
    const FIRST: [u8; 64] = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d,
        0x1e, 0x1f, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
        0x0d, 0x0e, 0x0f, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x00, 0x01, 0x02, 0x03,
        0x00, 0x01, 0x00, 0x00,
    ];
    let Some(&first) = string.get(*at) else {
        return 0;
    };
    *at += 1;
    if first < 0xc0 {
        return u32::from(first);
    }
    let mut c = u32::from(FIRST[usize::from(first - 0xc0)]);
    while let Some(&next) = string.get(*at) {
        if !is_continuation(next) {
            break;
        }
        c = (c << 6) + u32::from(next & 0x3f);
        *at += 1;
    }
    if c < 0x80 || c & 0xFFFF_F800 == 0xD800 || c & 0xFFFF_FFFE == 0xFFFE {
        c = 0xFFFD;
    }
    c
}

/// How a pattern is read: GLOB's or LIKE's wildcards.
#[derive(Clone, Copy)]
struct Wildcards {
    /// `*` or `%`; 0 when it is LIKE's escape character.
    any: u32,
    /// `?` or `_`; 0 when it is LIKE's escape character.
    one: u32,
    /// GLOB's `[...]` sets.
    sets: bool,
    /// LIKE ignores the case of ASCII letters.
    no_case: bool,
    /// `[` for GLOB, LIKE's escape character, or 0.
    other: u32,
}

/// How a pattern compares with a string.
#[derive(Debug, PartialEq, Clone, Copy)]
enum Compared {
    Match,
    NoMatch,
    /// No match, and none with the string's tail either: ends the search.
    NoWildcardMatch,
}

/// `like(pattern, string [, escape])` and `glob(pattern, string)`.
unsafe fn like(
    context: &Context,
    args: &[*mut ffi::sqlite3_value],
    glob: bool,
    budget: &mut Budget,
) -> Result<(), Interrupted> {
    // SAFETY (the whole body): distinct live arguments, each converted
    // once, in SQLite's order.
    unsafe {
        let pattern_bytes = usize::try_from(ffi::sqlite3_value_bytes(args[0])).unwrap_or(0);
        if pattern_bytes > context.limit(ffi::SQLITE_LIMIT_LIKE_PATTERN_LENGTH) {
            context.error("LIKE or GLOB pattern too complex");
            return Ok(());
        }
        let mut wildcards = if glob {
            Wildcards {
                any: u32::from(b'*'),
                one: u32::from(b'?'),
                sets: true,
                no_case: false,
                other: u32::from(b'['),
            }
        } else {
            Wildcards {
                any: u32::from(b'%'),
                one: u32::from(b'_'),
                sets: false,
                no_case: true,
                other: 0,
            }
        };
        if let Some(&escape) = args.get(2) {
            let Some(escape) = text(escape) else {
                return Ok(());
            };
            let escape = to_nul(escape);
            if escape.is_empty() || skip_character(escape, 0) != escape.len() {
                context.error("ESCAPE expression must be a single character");
                return Ok(());
            }
            let escape = read_character(escape, &mut 0);
            if escape == wildcards.any {
                wildcards.any = 0;
            }
            if escape == wildcards.one {
                wildcards.one = 0;
            }
            wildcards.other = escape;
        }
        let (Some(pattern), Some(string)) = (text(args[0]), text(args[1])) else {
            return Ok(());
        };
        let compared = compare(to_nul(pattern), to_nul(string), wildcards, budget)?;
        context.integer(i64::from(compared == Compared::Match));
    }
    Ok(())
}

/// Where a failed comparison goes back to: the last `*` (or `%`) seen,
/// with what followed it.
enum Retry {
    /// The character after the star, looked for in the string from `from`.
    Character { c: u32, pattern: usize, from: usize },
    /// A `[` set right after the star, tried from the character at `at`.
    Set { pattern: usize, at: usize },
}

/// SQLite's patternCompare, as a loop. SQLite recurses at each star; a
/// recursion that reaches a later star never returns NoMatch, so the
/// search only ever goes back to the last star seen, and one retry point
/// gives the same answers in constant stack.
fn compare(
    pattern: &[u8],
    string: &[u8],
    w: Wildcards,
    budget: &mut Budget,
) -> Result<Compared, Interrupted> {
    let (mut p, mut s) = (0, 0);
    // The pattern position after the last escaped character.
    let mut escaped = None;
    let mut retry: Option<Retry> = None;
    'next: loop {
        budget.spend(1)?;
        let mut c = read_character(pattern, &mut p);
        let failed = 'step: {
            if c == 0 {
                if s == string.len() {
                    return Ok(Compared::Match);
                }
                break 'step true;
            }
            if c == w.any {
                c = read_character(pattern, &mut p);
                while c == w.any || (c == w.one && w.one != 0) {
                    if c == w.one && read_character(string, &mut s) == 0 {
                        return Ok(Compared::NoWildcardMatch);
                    }
                    c = read_character(pattern, &mut p);
                }
                if c == 0 {
                    return Ok(Compared::Match);
                }
                if c == w.other {
                    if w.sets {
                        // Try the set, from here, at every character.
                        if s == string.len() {
                            return Ok(Compared::NoWildcardMatch);
                        }
                        p -= 1;
                        retry = Some(Retry::Set { pattern: p, at: s });
                        escaped = None;
                        continue 'next;
                    }
                    c = read_character(pattern, &mut p);
                    if c == 0 {
                        return Ok(Compared::NoWildcardMatch);
                    }
                }
                let Some(after) = find(string, s, c, w.no_case, budget)? else {
                    return Ok(Compared::NoWildcardMatch);
                };
                s = after;
                retry = Some(Retry::Character {
                    c,
                    pattern: p,
                    from: after,
                });
                escaped = None;
                continue 'next;
            }
            if c == w.other {
                if !w.sets {
                    c = read_character(pattern, &mut p);
                    if c == 0 {
                        break 'step true;
                    }
                    escaped = Some(p);
                } else {
                    break 'step !in_set(pattern, &mut p, string, &mut s, budget)?;
                }
            }
            let c2 = read_character(string, &mut s);
            if c == c2 {
                break 'step false;
            }
            if w.no_case && c < 0x80 && c2 < 0x80 && ascii_lower(c) == ascii_lower(c2) {
                break 'step false;
            }
            !(c == w.one && escaped != Some(p) && c2 != 0)
        };
        if !failed {
            continue;
        }
        match &mut retry {
            None => return Ok(Compared::NoMatch),
            Some(Retry::Character { c, pattern, from }) => {
                let Some(after) = find(string, *from, *c, w.no_case, budget)? else {
                    return Ok(Compared::NoWildcardMatch);
                };
                *from = after;
                (p, s) = (*pattern, after);
            }
            Some(Retry::Set { pattern, at }) => {
                *at = skip_character(string, *at);
                if *at == string.len() {
                    return Ok(Compared::NoWildcardMatch);
                }
                (p, s) = (*pattern, *at);
            }
        }
        escaped = None;
    }
}

fn ascii_lower(c: u32) -> u32 {
    u32::from((c as u8).to_ascii_lowercase())
}

/// The position after the next `c` in `string` from `from`, ASCII letters
/// in either case when `no_case`.
fn find(
    string: &[u8],
    from: usize,
    c: u32,
    no_case: bool,
    budget: &mut Budget,
) -> Result<Option<usize>, Interrupted> {
    let rest = &string[from..];
    if c < 0x80 {
        let c = c as u8;
        let found = if no_case {
            memchr::memchr2(c.to_ascii_uppercase(), c.to_ascii_lowercase(), rest)
        } else {
            memchr::memchr(c, rest)
        };
        // memchr reads many bytes a step.
        budget.spend(found.unwrap_or(rest.len()) as u64 / 16 + 1)?;
        return Ok(found.map(|at| from + at + 1));
    }
    let mut at = from;
    loop {
        budget.spend(1)?;
        match read_character(string, &mut at) {
            0 => return Ok(None),
            c2 if c2 == c => return Ok(Some(at)),
            _ => {}
        }
    }
}

/// GLOB's `[...]` at `*p` (past its `[`) against the character at `*s`.
fn in_set(
    pattern: &[u8],
    p: &mut usize,
    string: &[u8],
    s: &mut usize,
    budget: &mut Budget,
) -> Result<bool, Interrupted> {
    let c = read_character(string, s);
    if c == 0 {
        return Ok(false);
    }
    let (mut seen, mut invert, mut prior) = (false, false, 0);
    let mut c2 = read_character(pattern, p);
    if c2 == u32::from(b'^') {
        invert = true;
        c2 = read_character(pattern, p);
    }
    if c2 == u32::from(b']') {
        seen = c == u32::from(b']');
        c2 = read_character(pattern, p);
    }
    while c2 != 0 && c2 != u32::from(b']') {
        budget.spend(1)?;
        let next = pattern.get(*p).copied().unwrap_or(0);
        if c2 == u32::from(b'-') && next != b']' && next != 0 && prior > 0 {
            c2 = read_character(pattern, p);
            if c >= prior && c <= c2 {
                seen = true;
            }
            prior = 0;
        } else {
            if c == c2 {
                seen = true;
            }
            prior = c2;
        }
        c2 = read_character(pattern, p);
    }
    Ok(c2 != 0 && seen != invert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An argument, bound as itself; `Text` is made with CAST from a blob,
    /// so it may hold any bytes.
    #[derive(Debug, Clone)]
    enum Arg {
        Null,
        Integer(i64),
        Real(f64),
        Text(Vec<u8>),
        Blob(Vec<u8>),
    }

    /// An in-memory database, with the bounded functions or SQLite's own.
    struct Db(*mut ffi::sqlite3);

    impl Db {
        fn open(bounded: Option<Duration>) -> Db {
            let mut db = std::ptr::null_mut();
            // SAFETY: a fresh in-memory database, used by this thread only.
            unsafe {
                assert_eq!(
                    ffi::sqlite3_open(c":memory:".as_ptr(), &mut db),
                    ffi::SQLITE_OK
                );
                if let Some(timeout) = bounded {
                    let clock = super::super::StatementClock::new(timeout);
                    register(db, Arc::new(move || clock.within_timeout())).unwrap();
                    let authorize = super::super::authorizer::authorize;
                    ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut());
                }
            }
            Db(db)
        }

        /// `function(args)`: its type and its bytes in hex, or the error.
        fn call(&self, function: &str, args: &[Arg]) -> Result<(String, String), String> {
            let params: Vec<String> = args
                .iter()
                .enumerate()
                .map(|(i, arg)| match arg {
                    Arg::Text(_) => format!("CAST(?{} AS TEXT)", i + 1),
                    _ => format!("?{}", i + 1),
                })
                .collect();
            let sql = format!(
                "SELECT typeof(x), hex(x) FROM (SELECT {function}({}) AS x)",
                params.join(", ")
            );
            self.run(&sql, args)
        }

        fn run(&self, sql: &str, args: &[Arg]) -> Result<(String, String), String> {
            // SAFETY: the database is open; the statement is finalized
            // before return; bound bytes are copied (SQLITE_TRANSIENT).
            unsafe {
                let mut stmt = std::ptr::null_mut();
                let sql = std::ffi::CString::new(sql).unwrap();
                let rc = ffi::sqlite3_prepare_v2(
                    self.0,
                    sql.as_ptr(),
                    -1,
                    &mut stmt,
                    std::ptr::null_mut(),
                );
                if rc != ffi::SQLITE_OK {
                    return Err(self.message(rc));
                }
                for (i, arg) in args.iter().enumerate() {
                    let i = i as c_int + 1;
                    match arg {
                        Arg::Null => ffi::sqlite3_bind_null(stmt, i),
                        Arg::Integer(n) => ffi::sqlite3_bind_int64(stmt, i, *n),
                        Arg::Real(r) => ffi::sqlite3_bind_double(stmt, i, *r),
                        Arg::Text(b) | Arg::Blob(b) => ffi::sqlite3_bind_blob64(
                            stmt,
                            i,
                            b.as_ptr().cast(),
                            b.len() as u64,
                            ffi::SQLITE_TRANSIENT(),
                        ),
                    };
                }
                let rc = ffi::sqlite3_step(stmt);
                let out = if rc == ffi::SQLITE_ROW {
                    let column = |i| {
                        let ptr = ffi::sqlite3_column_text(stmt, i);
                        if ptr.is_null() {
                            return String::new();
                        }
                        std::ffi::CStr::from_ptr(ptr.cast())
                            .to_string_lossy()
                            .into_owned()
                    };
                    Ok((column(0), column(1)))
                } else {
                    Err(self.message(rc))
                };
                ffi::sqlite3_finalize(stmt);
                out
            }
        }

        fn message(&self, rc: c_int) -> String {
            // SAFETY: the database is open.
            let message = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) };
            format!("{rc}: {}", message.to_string_lossy())
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            // SAFETY: opened by Db::open; every statement is finalized.
            unsafe { ffi::sqlite3_close(self.0) };
        }
    }

    /// A small deterministic generator (xorshift), so a failure repeats.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        /// Bytes from pieces that matter to these functions: wildcards,
        /// set syntax, escapes, both cases, multi-byte and broken UTF-8,
        /// NUL.
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            const PIECES: &[&[u8]] = &[
                b"a",
                b"A",
                b"b",
                b"B",
                b"%",
                b"_",
                b"*",
                b"?",
                b"[",
                b"]",
                b"^",
                b"-",
                b"\\",
                b" ",
                b"x",
                b"ab",
                "é".as_bytes(),
                "É".as_bytes(),
                "€".as_bytes(),
                "😀".as_bytes(),
                b"\x80",
                b"\xbf",
                b"\xc3",
                b"\xe2\x82",
                b"\xf8\x88\x80\x80\x80",
                b"\xc0\x80",
                b"\xed\xa0\x80",
                b"\xef\xbf\xbe",
                b"\xff",
                b"\0",
            ];
            let n = self.below(max + 1);
            (0..n)
                .flat_map(|_| PIECES[self.below(PIECES.len())].iter().copied())
                .collect()
        }

        /// A string a pattern may well match: its wildcards filled in,
        /// now and then a byte changed.
        fn instance(&mut self, pattern: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            for &b in pattern {
                match b {
                    b'%' | b'*' => out.extend(self.bytes(2)),
                    b'_' | b'?' => out.extend(self.bytes(1).iter().take(2)),
                    _ if self.below(25) == 0 => out.extend(self.bytes(1)),
                    _ => out.push(b),
                }
            }
            out
        }

        /// A piece of `bytes`, at any byte offsets.
        fn piece(&mut self, bytes: &[u8]) -> Vec<u8> {
            let start = self.below(bytes.len() + 1);
            let end = start + self.below(bytes.len() - start + 1);
            bytes[start..end].to_vec()
        }

        fn arg(&mut self, max: usize) -> Arg {
            match self.below(12) {
                0 => Arg::Null,
                1 => Arg::Integer([0, 1, -12, 42, 1234567][self.below(5)]),
                2 => Arg::Real([0.5, -1.25, 1e20][self.below(3)]),
                3 | 4 => Arg::Blob(self.bytes(max)),
                _ => Arg::Text(self.bytes(max)),
            }
        }
    }

    /// Each bounded function answers as SQLite's own over many generated
    /// calls, errors included.
    #[test]
    fn answers_as_sqlite_does() {
        let own = Db::open(None);
        let bounded = Db::open(Some(Duration::from_secs(60)));
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let functions = [
            ("instr", 2),
            ("replace", 3),
            ("trim", 2),
            ("ltrim", 2),
            ("rtrim", 2),
            ("like", 2),
            ("like", 3),
            ("glob", 2),
        ];
        let mut matched = 0;
        for round in 0..100_000 {
            let (function, arity) = functions[round % functions.len()];
            let mut args: Vec<Arg> = (0..arity).map(|_| random.arg(8)).collect();
            if function == "like" && arity == 3 && random.below(4) > 0 {
                // Mostly a valid escape: one character.
                args[2] = Arg::Text(random.bytes(1));
            }
            // Mostly arguments that find something in each other.
            if random.below(3) > 0 {
                // The pattern, haystack or string is first; what is looked
                // for in it (or matched against it) second.
                if let Arg::Text(b) | Arg::Blob(b) = args[0].clone() {
                    let derived = match function {
                        "like" | "glob" => random.instance(&b),
                        _ => random.piece(&b),
                    };
                    args[1] = match args[1] {
                        Arg::Blob(_) => Arg::Blob(derived),
                        _ => Arg::Text(derived),
                    };
                }
            }
            let expected = own.call(function, &args);
            let got = bounded.call(function, &args);
            assert_eq!(got, expected, "{function}({args:?})");
            if matches!(&expected, Ok((kind, hex)) if kind == "integer" && hex == "31") {
                matched += 1;
            }
        }
        // The generated calls are not all misses.
        assert!(matched > 10_000, "only {matched} calls answered 1");
    }

    /// Patterns that SQLite answers by recursing once per star are
    /// answered in constant stack, the same way.
    #[test]
    fn deep_patterns_take_no_stack() {
        let own = Db::open(None);
        let bounded = Db::open(Some(Duration::from_secs(60)));
        let string = Arg::Text("a".repeat(30_000).into_bytes());
        for pattern in [
            "%a".repeat(10_000),
            "%a".repeat(10_000) + "b",
            "_%".repeat(10_000),
        ] {
            let args = [Arg::Text(pattern.into_bytes()), string.clone()];
            assert_eq!(bounded.call("like", &args), own.call("like", &args));
        }
        // SQLite's own overflows a 2 MiB stack on this one (the size of
        // sqlx's worker threads, and of this test's) and aborts the process.
        let args = [
            Arg::Text("%a".repeat(24_999).into_bytes()),
            Arg::Text("a".repeat(40_000).into_bytes()),
        ];
        let got = bounded.call("like", &args).unwrap();
        assert_eq!(got, ("integer".to_owned(), "31".to_owned()));
    }

    /// A call that would run for minutes stops at the statement timeout.
    #[test]
    fn slow_calls_stop_at_the_timeout() {
        let bounded = Db::open(Some(Duration::from_millis(50)));
        let string = Arg::Text("a".repeat(1 << 20).into_bytes());
        let cases = [
            (
                "like",
                vec![
                    Arg::Text(("%".to_owned() + &"a".repeat(20_000) + "b").into_bytes()),
                    string.clone(),
                ],
            ),
            (
                "like",
                vec![
                    Arg::Text(("%".to_owned() + &"_a".repeat(10_000) + "b").into_bytes()),
                    string.clone(),
                ],
            ),
            (
                "glob",
                vec![
                    Arg::Text(("*".to_owned() + &"[a]".repeat(10_000) + "b").into_bytes()),
                    string.clone(),
                ],
            ),
            (
                "trim",
                vec![
                    string.clone(),
                    Arg::Text(("bcdefghijklmnopqrstuvwxyz".repeat(400) + "a").into_bytes()),
                ],
            ),
        ];
        for (function, args) in cases {
            let started = std::time::Instant::now();
            let got = bounded.call(function, &args);
            assert_eq!(got, Err("9: interrupted".to_owned()), "{function}");
            // Not the minutes it would take to finish.
            assert!(started.elapsed() < Duration::from_secs(20), "{function}");
        }
        // Quadratic in SQLite, linear here: these finish.
        let needle = Arg::Text(("a".repeat(100_000) + "b").into_bytes());
        let quick = Db::open(Some(Duration::from_secs(60)));
        assert_eq!(
            quick
                .call("instr", &[string.clone(), needle.clone()])
                .unwrap(),
            ("integer".to_owned(), "30".to_owned())
        );
        let (kind, _) = quick
            .call("replace", &[string, needle, Arg::Text(b"x".to_vec())])
            .unwrap();
        assert_eq!(kind, "text");
    }

    /// A `replace` or `trim` that would pass SQLite's length limit fails as
    /// SQLite's own does.
    #[test]
    fn replace_stops_at_the_length_limit() {
        let own = Db::open(None);
        let bounded = Db::open(Some(Duration::from_secs(60)));
        for db in [&own, &bounded] {
            // SAFETY: the database is open and used by this thread only.
            unsafe { ffi::sqlite3_limit(db.0, ffi::SQLITE_LIMIT_LENGTH, 1000) };
        }
        for (string, replacement) in [
            (500, "yy"),
            (499, "yy"),
            (999, "y"),
            (1000, "y"),
            (10, &*"y".repeat(200)),
        ] {
            let args = [
                Arg::Text("x".repeat(string).into_bytes()),
                Arg::Text(b"x".to_vec()),
                Arg::Text(replacement.as_bytes().to_vec()),
            ];
            let sql = "SELECT typeof(x), length(x) FROM (SELECT replace(CAST(?1 AS TEXT), \
                       CAST(?2 AS TEXT), CAST(?3 AS TEXT)) AS x)";
            assert_eq!(
                bounded.run(sql, &args),
                own.run(sql, &args),
                "{string} {replacement}"
            );
        }
        // trim() sizes its list of the set's characters within the limit too.
        for set in [83, 84] {
            let args = [
                Arg::Text(b"abc".to_vec()),
                Arg::Text("é".repeat(set).into_bytes()),
            ];
            assert_eq!(
                bounded.call("trim", &args),
                own.call("trim", &args),
                "{set}"
            );
        }
    }

    /// `PRAGMA case_sensitive_like` would bring SQLite's `like` back.
    #[test]
    fn case_sensitive_like_is_refused() {
        let bounded = Db::open(Some(Duration::from_secs(60)));
        let refused = bounded.run("PRAGMA case_sensitive_like = 1", &[]);
        assert_eq!(refused, Err("23: not authorized".to_owned()));
        assert!(bounded.run("PRAGMA main.case_SENSITIVE_like", &[]).is_err());
        // Other pragmas are as they were.
        assert!(bounded.run("PRAGMA user_version", &[]).is_ok());
    }
}
