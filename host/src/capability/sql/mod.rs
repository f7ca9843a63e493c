//! `gatehouse:plugin/sql`: the host's database pools, reached by plugins
//! through parameterized statements on the databases their grant names.
//!
//! Pools are sqlx's, one per `[databases.NAME]`, opened lazily so a database
//! that is down at start (or later) fails calls with `unavailable` after the
//! bounded acquire timeout and is reconnected by itself when it is back.
//!
//! Postgres parameters are typed by the server: the statement is prepared
//! first (sqlx caches it per connection) and each value is encoded as the
//! type the server inferred for its placeholder, as a driver sending
//! untyped text would get. Results arrive as the nearest `value`:
//!
//! | Postgres | value |
//! |---|---|
//! | bool | integer 0 or 1 |
//! | int2, int4, int8 | integer |
//! | float4, float8 | real |
//! | text, varchar, char, name | text |
//! | bytea | blob |
//! | numeric | text (exact decimal, any length) |
//! | timestamptz | text, RFC 3339 in UTC |
//! | timestamp, date, time | text, ISO 8601 |
//! | json, jsonb | text (the JSON as Postgres holds it) |
//! | uuid | text |
//! | int and text arrays | text (a JSON array) |
//!
//! SQLite values map one to one by their storage class. A SQLite read that
//! is one plain statement runs in place, on the calling thread ([`in_place`]);
//! everything else goes through the pool.

mod arrays;
mod authorizer;
mod backends;
mod in_place;
mod kept;
mod numeric;
mod pg_text;
mod ranges;
mod sqlite_functions;

use super::bindings::gatehouse::plugin::sql::{Error as SqlError, Rows, Statement, Value};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgTypeInfo, PgTypeKind, Postgres};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::types::Uuid;
use sqlx::{Column, Executor, Row, Statement as _, TypeInfo, ValueRef};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The database every host has: the embedded SQLite file unless configured.
pub const MAIN: &str = "main";

/// How long a pooled Postgres connection may sit idle and still be handed
/// out without a ping first. sqlx pings every connection it takes back, so
/// one idle for less than this answered a moment ago; under load no call
/// waits for a round trip that proves it again (HikariCP skips its check
/// the same way, for 500 ms).
const TRUSTED_IDLE: Duration = Duration::from_secs(1);

/// How long past its statement timeout the host waits for Postgres to stop
/// a statement before it gives up on the connection.
const POSTGRES_GRACE: Duration = Duration::from_secs(1);

/// The host's own SQLite file in the data folder (the kv store) when `main`
/// is SQLite: apart from every database a plugin can be granted.
const HOST_FILE: &str = "gatehouse.db";

/// One pool.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// One configured database.
#[derive(Debug)]
pub struct Database {
    pub name: String,
    pub config: DatabaseConfig,
    pub pool: Pool,
    /// Where SQLite reads run in place (see [`in_place`]).
    in_place: Option<in_place::InPlace>,
    /// Postgres connections passed from call to call (see [`kept`]).
    kept: Arc<kept::Kept>,
    /// The server processes of a Postgres pool (see [`backends`]).
    backends: Option<Arc<backends::Backends>>,
}

/// What `/stats` shows of one database.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
pub enum DatabaseStats {
    Sqlite(in_place::Counts),
    Postgres(kept::Counts),
}

/// Every configured database, by name, and the host's own.
#[derive(Debug)]
pub struct Databases {
    by_name: HashMap<String, Arc<Database>>,
    /// Where the kv store lives: `<data>/gatehouse.db` when `main` is
    /// SQLite, else `main` itself (a fleet shares its Postgres).
    host: Arc<Database>,
}

impl Databases {
    /// Builds the pools of `configs` (plus the embedded `main` when it is
    /// not configured). A pool whose config is unchanged in `previous` is
    /// kept, with its open connections. Nothing connects here.
    pub fn open(
        configs: &BTreeMap<String, DatabaseConfig>,
        data_dir: &Path,
        previous: Option<&Databases>,
    ) -> Result<Databases> {
        let mut configs = configs.clone();
        configs
            .entry(MAIN.to_owned())
            .or_insert_with(|| DatabaseConfig::embedded(data_dir, "main.db"));
        if configs[MAIN].is_sqlite() {
            // The host's file keeps every plugin's kv store: no grantable
            // database may be it.
            let host_file = sqlite_file(&DatabaseConfig::embedded(data_dir, HOST_FILE));
            if let Some((name, _)) = configs.iter().find(|(_, config)| {
                config.is_sqlite() && same_file(sqlite_file(config), host_file.as_deref())
            }) {
                return Err(Error::Database {
                    name: name.clone(),
                    message: format!(
                        "it is the host's own file ({HOST_FILE} in the data folder, which keeps \
                         every plugin's kv store); give [databases.{name}] another file"
                    ),
                });
            }
        }
        let open = |name: &str, config: DatabaseConfig, kept: Option<&Arc<Database>>| match kept
            .filter(|db| db.config == config)
        {
            Some(db) => Ok(db.clone()),
            None => Database::open(name, config).map(Arc::new),
        };
        let mut by_name = HashMap::new();
        for (name, config) in configs {
            let database = open(&name, config, previous.and_then(|p| p.by_name.get(&name)))?;
            by_name.insert(name, database);
        }
        let main = by_name[MAIN].clone();
        let host = if main.config.is_sqlite() {
            let config = DatabaseConfig::embedded(data_dir, HOST_FILE);
            open("gatehouse", config, previous.map(|p| &p.host))?
        } else {
            main
        };
        Ok(Databases { by_name, host })
    }

    /// The names whose pool is not the one of `before`: added, removed, or
    /// opened anew for a changed url or setting.
    pub fn changed_from(&self, before: &Databases) -> std::collections::HashSet<String> {
        let differs = |name: &String| match (self.by_name.get(name), before.by_name.get(name)) {
            (Some(now), Some(then)) => !Arc::ptr_eq(now, then),
            _ => true,
        };
        self.by_name
            .keys()
            .chain(before.by_name.keys())
            .filter(|name| differs(name))
            .cloned()
            .collect()
    }

    /// The database called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Database>> {
        self.by_name.get(name)
    }

    /// The host's own database, which keeps the kv store; no plugin can be
    /// granted it when `main` is SQLite.
    pub fn host(&self) -> &Arc<Database> {
        &self.host
    }

    /// What `/stats` shows of each database: a SQLite database's reads in
    /// place (one in memory has none), a Postgres database's calls on kept
    /// connections.
    pub fn stats(&self) -> BTreeMap<&str, DatabaseStats> {
        self.by_name
            .iter()
            .filter_map(|(name, db)| {
                let stats = match &db.pool {
                    Pool::Sqlite(_) => DatabaseStats::Sqlite(db.read_counts()?),
                    Pool::Postgres(_) => DatabaseStats::Postgres(db.kept.counts()),
                };
                Some((name.as_str(), stats))
            })
            .collect()
    }
}

