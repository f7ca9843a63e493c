//! gatehouse: the edge and the application server of a backend in one
//! process, with the business logic in sandboxed WebAssembly components.
//!
//! A request follows the modules in this order:
//!
//! - [`listener`]: accepts connections, admits them through the [`firewall`],
//!   terminates [`tls`], speaks HTTP/1.1 and HTTP/2 under the limits, drains
//!   on shutdown.
//! - [`server`]: the request path: edge filters (rate limit, https redirect,
//!   [`acme`] challenges, body limit), route, invoke, access log.
//! - [`router`]: host + path to the plugin that answers.
//! - [`plugin`]: the wasm runtime; the drop-in folder, hot swap, one
//!   fresh instance per request under a deadline and a memory cap.
//! - [`capability`]: what a plugin may touch, by grant.
//!
//! Beside the path: [`admin`] (health and plugin status), [`config`]
//! (`gatehouse.toml` and sidecars), [`shutdown`] and [`error`].

pub mod acme;
pub mod admin;
pub mod capability;
pub mod config;
pub mod error;
pub mod firewall;
pub mod listener;
pub mod plugin;
pub mod proxy_protocol;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod tls;

use config::{CertPair, Config};
use error::{Error, Result};
use firewall::Firewall;
use listener::Edge;
use plugin::folder;
use plugin::mounts::Mounts;
use plugin::runtime::Runtime;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Runs the server until `shutdown` fires, then drains and returns.
pub async fn serve(config: Config, shutdown: shutdown::Shutdown) -> Result<()> {
    let (plugins_dir, data_dir) = (&config.server.plugins, &config.server.data);
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::io(
            format!("creating the data folder {}", data_dir.display()),
            e,
        )
    })?;
    if !plugins_dir.is_dir() {
        tracing::info!("creating the plugins folder {}", plugins_dir.display());
        std::fs::create_dir_all(plugins_dir).map_err(|e| {
            Error::io(
                format!("creating the plugins folder {}", plugins_dir.display()),
                e,
            )
        })?;
    }
    let runtime = Arc::new(Runtime::new(data_dir)?);
    let mounts = Arc::new(Mounts::new(runtime, plugins_dir, data_dir));

    let firewall = Arc::new(Firewall::new(&config.firewall));
    let challenges = Arc::new(acme::Challenges::default());
    let has_plain = config.listeners.iter().any(|l| l.tls.is_none());

    // Bind everything first, so a taken port fails the start, not later.
    let mut bound = Vec::new();
    let mut cert_watchers = Vec::new();
    for listener in &config.listeners {
        let socket = listener::bind(listener.addr).await?;
        let tls = match &listener.tls {
            Some(tls_config) => {
                let mut pairs: Vec<CertPair> = tls_config.sni.clone();
                if let (Some(cert), Some(key)) = (&tls_config.cert, &tls_config.key) {
                    pairs.insert(
                        0,
                        CertPair {
                            cert: cert.clone(),
                            key: key.clone(),
                        },
                    );
                }
                let store = tls::CertStore::new(pairs)?;
                cert_watchers.push(tls::watch(store.clone())?);
                if let Some(acme_config) = &tls_config.acme {
                    acme::spawn(
                        acme_config.clone(),
                        store.clone(),
                        challenges.clone(),
                        data_dir,
                        has_plain,
                    );
                }
                Some(TlsAcceptor::from(tls::server_config(
                    store,
                    tls_config.acme.is_some(),
                )?))
            }
            None => None,
        };
        let edge = Edge {
            hsts: listener
                .hsts_value()
                .and_then(|v| http::HeaderValue::from_str(&v).ok()),
            config: listener.clone(),
            tls,
            firewall: Some(firewall.clone()),
            limits: config.limits.clone(),
        };
        bound.push((socket, Arc::new(edge)));
    }
    let admin = listener::bind(config.admin.addr).await?;
    let https_port = bound
        .iter()
        .find(|(_, edge)| edge.tls.is_some())
        .and_then(|(socket, _)| socket.local_addr().ok())
        .map(|addr| addr.port());
    for (socket, edge) in &bound {
        if let Ok(addr) = socket.local_addr() {
            let scheme = if edge.tls.is_some() { "https" } else { "http" };
            tracing::info!("listening on {scheme}://{addr}");
        }
    }
    if let Ok(addr) = admin.local_addr() {
        tracing::info!("admin API on http://{addr}");
    }
    tracing::info!("serving plugins from {}", plugins_dir.display());

    let _watcher = plugin::watch::start(mounts.clone(), Some(data_dir.clone())).await?;
    let forget = firewall.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            forget.forget_quiet_clients();
        }
    });

    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let server = Arc::new(server::Server {
        mounts: mounts.clone(),
        firewall: firewall.clone(),
        acme: challenges,
        https_port,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (socket, edge) in bound {
        let (server, service_edge) = (server.clone(), edge.clone());
        let service = move |request, connection| {
            let (server, edge) = (server.clone(), service_edge.clone());
            async move { server::handle(&server, &edge, request, connection).await }
        };
        tasks.spawn(listener::run(
            socket,
            edge,
            service,
            shutdown.clone(),
            grace,
        ));
    }
    let admin_edge = Arc::new(Edge {
        config: config::ListenerConfig::plain(config.admin.addr),
        tls: None,
        firewall: None,
        limits: config.limits.clone(),
        hsts: None,
    });
    let service = move |request, _connection| {
        let (mounts, firewall) = (mounts.clone(), firewall.clone());
        async move { admin::handle(&mounts, &firewall, request).await }
    };
    tasks.spawn(listener::run(
        admin,
        admin_edge,
        service,
        shutdown.clone(),
        grace,
    ));
    while tasks.join_next().await.is_some() {}
    tracing::info!("stopped");
    Ok(())
}

/// Validates the configuration and loads (builds, compiles, links) every
/// plugin in the folder without serving. Returns one line per plugin.
pub async fn check(config: &Config) -> Result<Vec<String>> {
    let plugins_dir = &config.server.plugins;
    if !plugins_dir.is_dir() {
        return Err(Error::Config {
            file: plugins_dir.clone(),
            message:
                "the plugins folder does not exist: create it, or set [server] plugins or --plugins"
                    .into(),
        });
    }
    let runtime = Arc::new(Runtime::new(&config.server.data)?);
    let mounts = Mounts::new(runtime, plugins_dir, &config.server.data);
    let (entries, ignored) = folder::scan(plugins_dir)?;
    let mut lines: Vec<String> = ignored
        .iter()
        .map(|name| format!("ignored {name}: not a plugin"))
        .collect();
    let mut failures = Vec::new();
    for entry in &entries {
        match mounts.load(entry).await {
            Ok(plugin) => lines.push(format!("ok {} ({})", entry.name, &plugin.sha256[..12])),
            Err(e) => failures.push(e.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(lines)
    } else {
        Err(Error::Plugin {
            name: format!("{} of {}", failures.len(), entries.len()),
            message: format!("failed to load:\n{}", failures.join("\n")),
        })
    }
}
