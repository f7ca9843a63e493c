//! `gatehouse:plugin/kv`: a key-value store private to each plugin, kept
//! in the host's own database (table `gatehouse_kv`, one namespace per
//! plugin name; see [`super::sql::Databases::host`]), with expiry and atomic
//! increments.

use super::bindings::gatehouse::plugin::kv::Error as KvError;
use super::bindings::gatehouse::plugin::sql::Value;
use super::sql::{Database, Pool, sql_error};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// The most keys one `list-keys` returns.
pub const MAX_LIST: u32 = 1000;

/// The most bytes an increment's value can take: `-9223372036854775808`.
const MAX_INTEGER_BYTES: i64 = 20;

/// What each entry counts toward its namespace's quota besides its key and
/// value: its row and index entry. The usage triggers (host migration
/// `0003_kv_entry_cost`) count the same.
const ENTRY_BYTES: i64 = 64;

/// The kv store of one plugin.
#[derive(Clone, Debug)]
pub struct Store {
    namespace: Arc<str>,
    database: Arc<Database>,
    /// The most the namespace may hold: the bytes of its keys and values,
    /// and [`ENTRY_BYTES`] for each entry.
    quota: u64,
}

impl Store {
    /// The store of the plugin `namespace` in `database`, holding at most
    /// `quota` bytes.
    pub fn new(namespace: &str, database: Arc<Database>, quota: u64) -> Store {
        Store {
            namespace: namespace.into(),
            database,
            quota,
        }
    }

    /// Whether `key` is one this store cannot hold (a NUL in Postgres
    /// text), so no entry has it.
    fn cannot_hold(&self, key: &str) -> bool {
        matches!(self.database.pool, Pool::Postgres(_)) && key.contains('\0')
    }

