//! The mounted plugins and their routes, swapped atomically as a whole.
//!
//! A request loads the current [`Mounted`] snapshot once and keeps it, so a
//! swap never fails a request: requests in flight finish on the version they
//! started with, new requests get the new one. A version that fails to load
//! leaves the previous one serving, with the failure kept for the admin API.

use super::folder::{self, Entry, Kind};
use super::runtime::{Compiled, Runtime, sha256_hex};
use super::{Code, Origin, Plugin, source};
use crate::capability::{self, Provisions};
use crate::config::Sidecar;
use crate::error::{Error, Result};
use crate::router::{Host, Pattern, Route, RouteTable};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One consistent view of what is mounted.
#[derive(Default)]
pub struct Mounted {
    /// Loaded plugins by name.
    pub plugins: HashMap<String, Arc<Plugin>>,
    /// The routes to them.
    pub table: RouteTable,
}

/// What the host knows of one plugin name, loaded or not.
#[derive(Debug, Default, Clone)]
struct Status {
    /// The fingerprint last attempted, so an unchanged entry is not reloaded
    /// (and a broken one not retried until it changes).
    fingerprint: String,
    /// The last failure, if the last attempt failed.
    last_error: Option<String>,
    /// When it failed.
    failed_at: Option<SystemTime>,
}

/// A plugin as the admin API shows it.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub name: String,
    /// `serving` or `failed` (nothing serving under this name).
    pub state: &'static str,
    pub routes: Vec<String>,
    pub sha256: Option<String>,
    pub source: Option<Origin>,
    pub loaded_at: Option<String>,
    pub compiled: Option<super::runtime::Compiled>,
    /// Whether it exports `websocket-handler` (WebSockets and event streams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handles_connections: Option<bool>,
    pub last_error: Option<String>,
    pub failed_at: Option<String>,
}

/// Where a plugin's migrations are, and the database they go to.
#[derive(Debug, Clone)]
pub struct Migrations {
    pub dir: PathBuf,
    pub database: String,
}

/// How soon an entry whose load may pass by itself is tried again.
pub const RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The mounted set and how to keep it current with the folder.
pub struct Mounts {
    current: ArcSwap<Mounted>,
    status: Mutex<BTreeMap<String, Status>>,
    /// Names of non-plugin entries already logged, so a stray file is said once.
    ignored: Mutex<HashSet<String>>,
    /// One reconcile at a time.
    reconciling: tokio::sync::Mutex<()>,
    /// Asks the folder watcher for a reconcile though nothing in the folder
    /// changed (a config reload replaced a database).
    look_again: tokio::sync::Notify,
    /// Counts the config reloads that replaced a database, so a load under
    /// way across one is done again.
    databases_generation: std::sync::atomic::AtomicU64,
    /// The `[[route]]` tables of the config; they win over plugin routes.
    config_routes: Mutex<Arc<Vec<Route>>>,
    /// One publish at a time, so that no change is lost.
    publishing: Mutex<()>,
    runtime: Arc<Runtime>,
    /// The host's pools and secrets, shared with every plugin.
    provisions: Arc<ArcSwap<Provisions>>,
    /// Whether loading applies a plugin's migrations (`check` only reads them).
    apply_migrations: bool,
    plugins_dir: PathBuf,
    build_dir: PathBuf,
}

impl Mounts {
    /// An empty set over the folder `plugins_dir`; builds go to `<data>/build`.
    pub fn new(
        runtime: Arc<Runtime>,
        provisions: Arc<ArcSwap<Provisions>>,
        plugins_dir: &Path,
        data_dir: &Path,
    ) -> Mounts {
        Mounts {
            current: ArcSwap::from_pointee(Mounted::default()),
            status: Mutex::default(),
            ignored: Mutex::default(),
            reconciling: tokio::sync::Mutex::const_new(()),
            look_again: tokio::sync::Notify::new(),
            databases_generation: Default::default(),
            config_routes: Mutex::default(),
            publishing: Mutex::default(),
            runtime,
            provisions,
            apply_migrations: true,
            plugins_dir: plugins_dir.to_path_buf(),
            build_dir: data_dir.join("build"),
        }
    }

    /// Loads without applying plugin migrations: they are read and checked
    /// only (for `gatehouse check`).
    pub fn without_migrations(mut self) -> Mounts {
        self.apply_migrations = false;
        self
    }

