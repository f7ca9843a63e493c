//! gatehouse: the edge and the application server of a backend in one
//! process, with the business logic in sandboxed WebAssembly components.
//!
//! A request follows the modules in this order:
//!
//! - [`listener`]: accepts connections, admits them through the [`firewall`],
//!   terminates [`tls`], speaks HTTP/1.1 and HTTP/2 under the limits, drains
//!   on shutdown.
//! - [`server`]: the request path: edge filters (rate limit, https redirect,
//!   [`acme`] challenges, body limit), route, the route's action inside its
//!   [`filters`] (CORS, compression), access log.
//! - [`router`]: host + path to the action that answers: a plugin, an
//!   upstream pool ([`proxy`]), a folder ([`static_files`]) or a redirect.
//! - [`plugin`]: the wasm runtime; the drop-in folder, hot swap, one
//!   fresh instance per request under a deadline and a memory cap.
//! - [`websocket`] and [`event_stream`]: the connections a plugin handles
//!   as events, kept open by the host.
//! - [`capability`]: what a plugin may touch, by grant.
//!
//! Beside the path: [`site`] (the listeners and routes of the current
//! config, and its reload), [`admin`] (health, plugins, upstreams, stats),
//! [`config`] (`gatehouse.toml` and sidecars), [`shutdown`] and [`error`].

pub mod acme;
pub mod admin;
pub mod capability;
pub mod config;
pub mod error;
pub mod event_stream;
pub mod filters;
pub mod firewall;
pub mod listener;
pub mod plugin;
pub mod proxy;
pub mod proxy_protocol;
pub mod request_body;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod site;
pub mod static_files;
pub mod tls;
pub mod websocket;

use arc_swap::ArcSwap;
use config::{Config, Loader};
use error::{Error, Result};
use firewall::Firewall;
use listener::Edge;
use plugin::folder;
use plugin::mounts::Mounts;
use plugin::runtime::Runtime;
use site::Site;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Runs the server until `shutdown` fires, then drains and returns. With a
/// `loader`, the config is read again on SIGHUP and when its file changes.
pub async fn serve(
    config: Config,
    loader: Option<Loader>,
    shutdown: shutdown::Shutdown,
) -> Result<()> {
    let (plugins_dir, data_dir) = (config.server.plugins.clone(), config.server.data.clone());
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        Error::io(
            format!("creating the data folder {}", data_dir.display()),
            e,
        )
    })?;
    if !plugins_dir.is_dir() {
        tracing::info!("creating the plugins folder {}", plugins_dir.display());
        std::fs::create_dir_all(&plugins_dir).map_err(|e| {
            Error::io(
                format!("creating the plugins folder {}", plugins_dir.display()),
                e,
            )
        })?;
    }
    let runtime = Arc::new(Runtime::new(&data_dir)?);
    let provisions = capability::Provisions::prepare(&config, None)?;
    provisions.migrate_host().await;
    let _maintenance = provisions.maintain();
    let mounts = Arc::new(Mounts::new(
        runtime,
        Arc::new(ArcSwap::from_pointee(provisions)),
        &plugins_dir,
        &data_dir,
    ));
    let server = Arc::new(server::Server {
        mounts: mounts.clone(),
        firewall: ArcSwap::from_pointee(Firewall::new(&config.firewall)),
        acme: Arc::new(acme::Challenges::default()),
        https_port: AtomicU32::new(0),
    });

    // Bind everything first, so a taken port fails the start, not later.
    let admin_addr = config.admin.addr;
    let limits = config.limits.clone();
    let site = Site::new(server.clone(), config, shutdown.clone());
    site.start().await?;
    let admin = listener::bind(admin_addr).await?;
    if let Ok(addr) = admin.local_addr() {
        capability::outbound::guard_admin_listener(addr);
        tracing::info!("admin API on http://{addr}");
    }
    tracing::info!("serving plugins from {}", plugins_dir.display());

    // At shutdown, realtime clients are told the server is going away
    // (WebSocket close 1001), so they reconnect elsewhere or later, while
    // the listeners drain.
    let hub = mounts.provisions().load().realtime.clone();
    let going = shutdown.clone();
    let closing = hub.clone();
    tokio::spawn(async move {
        going.wait().await;
        closing.close_all("server shutting down");
    });

    let _watcher = plugin::watch::start(mounts.clone(), Some(data_dir.clone())).await?;
    let _config_watcher = match loader {
        Some(loader) => site.watch(loader)?,
        None => None,
    };
    let forget = server.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            forget.firewall.load().forget_quiet_clients();
            // The rate limits of plugins' own `[firewall]` tables too.
            for plugin in forget.mounts.snapshot().plugins.values() {
                if let Some(firewall) = &plugin.firewall {
                    firewall.forget_quiet_clients();
                }
            }
        }
    });

    let admin_edge = Arc::new(ArcSwap::from_pointee(Edge {
        config: config::ListenerConfig::plain(admin_addr),
        tls: None,
        firewall: None,
        limits,
        hsts: None,
    }));
    let service = move |request, _connection, _edge| {
        let server = server.clone();
        async move { admin::handle(&server, request).await }
    };
    let admin_site = site.clone();
    let admin_task = tokio::spawn(listener::run(
        admin,
        admin_edge,
        service,
        shutdown.clone().wait(),
        move || admin_site.grace(),
    ));
    site.wait().await;
    // A WebSocket left HTTP's drain when it upgraded: wait, for at most the
    // grace period, until each has sent its close frame and ended.
    let deadline = tokio::time::Instant::now() + site.grace();
    while hub.connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = admin_task.await;
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
    let routes = router::build(&config.routes).map_err(Error::Route)?;
    let runtime = Arc::new(Runtime::new(&config.server.data)?);
    let provisions = capability::Provisions::prepare(config, None)?;
    let mounts = Mounts::new(
        runtime,
        Arc::new(ArcSwap::from_pointee(provisions)),
        plugins_dir,
        &config.server.data,
    )
    .without_migrations();
    let (entries, ignored) = folder::scan(plugins_dir)?;
    let mut lines: Vec<String> = ignored
        .iter()
        .map(|name| format!("ignored {name}: not a plugin"))
        .collect();
    lines.extend(
        routes
            .iter()
            .map(|route| format!("ok {} {}", route.owner, route.pattern)),
    );
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
