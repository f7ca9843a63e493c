//! SQLite reads run in place: a plain `SELECT` (or `WITH … SELECT`,
//! `VALUES`) on a SQLite database runs on the calling thread, on a
//! read-only handle the host keeps beside the database's sqlx pool.
//!
//! Why: sqlx's SQLite driver runs every connection on a thread of its own,
//! so one pooled query costs three hand-offs between threads (the ping on
//! acquire, the query, the ping on release), and a plugin instance waits
//! through each of them while other instances run. A point query itself
//! takes a few microseconds; in place, it costs about that.
//!
//! A statement is prepared on a blocking thread the first time a handle
//! sees it (planning a tangle of CTEs can take seconds, and the budget
//! below does not reach into it), then runs in place from the handle's
//! cache. An authorizer lets a handle prepare only reads (a `PRAGMA` or
//! `BEGIN` hidden behind a comment fails to prepare) that call no function
//! whose one step can take long ([`SLOW_FUNCTIONS`]); the string functions
//! that could are bounded by the budget like any step.
//!
//! The fast path gives up, and the caller runs the statement through the
//! pool as before, whenever it is not sure: a statement that writes or is
//! not one statement, a parameter name sqlx would refuse, a database that
//! is busy or missing, text that is not UTF-8, any error (the pool then
//! reports it in its own words), a value or result over
//! [`MAX_IN_PLACE_BYTES`], and a read that runs past [`BUDGET`]: SQLite
//! interrupts it. A read stopped after real work ([`HEAVY_LOOKS`]) is
//! remembered as slow and goes to the pool from then on; one stopped with
//! little done was held up by something else (its thread preempted on a
//! busy core, a page read from disk): after [`OVERRUNS`] of those in a row
//! it goes to the pool for [`OVERRUN_PAUSE`], then is tried in place again.
//! So no read holds the calling thread much longer than the budget, a hot
//! point query is not sent to the pool for good by a busy moment of the
//! machine, and nothing a plugin sees differs but the time it takes.

use super::first_word;
use crate::capability::bindings::gatehouse::plugin::sql::{Rows, Value};
use libsqlite3_sys as ffi;
use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_int, c_void};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest a read runs in place before it is stopped and sent to the
/// pool.
const BUDGET: Duration = Duration::from_millis(1);

/// The longest a handle spends loading the schema to prepare a statement;
/// past it the statement goes to the pool from then on.
const PREPARE_BUDGET: Duration = Duration::from_secs(1);

/// SQLite virtual machine steps between two looks at the budget.
const BUDGET_OPS: c_int = 1000;

/// Looks at the budget (of [`BUDGET_OPS`] steps each) a read stopped past
/// its budget had taken when it proved itself slow: a point query takes a
/// few dozen steps and never gets one.
const HEAVY_LOOKS: u32 = 5;

/// Overruns in a row, each with less work than [`HEAVY_LOOKS`], after which
/// a statement goes to the pool for [`OVERRUN_PAUSE`].
const OVERRUNS: u8 = 3;

/// How long a statement that kept overrunning with little done goes to the
/// pool before it is tried in place again (and paused again by one more
/// overrun). A statement whose few steps are slow (pages read from a cold
/// disk) costs the calling thread one budget a second at most; a hot one
/// held up by a busy machine comes back to its few microseconds in place.
const OVERRUN_PAUSE: Duration = Duration::from_secs(1);

/// The longest statement text prepared in place; longer text goes to the
/// pool, so preparing (which the budget does not cover) stays short.
const MAX_SQL_LENGTH: c_int = 64 << 10;

/// The largest value a read builds in place, and the most its rows may
/// hold: a bigger one is a job for the pool, whose thread it may keep as
/// long as it takes. This also bounds what one step (`randomblob`, say)
/// can do between two looks at the budget.
const MAX_IN_PLACE_BYTES: usize = 1 << 20;

/// Functions whose single call can take long: a read that calls one goes
/// to the pool. SQLite's own `like`, `glob`, `instr`, `replace` and `trim`
/// are replaced on every handle by bounded ones (see
/// [`super::sqlite_functions`]); `regexp` is an application's to define.
const SLOW_FUNCTIONS: [&[u8]; 1] = [b"regexp"];

/// Prepared statements kept per handle; past this the cache starts over.
const CACHED_STATEMENTS: usize = 64;