    fn quota(&self) -> i64 {
        i64::try_from(self.quota).unwrap_or(i64::MAX)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        if self.cannot_hold(key) {
            return Ok(None);
        }
        const SQL: &str = "SELECT value FROM gatehouse_kv \
             WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)";
        let params = [
            Value::Text(self.namespace.to_string()),
            Value::Text(key.to_owned()),
            Value::Integer(now_ms()),
        ];
        if let Some(rows) = self.database.read_in_place(SQL, &params).await {
            match rows
                .rows
                .into_iter()
                .next()
                .map(|row| row.into_iter().next())
            {
                None => return Ok(None),
                Some(Some(Value::Blob(value))) => return Ok(Some(value)),
                // Not a value `set` wrote: the pool reads it as it can.
                Some(_) => {}
            }
        }
        let row: Option<(Vec<u8>,)> = on_pool!(self.database, |pool| sqlx::query_as(SQL)
            .bind(&*self.namespace)
            .bind(key)
            .bind(now_ms())
            .fetch_optional(pool)
            .await)
        .map_err(kv_error)?;
        Ok(row.map(|(value,)| value))
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), KvError> {
        check_new_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::TooLarge(format!(
                "the value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        let expires_at =
            ttl_ms.map(|ttl| now_ms().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
        let set = async || {
            on_pool!(self.database, |pool| sqlx::query(SET)
                .bind(&*self.namespace)
                .bind(key)
                .bind(value)
                .bind(expires_at)
                .bind(self.quota())
                .execute(pool)
                .await
                .map(|done| done.rows_affected() > 0))
            .map_err(kv_error)
        };
        if set().await? || (self.sweep_expired().await? && set().await?) {
            return Ok(());
        }
        Err(self
            .over_quota(key.len() + value.len() + ENTRY_BYTES as usize)
            .await)
    }

    /// Deletes the namespace's expired entries, which count against its
    /// quota until they are gone; whether there were any.
    async fn sweep_expired(&self) -> Result<bool, KvError> {
        const SQL: &str = "DELETE FROM gatehouse_kv WHERE namespace = $1 AND expires_at <= $2";
        let done = on_pool!(self.database, |pool| sqlx::query(SQL)
            .bind(&*self.namespace)
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(kv_error)?;
        Ok(done > 0)
    }

    /// The error for a write of `bytes` the namespace has no room for.
    async fn over_quota(&self, bytes: usize) -> KvError {
        const SQL: &str = "SELECT bytes FROM gatehouse_kv_usage WHERE namespace = $1";
        let used: Result<Option<(i64,)>, _> = on_pool!(self.database, |pool| sqlx::query_as(SQL)
            .bind(&*self.namespace)
            .fetch_optional(pool)
            .await);
        let used = match used {
            Ok(row) => row.map_or(0, |(used,)| used),
            Err(e) => return kv_error(e),
        };
        KvError::TooLarge(format!(
            "the plugin's kv store holds {used} bytes (its keys and values, and {ENTRY_BYTES} \
             for each key); storing this entry ({bytes} bytes) would pass its limit of {} bytes: \
             delete keys, or raise `kv_mb` in [limits] of its sidecar",
            self.quota
        ))
    }

    pub async fn delete(&self, key: &str) -> Result<bool, KvError> {
        check_key(key)?;
        if self.cannot_hold(key) {
            return Ok(false);
        }
        const SQL: &str = "DELETE FROM gatehouse_kv \
             WHERE namespace = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)";
        let done = on_pool!(self.database, |pool| sqlx::query(SQL)
            .bind(&*self.namespace)
            .bind(key)
            .bind(now_ms())
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))
        .map_err(kv_error)?;
        Ok(done > 0)
    }

    /// Adds `delta` in one statement, so concurrent increments never lose
    /// an update. An expired value counts as 0.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        check_new_key(key)?;
        let sql = match &self.database.pool {
            Pool::Sqlite(_) => INCREMENT_SQLITE,
            Pool::Postgres(_) => INCREMENT_POSTGRES,
        };
        let increment = async || -> Result<Option<(Vec<u8>,)>, sqlx::Error> {
            on_pool!(self.database, |pool| sqlx::query_as(sql)
                .bind(&*self.namespace)
                .bind(key)
                .bind(delta)
                .bind(now_ms())
                .bind(self.quota())
                .bind(MAX_INTEGER_BYTES + ENTRY_BYTES)
                .fetch_optional(pool)
                .await)
        };
        let text = match increment().await {
            Ok(None) if self.sweep_expired().await? => increment().await,
            other => other,
        };
        let text = text.map_err(|e| match sql_error(e) {
            // Postgres refuses the cast or the overflow (bad-statement); on
            // SQLite either gives NULL, which the NOT NULL column refuses
            // (constraint).
            super::bindings::gatehouse::plugin::sql::Error::BadStatement(_)
            | super::bindings::gatehouse::plugin::sql::Error::Constraint(_) => KvError::Other(
                format!("the value at `{key}` is not an integer, or adding {delta} would overflow 64 bits, so it cannot be incremented"),
            ),
            other => kv_error_of(other),
        })?;
        let Some(text) = text else {
            return Err(self
                .over_quota(key.len() + (MAX_INTEGER_BYTES + ENTRY_BYTES) as usize)
                .await);
        };
        std::str::from_utf8(&text.0)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                KvError::Other(format!(
                    "the value at `{key}` is not an integer, so it cannot be incremented"
                ))
            })
    }

    pub async fn list_keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        check_key(prefix)?;
        if self.cannot_hold(prefix) {
            return Ok(Vec::new());
        }
        let limit = i64::from(limit.min(MAX_LIST));
        // Keys compare bytewise on both databases, so the keys with the
        // prefix are those from it up to (not with) its successor: the
        // index reads only them, however many keys follow. A prefix with no
        // successor ends past the longest key there can be.
        const SQL: &str = "SELECT key FROM gatehouse_kv \
             WHERE namespace = $1 AND key >= $2 AND key < $6 \
               AND substr(key, 1, CAST($3 AS INTEGER)) = $2 \
               AND (expires_at IS NULL OR expires_at > $4) \
             ORDER BY key LIMIT $5";
        // At most MAX_KEY_BYTES: an INTEGER on both databases.
        let prefix_chars = prefix.chars().count() as i32;
        let end = successor(prefix)
            .unwrap_or_else(|| char::MAX.to_string().repeat(MAX_KEY_BYTES / 4 + 1));
        let rows: Vec<(String,)> = on_pool!(self.database, |pool| {
            sqlx::query_as(SQL)
                .bind(&*self.namespace)
                .bind(prefix)
                .bind(prefix_chars)
                .bind(now_ms())
                .bind(limit)
                .bind(end.as_str())
                .fetch_all(pool)
                .await
        })
        .map_err(kv_error)?;
        Ok(rows.into_iter().map(|(key,)| key).collect())
    }
}

