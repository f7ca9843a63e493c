//! Schema migrations: the host's own (`migrations/` in the repository,
//! compiled in with `sqlx::migrate!`) and each plugin's.
//!
//! A plugin's migrations are sqlx-style `NNNN_name.sql` files, parsed by
//! sqlx's `Migrator`. They are applied here rather than by `Migrator::run`
//! because sqlx keeps one history per database (`_sqlx_migrations`), and two
//! plugins numbering their migrations from 1 would collide in it: each
//! plugin gets its own history in `gatehouse_plugin_migrations`.

use super::sql::{Database, Pool};
use crate::error::{Error, Result};
use sqlx::migrate::{MigrationType, Migrator};
use std::path::Path;

/// Applies the host's migrations to its `main` database.
pub async fn migrate_host(main: &Database) -> Result<()> {
    let result = match &main.pool {
        Pool::Sqlite(pool) => sqlx::migrate!("../migrations/sqlite").run(pool).await,
        Pool::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await,
    };
    result.map_err(|e| Error::Database {
        name: main.name.clone(),
        message: format!("the host's migrations failed: {e}"),
    })
}

/// Applies the migrations in `dir` that `plugin` has not applied to
/// `database` yet, in version order and in one transaction, so a failing
/// one rolls back the others of the same load too and the version that was
/// serving keeps the schema it was written for. Returns how many were
/// applied.
pub async fn migrate_plugin(plugin: &str, database: &Database, dir: &Path) -> Result<usize> {
    let failed = |message: String| Error::Plugin {
        name: plugin.to_owned(),
        message: format!("migrations in {}: {message}", dir.display()),
    };
    let changed = |name: &str| {
        failed(format!(
            "{name} was changed after it was applied; add a new migration instead of editing an applied one"
        ))
    };
    let migrator = Migrator::new(dir.to_path_buf())
        .await
        .map_err(|e| failed(e.to_string()))?;
    // A database that cannot be reached now is an error the load is tried
    // again after (see `Error::may_pass`); any other stays until the
    // plugin changes.
    let unavailable = |e: sqlx::Error| {
        let message = format!(
            "migrations of plugin `{plugin}` in {}: cannot reach the database: {e}",
            dir.display()
        );
        match super::sql::sql_error(e) {
            super::bindings::gatehouse::plugin::sql::Error::Unavailable(_) => Error::Database {
                name: database.name.clone(),
                message,
            },
            _ => failed(message),
        }
    };
    let postgres = matches!(database.pool, Pool::Postgres(_));
    let history = on_pool!(database, |pool| {
        // Two hosts creating the table at once can both miss it and collide
        // in Postgres's catalog, `IF NOT EXISTS` or not: one at a time.
        let mut tx = pool
            .begin_with(begin_write(postgres))
            .await
            .map_err(unavailable)?;
        if postgres {
            sqlx::query(LOCK)
                .bind("gatehouse_plugin_migrations")
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        sqlx::Executor::execute(&mut *tx, HISTORY_TABLE)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT version, checksum FROM gatehouse_plugin_migrations \
             WHERE plugin = $1 AND database = $2",
        )
        .bind(plugin)
        .bind(&database.name)
        .fetch_all(pool)
        .await
        .map_err(unavailable)?
    });
    let mut pending = Vec::new();
    for migration in migrator
        .iter()
        .filter(|m| !matches!(m.migration_type, MigrationType::ReversibleDown))
    {
        let name = format!(
            "{:04}_{}",
            migration.version,
            migration.description.replace(' ', "_")
        );
        if let Some((_, checksum)) = history.iter().find(|(v, _)| *v == migration.version) {
            if checksum.as_slice() != &*migration.checksum {
                return Err(changed(&name));
            }
            continue;
        }
        if migration.no_tx {
            return Err(failed(format!(
                "{name} is marked `-- no-transaction`, which plugin migrations do not support: \
                 {ONE_TRANSACTION}"
            )));
        }
        if matches!(
            super::sql::first_word(&migration.sql)
                .to_ascii_lowercase()
                .as_str(),
            "begin" | "start"
        ) {
            return Err(failed(format!(
                "{name} opens a transaction of its own (BEGIN): remove its BEGIN and COMMIT; \
                 {ONE_TRANSACTION}"
            )));
        }
        pending.push((migration, name));
    }
    if pending.is_empty() {
        return Ok(0);
    }
    let mut applied = Vec::new();
    on_pool!(database, |pool| {
        // Its own connection, closed afterwards: a migration may change its
        // session (`SET search_path`, a `PRAGMA`), which must not reach the
        // calls that take the connection next.
        let mut conn = pool.acquire().await.map_err(unavailable)?;
        conn.close_on_drop();
        let mut tx = sqlx::Connection::begin_with(&mut *conn, begin_write(postgres))
            .await
            .map_err(unavailable)?;
        // Another host of a fleet may be applying the same migrations: one
        // at a time, and the second finds them done.
        if postgres {
            sqlx::query(LOCK)
                .bind(format!(
                    "gatehouse_plugin_migrations {plugin} {}",
                    database.name
                ))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        for (migration, name) in &pending {
            let done: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT checksum FROM gatehouse_plugin_migrations \
                 WHERE plugin = $1 AND database = $2 AND version = $3",
            )
            .bind(plugin)
            .bind(&database.name)
            .bind(migration.version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            if let Some(checksum) = done {
                if checksum.as_slice() != &*migration.checksum {
                    return Err(changed(name));
                }
                tracing::info!(plugin, database = %database.name, "migration {name} was applied by another host");
                continue;
            }
            // A savepoint around the migration tells whether its own SQL
            // ended the transaction (`COMMIT`, `END`, `ROLLBACK`): the
            // savepoint went with it, and its release fails.
            sqlx::Executor::execute(&mut *tx, "SAVEPOINT gatehouse_migration")
                .await
                .map_err(unavailable)?;
            let sql: &str = &migration.sql;
            sqlx::Executor::execute(&mut *tx, sql).await.map_err(|e| {
                let others = match applied.len() {
                    0 => String::new(),
                    n => format!(" with the {n} before it in this load"),
                };
                let message = format!(
                    "{name} failed and was rolled back{others}: {}",
                    e.as_database_error()
                        .map(|d| d.message().to_owned())
                        .unwrap_or_else(|| e.to_string())
                );
                // The database going away midway (a restart, a terminated
                // connection) is tried again, as one that could not be
                // reached; any other error is the migration's own, which
                // a new try would meet again.
                let gone = match &e {
                    sqlx::Error::Database(db) => match super::sql::sqlite_primary_code(db.as_ref()) {
                        // SQLITE_BUSY, SQLITE_LOCKED: another writer.
                        Some(code) => matches!(code, 5 | 6),
                        // Connection exception; admin, crash or startup
                        // shutdown.
                        None => db.code().is_some_and(|code| {
                            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
                        }),
                    },
                    sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed => true,
                    _ => false,
                };
                match gone {
                    true => Error::Database {
                        name: database.name.clone(),
                        message: format!(
                            "migrations of plugin `{plugin}` in {}: the database went away or stayed busy: {message}",
                            dir.display()
                        ),
                    },
                    false => failed(message),
                }
            })?;
            match sqlx::Executor::execute(&mut *tx, "RELEASE SAVEPOINT gatehouse_migration").await {
                Ok(_) => {}
                Err(e) if e.as_database_error().is_none() => return Err(unavailable(e)),
                Err(_) => {
                    return Err(failed(format!(
                        "{name} ends the transaction it runs in (COMMIT, END, ROLLBACK or ABORT): \
                     remove that statement; {ONE_TRANSACTION}. What ran before it in this load, \
                     and what ran after it in autocommit, may have been committed: check the \
                     database before the next try"
                    )));
                }
            }
            sqlx::query(
                "INSERT INTO gatehouse_plugin_migrations \
                 (plugin, database, version, description, checksum, applied_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(plugin)
            .bind(&database.name)
            .bind(migration.version)
            .bind(&*migration.description)
            .bind(&*migration.checksum)
            .bind(humantime_now_ms())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            applied.push(name);
        }
        tx.commit().await.map_err(unavailable)?;
    });
    for name in &applied {
        tracing::info!(plugin, database = %database.name, "applied migration {name}");
    }
    Ok(applied.len())
}

/// Why a migration may not manage its own transaction.
const ONE_TRANSACTION: &str = "the host applies a load's migrations in one transaction, so \
     that a failing one leaves the schema as the serving version knows it";

/// How a migration's transaction begins. SQLite's `IMMEDIATE` takes the
/// database's write lock at once (waiting out `busy_timeout`), so the
/// history read inside it is the one the write follows; Postgres's writers
/// serialize on [`LOCK`].
fn begin_write(postgres: bool) -> &'static str {
    if postgres { "BEGIN" } else { "BEGIN IMMEDIATE" }
}

/// A Postgres advisory lock on the name bound to `$1`, held until the
/// transaction ends.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext($1))";

const HISTORY_TABLE: &str = "CREATE TABLE IF NOT EXISTS gatehouse_plugin_migrations (
    plugin      TEXT   NOT NULL,
    database    TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    description TEXT   NOT NULL,
    checksum    BYTEA  NOT NULL,
    applied_at  BIGINT NOT NULL,
    PRIMARY KEY (plugin, database, version)
)";

fn humantime_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