/// Idle handles kept per database. Reads in place never wait, so there are
/// about as many in use at once as threads running plugins.
const IDLE_HANDLES: usize = 8;

/// The read-only handles of one SQLite database file.
pub struct InPlace {
    path: CString,
    idle: Mutex<Vec<Handle>>,
    /// Reads that finished in place, and reads it handed to the pool.
    finished: AtomicU64,
    handed_on: AtomicU64,
}

/// What `/stats` shows of one database's reads in place.
#[derive(Debug, serde::Serialize)]
pub struct Counts {
    pub reads_in_place: u64,
    pub reads_handed_to_pool: u64,
}

impl std::fmt::Debug for InPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlace").field("path", &self.path).finish()
    }
}

impl InPlace {
    /// Reads in place on the database file at `path`, which `url` names;
    /// none for a database in memory, which only the pool's own connections
    /// can see, or one opened with options a plain handle would not share.
    pub fn new(url: &str, path: &std::path::Path) -> Option<InPlace> {
        let text = path.to_str()?;
        let special = [":memory:", "mode=memory", "immutable", "vfs="];
        if text.is_empty() || special.iter().any(|option| url.contains(option)) {
            return None;
        }
        Some(InPlace {
            path: CString::new(text).ok()?,
            idle: Mutex::new(Vec::new()),
            finished: AtomicU64::new(0),
            handed_on: AtomicU64::new(0),
        })
    }

    /// How many reads finished in place, and how many went to the pool.
    pub fn counts(&self) -> Counts {
        Counts {
            reads_in_place: self.finished.load(Ordering::Relaxed),
            reads_handed_to_pool: self.handed_on.load(Ordering::Relaxed),
        }
    }

    /// The rows of `sql` if it is a read that finished in place; `None`
    /// when it is for the pool to run.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Option<Rows> {
        if !reads_only(sql) {
            return None;
        }
        let rows = match self.take() {
            Some(handle) => self.run(handle, sql, params).await,
            None => None,
        };
        let counter = if rows.is_some() {
            &self.finished
        } else {
            &self.handed_on
        };
        counter.fetch_add(1, Ordering::Relaxed);
        rows
    }

    /// Runs `sql` on `handle`, preparing it on a blocking thread first if
    /// the handle has not seen it, and puts the handle back.
    async fn run(&self, mut handle: Handle, sql: &str, params: &[Value]) -> Option<Rows> {
        if !handle.statements.contains_key(sql) {
            let text = sql.to_owned();
            handle = tokio::task::spawn_blocking(move || {
                handle.prepare(&text);
                handle
            })
            .await
            .ok()?;
        }
        let rows = handle.query(sql, params);
        if handle.usable() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < IDLE_HANDLES {
                idle.push(handle);
            }
        }
        rows
    }

    /// An idle handle, or a new one; none when the file cannot be opened
    /// (it is not created yet, say: the pool creates it).
    fn take(&self) -> Option<Handle> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        idle.or_else(|| Handle::open(&self.path))
    }
}

/// Whether `sql` starts as a read: `SELECT`, `WITH` or `VALUES`. SQLite
/// confirms it once prepared (`WITH … DELETE` writes).
fn reads_only(sql: &str) -> bool {
    let word = first_word(sql);
    ["select", "with", "values"]
        .iter()
        .any(|read| word.eq_ignore_ascii_case(read))
}

/// One read-only SQLite handle, used by one thread at a time.
struct Handle {
    db: NonNull<ffi::sqlite3>,
    statements: HashMap<Box<str>, Prepared>,
    /// The running read's budget: the progress handler's context,
    /// allocated apart so its address stays put; freed after the close.
    budget: NonNull<Budget>,
}

/// When the running read is stopped, and how many times the progress
/// handler looked (about how much work the read has done).
struct Budget {
    deadline: Cell<Instant>,
    looks: Cell<u32>,
}

/// A cached statement (none: the text is not one plain read, or failed to
/// prepare), whether it proved slow, its overruns in a row that did not
/// prove it, and until when those sent it to the pool.
struct Prepared {
    stmt: Option<NonNull<ffi::sqlite3_stmt>>,
    slow: bool,
    overruns: u8,
    paused_until: Option<Instant>,
}

// SAFETY: the handle is opened with SQLITE_OPEN_NOMUTEX and only ever used
// by the thread that took it out of `InPlace::idle`; SQLite allows a
// connection to move between threads when it is not used from two at once.
unsafe impl Send for Handle {}

