//! gatehouse: the edge and the application server of a backend in one
//! process, with the business logic in sandboxed WebAssembly components.
//!
//! A request follows the modules in this order:
//!
//! - [`listener`]: accepts connections, speaks HTTP/1.1 and HTTP/2, drains on shutdown.
//! - [`server`]: the request path: route, invoke, access log.
//! - [`router`]: host + path to the plugin that answers.
//! - [`plugin`]: the wasm runtime; the drop-in folder, hot swap, one
//!   fresh instance per request under a deadline and a memory cap.
//! - [`capability`]: what a plugin may touch, by grant.
//!
//! Beside the path: [`admin`] (health and plugin status), [`config`]
//! (`gatehouse.toml` and sidecars), [`shutdown`] and [`error`].

pub mod admin;
pub mod capability;
pub mod config;
pub mod error;
pub mod listener;
pub mod plugin;
pub mod router;
pub mod server;
pub mod shutdown;

use config::Config;
use error::{Error, Result};
use plugin::folder;
use plugin::mounts::Mounts;
use plugin::runtime::Runtime;
use std::sync::Arc;
use std::time::Duration;

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

    let mut listeners = Vec::new();
    for listener in &config.listeners {
        listeners.push(listener::bind(listener.addr).await?);
    }
    let admin = listener::bind(config.admin.addr).await?;
    for listener in &listeners {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("listening on http://{addr}");
        }
    }
    if let Ok(addr) = admin.local_addr() {
        tracing::info!("admin API on http://{addr}");
    }
    tracing::info!("serving plugins from {}", plugins_dir.display());

    let _watcher = plugin::watch::start(mounts.clone(), Some(data_dir.clone())).await?;

    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let mounts = mounts.clone();
        let service = move |request, local| {
            let mounts = mounts.clone();
            async move { server::handle(&mounts, request, local).await }
        };
        tasks.spawn(listener::run(listener, service, shutdown.clone(), grace));
    }
    let service = move |request, _local| {
        let mounts = mounts.clone();
        async move { admin::handle(&mounts, request).await }
    };
    tasks.spawn(listener::run(admin, service, shutdown.clone(), grace));
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
