//! The running site: the listeners, firewall and routes of the current
//! config, and how a new config replaces them.
//!
//! A reload works like nginx's: the new config is read and validated, and
//! everything it needs is prepared (routes, upstream pools, static folders,
//! certificates, new sockets) before anything changes. Only when all of it
//! is ready is it swapped in: routes and the firewall atomically, each
//! listener's edge for its next connections, new listeners started, removed
//! ones drained. Requests in flight finish on what they started with. If
//! any step fails the old config keeps serving, and the log says why.

use crate::acme;
use crate::capability::Provisions;
use crate::config::{CertPair, Config, ListenerConfig, Loader, TlsConfig};
use crate::error::{Error, Result};
use crate::firewall::Firewall;
use crate::listener::{self, Edge};
use crate::router::{self, Action, Route};
use crate::server::{self, Server};
use crate::shutdown::{self, Shutdown, Trigger};
use crate::tls;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// One public listener while it runs.
struct Running {
    /// Its `[[listener]]` as last applied.
    config: ListenerConfig,
    /// The edge its new connections get.
    edge: Arc<ArcSwap<Edge>>,
    /// The TLS side, kept across reloads while its `tls` table is unchanged.
    tls: Option<TlsSide>,
    /// Stops it (and drains its connections).
    stop: Trigger,
    /// The port it is bound to.
    port: u16,
}

/// A TLS listener's certificates and what keeps them current.
#[derive(Clone)]
struct TlsSide {
    config: TlsConfig,
    acceptor: TlsAcceptor,
    /// Reloads changed certificate files while held.
    _watcher: Arc<Option<notify::RecommendedWatcher>>,
    /// The ACME task, stopped when the listener goes.
    _acme: Option<Arc<AbortOnDrop>>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The site and what it needs to apply a config.
pub struct Site {
    /// What the listeners serve.
    pub server: Arc<Server>,
    /// The config now applied.
    config: Mutex<Config>,
    running: Mutex<HashMap<ListenerKey, Running>>,
    /// Fires on shutdown; every listener also stops then.
    shutdown: Shutdown,
    /// The grace period at shutdown, from the current config.
    grace_ms: Arc<AtomicU32>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

/// Which listener: its address, and which of the listeners with that
/// address (several may ask for port 0).
type ListenerKey = (SocketAddr, usize);

/// The keys of `listeners`, in order.
fn keys(listeners: &[ListenerConfig]) -> Vec<ListenerKey> {
    listeners
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let earlier = listeners[..i].iter().filter(|e| e.addr == l.addr).count();
            (l.addr, earlier)
        })
        .collect()
}

/// A listener made ready by a reload, not yet started.
struct Prepared {
    key: ListenerKey,
    config: ListenerConfig,
    tls: Option<TlsSide>,
    /// A socket for a new address.
    socket: Option<TcpListener>,
}

impl Site {
    /// A site with nothing running yet.
    pub fn new(server: Arc<Server>, config: Config, shutdown: Shutdown) -> Arc<Site> {
        Arc::new(Site {
            server,
            grace_ms: Arc::new(AtomicU32::new(
                u32::try_from(config.server.shutdown_grace_ms).unwrap_or(u32::MAX),
            )),
            config: Mutex::new(config),
            running: Mutex::default(),
            shutdown,
            tasks: Mutex::default(),
            reloading: tokio::sync::Mutex::const_new(()),
        })
    }