impl Handle {
    fn open(path: &CStr) -> Option<Handle> {
        let mut db = std::ptr::null_mut();
        // SAFETY: `path` is a C string; on any outcome but a null pointer
        // the handle is ours to close (Drop does, also after a failed open).
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_NOMUTEX,
                std::ptr::null(),
            )
        };
        let handle = Handle {
            db: NonNull::new(db)?,
            statements: HashMap::new(),
            budget: NonNull::from(Box::leak(Box::new(Budget {
                deadline: Cell::new(Instant::now()),
                looks: Cell::new(0),
            }))),
        };
        if rc != ffi::SQLITE_OK {
            return None;
        }
        let db = handle.db.as_ptr();
        // SAFETY: an open handle; the progress handler's context is the
        // budget, which is freed only after the handle is closed.
        unsafe {
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_ATTACHED, 0);
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_LENGTH, MAX_IN_PLACE_BYTES as c_int);
            ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_LENGTH);
            ffi::sqlite3_limit(
                db,
                ffi::SQLITE_LIMIT_VARIABLE_NUMBER,
                super::MAX_SQLITE_PARAMS as c_int,
            );
            ffi::sqlite3_progress_handler(
                db,
                BUDGET_OPS,
                Some(past_budget),
                handle.budget.as_ptr().cast(),
            );
            ffi::sqlite3_set_authorizer(db, Some(authorize), std::ptr::null_mut());
        }
        // The pool's bounded string functions, stopping at the budget. A
        // call that used up the budget did real work: the read counts as
        // slow.
        let budget = handle.budget;
        let within = move || {
            // SAFETY: the budget is freed only after the handle (and with
            // it these functions) is closed; only the thread using the
            // handle calls them.
            let budget = unsafe { budget.as_ref() };
            let within = Instant::now() < budget.deadline.get();
            if !within {
                budget.looks.set(budget.looks.get().max(HEAVY_LOOKS));
            }
            within
        };
        // SAFETY: an open handle, used by this thread only; see above.
        #[allow(clippy::arc_with_non_send_sync)]
        unsafe { super::sqlite_functions::register(db, std::sync::Arc::new(within)) }.ok()?;
        Some(handle)
    }

    /// Whether the handle is fit for the next read: out of any transaction.
    fn usable(&self) -> bool {
        // SAFETY: an open handle; this only reads its state.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) != 0 }
    }

    /// Starts a budget of `length` for the next read (or prepare) now.
    fn start_budget(&self, length: Duration) -> Instant {
        let deadline = Instant::now() + length;
        let budget = self.budget();
        budget.deadline.set(deadline);
        budget.looks.set(0);
        deadline
    }

    fn budget(&self) -> &Budget {
        // SAFETY: the budget lives as long as the handle, and only the
        // thread using the handle touches it.
        unsafe { self.budget.as_ref() }
    }

    /// Runs `sql`, if the handle prepared it as one plain read that has not
    /// proved slow and is not paused.
    fn query(&mut self, sql: &str, params: &[Value]) -> Option<Rows> {
        self.query_within(sql, params, BUDGET)
    }

    fn query_within(&mut self, sql: &str, params: &[Value], budget: Duration) -> Option<Rows> {
        let prepared = self.statements.get(sql)?;
        if prepared
            .paused_until
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        let stmt = prepared.stmt.filter(|_| !prepared.slow)?.as_ptr();
        let deadline = self.start_budget(budget);
        // SAFETY: `stmt` is a live statement of this handle; the values
        // bound are borrowed from `params` (SQLITE_STATIC), which outlive
        // the run, and are cleared before it returns.
        let outcome = unsafe {
            let outcome = bind(stmt, params).and_then(|()| read(stmt, deadline));
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
            outcome
        };
        let heavy = self.budget().looks.get() >= HEAVY_LOOKS;
        let prepared = self.statements.get_mut(sql)?;
        match outcome {
            Ok(rows) => {
                prepared.overruns = 0;
                prepared.paused_until = None;
                Some(rows)
            }
            Err(Stopped::Interrupted) => {
                prepared.overruns = prepared.overruns.saturating_add(1);
                prepared.slow = heavy;
                if prepared.overruns >= OVERRUNS {
                    prepared.paused_until = Some(Instant::now() + OVERRUN_PAUSE);
                    // One more overrun after the pause pauses it again.
                    prepared.overruns = OVERRUNS - 1;
                }
                None
            }
            Err(Stopped::Other) => None,
        }
    }

    /// Prepares `sql` into the cache: as a statement if it is one plain
    /// read, else as a note that it is not. Prepare takes as long as the
    /// query planner does: call it off the async threads.
    fn prepare(&mut self, sql: &str) {
        // Loading the schema (on a handle's first statement) calls the
        // progress handler too: it may take longer than a read, off the
        // async threads.
        self.start_budget(PREPARE_BUDGET);
        let stmt = self.one_read(sql);
        if self.statements.len() >= CACHED_STATEMENTS {
            self.finalize_all();
        }
        self.statements.insert(
            sql.into(),
            Prepared {
                stmt,
                slow: false,
                overruns: 0,
                paused_until: None,
            },
        );
    }

    /// `sql` prepared, if it is one statement, the authorizer lets it
    /// through, and it reads only.
    fn one_read(&self, sql: &str) -> Option<NonNull<ffi::sqlite3_stmt>> {
        let length = c_int::try_from(sql.len()).ok()?;
        let mut stmt = std::ptr::null_mut();
        let mut tail = std::ptr::null();
        // SAFETY: `sql` is `length` bytes; the statement, when one is made,
        // is finalized here or by the cache.
        unsafe {
            let rc = ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                length,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                &mut tail,
            );
            let stmt = NonNull::new(stmt)?;
            // What follows the first statement must be nothing but `;`s and
            // the whitespace SQLite skips.
            let consumed = if tail.is_null() {
                sql.len()
            } else {
                usize::try_from(tail.cast::<u8>().offset_from(sql.as_ptr())).unwrap_or(0)
            };
            let one_read = rc == ffi::SQLITE_OK
                && ffi::sqlite3_stmt_readonly(stmt.as_ptr()) != 0
                && sql.get(consumed..).is_some_and(|rest| {
                    rest.bytes().all(|b| {
                        matches!(b, b';' | b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
                    })
                });
            if !one_read {
                ffi::sqlite3_finalize(stmt.as_ptr());
                return None;
            }
            Some(stmt)
        }
    }

    fn finalize_all(&mut self) {
        for stmt in self.statements.drain().filter_map(|(_, p)| p.stmt) {
            // SAFETY: each cached statement is finalized once, here.
            unsafe { ffi::sqlite3_finalize(stmt.as_ptr()) };
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.finalize_all();
        // SAFETY: every statement of the handle is finalized above; once
        // the handle is closed nothing calls the progress handler, whose
        // context was leaked from a Box in `open`.
        unsafe {
            ffi::sqlite3_close(self.db.as_ptr());
            drop(Box::from_raw(self.budget.as_ptr()));
        }
    }
}

