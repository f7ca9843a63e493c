//! What a plugin may touch beyond its own memory, one module per capability.
//! Each turns a sidecar grant into what the sandbox of one instance holds;
//! nothing is reachable unless granted.
//!
//! - [`sql`]: the database pools (`gatehouse:plugin/sql`).
//! - [`kv`]: the per-plugin key-value store (`gatehouse:plugin/kv`).
//! - [`migrations`]: the host's schema and each plugin's migrations.
//! - [`realtime`]: WebSocket and event-stream connections and their
//!   channels (`gatehouse:plugin/realtime`).
//! - [`outbound`]: outgoing HTTP to granted origins (`wasi:http`).
//! - [`env`] and [`secrets`]: granted env vars (`wasi:cli/environment`).

/// Runs the same sqlx call on whichever pool a database has.
macro_rules! on_pool {
    ($database:expr, |$pool:ident| $call:expr) => {
        match &$database.pool {
            $crate::capability::sql::Pool::Sqlite($pool) => $call,
            $crate::capability::sql::Pool::Postgres($pool) => $call,
        }
    };
}

pub mod env;
pub mod kv;
pub mod migrations;
pub mod outbound;
pub mod realtime;
pub mod secrets;
pub mod sql;

use crate::plugin::sandbox::Sandbox;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

/// Host bindings of the `gatehouse:plugin` WIT package.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "gatehouse:plugin/events",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "gatehouse:plugin/sql.connection": super::sql::Connection,
        },
        require_store_data_send: true,
    });
}

use bindings::gatehouse::plugin::{kv as kv_wit, realtime as realtime_wit, sql as sql_wit};

/// The host's side of every capability: the pools and the secrets of the
/// current config, swapped as a whole when the config is reloaded.
#[derive(Debug)]
pub struct Provisions {
    pub databases: Arc<sql::Databases>,
    pub secrets: Arc<secrets::Secrets>,
    /// The realtime connections: one hub for the life of the process.
    pub realtime: Arc<realtime::Hub>,
}

impl Provisions {
    /// Reads the secrets and builds the pools of `config`, keeping the pools
    /// of `current` whose settings are unchanged. Nothing connects here.
    pub fn prepare(
        config: &crate::config::Config,
        current: Option<&Provisions>,
    ) -> crate::error::Result<Provisions> {
        Ok(Provisions {
            databases: Arc::new(sql::Databases::open(
                &config.databases,
                &config.server.data,
                current.map(|c| &*c.databases),
            )?),
            secrets: Arc::new(secrets::Secrets::load(&config.secrets)?),
            // A reload keeps the hub and its connections; its new limits
            // apply when the reload commits (`Hub::set_limits`).
            realtime: match current {
                Some(current) => current.realtime.clone(),
                None => Arc::new(realtime::Hub::new(config.realtime.clone())),
            },
        })
    }

    /// Applies the host's migrations to its database once, before kv calls
    /// reach it. A database that is down is only logged: [`Provisions::maintain`]
    /// retries it in the background.
    pub async fn migrate_host(&self) {
        if let Err(e) = migrations::migrate_host(self.databases.host()).await {
            tracing::error!("{e}; kv calls fail until it succeeds, retried in the background");
        }
    }

    /// Applies the host's migrations to `main`, retrying until its database
    /// answers, and sweeps expired kv entries every minute. Runs until the
    /// process ends; a reload that replaces `main` starts a new one.
    pub fn maintain(&self) -> tokio::task::JoinHandle<()> {
        let main = self.databases.host().clone();
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_millis(500);
            loop {
                match migrations::migrate_host(&main).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!("{e}; retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(30));
                    }
                }
            }
            let weak = Arc::downgrade(&main);
            drop(main);
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let Some(main) = weak.upgrade() else { break };
                if let Err(e) = kv::sweep(&main).await {
                    tracing::warn!("sweeping expired kv entries: {e}");
                }
            }
        })
    }
}

/// What one plugin was granted, resolved against the host's databases when
/// an instance starts.
#[derive(Clone, Debug)]
pub struct Granted {
    /// The plugin's name: its kv namespace and its name in errors.
    pub plugin: Arc<str>,
    /// The databases it may open, by name.
    pub databases: Arc<[String]>,
    /// Whether it may use kv.
    pub kv: bool,
    /// The most its kv namespace may hold, in bytes (`[limits] kv_mb`).
    pub kv_bytes: u64,
    /// Whether it may use realtime connections and channels.
    pub realtime: bool,
}

/// The capabilities an instance holds: its grants and the host's pools as
/// they were when it started.
pub struct Held {
    pub granted: Granted,
    pub databases: Arc<sql::Databases>,
    pub realtime: realtime::Realtime,
}