impl Database {
    fn open(name: &str, config: DatabaseConfig) -> Result<Database> {
        let bad = |e: sqlx::Error| Error::Database {
            name: name.to_owned(),
            message: format!("invalid url `{}`: {e}", without_password(&config.url)),
        };
        let acquire = Duration::from_millis(config.acquire_timeout_ms);
        let timeout = Duration::from_millis(config.statement_timeout_ms);
        let mut in_place = None;
        let mut backends = None;
        let pool = if config.is_sqlite() {
            let options = SqliteConnectOptions::from_str(&config.url)
                .map_err(bad)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(timeout);
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::io(format!("creating the folder of database `{name}`"), e)
                })?;
            }
            in_place = in_place::InPlace::new(&config.url, options.get_filename());
            Pool::Sqlite(
                PoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(acquire)
                    // A ping proves only that the connection's own thread
                    // runs; a call on a dead one fails the same way.
                    .test_before_acquire(false)
                    .after_connect(move |conn, _| Box::pin(limit_connection(conn, timeout)))
                    .connect_lazy_with(options),
            )
        } else {
            let timeout = config.statement_timeout_ms.to_string();
            let options = PgConnectOptions::from_str(&config.url)
                .map_err(bad)?
                .application_name("gatehouse")
                // Notices and warnings a plugin's SQL raises are not sent,
                // so they cannot flood the host's log through sqlx.
                .options([
                    ("statement_timeout", timeout.as_str()),
                    ("client_min_messages", "error"),
                ]);
            let processes = Arc::new(backends::Backends::new(config.max_connections));
            backends = Some(processes.clone());
            Pool::Postgres(
                PoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(acquire)
                    .after_connect(move |conn, _| {
                        let processes = processes.clone();
                        Box::pin(async move {
                            watch_client(conn).await?;
                            processes.register(conn).await
                        })
                    })
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| Box::pin(ping_when_idle(conn, meta)))
                    .connect_lazy_with(options),
            )
        };
        let kept = Arc::new(kept::Kept::default());
        if let Pool::Postgres(_) = pool {
            kept::Kept::give_back_idle(Arc::downgrade(&kept));
        }
        Ok(Database {
            name: name.to_owned(),
            config,
            pool,
            in_place,
            kept,
            backends,
        })
    }

    /// Runs a statement of plugin `caller` that returns rows.
    pub async fn query(
        &self,
        caller: &Arc<str>,
        sql: &str,
        params: &[Value],
    ) -> Result<Rows, SqlError> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                sqlite_placeholders(sql, params.len())?;
                if let Some(rows) = self.read_in_place(sql, params).await {
                    return Ok(rows);
                }
                self.bounded(async {
                    let mut conn = SqliteCall::acquire(pool).await?;
                    let read = read_rows(
                        bind_sqlite(sqlx::query(sql), params).fetch(&mut **conn),
                        sqlite_value,
                    )
                    .await;
                    conn.finished();
                    no_state_left(&mut conn, sql).await?;
                    let mut rows = read?;
                    if rows.rows.is_empty() {
                        // No row to read the names from: ask the statement
                        // (prepared already, so this is a cache hit).
                        let statement = conn.prepare(sql).await.map_err(sql_error)?;
                        rows.columns = column_names(statement.columns());
                    }
                    Ok(rows)
                })
                .await
            }
            Pool::Postgres(pool) => {
                no_session_command(sql)?;
                let after = After::query(sql);
                self.on_postgres(pool, caller, after, async |conn| {
                    let (query, columns) = bind_postgres(conn, sql, params).await?;
                    let mut rows = read_rows(query.fetch(&mut *conn), pg_value).await?;
                    if rows.rows.is_empty() {
                        rows.columns = columns;
                    }
                    Ok(rows)
                })
                .await
            }
        }
    }

    /// The rows of a SQLite read that ran in place; `None` when the pool
    /// must run it (see [`in_place`]).
    pub async fn read_in_place(&self, sql: &str, params: &[Value]) -> Option<Rows> {
        self.in_place.as_ref()?.query(sql, params).await
    }

    /// How many reads ran in place and how many went to the pool; `None`
    /// for a database whose reads all go to the pool.
    pub fn read_counts(&self) -> Option<in_place::Counts> {
        Some(self.in_place.as_ref()?.counts())
    }

    /// Runs a statement of plugin `caller` and returns the number of rows
    /// it changed.
    pub async fn execute(
        &self,
        caller: &Arc<str>,
        sql: &str,
        params: &[Value],
    ) -> Result<u64, SqlError> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                sqlite_placeholders(sql, params.len())?;
                self.bounded(async {
                    let mut conn = SqliteCall::acquire(pool).await?;
                    let done = bind_sqlite(sqlx::query(sql), params)
                        .execute(&mut **conn)
                        .await;
                    conn.finished();
                    no_state_left(&mut conn, sql).await?;
                    Ok(done.map_err(sql_error)?.rows_affected())
                })
                .await
            }
            Pool::Postgres(pool) => {
                no_session_command(sql)?;
                self.on_postgres(pool, caller, After::statements([sql]), async |conn| {
                    let (query, _) = bind_postgres(conn, sql, params).await?;
                    let done = query.execute(&mut *conn).await.map_err(sql_error)?;
                    Ok(done.rows_affected())
                })
                .await
            }
        }
    }

    /// Runs statements of plugin `caller` in one transaction: all of them
    /// or none.
    pub async fn batch(
        &self,
        caller: &Arc<str>,
        statements: &[Statement],
    ) -> Result<Vec<u64>, SqlError> {
        let mut affected = Vec::with_capacity(statements.len());
        match &self.pool {
            Pool::Sqlite(pool) => {
                for statement in statements {
                    sqlite_placeholders(&statement.sql, statement.params.len())?;
                }
                self.bounded(async {
                    let mut conn = SqliteCall::acquire(pool).await?;
                    if statements.iter().any(|s| changes_sqlite_session(&s.sql)) {
                        conn.close_on_drop();
                    }
                    let mut ended_early = false;
                    // Only a statement that names one can end the transaction.
                    let watched = statements.iter().any(|s| may_end_transaction(&s.sql));
                    let ended = Arc::new(AtomicBool::new(false));
                    let outcome = async {
                        let mut tx = sqlx::Connection::begin(&mut **conn)
                            .await
                            .map_err(sql_error)?;
                        if watched {
                            watch_transaction_end(&mut tx, &ended).await?;
                        }
                        for (i, statement) in statements.iter().enumerate() {
                            let done = bind_sqlite(sqlx::query(&statement.sql), &statement.params)
                                .execute(&mut *tx)
                                .await
                                .map_err(sql_error)?;
                            affected.push(done.rows_affected());
                            if ended.load(Ordering::Relaxed) {
                                ended_early = true;
                                return Err(SqlError::BadStatement(format!(
                                    "statement {i} ended the batch's transaction itself: a batch \
                                     is one transaction, which the host commits or rolls back; \
                                     leave out COMMIT, END, ROLLBACK and RELEASE (what ran before \
                                     it stays as that statement left it, and nothing after it ran)"
                                )));
                            }
                        }
                        if watched {
                            unwatch_transaction_end(&mut tx).await?;
                        }
                        tx.commit().await.map_err(sql_error)
                    }
                    .await;
                    if watched && outcome.is_err() {
                        // The hooks go with a connection that is closed; one
                        // going back to the pool goes without them.
                        unwatch_transaction_end(&mut conn).await.ok();
                    }
                    conn.finished();
                    if ended_early {
                        // sqlx still counts a transaction on it.
                        conn.close_on_drop();
                    }
                    outcome
                })
                .await?;
            }
            Pool::Postgres(pool) => {
                for statement in statements {
                    no_session_command(&statement.sql)?;
                }
                let after = After::statements(statements.iter().map(|s| s.sql.as_str()));
                self.on_postgres(pool, caller, after, async |conn| {
                    let mut tx = sqlx::Connection::begin(conn).await.map_err(sql_error)?;
                    for statement in statements {
                        let (query, _) =
                            bind_postgres(&mut tx, &statement.sql, &statement.params).await?;
                        let done = query.execute(&mut *tx).await.map_err(sql_error)?;
                        affected.push(done.rows_affected());
                    }
                    tx.commit().await.map_err(sql_error)
                })
                .await?;
            }
        }
        Ok(affected)
    }

    /// Runs `call` on a pooled Postgres connection for at most the statement
    /// timeout (plus [`POSTGRES_GRACE`], so the server's own timeout and its
    /// message normally come first). A connection the host gave up on is
    /// closed rather than pooled (pooling it would wait for the statement the
    /// server still runs), and so is one whose call may have changed its
    /// session, or whose failed query may have left rows unread (see
    /// [`After`]), so nothing of it outlives the call. One whose call
    /// succeeded is kept for the next call ([`kept`]); one whose call failed
    /// otherwise goes back to sqlx, reset first. A connection another
    /// plugin's call used last is reset before this one runs.
    async fn on_postgres<T>(
        &self,
        pool: &PgPool,
        caller: &Arc<str>,
        after: After,
        call: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut taken = self.kept.take(pool).await.map_err(sql_error)?;
        let used_by_another = taken.use_for(caller);
        let limit = Duration::from_millis(self.config.statement_timeout_ms) + POSTGRES_GRACE;
        let run = async {
            if used_by_another {
                kept::reset(taken.conn()).await.map_err(sql_error)?;
            }
            call(taken.conn()).await
        };
        let outcome = tokio::time::timeout(limit, run).await;
        if outcome.is_err() {
            self.stop_given_up(pool);
        }
        let failed = matches!(outcome, Ok(Err(_)));
        if outcome.is_err() || after.changes_session || (failed && after.may_leave_rows) {
            taken.close();
        } else if matches!(outcome, Ok(Ok(_))) {
            self.kept.keep(taken, pool);
        }
        outcome.unwrap_or_else(|_| {
            Err(SqlError::Unavailable(format!(
                "database `{}` did not finish the statement within {} ms",
                self.name,
                limit.as_millis()
            )))
        })
    }

    /// Ends, in the background, this pool's statements that ran past the
    /// statement timeout: the one the host just gave up on keeps running
    /// on the server if it lifted its limits (see [`backends`]).
    fn stop_given_up(&self, pool: &PgPool) {
        let Some(backends) = self.backends.clone() else {
            return;
        };
        let (pool, name) = (pool.clone(), self.name.clone());
        let limit = Duration::from_millis(self.config.statement_timeout_ms);
        tokio::spawn(async move {
            match backends.stop_past(&pool, limit).await {
                Ok(0) => {}
                Ok(ended) => tracing::warn!(
                    database = %name,
                    "ended {ended} statement(s) that ran past statement_timeout_ms after the host gave up on them"
                ),
                Err(e) => tracing::warn!(
                    database = %name,
                    "cannot end the statements the host gave up on: {e}"
                ),
            }
        });
    }

    /// Bounds a SQLite call by the acquire and statement timeouts, so a
    /// database that hangs gives `unavailable` instead of holding the request.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, SqlError>>,
    ) -> Result<T, SqlError> {
        let limit = Duration::from_millis(
            self.config.acquire_timeout_ms + self.config.statement_timeout_ms,
        );
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            Err(SqlError::Unavailable(format!(
                "database `{}` did not answer within {} ms",
                self.name,
                limit.as_millis()
            )))
        })
    }
}