/// The authorizer of every handle: reads of tables and views, and calls of
/// functions but [`SLOW_FUNCTIONS`]; anything else fails to prepare.
unsafe extern "C" fn authorize(
    _: *mut c_void,
    action: c_int,
    _: *const std::ffi::c_char,
    function: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
    _: *const std::ffi::c_char,
) -> c_int {
    let allowed = match action {
        ffi::SQLITE_SELECT | ffi::SQLITE_READ | ffi::SQLITE_RECURSIVE => true,
        ffi::SQLITE_FUNCTION if !function.is_null() => {
            // SAFETY: for SQLITE_FUNCTION SQLite passes the function's name.
            let name = unsafe { CStr::from_ptr(function) }.to_bytes();
            !SLOW_FUNCTIONS
                .iter()
                .any(|slow| name.eq_ignore_ascii_case(slow))
        }
        _ => false,
    };
    if allowed {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_DENY
    }
}

/// Why a read did not finish in place.
enum Stopped {
    /// It ran past the budget.
    Interrupted,
    /// Anything else: the pool runs it and reports what is wrong.
    Other,
}

/// The progress handler: counts its looks, and returns nonzero (stop) once
/// the read is past its deadline.
unsafe extern "C" fn past_budget(budget: *mut c_void) -> c_int {
    // SAFETY: the context is the handle's budget (see Handle::open).
    let budget = unsafe { &*budget.cast::<Budget>() };
    budget.looks.set(budget.looks.get().saturating_add(1));
    c_int::from(Instant::now() >= budget.deadline.get())
}