/// A set: inserts or replaces the entry unless that would grow the
/// namespace (`$1`) past its quota (`$5` bytes, each entry counting
/// [`ENTRY_BYTES`] besides its key and value); a set that does not grow
/// it always goes through. No row changes when it is refused. The same text
/// on SQLite (3.43 and later, as sqlx bundles it, have `octet_length`) and
/// Postgres. On Postgres two writes at once may each see room for itself:
/// the namespace can pass its quota by what is being written at that
/// moment (at most a value per pooled connection).
const SET: &str = "WITH change AS (SELECT \
       coalesce((SELECT bytes FROM gatehouse_kv_usage WHERE namespace = $1), 0) AS used, \
       octet_length($2) + octet_length($3) + 64 - coalesce((SELECT \
         octet_length(key) + octet_length(value) + 64 \
         FROM gatehouse_kv WHERE namespace = $1 AND key = $2), 0) AS grows) \
     INSERT INTO gatehouse_kv (namespace, key, value, expires_at) \
     SELECT $1, $2, $3, $4 FROM change WHERE grows <= 0 OR used + grows <= $5 \
     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";

/// The atomic increment on SQLite. The value is decimal text in a blob; a
/// value that is not an integer, or a sum past 64 bits (which SQLite would
/// make a REAL), becomes NULL, which the column refuses. A new key is made
/// only if the namespace has room for it and a value of `$6` bytes (the
/// longest integer) under its quota `$5`; no row comes back when it has not.
const INCREMENT_SQLITE: &str = "INSERT INTO gatehouse_kv (namespace, key, value, expires_at) \
     SELECT $1, $2, CAST(CAST($3 AS TEXT) AS BLOB), NULL \
     WHERE EXISTS (SELECT 1 FROM gatehouse_kv WHERE namespace = $1 AND key = $2) \
       OR coalesce((SELECT bytes FROM gatehouse_kv_usage WHERE namespace = $1), 0) \
          + length(CAST($2 AS BLOB)) + $6 <= $5 \
     ON CONFLICT (namespace, key) DO UPDATE SET \
       value = CAST(CAST(CASE WHEN gatehouse_kv.expires_at IS NOT NULL AND gatehouse_kv.expires_at <= $4 THEN $3 \
         WHEN CAST(CAST(CAST(gatehouse_kv.value AS TEXT) AS INTEGER) AS TEXT) = CAST(gatehouse_kv.value AS TEXT) \
           AND typeof(CAST(CAST(gatehouse_kv.value AS TEXT) AS INTEGER) + $3) = 'integer' \
         THEN CAST(CAST(gatehouse_kv.value AS TEXT) AS INTEGER) + $3 \
         END AS TEXT) AS BLOB), \
       expires_at = CASE WHEN gatehouse_kv.expires_at <= $4 THEN NULL ELSE gatehouse_kv.expires_at END \
     RETURNING value";

/// The atomic increment on Postgres, as [`INCREMENT_SQLITE`]: a value that
/// is not an integer written as SQLite writes one (no `+`, no spaces, no
/// leading zeros, Postgres's cast would take them) becomes NULL, and a sum
/// past 64 bits fails the cast.
const INCREMENT_POSTGRES: &str = "INSERT INTO gatehouse_kv (namespace, key, value, expires_at) \
     SELECT $1, $2, convert_to($3::bigint::text, 'UTF8'), NULL \
     WHERE EXISTS (SELECT 1 FROM gatehouse_kv WHERE namespace = $1 AND key = $2) \
       OR coalesce((SELECT bytes FROM gatehouse_kv_usage WHERE namespace = $1), 0) \
          + octet_length($2) + $6 <= $5 \
     ON CONFLICT (namespace, key) DO UPDATE SET \
       value = convert_to((CASE WHEN gatehouse_kv.expires_at <= $4 THEN $3::bigint \
         WHEN convert_from(gatehouse_kv.value, 'UTF8') ~ '^(0|-?[1-9][0-9]*)$' \
         THEN convert_from(gatehouse_kv.value, 'UTF8')::bigint + $3::bigint END)::text, 'UTF8'), \
       expires_at = CASE WHEN gatehouse_kv.expires_at <= $4 THEN NULL ELSE gatehouse_kv.expires_at END \
     RETURNING value";

/// Expired entries deleted per statement by [`sweep`].
const SWEEP_BATCH: i64 = 1000;