/// What a Postgres call may leave on its connection, which decides whether
/// the connection can be used again.
struct After {
    /// Its statements may have changed the session ([`changes_session`]).
    changes_session: bool,
    /// It reads rows: one that fails partway (its result past
    /// [`MAX_RESULT_BYTES`], a value that does not map) leaves the rest of
    /// the result coming, which a reset would first have to read to its end,
    /// however long the plugin made it.
    may_leave_rows: bool,
}

impl After {
    fn query(sql: &str) -> After {
        After {
            changes_session: changes_session(sql),
            may_leave_rows: true,
        }
    }

    fn statements<'a>(sql: impl IntoIterator<Item = &'a str>) -> After {
        After {
            changes_session: sql.into_iter().any(changes_session),
            may_leave_rows: false,
        }
    }
}

/// The file of a SQLite database as SQLite opens it, as the file system
/// names it when it exists (so two spellings of one path compare equal).
/// sqlx opens with `SQLITE_OPEN_URI`, so a name that starts with `file:` is
/// a URI: an empty or `localhost` authority, then a percent-encoded path up
/// to its query.
fn sqlite_file(config: &DatabaseConfig) -> Option<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(&config.url).ok()?;
    let name = options.get_filename();
    let file = match name.to_str().and_then(|name| name.strip_prefix("file:")) {
        Some(uri) => {
            let uri = uri.split(['?', '#']).next().unwrap_or_default();
            let path = match uri.strip_prefix("//") {
                Some(rest) => {
                    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                    if !authority.is_empty() && !authority.eq_ignore_ascii_case("localhost") {
                        return None;
                    }
                    path
                }
                None => uri,
            };
            let path = percent_encoding::percent_decode_str(path)
                .decode_utf8()
                .ok()?;
            std::path::PathBuf::from(path.as_ref())
        }
        None => name.to_path_buf(),
    };
    Some(
        std::fs::canonicalize(&file).unwrap_or_else(|_| std::path::absolute(&file).unwrap_or(file)),
    )
}

/// Whether two SQLite files are one: the same file on disk when both exist
/// (a hard link is another name for it), else the same path.
fn same_file(a: Option<std::path::PathBuf>, b: Option<&std::path::Path>) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    match (std::fs::metadata(&a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => a == b,
    }
}

/// `url` with the password of its user info masked, for messages and logs.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The last `@`: an unencoded password may hold `/`, `?` or `@`.
    match rest.rsplit_once('@') {
        Some((user_info, after)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let masked = if user_info.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{masked}@{after}")
        }
        None => url.to_owned(),
    }
}

/// What a plugin is told when a call would leave its pooled connection in a
/// transaction or with changed session settings for the next caller.
const STATE_LEFT: &str = "a transaction or session setting cannot outlive its call \
    (connections are pooled and shared): use batch, which runs statements in one transaction";

/// Keeps what a plugin's statement did to its SQLite connection from the
/// next caller. A connection left inside a transaction (`BEGIN`,
/// `SAVEPOINT`) is closed, so what was done inside is rolled back, and the
/// call fails. One that may have changed its session is closed after the
/// call (see [`changes_sqlite_session`]). Only text naming one of those can
/// do either, so other statements skip the checks.
async fn no_state_left(conn: &mut SqliteCall, sql: &str) -> Result<(), SqlError> {
    if changes_sqlite_session(sql) {
        conn.close_on_drop();
    }
    if !mentions(sql, b"begin") && !mentions(sql, b"savepoint") {
        return Ok(());
    }
    if sqlite_in_transaction(conn).await? {
        conn.close_on_drop();
        return Err(SqlError::BadStatement(STATE_LEFT.to_owned()));
    }
    Ok(())
}

/// Sets `ended` when the connection's transaction commits or rolls back,
/// until [`unwatch_transaction_end`]: a batch statement that ended the
/// batch's transaction is seen even when it began another (`ROLLBACK;
/// BEGIN`), and a plugin's own savepoints are left alone.
async fn watch_transaction_end(
    conn: &mut sqlx::SqliteConnection,
    ended: &Arc<AtomicBool>,
) -> Result<(), SqlError> {
    let mut handle = conn.lock_handle().await.map_err(sql_error)?;
    let (on_commit, on_rollback) = (ended.clone(), ended.clone());
    handle.set_commit_hook(move || {
        on_commit.store(true, Ordering::Relaxed);
        // Let the commit happen.
        true
    });
    handle.set_rollback_hook(move || on_rollback.store(true, Ordering::Relaxed));
    Ok(())
}

/// Removes what [`watch_transaction_end`] set.
async fn unwatch_transaction_end(conn: &mut sqlx::SqliteConnection) -> Result<(), SqlError> {
    let mut handle = conn.lock_handle().await.map_err(sql_error)?;
    handle.remove_commit_hook();
    handle.remove_rollback_hook();
    Ok(())
}

/// Whether a SQLite connection is inside a transaction.
async fn sqlite_in_transaction(conn: &mut sqlx::SqliteConnection) -> Result<bool, SqlError> {
    let mut handle = conn.lock_handle().await.map_err(sql_error)?;
    // SAFETY: the handle is this open connection's, held locked for the
    // call; sqlite3_get_autocommit only reads its state.
    Ok(unsafe { libsqlite3_sys::sqlite3_get_autocommit(handle.as_raw_handle().as_ptr()) == 0 })
}

/// Whether a SQLite statement in a batch may end the batch's transaction
/// (`COMMIT`, `END`, `ROLLBACK`, `RELEASE`); only those are checked after
/// they run.
fn may_end_transaction(sql: &str) -> bool {
    [&b"commit"[..], b"end", b"rollback", b"release"]
        .iter()
        .any(|word| mentions(sql, word))
}