/// Binds `params` to `stmt`'s placeholders as sqlx does: `?NNN` and `$NNN`
/// by number, a bare `?` by position, a placeholder past the last value
/// left NULL.
///
/// # Safety
/// `stmt` is a live statement; the bound text and blobs must outlive its run.
unsafe fn bind(stmt: *mut ffi::sqlite3_stmt, params: &[Value]) -> Result<(), Stopped> {
    // SAFETY: as the caller promises.
    unsafe {
        let count = ffi::sqlite3_bind_parameter_count(stmt);
        let mut position = 0usize;
        for at in 1..=count {
            let name = ffi::sqlite3_bind_parameter_name(stmt, at);
            let n = if name.is_null() {
                position += 1;
                position
            } else {
                let name = CStr::from_ptr(name).to_bytes();
                match name.split_first() {
                    Some((b'?' | b'$', digits)) => std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse::<usize>().ok())
                        .filter(|n| *n > 0)
                        .ok_or(Stopped::Other)?,
                    _ => return Err(Stopped::Other),
                }
            };
            let Some(value) = params.get(n - 1) else {
                break;
            };
            let rc = match value {
                Value::Null => ffi::sqlite3_bind_null(stmt, at),
                Value::Integer(i) => ffi::sqlite3_bind_int64(stmt, at, *i),
                Value::Real(f) => ffi::sqlite3_bind_double(stmt, at, *f),
                Value::Text(text) => ffi::sqlite3_bind_text(
                    stmt,
                    at,
                    text.as_ptr().cast(),
                    c_int::try_from(text.len()).map_err(|_| Stopped::Other)?,
                    ffi::SQLITE_STATIC(),
                ),
                Value::Blob(blob) => ffi::sqlite3_bind_blob(
                    stmt,
                    at,
                    blob.as_ptr().cast(),
                    c_int::try_from(blob.len()).map_err(|_| Stopped::Other)?,
                    ffi::SQLITE_STATIC(),
                ),
            };
            if rc != ffi::SQLITE_OK {
                return Err(Stopped::Other);
            }
        }
    }
    Ok(())
}

/// Runs `stmt` and reads its rows, each value by its storage class.
///
/// # Safety
/// `stmt` is a live, bound statement.
unsafe fn read(stmt: *mut ffi::sqlite3_stmt, deadline: Instant) -> Result<Rows, Stopped> {
    // SAFETY: as the caller promises; a column's text and blob pointers are
    // copied before the next step.
    unsafe {
        let (mut columns, mut rows, mut bytes) = (None, Vec::new(), 0usize);
        loop {
            let rc = ffi::sqlite3_step(stmt);
            // The columns as of the first step: a step that finds the
            // schema changed prepares the statement again, maybe wider.
            if columns.is_none() {
                columns = Some(column_names(stmt)?);
            }
            match rc {
                ffi::SQLITE_ROW => {}
                ffi::SQLITE_DONE => break,
                ffi::SQLITE_INTERRUPT => return Err(Stopped::Interrupted),
                _ => return Err(Stopped::Other),
            }
            let width = ffi::sqlite3_column_count(stmt);
            let mut row = Vec::with_capacity(usize::try_from(width).unwrap_or(0));
            for i in 0..width {
                let value = match ffi::sqlite3_column_type(stmt, i) {
                    ffi::SQLITE_NULL => Value::Null,
                    ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_column_int64(stmt, i)),
                    ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(stmt, i)),
                    ffi::SQLITE_BLOB => Value::Blob(column_bytes(stmt, i, true).to_vec()),
                    _ => Value::Text(
                        std::str::from_utf8(column_bytes(stmt, i, false))
                            .map_err(|_| Stopped::Other)?
                            .to_owned(),
                    ),
                };
                row.push(value);
            }
            bytes += super::row_size(&row);
            if bytes > MAX_IN_PLACE_BYTES {
                return Err(Stopped::Other);
            }
            rows.push(row);
            // Reading rows out costs time the progress handler does not see.
            if Instant::now() >= deadline {
                return Err(Stopped::Interrupted);
            }
        }
        Ok(Rows {
            columns: columns.unwrap_or_default(),
            rows,
        })
    }
}