    /// The host's pools and secrets.
    pub fn provisions(&self) -> &Arc<ArcSwap<Provisions>> {
        &self.provisions
    }

    /// The folder being served.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins_dir
    }

    /// The current snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Mounted> {
        self.current.load_full()
    }

    /// The version of `held`'s plugin that handles a long-lived connection's
    /// next event: the one mounted now, so a swap reaches open WebSockets at
    /// their next message; `held` itself when the plugin was removed or its
    /// new version handles no connections.
    pub fn connection_handler(&self, held: &Arc<Plugin>) -> Arc<Plugin> {
        match self.current.load().plugins.get(&held.name) {
            Some(now) if now.handles_connections() => now.clone(),
            _ => held.clone(),
        }
    }

    /// After a config reload replaced databases (its plugins' migrations
    /// were applied to them before, by [`Mounts::migrate_to`]): every entry
    /// whose last load failed is loaded again, since the database it was
    /// missing may be there now, and so is any entry a load was under way
    /// for, which may have migrated the old pool. The folder watcher is
    /// woken for it.
    pub fn databases_changed(&self) {
        self.databases_generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut status = self.status.lock().unwrap();
        for status in status.values_mut() {
            if status.last_error.is_some() {
                status.fingerprint.clear();
            }
        }
        drop(status);
        self.look_again.notify_one();
    }

    /// Waits until [`Mounts::databases_changed`] asks for a reconcile.
    pub async fn asked_to_look_again(&self) {
        self.look_again.notified().await;
    }

    /// Brings the mounted set in line with the folder: loads new and changed
    /// entries, unmounts removed ones. Each successful change is published
    /// at once, so a slow build does not hold back the others. Returns
    /// whether an entry failed in a way that may pass by itself (its
    /// database was down), so the folder should be looked at again after
    /// [`RETRY`] even if nothing in it changes.
    pub async fn reconcile(&self) -> bool {
        let _one_at_a_time = self.reconciling.lock().await;
        let dir = self.plugins_dir.clone();
        let scanned = tokio::task::spawn_blocking(move || folder::scan(&dir)).await;
        let (entries, ignored) = match scanned {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::error!("{e}");
                return false;
            }
            Err(e) => {
                tracing::error!("scanning the plugins folder: {e}");
                return false;
            }
        };
        self.log_ignored(ignored);

        let present: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        let gone: Vec<String> = {
            let mut status = self.status.lock().unwrap();
            let gone: Vec<String> = status
                .keys()
                .filter(|n| !present.contains(n.as_str()))
                .cloned()
                .collect();
            for name in &gone {
                status.remove(name);
            }
            gone
        };
        for name in gone {
            if self.snapshot().plugins.contains_key(&name) {
                tracing::info!(plugin = %name, "unmounted: its file is gone");
            }
            self.publish(|plugins| {
                plugins.remove(&name);
            });
        }

        let mut retry = false;
        for entry in entries {
            let fingerprint = match fingerprint(&entry, &self.plugins_dir).await {
                Ok(fingerprint) => fingerprint,
                Err(e) => {
                    tracing::warn!(plugin = %entry.name, "{e}");
                    continue;
                }
            };
            {
                let mut status = self.status.lock().unwrap();
                let status = status.entry(entry.name.clone()).or_default();
                if status.fingerprint == fingerprint {
                    continue;
                }
                status.fingerprint = fingerprint;
            }
            let current = self.snapshot().plugins.get(&entry.name).cloned();
            let was_mounted = current.is_some();
            let generation = self
                .databases_generation
                .load(std::sync::atomic::Ordering::SeqCst);
            let loaded = self.load(&entry).await;
            if self
                .databases_generation
                .load(std::sync::atomic::Ordering::SeqCst)
                != generation
            {
                // A reload replaced a database while this loaded: its
                // migrations may have gone to the old pool. Loaded again at
                // the look the reload asked for.
                if let Some(status) = self.status.lock().unwrap().get_mut(&entry.name) {
                    status.fingerprint.clear();
                }
            }
            match loaded {
                Ok(plugin)
                    if current.as_ref().is_some_and(|c| {
                        c.sha256 == plugin.sha256 && c.sidecar == plugin.sidecar
                    }) =>
                {
                    // A rebuild that changed nothing (a new Cargo.lock, a touched file).
                    tracing::debug!(plugin = %entry.name, "unchanged after reload");
                    self.set_error(&entry.name, None);
                }
                Ok(mut plugin) => {
                    if let Some(previous) = &current {
                        plugin.inherit(previous);
                    }
                    tracing::info!(
                        plugin = %entry.name,
                        sha256 = %&plugin.sha256[..12],
                        compiled = ?plugin.compiled,
                        "{}",
                        if was_mounted { "swapped in a new version" } else { "mounted" }
                    );
                    self.set_error(&entry.name, None);
                    self.publish(|plugins| {
                        plugins.insert(entry.name.clone(), Arc::new(plugin));
                    });
                }
                Err(e) => {
                    let keep = if was_mounted {
                        "; the previous version keeps serving"
                    } else {
                        ""
                    };
                    let again = if e.may_pass() {
                        // Tried again at the next look, which comes soon.
                        retry = true;
                        if let Some(status) = self.status.lock().unwrap().get_mut(&entry.name) {
                            status.fingerprint.clear();
                        }
                        format!("; trying again in {} s", RETRY.as_secs())
                    } else {
                        String::new()
                    };
                    tracing::error!(plugin = %entry.name, "load failed{keep}: {e}{again}");
                    self.set_error(&entry.name, Some(e.to_string()));
                }
            }
        }
        retry
    }

    /// Loads one entry: build (for sources), compile (or read the cache),
    /// link and check. Nothing is mounted here.
    pub async fn load(&self, entry: &Entry) -> Result<Plugin> {
        let sidecar = match &entry.sidecar {
            Some(path) => Sidecar::load(path)?,
            None => Sidecar::default(),
        };
        let (wasm, origin) = match entry.kind {
            Kind::File => {
                let bytes = tokio::fs::read(&entry.path)
                    .await
                    .map_err(|e| Error::io(format!("reading {}", entry.path.display()), e))?;
                (bytes, Origin::File(entry.path.clone()))
            }
            Kind::Source(lang) => (
                source::build(lang, &entry.name, &entry.path, &self.build_dir).await?,
                match lang {
                    source::Lang::Rust => Origin::Rust(entry.path.clone()),
                    source::Lang::Python => Origin::Python(entry.path.clone()),
                    source::Lang::Js => Origin::Js(entry.path.clone()),
                    source::Lang::C => Origin::C(entry.path.clone()),
                    source::Lang::Zig => Origin::Zig(entry.path.clone()),
                },
            ),
        };
        let runtime = self.runtime.clone();
        let name = entry.name.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            let sha256 = sha256_hex(&wasm);
            if super::cgi::is_core_module(&wasm) {
                let program = runtime.prepare_cgi(&name, &wasm)?;
                return Ok::<_, Error>((sha256, Compiled::Fresh, Code::Cgi(program), None));
            }
            let (component, compiled) = runtime.compile(&name, &wasm, &sha256)?;
            let pre = runtime.prepare(&name, &component)?;
            let events = super::events::handler_of(&pre);
            Ok((sha256, compiled, Code::Component(pre), events))
        })
        .await
        .map_err(|e| Error::plugin(&entry.name, format!("the compile task failed: {e}")))?;
        let (sha256, compiled, code, events) = compiled?;
        let migrations = self.migrate(entry, &sidecar).await?;
        let provisions = self.provisions.load();
        for (name, why) in capability::env::missing(&sidecar.grants.env, &provisions.secrets) {
            tracing::warn!(plugin = %entry.name, "granted env var {name} {why}");
        }
        for name in &sidecar.grants.databases {
            if provisions.databases.get(name).is_none() {
                tracing::warn!(plugin = %entry.name, "granted database `{name}` is not configured: add [databases.{name}] to gatehouse.toml");
            }
        }
        Ok(Plugin {
            log_budget: Default::default(),
            firewall: sidecar
                .firewall
                .as_ref()
                .map(|rules| Arc::new(crate::firewall::Firewall::new(&rules.as_firewall()))),
            granted: capability::Granted {
                plugin: entry.name.as_str().into(),
                databases: sidecar.grants.databases.clone().into(),
                kv: sidecar.grants.kv,
                kv_bytes: sidecar.limits.kv_mb << 20,
                realtime: sidecar.grants.realtime,
            },
            outbound: capability::outbound::Grant::new(
                &sidecar.grants.outbound,
                sidecar.limits.outbound_concurrency,
            ),
            provisions: self.provisions.clone(),
            name: entry.name.clone(),
            origin,
            sha256,
            sidecar,
            migrations,
            code,
            events,
            loaded_at: SystemTime::now(),
            compiled,
        })
    }

    /// Applies the plugin's migrations, if it has any: the sidecar's
    /// `[migrations] path`, or `migrations/` in a source folder. A failure
    /// fails the load, so the previous version keeps serving. Returns the
    /// folder and the database's name.
    async fn migrate(&self, entry: &Entry, sidecar: &Sidecar) -> Result<Option<Migrations>> {
        let configured = sidecar.migrations.as_ref();
        let dir = match configured.and_then(|m| m.path.as_ref()) {
            Some(path) => self.plugins_dir.join(path),
            None if matches!(entry.kind, Kind::Source(_)) => entry.path.join("migrations"),
            None => return Ok(None),
        };
        if !dir.is_dir() {
            if configured.and_then(|m| m.path.as_ref()).is_some() {
                return Err(Error::plugin(
                    &entry.name,
                    format!("[migrations] path {} is not a folder", dir.display()),
                ));
            }
            return Ok(None);
        }
        let Some(name) = sidecar.migrations_database() else {
            return Err(Error::plugin(
                &entry.name,
                format!(
                    "has migrations in {} but no database to apply them to: grant one in [grants] databases",
                    dir.display()
                ),
            ));
        };
        let Some(database) = self.provisions.load().databases.get(name).cloned() else {
            return Err(Error::plugin(
                &entry.name,
                format!(
                    "its migrations need database `{name}`, which is not configured: add [databases.{name}] to gatehouse.toml"
                ),
            ));
        };
        if !self.apply_migrations {
            sqlx::migrate::Migrator::new(dir.clone())
                .await
                .map_err(|e| {
                    Error::plugin(&entry.name, format!("migrations in {}: {e}", dir.display()))
                })?;
        } else {
            capability::migrations::migrate_plugin(&entry.name, &database, &dir).await?;
        }
        Ok(Some(Migrations {
            dir,
            database: name.to_owned(),
        }))
    }

    /// Applies the migrations of the mounted plugins whose migrations go to
    /// a database in `changed` to its new pool in `databases`, before a
    /// config reload swaps that pool in: no call of theirs meets it without
    /// their tables. A failure is logged and kept for the admin API; the
    /// plugin keeps serving, and is loaded again after the reload.
    pub async fn migrate_to(
        &self,
        databases: &capability::sql::Databases,
        changed: &HashSet<String>,
    ) {
        let mounted = self.snapshot();
        for plugin in mounted.plugins.values() {
            let Some(migrations) = &plugin.migrations else {
                continue;
            };
            if !changed.contains(&migrations.database) {
                continue;
            }
            let Some(database) = databases.get(&migrations.database) else {
                let error = format!(
                    "its migrations' database `{}` is no longer configured: add [databases.{}] to gatehouse.toml",
                    migrations.database, migrations.database
                );
                tracing::error!(plugin = %plugin.name, "{error}");
                self.set_error(&plugin.name, Some(error));
                continue;
            };
            if let Err(e) =
                capability::migrations::migrate_plugin(&plugin.name, database, &migrations.dir)
                    .await
            {
                tracing::error!(plugin = %plugin.name, "after the config reload: {e}");
                self.set_error(&plugin.name, Some(e.to_string()));
            }
        }
    }

    /// Applies `change` to a copy of the plugin map, rebuilds the route
    /// table and swaps the result in.
    fn publish(&self, change: impl FnOnce(&mut HashMap<String, Arc<Plugin>>)) {
        let _one_at_a_time = self.publishing.lock().unwrap();
        let mut plugins = self.snapshot().plugins.clone();
        change(&mut plugins);
        let mut names: Vec<&String> = plugins.keys().collect();
        names.sort();
        let config_routes = self.config_routes.lock().unwrap().clone();
        let routes = config_routes
            .iter()
            .cloned()
            .chain(names.into_iter().flat_map(|name| routes_of(&plugins[name])));
        let (table, clashes) = RouteTable::build(routes);
        for (route, holder) in clashes {
            let Some(plugin) = route.plugin_name() else {
                continue; // config routes are checked against each other on load
            };
            let message = format!(
                "route {} of plugin `{plugin}` clashes with the same route of {holder}; it is not mounted",
                route.pattern
            );
            tracing::error!("{message}");
            self.set_error(plugin, Some(message));
        }
        self.current.store(Arc::new(Mounted { plugins, table }));
    }

    /// Replaces the `[[route]]` routes and republishes the table.
    pub fn set_config_routes(&self, routes: Vec<Route>) {
        *self.config_routes.lock().unwrap() = Arc::new(routes);
        self.publish(|_| {});
    }

    fn set_error(&self, name: &str, error: Option<String>) {
        let mut status = self.status.lock().unwrap();
        let status = status.entry(name.to_owned()).or_default();
        status.failed_at = error.as_ref().map(|_| SystemTime::now());
        status.last_error = error;
    }

    fn log_ignored(&self, names: Vec<String>) {
        let mut logged = self.ignored.lock().unwrap();
        for name in names {
            if logged.insert(name.clone()) {
                tracing::info!(
                    "ignoring {name} in {}: plugins are <name>.wasm, <name>/ with sources, and <name>.toml sidecars, \
                     with names of [a-z0-9][a-z0-9_-]*",
                    self.plugins_dir.display()
                );
            }
        }
    }

    /// Every known plugin, loaded or failed, for the admin API.
    pub fn report(&self) -> Vec<Report> {
        let mounted = self.snapshot();
        let status = self.status.lock().unwrap();
        status
            .iter()
            .map(|(name, status)| {
                let plugin = mounted.plugins.get(name);
                Report {
                    name: name.clone(),
                    state: match (plugin, &status.last_error) {
                        (Some(_), _) => "serving",
                        (None, Some(_)) => "failed",
                        // Found, and its first load (a build, migrations)
                        // has not ended yet.
                        (None, None) => "loading",
                    },
                    routes: mounted.table.routes_of(name),
                    sha256: plugin.map(|p| p.sha256.clone()),
                    source: plugin.map(|p| p.origin.clone()),
                    loaded_at: plugin
                        .map(|p| humantime::format_rfc3339_millis(p.loaded_at).to_string()),
                    compiled: plugin.map(|p| p.compiled),
                    handles_connections: plugin.map(|p| p.handles_connections()),
                    last_error: status.last_error.clone(),
                    failed_at: status
                        .failed_at
                        .map(|t| humantime::format_rfc3339_millis(t).to_string()),
                }
            })
            .collect()
    }
}