/// A pooled SQLite connection for one call, closed instead of pooled when
/// the call is cut off before its statements finished (the host gave up on
/// it past its timeout): what a cut-off statement left, an open
/// transaction above all, must not reach the next caller.
struct SqliteCall {
    conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    finished: bool,
}

impl SqliteCall {
    async fn acquire(pool: &SqlitePool) -> Result<SqliteCall, SqlError> {
        Ok(SqliteCall {
            conn: pool.acquire().await.map_err(sql_error)?,
            finished: false,
        })
    }

    /// The call's statements have finished, well or not.
    fn finished(&mut self) {
        self.finished = true;
    }
}

impl std::ops::Deref for SqliteCall {
    type Target = sqlx::pool::PoolConnection<sqlx::Sqlite>;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for SqliteCall {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for SqliteCall {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.close_on_drop();
        }
    }
}

/// Whether a SQLite statement may leave its connection changed for the
/// next caller: a `PRAGMA` (which may turn off foreign keys or change how
/// LIKE compares), a temporary table, view or trigger (`TEMP`,
/// `TEMPORARY`, the `temp` schema), which would hide or act on the shared
/// tables of the same name, or an attached temporary database (`ATTACH
/// ''`), which would hold the one database slot `VACUUM` needs. `TEMP`,
/// `TEMPORARY` and `ATTACH` count only as whole words, so a table named
/// `templates` or `attempts` does not cost its callers a new connection
/// after every call.
fn changes_sqlite_session(sql: &str) -> bool {
    mentions(sql, b"pragma")
        || [&b"temp"[..], b"temporary", b"attach"]
            .iter()
            .any(|word| mentions_word(sql, word))
}

/// Checks a SQLite statement's `$N` placeholders against the `given`
/// parameters, as Postgres does: they count from `$1` (sqlx's driver fails
/// on its thread when asked to bind a zero), and the highest must be the
/// number of parameters (SQLite would bind a missing one as NULL without a
/// word). A statement with other placeholders (`?`, `:name`, `@name`) is
/// left to SQLite. Text in quotes and comments is skipped.
fn sqlite_placeholders(sql: &str, given: usize) -> Result<(), SqlError> {
    let bytes = sql.as_bytes();
    let (mut at, mut highest, mut others, mut uses) = (0, 0usize, false, 0usize);
    while at < bytes.len() {
        let rest = &bytes[at..];
        let skip_to = |end: &[u8], from: usize| {
            rest[from..]
                .windows(end.len())
                .position(|w| w == end)
                .map_or(bytes.len(), |p| at + from + p + end.len())
        };
        at = match rest[0] {
            quote @ (b'\'' | b'"' | b'`') => skip_to(&[quote], 1),
            b'[' => skip_to(b"]", 1),
            b'-' if rest.starts_with(b"--") => skip_to(b"\n", 2),
            b'/' if rest.starts_with(b"/*") => skip_to(b"*/", 2),
            b'$' if rest.get(1).is_some_and(u8::is_ascii_digit) => {
                let digits = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
                let n = rest[1..=digits].iter().fold(0usize, |n, d| {
                    n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
                });
                if n == 0 {
                    return Err(SqlError::BadStatement(
                        "placeholders are numbered from $1; `$0` names no parameter".to_owned(),
                    ));
                }
                highest = highest.max(n);
                uses += 1;
                at + 1 + digits
            }
            b'?' | b'$' => {
                others = true;
                uses += 1;
                at + 1
            }
            b':' | b'@'
                if rest
                    .get(1)
                    .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
            {
                others = true;
                uses += 1;
                at + 1
            }
            _ => at + 1,
        };
    }
    let past = if given > MAX_SQLITE_PARAMS {
        Some(format!("{given} parameters were given"))
    } else if highest > MAX_SQLITE_PARAMS {
        Some(format!("a placeholder is past ${MAX_SQLITE_PARAMS}"))
    } else if uses > MAX_SQLITE_PARAMS {
        Some(format!(
            "the statement has {uses} placeholders, counting repeats"
        ))
    } else {
        None
    };
    if let Some(past) = past {
        return Err(SqlError::BadStatement(format!(
            "{past}; a SQLite statement takes at most {MAX_SQLITE_PARAMS}: split it, or \
             pass many values as one JSON array (`IN (SELECT value FROM json_each($1))`)"
        )));
    }
    if !others && highest != given {
        return Err(SqlError::BadStatement(format!(
            "the statement has {highest} placeholder(s) but {given} parameter(s) were given"
        )));
    }
    Ok(())
}

/// Refuses a Postgres statement that would change the session of its pooled
/// connection or the transaction a batch runs in: opening or ending a
/// transaction, `SET`/`RESET`, and the host's own prepared statements
/// (`PREPARE`, `DEALLOCATE`, `DISCARD` would leave sqlx's statement cache
/// naming statements that are gone or taken), and `COPY`, whose data sqlx
/// does not carry. A Postgres statement is one command (the host prepares
/// it), so its first word says what it is.
fn no_session_command(sql: &str) -> Result<(), SqlError> {
    const TRANSACTION: [&str; 10] = [
        "begin",
        "start",
        "savepoint",
        "set",
        "reset",
        "commit",
        "end",
        "rollback",
        "abort",
        "release",
    ];
    const STATEMENTS: [&str; 3] = ["prepare", "deallocate", "discard"];
    let word = first_word(sql).to_ascii_lowercase();
    let reason = match word.as_str() {
        word if TRANSACTION.contains(&word) => STATE_LEFT,
        word if STATEMENTS.contains(&word) => {
            "the host prepares, caches and resets statements on its pooled connections: \
             send the statement itself with its parameters"
        }
        "copy" => {
            "COPY's data does not pass through the sql interface: use INSERT with \
             parameters, or batch for many rows"
        }
        _ => return Ok(()),
    };
    Err(SqlError::BadStatement(format!("`{word}`: {reason}")))
}

/// The first word of `sql` (its ASCII letters, past comments and empty
/// statements), which says what kind of statement it is.
pub(in crate::capability) fn first_word(sql: &str) -> &str {
    let start = skip_comments(sql);
    let end = start
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(start.len());
    &start[..end]
}

/// Whether a Postgres statement may change its session in a way a
/// statement-level check cannot refuse: `set_config(name, value, false)`
/// is `SET` as a function, and may sit anywhere in a statement.
fn changes_session(sql: &str) -> bool {
    mentions(sql, b"set_config")
}

/// Whether `sql` holds `word` (ASCII, any case), without allocating.
fn mentions(sql: &str, word: &[u8]) -> bool {
    sql.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
}

/// Whether `sql` holds `word` (ASCII, any case) as a whole SQLite word:
/// with no character of an identifier (SQLite's: letters, digits, `_`,
/// `$` and every byte of a non-ASCII character) just before or after it.
/// A keyword or a quoted name is one.
fn mentions_word(sql: &str, word: &[u8]) -> bool {
    let bytes = sql.as_bytes();
    let in_identifier = |at: usize| {
        bytes
            .get(at)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
    };
    bytes.windows(word.len()).enumerate().any(|(at, w)| {
        w.eq_ignore_ascii_case(word)
            && !(at > 0 && in_identifier(at - 1))
            && !in_identifier(at + word.len())
    })
}

/// `sql` from its first token: leading whitespace, `;` (an empty
/// statement), `-- …` and `/* … */` comments skipped.
fn skip_comments(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(rest) = sql.strip_prefix("--") {
            // Postgres ends a line comment at either line break.
            sql = rest.split_once(['\n', '\r']).map_or("", |(_, after)| after);
        } else if sql.starts_with("/*") {
            // Postgres nests block comments.
            let (bytes, mut depth, mut at) = (sql.as_bytes(), 0usize, 0);
            while at < bytes.len() {
                if bytes[at..].starts_with(b"/*") {
                    depth += 1;
                    at += 2;
                } else if bytes[at..].starts_with(b"*/") {
                    depth -= 1;
                    at += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    at += 1;
                }
            }
            sql = sql.get(at..).unwrap_or("");
        } else {
            return sql;
        }
    }
}