/// The names of `stmt`'s columns.
///
/// # Safety
/// `stmt` is a live statement.
unsafe fn column_names(stmt: *mut ffi::sqlite3_stmt) -> Result<Vec<String>, Stopped> {
    // SAFETY: as the caller promises; each name is copied at once.
    unsafe {
        (0..ffi::sqlite3_column_count(stmt))
            .map(|i| {
                let name = ffi::sqlite3_column_name(stmt, i);
                if name.is_null() {
                    return Err(Stopped::Other);
                }
                let name = CStr::from_ptr(name).to_str().map_err(|_| Stopped::Other)?;
                Ok(name.to_owned())
            })
            .collect()
    }
}

/// Column `i` of the current row as bytes: a blob, or text as UTF-8.
///
/// # Safety
/// `stmt` is a live statement on a row; the bytes last until the next step.
unsafe fn column_bytes<'a>(stmt: *mut ffi::sqlite3_stmt, i: c_int, blob: bool) -> &'a [u8] {
    // SAFETY: as the caller promises; the pointer is fetched before the
    // length, as SQLite asks.
    unsafe {
        let data = if blob {
            ffi::sqlite3_column_blob(stmt, i).cast::<u8>()
        } else {
            ffi::sqlite3_column_text(stmt, i).cast::<u8>()
        };
        let length = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
        if data.is_null() || length == 0 {
            return &[];
        }
        std::slice::from_raw_parts(data, length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_are_taken_in_place() {
        assert!(reads_only("SELECT 1"));
        assert!(reads_only("  /* c */ with x as (select 1) select * from x"));
        assert!(reads_only("values (1)"));
        assert!(!reads_only("selected"));
        assert!(!reads_only("INSERT INTO t VALUES (1)"));
        assert!(!reads_only("PRAGMA query_only = 0"));
        assert!(!reads_only("BEGIN"));
    }

    /// A handle on an empty database file in a new folder.
    fn handle() -> (tempfile::TempDir, Handle) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.db");
        std::fs::write(&path, b"").unwrap();
        let path = CString::new(path.to_str().unwrap()).unwrap();
        let handle = Handle::open(&path).unwrap();
        (dir, handle)
    }

    fn slow(handle: &Handle, sql: &str) -> bool {
        handle.statements[sql].slow
    }

    fn paused(handle: &Handle, sql: &str) -> bool {
        handle.statements[sql].paused_until.is_some()
    }

    #[test]
    fn a_light_read_held_up_stays_in_place_unless_it_keeps_overrunning() {
        let (_dir, mut handle) = handle();
        let sql = "SELECT 1 AS one";
        handle.prepare(sql);
        // Two overruns with no work done (the thread held up elsewhere)
        // hand the read to the pool without pausing it.
        for _ in 0..2 {
            assert!(handle.query_within(sql, &[], Duration::ZERO).is_none());
            assert!(!paused(&handle, sql));
        }
        // A read that finishes starts the count again.
        let rows = handle.query(sql, &[]).expect("in place");
        assert_eq!(rows.columns, ["one"]);
        for _ in 0..OVERRUNS - 1 {
            assert!(handle.query_within(sql, &[], Duration::ZERO).is_none());
        }
        assert!(!paused(&handle, sql));
        assert!(handle.query_within(sql, &[], Duration::ZERO).is_none());
        assert!(paused(&handle, sql));
        assert!(!slow(&handle, sql), "little was done: it is not slow");
        assert!(
            handle.query(sql, &[]).is_none(),
            "a paused read goes to the pool"
        );
        // After the pause it is tried in place again. One more overrun
        // pauses it again; a read that finishes ends the pause.
        std::thread::sleep(OVERRUN_PAUSE);
        assert!(handle.query_within(sql, &[], Duration::ZERO).is_none());
        assert!(paused(&handle, sql));
        assert!(handle.query(sql, &[]).is_none());
        std::thread::sleep(OVERRUN_PAUSE);
        assert!(handle.query(sql, &[]).is_some());
        assert!(!paused(&handle, sql));
        for _ in 0..OVERRUNS - 1 {
            assert!(handle.query_within(sql, &[], Duration::ZERO).is_none());
        }
        assert!(!paused(&handle, sql));
    }

    #[test]
    fn a_heavy_read_stopped_by_its_budget_is_slow_at_once() {
        let (_dir, mut handle) = handle();
        let sql = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r \
                   WHERE i < 50000000) SELECT sum(i) FROM r";
        handle.prepare(sql);
        assert!(handle.query(sql, &[]).is_none());
        assert!(slow(&handle, sql));
    }
}