impl Held {
    fn kv_store(&self) -> Result<kv::Store, kv_wit::Error> {
        if !self.granted.kv {
            return Err(kv_wit::Error::NotGranted);
        }
        Ok(kv::Store::new(
            &self.granted.plugin,
            self.databases.host().clone(),
            self.granted.kv_bytes,
        ))
    }
}

/// Adds every capability interface to the linker, granted or not: a call
/// without a grant fails with `not-granted`, the link never does.
pub fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    bindings::Events::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |sandbox| sandbox)
}

impl sql_wit::Host for Sandbox {}

impl sql_wit::HostConnection for Sandbox {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<sql::Connection>, sql_wit::Error>> {
        let held = &self.capabilities;
        if !held.granted.databases.contains(&database) {
            return Ok(Err(sql_wit::Error::NotGranted(format!(
                "database `{database}` is not in [grants] databases of plugin `{}`",
                held.granted.plugin
            ))));
        }
        let Some(db) = held.databases.get(&database) else {
            return Ok(Err(sql_wit::Error::NotGranted(format!(
                "database `{database}` is granted but not configured: add [databases.{database}] to gatehouse.toml"
            ))));
        };
        let connection = sql::Connection {
            database: db.clone(),
        };
        Ok(Ok(self.table.push(connection)?))
    }

    async fn query(
        &mut self,
        this: Resource<sql::Connection>,
        sql: String,
        params: Vec<sql_wit::Value>,
    ) -> wasmtime::Result<Result<sql_wit::Rows, sql_wit::Error>> {
        let database = self.table.get(&this)?.database.clone();
        Ok(database
            .query(&self.capabilities.granted.plugin, &sql, &params)
            .await)
    }

    async fn execute(
        &mut self,
        this: Resource<sql::Connection>,
        sql: String,
        params: Vec<sql_wit::Value>,
    ) -> wasmtime::Result<Result<u64, sql_wit::Error>> {
        let database = self.table.get(&this)?.database.clone();
        Ok(database
            .execute(&self.capabilities.granted.plugin, &sql, &params)
            .await)
    }

    async fn batch(
        &mut self,
        this: Resource<sql::Connection>,
        statements: Vec<sql_wit::Statement>,
    ) -> wasmtime::Result<Result<Vec<u64>, sql_wit::Error>> {
        let database = self.table.get(&this)?.database.clone();
        Ok(database
            .batch(&self.capabilities.granted.plugin, &statements)
            .await)
    }

    async fn drop(&mut self, this: Resource<sql::Connection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl kv_wit::Host for Sandbox {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, kv_wit::Error>> {
        Ok(match self.capabilities.kv_store() {
            Ok(store) => store.get(&key).await,
            Err(e) => Err(e),
        })
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), kv_wit::Error>> {
        Ok(match self.capabilities.kv_store() {
            Ok(store) => store.set(&key, &value, ttl_ms).await,
            Err(e) => Err(e),
        })
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<bool, kv_wit::Error>> {
        Ok(match self.capabilities.kv_store() {
            Ok(store) => store.delete(&key).await,
            Err(e) => Err(e),
        })
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, kv_wit::Error>> {
        Ok(match self.capabilities.kv_store() {
            Ok(store) => store.increment(&key, delta).await,
            Err(e) => Err(e),
        })
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, kv_wit::Error>> {
        Ok(match self.capabilities.kv_store() {
            Ok(store) => store.list_keys(&prefix, limit).await,
            Err(e) => Err(e),
        })
    }
}

impl realtime_wit::Host for Sandbox {
    async fn send(
        &mut self,
        connection: u64,
        message: realtime_wit::Message,
    ) -> wasmtime::Result<Result<(), realtime_wit::Error>> {
        Ok(self.capabilities.realtime.send(connection, message))
    }

    async fn subscribe(
        &mut self,
        connection: u64,
        channel: String,
    ) -> wasmtime::Result<Result<(), realtime_wit::Error>> {
        Ok(self.capabilities.realtime.subscribe(connection, &channel))
    }

    async fn unsubscribe(
        &mut self,
        connection: u64,
        channel: String,
    ) -> wasmtime::Result<Result<(), realtime_wit::Error>> {
        Ok(self.capabilities.realtime.unsubscribe(connection, &channel))
    }

    async fn publish(
        &mut self,
        channel: String,
        message: realtime_wit::Message,
    ) -> wasmtime::Result<Result<u32, realtime_wit::Error>> {
        Ok(self.capabilities.realtime.publish(&channel, message))
    }

    async fn close(
        &mut self,
        connection: u64,
        code: u16,
        reason: String,
    ) -> wasmtime::Result<Result<(), realtime_wit::Error>> {
        Ok(self.capabilities.realtime.close(connection, code, reason))
    }
}