    /// Applies the first config: binds every listener, or fails.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        let config = self.config.lock().unwrap().clone();
        self.apply(config, true).await
    }

    /// Reads the config again and applies it if it is valid; otherwise
    /// logs why and keeps the current one.
    pub async fn reload(self: &Arc<Self>, loader: &Loader) {
        let _one_at_a_time = self.reloading.lock().await;
        let outcome = match loader.load() {
            Ok(config) => self.apply(config, false).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            tracing::error!("config reload failed, the current config keeps serving: {e}");
        }
    }

    /// Prepares everything `config` needs, then swaps it in.
    async fn apply(self: &Arc<Self>, mut config: Config, first: bool) -> Result<()> {
        let old = self.config.lock().unwrap().clone();
        if !first {
            keep_restart_only(&old, &mut config);
        }
        let routes = router::build(&config.routes).map_err(Error::Route)?;
        let provisions = self.server.mounts.provisions();
        let current = provisions.load_full();
        let prepared_provisions = Provisions::prepare(&config, Some(&current))?;

        // Listeners: reuse what is unchanged, prepare the rest.
        let has_plain = config.listeners.iter().any(|l| l.tls.is_none());
        let mut prepared = Vec::new();
        {
            let running = self.running.lock().unwrap();
            for (listener, key) in config.listeners.iter().zip(keys(&config.listeners)) {
                let current = running.get(&key);
                let tls = match (&listener.tls, current.and_then(|r| r.tls.as_ref())) {
                    (Some(wanted), Some(side)) if side.config == *wanted => Some(side.clone()),
                    (Some(wanted), _) => Some(self.tls_side(wanted, &config, has_plain)?),
                    (None, _) => None,
                };
                prepared.push((key, listener.clone(), tls, current.is_none()));
            }
        }
        let mut ready = Vec::new();
        for (key, listener, tls, new) in prepared {
            let socket = if new {
                Some(listener::bind(listener.addr).await?)
            } else {
                None
            };
            ready.push(Prepared {
                key,
                config: listener,
                tls,
                socket,
            });
        }

        // Everything else is ready. A new host database gets the host's
        // tables before kv calls reach it; one that is down is retried in
        // the background, as at start.
        let host_changed = !Arc::ptr_eq(
            prepared_provisions.databases.host(),
            current.databases.host(),
        );
        if host_changed {
            prepared_provisions.migrate_host().await;
        }
        // So do the plugins' tables on a database that is new or moved.
        let changed_databases = prepared_provisions
            .databases
            .changed_from(&current.databases);
        if !changed_databases.is_empty() {
            self.server
                .mounts
                .migrate_to(&prepared_provisions.databases, &changed_databases)
                .await;
        }

        // Commit: nothing below can fail.
        let firewall = if first || old.firewall != config.firewall {
            let previous = self.server.firewall.load();
            let firewall = Arc::new(Firewall::after(&config.firewall, &previous));
            self.server.firewall.store(firewall.clone());
            firewall
        } else {
            self.server.firewall.load_full()
        };
        for route in &routes {
            if let Action::Proxy(pool) = &route.action {
                pool.start();
            }
        }
        if host_changed {
            prepared_provisions.maintain();
        }
        prepared_provisions
            .realtime
            .set_limits(config.realtime.clone());
        provisions.store(Arc::new(prepared_provisions));
        if !changed_databases.is_empty() {
            self.server.mounts.databases_changed();
        }
        let counts = describe(&routes);
        self.server.mounts.set_config_routes(routes);
        self.grace_ms.store(
            u32::try_from(config.server.shutdown_grace_ms).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );

        let mut running = self.running.lock().unwrap();
        let wanted: Vec<ListenerKey> = ready.iter().map(|p| p.key).collect();
        let removed: Vec<ListenerKey> = running
            .keys()
            .filter(|key| !wanted.contains(key))
            .copied()
            .collect();
        for key in removed {
            if let Some(gone) = running.remove(&key) {
                tracing::info!(
                    "closing the listener on {}: it is no longer configured",
                    key.0
                );
                gone.stop.fire();
            }
        }
        let (mut opened, mut changed) = (0, 0);
        for prepared in ready {
            let edge = Edge {
                hsts: prepared
                    .config
                    .hsts_value()
                    .and_then(|v| http::HeaderValue::from_str(&v).ok()),
                config: prepared.config.clone(),
                tls: prepared.tls.as_ref().map(|t| t.acceptor.clone()),
                firewall: Some(firewall.clone()),
                limits: config.limits.clone(),
            };
            match prepared.socket {
                Some(socket) => {
                    opened += 1;
                    let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                    let scheme = if edge.tls.is_some() { "https" } else { "http" };
                    if let Ok(addr) = socket.local_addr() {
                        tracing::info!("listening on {scheme}://{addr}");
                    }
                    let edge = Arc::new(ArcSwap::from_pointee(edge));
                    let (stop, stopped) = shutdown::channel();
                    self.spawn_listener(socket, edge.clone(), stopped);
                    running.insert(
                        prepared.key,
                        Running {
                            config: prepared.config,
                            edge,
                            tls: prepared.tls,
                            stop,
                            port,
                        },
                    );
                }
                None => {
                    let Some(current) = running.get_mut(&prepared.key) else {
                        continue;
                    };
                    if current.config != prepared.config {
                        changed += 1;
                    }
                    current.edge.store(Arc::new(edge));
                    current.config = prepared.config;
                    current.tls = prepared.tls;
                }
            }
        }
        let https_port = config
            .listeners
            .iter()
            .zip(keys(&config.listeners))
            .find(|(l, _)| l.tls.is_some())
            .and_then(|(_, key)| running.get(&key))
            .map_or(0, |r| u32::from(r.port));
        self.server.https_port.store(https_port, Ordering::Relaxed);
        drop(running);
        *self.config.lock().unwrap() = config;
        if !first {
            tracing::info!(
                "config reloaded: {counts}; listeners: {opened} opened, {changed} changed"
            );
        }
        Ok(())
    }

    /// Builds the TLS side of a listener: certificates, their watcher, ACME.
    fn tls_side(&self, wanted: &TlsConfig, config: &Config, has_plain: bool) -> Result<TlsSide> {
        let mut pairs: Vec<CertPair> = wanted.sni.clone();
        if let (Some(cert), Some(key)) = (&wanted.cert, &wanted.key) {
            pairs.insert(
                0,
                CertPair {
                    cert: cert.clone(),
                    key: key.clone(),
                },
            );
        }
        let store = tls::CertStore::new(pairs)?;
        let watcher = tls::watch(store.clone())?;
        let acceptor = TlsAcceptor::from(tls::server_config(store.clone(), wanted.acme.is_some())?);
        let acme = wanted.acme.as_ref().map(|acme_config| {
            Arc::new(AbortOnDrop(acme::spawn(
                acme_config.clone(),
                store,
                self.server.acme.clone(),
                &config.server.data,
                has_plain,
            )))
        });
        Ok(TlsSide {
            config: wanted.clone(),
            acceptor,
            _watcher: Arc::new(watcher),
            _acme: acme,
        })
    }

    fn spawn_listener(&self, socket: TcpListener, edge: Arc<ArcSwap<Edge>>, stopped: Shutdown) {
        let server = self.server.clone();
        let service = move |request, connection, edge: Arc<Edge>| {
            let server = server.clone();
            async move { server::handle(&server, &edge, request, connection).await }
        };
        let shutdown = self.shutdown.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown.wait() => {}
                () = stopped.wait() => {}
            }
        };
        let grace_ms = self.grace_ms.clone();
        let grace = move || Duration::from_millis(u64::from(grace_ms.load(Ordering::Relaxed)));
        self.tasks
            .lock()
            .unwrap()
            .spawn(listener::run(socket, edge, service, stop, grace));
    }

    /// Waits until every listener has stopped and drained.
    pub async fn wait(&self) {
        loop {
            let next = {
                let mut tasks = self.tasks.lock().unwrap();
                if tasks.is_empty() {
                    return;
                }
                // Poll without holding the lock across an await.
                std::mem::take(&mut *tasks)
            };
            let mut next = next;
            while next.join_next().await.is_some() {}
        }
    }

    /// The grace period for requests at shutdown.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(u64::from(self.grace_ms.load(Ordering::Relaxed)))
    }

    /// Reloads on SIGHUP and whenever the config file changes.
    pub fn watch(self: &Arc<Self>, loader: Loader) -> Result<Option<notify::RecommendedWatcher>> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
        let hangup = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return tracing::error!("cannot listen for SIGHUP: config reload by signal is off");
            };
            while hup.recv().await.is_some() {
                if hangup.send("SIGHUP").is_err() {
                    return;
                }
            }
        });
        let watcher = match loader.file() {
            Some(file) => Some(watch_file(&file, tx)?),
            None => None,
        };
        let site = self.clone();
        tokio::spawn(async move {
            while let Some(why) = rx.recv().await {
                let mut reasons = vec![why];
                while let Ok(Some(more)) =
                    tokio::time::timeout(crate::plugin::watch::DEBOUNCE, rx.recv()).await
                {
                    if !reasons.contains(&more) {
                        reasons.push(more);
                    }
                }
                tracing::info!("{}: reloading the config", reasons.join(" and "));
                site.reload(&loader).await;
            }
        });
        Ok(watcher)
    }
}