/// The routes of a plugin: its sidecar's, or `/<name>` and `/<name>/*` with
/// the prefix stripped.
fn routes_of(plugin: &Plugin) -> Vec<Route> {
    match &plugin.sidecar.routes {
        Some(routes) => routes
            .iter()
            .filter_map(|text| Pattern::parse(text).ok())
            .map(|pattern| Route::plugin(pattern, &plugin.name, plugin.sidecar.strip_prefix))
            .collect(),
        None => vec![Route::plugin(
            Pattern {
                host: Host::Any,
                path: format!("/{}", plugin.name),
                prefix: true,
            },
            &plugin.name,
            true,
        )],
    }
}

/// What identifies an entry's current content: the bytes (or sources) and
/// the sidecar.
async fn fingerprint(entry: &Entry, plugins_dir: &Path) -> Result<String> {
    let entry = entry.clone();
    let plugins_dir = plugins_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let code = match entry.kind {
            Kind::File => sha256_hex(
                &std::fs::read(&entry.path)
                    .map_err(|e| Error::io(format!("reading {}", entry.path.display()), e))?,
            ),
            Kind::Source(_) => source::fingerprint(&entry.path)?,
        };
        let text = match &entry.sidecar {
            Some(path) => std::fs::read(path).unwrap_or_default(),
            None => Vec::new(),
        };
        // Migrations outside the entry (a sidecar's `[migrations] path`)
        // count too, so a new migration file reloads the plugin.
        let migrations = std::str::from_utf8(&text)
            .ok()
            .and_then(|text| toml::from_str::<Sidecar>(text).ok())
            .and_then(|sidecar| sidecar.migrations?.path)
            .map(|path| plugins_dir.join(path))
            .filter(|dir| dir.is_dir())
            .map(|dir| source::fingerprint(&dir))
            .transpose()?
            .unwrap_or_default();
        Ok(format!("{code}:{}:{migrations}", sha256_hex(&text)))
    })
    .await
    .map_err(|e| Error::plugin(&entry.name, format!("the fingerprint task failed: {e}")))?
}