/// Deletes expired entries of every plugin; run now and then. It deletes
/// them [`SWEEP_BATCH`] at a time, letting other work run in between: one
/// statement over a million expired keys would hold SQLite's write lock
/// (and their usage triggers) for seconds, and plugins' writes would wait
/// on it or time out.
pub async fn sweep(database: &Database) -> Result<u64, sqlx::Error> {
    const SQL: &str = "DELETE FROM gatehouse_kv WHERE (namespace, key) IN \
         (SELECT namespace, key FROM gatehouse_kv WHERE expires_at <= $1 LIMIT $2)";
    let now = now_ms();
    let mut swept = 0;
    loop {
        let done = on_pool!(database, |pool| sqlx::query(SQL)
            .bind(now)
            .bind(SWEEP_BATCH)
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        swept += done;
        if done < SWEEP_BATCH as u64 {
            return Ok(swept);
        }
        tokio::task::yield_now().await;
    }
}

/// The least string past every string that starts with `prefix`, in
/// bytewise (code point) order; `None` when nothing is (an empty prefix,
/// or one of only `char::MAX`).
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(too_long(key.len()));
    }
    Ok(())
}

/// [`check_key`] for a key a write may create: one with a NUL character is
/// refused, since Postgres text cannot hold it, on SQLite too, so keys stay
/// valid when the kv store moves. Those a SQLite store got before can still
/// be read and deleted.
fn check_new_key(key: &str) -> Result<(), KvError> {
    check_key(key)?;
    if key.contains('\0') {
        return Err(KvError::Other(
            "the key holds a NUL character (\\0), which keys may not".to_owned(),
        ));
    }
    Ok(())
}

fn too_long(len: usize) -> KvError {
    KvError::TooLarge(format!(
        "the key is {len} bytes; the limit is {MAX_KEY_BYTES}"
    ))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn kv_error(error: sqlx::Error) -> KvError {
    kv_error_of(sql_error(error))
}

fn kv_error_of(error: super::bindings::gatehouse::plugin::sql::Error) -> KvError {
    use super::bindings::gatehouse::plugin::sql::Error as E;
    match error {
        E::Unavailable(message) => KvError::Unavailable(message),
        E::NotGranted(message)
        | E::BadStatement(message)
        | E::Constraint(message)
        | E::Other(message) => KvError::Other(message),
    }
}

#[cfg(test)]
mod tests {
    use super::successor;
    use crate::capability::sql::Databases;

    #[tokio::test]
    async fn the_sweep_deletes_every_expired_entry_in_batches_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let databases = Databases::open(&Default::default(), dir.path(), None).unwrap();
        let host = databases.host();
        crate::capability::migrations::migrate_host(host)
            .await
            .unwrap();
        let expired = 2 * super::SWEEP_BATCH + 17;
        on_pool!(host, |pool| sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO gatehouse_kv (namespace, key, value, expires_at) \
             SELECT 'p', 'old' || i, x'00', 1 FROM n \
             UNION ALL SELECT 'p', 'live', x'0000', NULL \
             UNION ALL SELECT 'q', 'later', x'00', 9223372036854775807"
        )
        .bind(expired)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .unwrap();
        assert_eq!(super::sweep(host).await.unwrap(), expired as u64);
        let left: Vec<(String, i64)> = on_pool!(host, |pool| sqlx::query_as(
            "SELECT k.key, u.bytes FROM gatehouse_kv k \
             JOIN gatehouse_kv_usage u USING (namespace) ORDER BY k.key"
        )
        .fetch_all(pool)
        .await)
        .unwrap();
        // `live` (4 + 2 + 64 bytes) and `later` (5 + 1 + 64): the usage
        // counts only them.
        assert_eq!(left, [("later".to_owned(), 70), ("live".to_owned(), 70)]);
        assert_eq!(super::sweep(host).await.unwrap(), 0);
    }

    #[test]
    fn the_successor_of_a_prefix_bounds_the_keys_that_start_with_it() {
        assert_eq!(successor("user:"), Some("user;".to_owned()));
        assert_eq!(successor("a\u{D7FF}"), Some("a\u{E000}".to_owned()));
        assert_eq!(successor("b\u{10FFFF}"), Some("c".to_owned()));
        assert_eq!(successor(""), None);
        assert_eq!(successor("\u{10FFFF}"), None);
        let end = successor("ké").unwrap();
        for key in ["ké", "kéz", "ké\u{10FFFF}\u{10FFFF}"] {
            assert!(key.as_bytes() < end.as_bytes(), "{key}");
        }
        for key in ["kê", "kêa", "l"] {
            assert!(key.as_bytes() >= end.as_bytes(), "{key}");
        }
    }
}