/// Watches the folder of `file` and says when `file` changes.
fn watch_file(
    file: &std::path::Path,
    tx: tokio::sync::mpsc::UnboundedSender<&'static str>,
) -> Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file = std::fs::canonicalize(file).unwrap_or(file.to_path_buf());
    let dir = file
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let name = file.file_name().map(|n| n.to_owned());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
            && event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_owned()) == name)
        {
            let _ = tx.send("the config file changed");
        }
    })
    .map_err(|e| Error::io("watching the config file", std::io::Error::other(e)))?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| {
            Error::io(
                format!("watching {}", dir.display()),
                std::io::Error::other(e),
            )
        })?;
    Ok(watcher)
}

/// Settings a reload cannot change are kept, with a warning.
fn keep_restart_only(old: &Config, new: &mut Config) {
    let keep = |what: &str, changed: bool| {
        if changed {
            tracing::warn!("config reload: a new {what} needs a restart; keeping the current one");
        }
    };
    keep(
        "[server] plugins folder",
        old.server.plugins != new.server.plugins,
    );
    keep("[server] data folder", old.server.data != new.server.data);
    keep("[admin] addr", old.admin.addr != new.admin.addr);
    new.server.plugins = old.server.plugins.clone();
    new.server.data = old.server.data.clone();
    new.admin.addr = old.admin.addr;
}

/// "3 routes (1 proxy, 1 static, …)" for the reload log line.
fn describe(routes: &[Route]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for route in routes {
        let kind = match route.action {
            Action::Plugin(_) => "plugin",
            Action::Proxy(_) => "proxy",
            Action::Static(_) => "static",
            Action::Redirect(_) => "redirect",
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("{} [[route]] ({})", routes.len(), detail.join(", "))
}