/// The limits of every SQLite connection. A statement on a granted database
/// must not reach another file: the [`authorizer`] refuses `ATTACH` of any
/// file (the host's own database, or a new file anywhere), and at most one
/// database may be attached, the temporary one of `VACUUM`. No value
/// or row may exceed [`MAX_SQLITE_LENGTH`]. And no statement may run past
/// `timeout`: SQLite itself stops it (see [`StatementClock`]), so a runaway
/// query cannot keep a pooled connection busy after its caller gave up,
/// not even inside one call of a string function (see
/// [`sqlite_functions`]).
async fn limit_connection(
    conn: &mut sqlx::SqliteConnection,
    timeout: Duration,
) -> std::result::Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let clock = Arc::new(StatementClock::new(timeout));
    // SAFETY: the handle is this open connection's, held locked for the
    // call; sqlite3_limit only lowers a limit on it. The trace callback's
    // context is the clock the progress handler below owns; sqlx drops that
    // handler only when the connection closes, after its last statement.
    // The functions hold clocks of their own.
    unsafe {
        let db = handle.as_raw_handle().as_ptr();
        libsqlite3_sys::sqlite3_limit(db, libsqlite3_sys::SQLITE_LIMIT_ATTACHED, 1);
        // No value or row bigger than this, so one row cannot flood the host.
        libsqlite3_sys::sqlite3_limit(db, libsqlite3_sys::SQLITE_LIMIT_LENGTH, MAX_SQLITE_LENGTH);
        // No statement text longer than this, so no WITH clause chains
        // enough tables to overflow the thread's stack (see
        // MAX_SQLITE_SQL_LENGTH).
        libsqlite3_sys::sqlite3_limit(
            db,
            libsqlite3_sys::SQLITE_LIMIT_SQL_LENGTH,
            MAX_SQLITE_SQL_LENGTH,
        );
        libsqlite3_sys::sqlite3_limit(
            db,
            libsqlite3_sys::SQLITE_LIMIT_VARIABLE_NUMBER,
            MAX_SQLITE_PARAMS as i32,
        );
        libsqlite3_sys::sqlite3_trace_v2(
            db,
            libsqlite3_sys::SQLITE_TRACE_STMT as std::ffi::c_uint,
            Some(statement_started),
            Arc::as_ptr(&clock).cast_mut().cast(),
        );
        let within = clock.clone();
        sqlite_functions::register(db, Arc::new(move || within.within_timeout()))
            .map_err(sqlx::Error::Protocol)?;
        libsqlite3_sys::sqlite3_set_authorizer(
            db,
            Some(authorizer::authorize),
            std::ptr::null_mut(),
        );
    }
    handle.set_progress_handler(PROGRESS_OPS, move || clock.within_timeout());
    Ok(())
}

/// SQLite virtual machine steps between two looks at the statement clock:
/// a point query never reaches it, a runaway one is stopped within
/// microseconds of its timeout.
const PROGRESS_OPS: i32 = 4096;

/// When the statement running on one SQLite connection started, so its
/// progress handler can interrupt it past the database's statement timeout.
/// Both callbacks run on the connection's worker thread.
struct StatementClock {
    timeout: Duration,
    /// Milliseconds from `base` to the start of the running statement.
    started: std::sync::atomic::AtomicU64,
    base: std::time::Instant,
}

impl StatementClock {
    fn new(timeout: Duration) -> StatementClock {
        StatementClock {
            timeout,
            started: std::sync::atomic::AtomicU64::new(0),
            base: std::time::Instant::now(),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn start(&self) {
        self.started
            .store(self.elapsed_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// False once the running statement is past the timeout: SQLite then
    /// stops it with SQLITE_INTERRUPT.
    fn within_timeout(&self) -> bool {
        let started = self.started.load(std::sync::atomic::Ordering::Relaxed);
        let limit = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        self.elapsed_ms().saturating_sub(started) <= limit
    }
}

/// SQLITE_TRACE_STMT: a statement starts running, or a trigger's program
/// (or one statement of it) starts while its statement runs on. Only the
/// first restarts the clock: SQLite passes it the statement's own text,
/// the others a comment made for the occasion.
unsafe extern "C" fn statement_started(
    _kind: std::ffi::c_uint,
    clock: *mut std::ffi::c_void,
    statement: *mut std::ffi::c_void,
    text: *mut std::ffi::c_void,
) -> std::ffi::c_int {
    // SAFETY: SQLite passes the context given to sqlite3_trace_v2 (a live
    // StatementClock, see limit_connection) and the running statement.
    unsafe {
        let own_text = libsqlite3_sys::sqlite3_sql(statement.cast());
        if std::ptr::eq(own_text, text.cast_const().cast()) {
            (*clock.cast::<StatementClock>()).start();
        }
    }
    0
}

/// Pings a Postgres connection before it is handed out when it sat idle
/// past [`TRUSTED_IDLE`]; one that does not answer is closed and another
/// taken.
async fn ping_when_idle(
    conn: &mut sqlx::PgConnection,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::result::Result<bool, sqlx::Error> {
    if meta.idle_for > TRUSTED_IDLE {
        sqlx::Connection::ping(conn).await?;
    }
    Ok(true)
}

/// Has Postgres (14 and later) check every second, during a long statement,
/// that its client is still there: a statement whose connection the host
/// closed (see [`Database::on_postgres`]) stops instead of running on.
async fn watch_client(conn: &mut sqlx::PgConnection) -> std::result::Result<(), sqlx::Error> {
    if watches_client(conn) {
        conn.execute(WATCH_CLIENT).await?;
    }
    Ok(())
}

/// Has the server check every second for a closed client.
const WATCH_CLIENT: &str = "SET client_connection_check_interval = 1000";

/// Whether the server checks for a closed client (Postgres 14 and later).
fn watches_client(conn: &sqlx::PgConnection) -> bool {
    conn.server_version_num().is_some_and(|v| v >= 140_000)
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_sqlite<'q>(mut query: SqliteQuery<'q>, params: &'q [Value]) -> SqliteQuery<'q> {
    for param in params {
        query = match param {
            Value::Null => query.bind(None::<i64>),
            Value::Integer(i) => query.bind(*i),
            Value::Real(f) => query.bind(*f),
            Value::Text(s) => query.bind(s.as_str()),
            Value::Blob(b) => query.bind(b.as_slice()),
        };
    }
    query
}

/// The most a query's result may hold in the host, in bytes of its rows,
/// values, text and blobs (see [`row_size`]): a plugin cannot make the host
/// buffer more than this per call.
pub const MAX_RESULT_BYTES: usize = 64 << 20;

/// The longest SQLite statement text (SQLITE_LIMIT_SQL_LENGTH). SQLite
/// 3.46 expands each table of a WITH clause that reads the one before it
/// by recursion, some 450 bytes of stack a table: a chain of 5,000 tables
/// overflows a 2 MiB thread stack and aborts the host. A mebibyte holds
/// at most some 40,000 tables, within the stack every host thread gets
/// (see `THREAD_STACK` in main.rs); values belong in parameters anyway.
const MAX_SQLITE_SQL_LENGTH: i32 = 1 << 20;

/// The largest value or row a SQLite statement may build (SQLITE_LIMIT_LENGTH).
const MAX_SQLITE_LENGTH: i32 = 16 << 20;

/// The most parameters a SQLite statement may have (SQLITE_LIMIT_VARIABLE_NUMBER),
/// and the most placeholders it may hold, counting repeats. SQLite looks
/// each placeholder up in the list of those before it as it parses and
/// binds, so the time grows with the square of their number: 2,048 take
/// about 35 ms, SQLite's own limit of 32,766 about 8 s, with the
/// connection (or, for a read in place, the thread) held and no statement
/// clock running.
pub(in crate::capability) const MAX_SQLITE_PARAMS: usize = 2048;

/// Reads a result's rows as they arrive, each value mapped by
/// `value(row, column)`, until the result is over [`MAX_RESULT_BYTES`].
async fn read_rows<R: Row>(
    mut stream: futures_util::stream::BoxStream<'_, std::result::Result<R, sqlx::Error>>,
    value: impl Fn(&R, usize) -> Result<Value, SqlError>,
) -> Result<Rows, SqlError> {
    use futures_util::TryStreamExt;
    let (mut columns, mut rows, mut bytes) = (None, Vec::new(), 0usize);
    while let Some(row) = stream.try_next().await.map_err(sql_error)? {
        if columns.is_none() {
            columns = Some(column_names(row.columns()));
        }
        let values = (0..row.len())
            .map(|i| value(&row, i))
            .collect::<Result<Vec<_>, _>>()?;
        bytes += row_size(&values);
        if bytes > MAX_RESULT_BYTES {
            return Err(SqlError::BadStatement(format!(
                "the result is over {} MiB: select fewer rows or columns (LIMIT, OFFSET)",
                MAX_RESULT_BYTES >> 20
            )));
        }
        rows.push(values);
    }
    Ok(Rows {
        columns: columns.unwrap_or_default(),
        rows,
    })
}

/// What a row of values costs the host to hold: each value and its text
/// or blob, and the row itself, so a million empty rows count too.
fn row_size(values: &[Value]) -> usize {
    let heap = |value: &Value| match value {
        Value::Text(text) => text.len(),
        Value::Blob(blob) => blob.len(),
        Value::Null | Value::Integer(_) | Value::Real(_) => 0,
    };
    std::mem::size_of::<Vec<Value>>()
        + values
            .iter()
            .map(|value| std::mem::size_of::<Value>() + heap(value))
            .sum::<usize>()
}

/// The names of a result's columns.
fn column_names(columns: &[impl Column]) -> Vec<String> {
    columns.iter().map(|c| c.name().to_owned()).collect()
}

/// A SQLite value, by its storage class.
fn sqlite_value(row: &sqlx::sqlite::SqliteRow, i: usize) -> Result<Value, SqlError> {
    let raw = row.try_get_raw(i).map_err(sql_error)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    Ok(match raw.type_info().name() {
        "INTEGER" | "BOOLEAN" | "INT8" => Value::Integer(row.try_get(i).map_err(sql_error)?),
        "REAL" => Value::Real(row.try_get(i).map_err(sql_error)?),
        "BLOB" => Value::Blob(row.try_get(i).map_err(sql_error)?),
        _ => Value::Text(row.try_get(i).map_err(|_| {
            SqlError::BadStatement(format!(
                "column `{}` holds text that is not UTF-8; read it as a blob, e.g. CAST({} AS BLOB)",
                row.columns()[i].name(),
                row.columns()[i].name()
            ))
        })?),
    })
}

/// A Postgres parameter, encoded as the type the server expects.
enum PgArg {
    Null(PgTypeInfo),
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    /// The binary form ([`numeric::encode`]).
    Numeric(Vec<u8>),
    /// A binary form the host wrote itself (a time or date, an `inet`, a
    /// `cidr`, JSON, an array, a range), and its type.
    Written(Vec<u8>, PgTypeInfo),
    Text(String),
    Bytea(Vec<u8>),
    Uuid(Uuid),
}

impl sqlx::Type<Postgres> for PgArg {
    fn type_info() -> PgTypeInfo {
        // Each value says its own type in `produces`.
        <String as sqlx::Type<Postgres>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, Postgres> for PgArg {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        use sqlx::Encode as E;
        match self {
            PgArg::Null(_) => Ok(sqlx::encode::IsNull::Yes),
            PgArg::Bool(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Int2(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Int4(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Int8(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Float4(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Float8(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Numeric(bytes) | PgArg::Written(bytes, _) => {
                buf.extend_from_slice(bytes);
                Ok(sqlx::encode::IsNull::No)
            }
            PgArg::Text(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Bytea(v) => E::<Postgres>::encode_by_ref(v, buf),
            PgArg::Uuid(v) => E::<Postgres>::encode_by_ref(v, buf),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        use sqlx::Type as T;
        Some(match self {
            PgArg::Null(ty) => ty.clone(),
            PgArg::Bool(_) => <bool as T<Postgres>>::type_info(),
            PgArg::Int2(_) => <i16 as T<Postgres>>::type_info(),
            PgArg::Int4(_) => <i32 as T<Postgres>>::type_info(),
            PgArg::Int8(_) => <i64 as T<Postgres>>::type_info(),
            PgArg::Float4(_) => <f32 as T<Postgres>>::type_info(),
            PgArg::Float8(_) => <f64 as T<Postgres>>::type_info(),
            PgArg::Numeric(_) => PgTypeInfo::with_oid(numeric::OID),
            PgArg::Written(_, ty) => ty.clone(),
            PgArg::Text(_) => <String as T<Postgres>>::type_info(),
            PgArg::Bytea(_) => <Vec<u8> as T<Postgres>>::type_info(),
            PgArg::Uuid(_) => <Uuid as T<Postgres>>::type_info(),
        })
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Prepares `sql` on `conn` (a cache hit after the first time) and binds
/// each value as its placeholder's type; also gives the names of the columns
/// the statement returns.
async fn bind_postgres<'q>(
    conn: &mut sqlx::PgConnection,
    sql: &'q str,
    params: &[Value],
) -> Result<(PgQuery<'q>, Vec<String>), SqlError> {
    // The protocol counts parameters in 16 bits: more would wrap around.
    if params.len() > usize::from(u16::MAX) {
        return Err(SqlError::BadStatement(format!(
            "{} parameters were given; Postgres takes at most {} in one statement: \
             split it, or pass many values as one JSON array (`= ANY($1)`)",
            params.len(),
            u16::MAX
        )));
    }
    let statement = conn.prepare(sql).await.map_err(sql_error)?;
    let types: Vec<PgTypeInfo> = match statement.parameters() {
        Some(sqlx::Either::Left(types)) => types.to_vec(),
        _ => Vec::new(),
    };
    if types.len() != params.len() {
        return Err(SqlError::BadStatement(format!(
            "the statement has {} placeholder(s) but {} parameter(s) were given",
            types.len(),
            params.len()
        )));
    }
    let mut query = sqlx::query(sql);
    for (n, (value, ty)) in params.iter().zip(types).enumerate() {
        query = query.bind(pg_arg(value, ty, n + 1)?);
    }
    Ok((query, column_names(statement.columns())))
}

/// Converts a value to the Postgres type `ty` of placeholder `$n`.
fn pg_arg(value: &Value, ty: PgTypeInfo, n: usize) -> Result<PgArg, SqlError> {
    let name = ty.name().to_owned();
    let mismatch = |what: &str| {
        SqlError::BadStatement(format!(
            "parameter ${n}: {what} cannot be used as {name}; pass a matching value or cast the placeholder through text, e.g. ${n}::text::{}",
            name.to_ascii_lowercase()
        ))
    };
    let parse = |text: &str, kind: &str| {
        SqlError::BadStatement(format!(
            "parameter ${n}: `{text}` is not a valid {kind} for {name}"
        ))
    };
    match (ty.kind(), value) {
        // A domain takes what its base type takes.
        (PgTypeKind::Domain(base), _) => return pg_arg(value, base.clone(), n),
        // An enum's binary form is its label.
        (PgTypeKind::Enum(labels), Value::Text(t)) => {
            return match labels.iter().any(|label| label == t) {
                true => Ok(PgArg::Text(t.clone())),
                false => Err(SqlError::BadStatement(format!(
                    "parameter ${n}: `{t}` is not a label of the enum {name} ({})",
                    labels.join(", ")
                ))),
            };
        }
        (PgTypeKind::Range(subtype), Value::Text(t)) if ranges::maps(subtype) => {
            return match ranges::encode(t, subtype.name()) {
                Ok(form) => Ok(PgArg::Written(form, ty)),
                Err(unfit) => Err(SqlError::BadStatement(format!("parameter ${n}: {unfit}"))),
            };
        }
        (PgTypeKind::Array(element), Value::Text(t)) if arrays::maps(element) => {
            let oid = element.oid().map_or(0, |oid| oid.0);
            return match arrays::encode(t, element.name(), oid) {
                Ok(form) => Ok(PgArg::Written(form, ty)),
                Err(unfit) => Err(SqlError::BadStatement(format!("parameter ${n}: {unfit}"))),
            };
        }
        _ => {}
    }
    Ok(match (value, name.as_str()) {
        (Value::Null, _) => PgArg::Null(ty),
        (Value::Integer(i), "BOOL") => PgArg::Bool(*i != 0),
        (Value::Text(t), "BOOL") => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" | "on" => PgArg::Bool(true),
            "false" | "f" | "0" | "no" | "off" => PgArg::Bool(false),
            _ => return Err(parse(t, "boolean")),
        },
        (Value::Integer(i), "INT2") => {
            PgArg::Int2(i16::try_from(*i).map_err(|_| mismatch(&format!("{i} (out of range)")))?)
        }
        (Value::Integer(i), "INT4") => {
            PgArg::Int4(i32::try_from(*i).map_err(|_| mismatch(&format!("{i} (out of range)")))?)
        }
        (Value::Integer(i), "INT8") => PgArg::Int8(*i),
        (Value::Text(t), "INT2" | "INT4" | "INT8") => {
            let i: i64 = t.trim().parse().map_err(|_| parse(t, "integer"))?;
            return pg_arg(&Value::Integer(i), ty, n);
        }
        (Value::Integer(i), "FLOAT4") => PgArg::Float4(*i as f32),
        (Value::Real(f), "FLOAT4") => PgArg::Float4(*f as f32),
        (Value::Integer(i), "FLOAT8") => PgArg::Float8(*i as f64),
        (Value::Real(f), "FLOAT8") => PgArg::Float8(*f),
        (Value::Integer(_) | Value::Real(_) | Value::Text(_), "NUMERIC") => {
            let text = match value {
                Value::Integer(i) => i.to_string(),
                Value::Real(f) => f.to_string(),
                Value::Text(t) => t.clone(),
                _ => unreachable!("matched above"),
            };
            PgArg::Numeric(numeric::encode(&text).map_err(|unfit| {
                SqlError::BadStatement(format!("parameter ${n}: `{text}` for {name}: {unfit}"))
            })?)
        }
        // sqlx names `char(n)` (bpchar) `CHAR`.
        (Value::Text(t), "TEXT" | "VARCHAR" | "CHAR" | "NAME" | "CITEXT" | "UNKNOWN") => {
            PgArg::Text(t.clone())
        }
        (Value::Integer(i), "TEXT" | "VARCHAR" | "CHAR") => PgArg::Text(i.to_string()),
        (Value::Real(f), "TEXT" | "VARCHAR" | "CHAR") => PgArg::Text(f.to_string()),
        (Value::Blob(b), "BYTEA") => PgArg::Bytea(b.clone()),
        (Value::Text(t), "BYTEA") => PgArg::Bytea(t.as_bytes().to_vec()),
        (Value::Text(t), "UUID") => PgArg::Uuid(Uuid::parse_str(t).map_err(|_| parse(t, "uuid"))?),
        (Value::Text(t), kind @ ("JSON" | "JSONB")) => {
            pg_text::check_json(t).map_err(|e| {
                SqlError::BadStatement(format!("parameter ${n} is not valid JSON for {name}: {e}"))
            })?;
            PgArg::Written(pg_text::encode_json(kind, t), ty)
        }
        (Value::Integer(i), kind @ ("JSON" | "JSONB")) => {
            PgArg::Written(pg_text::encode_json(kind, &i.to_string()), ty)
        }
        (Value::Text(t), kind @ ("TIMESTAMPTZ" | "TIMESTAMP" | "DATE" | "TIME" | "TIMETZ")) => {
            PgArg::Written(
                pg_text::encode_time(kind, t).map_err(|what| {
                    SqlError::BadStatement(format!(
                        "parameter ${n}: `{t}` is not {what} for {name}"
                    ))
                })?,
                ty,
            )
        }
        (Value::Text(t), "INTERVAL") => PgArg::Written(
            pg_text::encode_interval(t).map_err(|what| {
                SqlError::BadStatement(format!(
                    "parameter ${n}: `{t}` is not {what} for {name}; for Postgres's own forms \
                     (`1 day 2 hours`), cast the placeholder through text: ${n}::text::interval"
                ))
            })?,
            ty,
        ),
        (Value::Text(t), "INET" | "CIDR") => PgArg::Written(
            pg_text::encode_address(t, name == "CIDR")
                .map_err(|unfit| SqlError::BadStatement(format!("parameter ${n}: {unfit}")))?,
            ty,
        ),
        (Value::Integer(_), _) => return Err(mismatch("an integer")),
        (Value::Real(_), _) => return Err(mismatch("a real")),
        (Value::Text(_), _) => return Err(mismatch("text")),
        (Value::Blob(_), _) => return Err(mismatch("a blob")),
    })
}

/// The value of column `i`, mapped as the module's table says.
fn pg_value(row: &sqlx::postgres::PgRow, i: usize) -> Result<Value, SqlError> {
    let column = &row.columns()[i];
    if row.try_get_raw(i).map_err(sql_error)?.is_null() {
        return Ok(Value::Null);
    }
    let get = |e: sqlx::Error| sql_error(e);
    let text = |s: String| Ok(Value::Text(s));
    // A type whose binary form the host reads itself, as text.
    let read = |decode: &dyn Fn(&[u8]) -> Option<String>, kind: &str| {
        let raw = row.try_get_raw(i).map_err(get)?;
        let bytes = raw.as_bytes().map_err(|e| SqlError::Other(e.to_string()))?;
        decode(bytes).map(Value::Text).ok_or_else(|| {
            SqlError::Other(format!("column `{}`: a malformed {kind}", column.name()))
        })
    };
    match column.type_info().kind() {
        // An enum's binary form is its label.
        PgTypeKind::Enum(_) => return text(row.try_get_unchecked::<String, _>(i).map_err(get)?),
        PgTypeKind::Array(element) if arrays::maps(element) => {
            let decode = |bytes: &[u8]| arrays::decode(bytes, element.name());
            return read(&decode, "array");
        }
        PgTypeKind::Range(subtype) if ranges::maps(subtype) => {
            let decode = |bytes: &[u8]| ranges::decode(bytes, subtype.name());
            return read(&decode, "range");
        }
        _ => {}
    }
    match column.type_info().name() {
        "BOOL" => Ok(Value::Integer(row.try_get::<bool, _>(i).map_err(get)? as i64)),
        "INT2" => Ok(Value::Integer(row.try_get::<i16, _>(i).map_err(get)?.into())),
        "INT4" => Ok(Value::Integer(row.try_get::<i32, _>(i).map_err(get)?.into())),
        "INT8" => Ok(Value::Integer(row.try_get::<i64, _>(i).map_err(get)?)),
        "OID" => Ok(Value::Integer(
            row.try_get::<sqlx::postgres::types::Oid, _>(i).map_err(get)?.0.into(),
        )),
        "FLOAT4" => Ok(Value::Real(row.try_get::<f32, _>(i).map_err(get)?.into())),
        "FLOAT8" => Ok(Value::Real(row.try_get::<f64, _>(i).map_err(get)?)),
        "NUMERIC" => read(&numeric::decode, "numeric"),
        "INTERVAL" => read(&pg_text::interval, "interval"),
        "INET" | "CIDR" => read(&pg_text::address, "address"),
        "BYTEA" => Ok(Value::Blob(row.try_get(i).map_err(get)?)),
        "UUID" => text(row.try_get::<Uuid, _>(i).map_err(get)?.to_string()),
        kind @ ("JSON" | "JSONB") => read(&|bytes| pg_text::json(kind, bytes), "JSON"),
        kind @ ("TIMESTAMPTZ" | "TIMESTAMP" | "DATE" | "TIME" | "TIMETZ") => {
            let raw = row.try_get_raw(i).map_err(get)?;
            let bytes = raw.as_bytes().map_err(|e| SqlError::Other(e.to_string()))?;
            pg_text::time(kind, bytes).map(Value::Text).ok_or_else(|| {
                SqlError::Other(format!(
                    "column `{}` holds a {} outside what can be shown; cast it in the query, e.g. {}::text",
                    column.name(),
                    kind.to_ascii_lowercase(),
                    column.name()
                ))
            })
        }
        other => row.try_get::<String, _>(i).map(Value::Text).map_err(|_| {
            SqlError::BadStatement(format!(
                "column `{}` has the Postgres type {other}, which has no value mapping; cast it in the query, e.g. {}::text",
                column.name(),
                column.name()
            ))
        }),
    }
}

/// The primary result code of a SQLite error: SQLite gives its extended
/// code, whose low byte is the primary one (2067, a unique key, is
/// SQLITE_CONSTRAINT's 19); `None` for another database's error.
pub fn sqlite_primary_code(db: &dyn sqlx::error::DatabaseError) -> Option<i32> {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>()?;
    Some(db.code()?.parse::<i32>().ok()? & 0xff)
}

/// The `sql.error` of a sqlx error.
pub fn sql_error(error: sqlx::Error) -> SqlError {
    match &error {
        sqlx::Error::Database(db) => {
            let message = db.message().to_owned();
            // Postgres gives a SQLSTATE, whose first two characters are its
            // class.
            let code = db.code().unwrap_or_default();
            match (sqlite_primary_code(db.as_ref()), code.get(..2)) {
                // SQLITE_CONSTRAINT, or integrity constraint violation.
                (Some(19), _) | (None, Some("23")) => SqlError::Constraint(message),
                // SQLITE_INTERRUPT: the statement clock stopped it.
                (Some(9), _) => SqlError::Unavailable(
                    "the statement ran past the database's statement_timeout_ms and was stopped"
                        .to_owned(),
                ),
                // SQLITE_AUTH: refused by the pool connection's authorizer.
                (Some(23), _) => SqlError::BadStatement(authorizer::REFUSED.to_owned()),
                // SQLITE_BUSY, SQLITE_LOCKED; connection exception,
                // insufficient resources, operator intervention.
                (Some(5 | 6), _) | (None, Some("08" | "53" | "57")) => {
                    SqlError::Unavailable(message)
                }
                // SQLITE_ERROR (syntax, unknown tables, columns and
                // collations), SQLITE_TOOBIG (a value or row over the
                // limit), SQLITE_RANGE, SQLITE_MISMATCH; syntax error or
                // access rule violation, data exception, feature not
                // supported.
                (Some(1 | 18 | 20 | 25), _) | (None, Some("42" | "22" | "0A")) => {
                    SqlError::BadStatement(message)
                }
                _ => SqlError::Other(message),
            }
        }
        sqlx::Error::PoolTimedOut => SqlError::Unavailable(
            "no database connection became free in time (the database is down or overloaded)"
                .to_owned(),
        ),
        sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => SqlError::Unavailable(error.to_string()),
        sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => SqlError::BadStatement(error.to_string()),
        _ => SqlError::Other(error.to_string()),
    }
}

/// The `connection` resource: a granted database. Each call borrows a
/// pooled connection for its own length.
pub struct Connection {
    pub database: Arc<Database>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_in_a_message_shows_no_password() {
        assert_eq!(
            without_password("postgres://app:s3cr#t@db.internal:5432/app?sslmode=require"),
            "postgres://app:***@db.internal:5432/app?sslmode=require"
        );
        assert_eq!(
            without_password("postgres://app:pa/ss?@db/app"),
            "postgres://app:***@db/app"
        );
        assert_eq!(
            without_password("postgres://app@db/app"),
            "postgres://app@db/app"
        );
        assert_eq!(
            without_password("sqlite://data/main.db"),
            "sqlite://data/main.db"
        );
    }

    #[test]
    fn a_zero_placeholder_is_refused_outside_quotes_and_comments() {
        assert!(sqlite_placeholders("SELECT $0", 0).is_err());
        assert!(sqlite_placeholders("SELECT $1, $00", 1).is_err());
        assert!(sqlite_placeholders("SELECT $0x", 0).is_err());
        assert!(sqlite_placeholders("SELECT $1, $10, ?1", 2).is_ok());
        assert!(sqlite_placeholders("SELECT '$0.99', \"$0\", [$0] -- $0\n /* $0 */", 0).is_ok());
        assert!(sqlite_placeholders("SELECT 'it''s $0'", 0).is_ok());
        // The highest placeholder is the number of parameters.
        assert!(sqlite_placeholders("VALUES ($1, $2)", 2).is_ok());
        assert!(sqlite_placeholders("VALUES ($2, $1, $2)", 2).is_ok());
        let error = sqlite_placeholders("VALUES ($1, $2)", 1).unwrap_err();
        assert!(matches!(error, SqlError::BadStatement(m) if m.contains("2 placeholder(s) but 1")));
        assert!(sqlite_placeholders("SELECT 1", 1).is_err());
        assert!(sqlite_placeholders("SELECT $99999999999999999999999", 1).is_err());
        // Other kinds are SQLite's to count.
        assert!(sqlite_placeholders("SELECT :name, @n, ?", 1).is_ok());
        let many = |n: usize| {
            (1..=n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert!(sqlite_placeholders(&many(MAX_SQLITE_PARAMS), MAX_SQLITE_PARAMS).is_ok());
        let error =
            sqlite_placeholders(&many(MAX_SQLITE_PARAMS + 1), MAX_SQLITE_PARAMS + 1).unwrap_err();
        assert!(matches!(error, SqlError::BadStatement(m) if m.contains("at most 2048")));
        let repeated = format!("{},{}", many(2), ["$2"; MAX_SQLITE_PARAMS].join(","));
        let error = sqlite_placeholders(&repeated, 2).unwrap_err();
        assert!(matches!(error, SqlError::BadStatement(m) if m.contains("2050 placeholders")));
        assert!(sqlite_placeholders("SELECT ?", MAX_SQLITE_PARAMS + 1).is_err());
    }

    #[test]
    fn the_first_word_of_a_statement_is_found_past_comments() {
        assert!(no_session_command("/* a /* nested */ one */ -- and a line\n BEGIN").is_err());
        assert!(no_session_command("set search_path to x").is_err());
        assert!(no_session_command("SELECT 'begin'").is_ok());
        assert!(no_session_command("/* unterminated").is_ok());
        // Empty statements before it, and a line comment ended by `\r`.
        assert!(no_session_command(";BEGIN").is_err());
        assert!(no_session_command(" ; ;\n set role x").is_err());
        assert!(no_session_command("--\rBEGIN").is_err());
    }

    #[test]
    fn a_sqlite_session_change_is_seen_by_its_words() {
        for changes in [
            "PRAGMA foreign_keys = OFF",
            "CREATE TEMP TABLE t (x)",
            "create temporary view v as select 1",
            "CREATE TABLE temp.t (x)",
            "CREATE TABLE \"temp\".t (x)",
            "CREATE TABLE [TEMP].t (x)",
            "INSERT INTO temp.t VALUES (1)",
            "ATTACH '' AS scratch",
            "attach database '' as scratch",
        ] {
            assert!(changes_sqlite_session(changes), "{changes}");
        }
        for keeps in [
            "SELECT * FROM templates",
            "UPDATE attempts SET n = n + 1",
            "SELECT temperature, contemporary FROM t",
            "SELECT temp_c, attached FROM readings",
            "SELECT \"temp$\", t.tempé FROM t",
            "VACUUM",
        ] {
            assert!(!changes_sqlite_session(keeps), "{keeps}");
        }
    }
}
