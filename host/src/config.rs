//! `gatehouse.toml` and the plugin sidecars: their shape, defaults and validation.
//!
//! Every table rejects keys it does not know, so a typo is an error that names
//! the key and the file instead of a setting silently ignored.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "gatehouse.toml";

/// The whole host configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where plugins and data live, and how the server stops.
    pub server: ServerConfig,
    /// The public listeners; `127.0.0.1:8080` when none is given.
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// The admin API listener.
    pub admin: AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            listeners: vec![ListenerConfig {
                addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            }],
            admin: AdminConfig::default(),
        }
    }
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The drop-in folder watched for plugins.
    pub plugins: PathBuf,
    /// Where the host keeps its own state: compiled code cache, plugin builds.
    pub data: PathBuf,
    /// How long requests in flight may run after a shutdown signal.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            plugins: PathBuf::from("plugins"),
            data: PathBuf::from("data"),
            shutdown_grace_ms: 10_000,
        }
    }
}

/// One `[[listener]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// The socket address to bind, e.g. `0.0.0.0:80`.
    pub addr: SocketAddr,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin API address; keep it on loopback.
    pub addr: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 9901)),
        }
    }
}

/// Command-line values that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`, repeatable: replaces every `[[listener]]`.
    pub listen: Vec<String>,
    /// `--plugins`
    pub plugins: Option<PathBuf>,
    /// `--admin`
    pub admin: Option<String>,
    /// `--data`
    pub data: Option<PathBuf>,
}

impl Config {
    /// Reads the configuration: `file` if given (it must exist), else
    /// `./gatehouse.toml` when present, else the defaults. Relative paths in a
    /// file are taken from the file's folder.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let path = match file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
            file: path.clone(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let mut config = Config::parse(&text, &path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.server.plugins = base.join(&config.server.plugins);
        config.server.data = base.join(&config.server.data);
        Ok(config)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| Error::Config {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if config.listeners.is_empty() {
            return Err(Error::Config {
                file: file.to_path_buf(),
                message: "no [[listener]]: add one with `addr = \"127.0.0.1:8080\"`, \
                          or remove every [[listener]] to use the default"
                    .to_owned(),
            });
        }
        Ok(config)
    }

    /// Applies command-line flags over the file's values.
    pub fn apply(&mut self, overrides: &Overrides) -> Result<()> {
        if !overrides.listen.is_empty() {
            self.listeners = overrides
                .listen
                .iter()
                .map(|addr| {
                    Ok(ListenerConfig {
                        addr: parse_addr("--listen", addr)?,
                    })
                })
                .collect::<Result<_>>()?;
        }
        if let Some(admin) = &overrides.admin {
            self.admin.addr = parse_addr("--admin", admin)?;
        }
        if let Some(plugins) = &overrides.plugins {
            self.server.plugins = plugins.clone();
        }
        if let Some(data) = &overrides.data {
            self.server.data = data.clone();
        }
        Ok(())
    }
}

fn parse_addr(flag: &'static str, value: &str) -> Result<SocketAddr> {
    value.parse().map_err(|_| Error::Flag {
        flag,
        message: format!(
            "`{value}` is not a socket address; write it as IP:PORT, e.g. 127.0.0.1:8080"
        ),
    })
}

/// A plugin's sidecar `<name>.toml`: its routes, limits and grants.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sidecar {
    /// Explicit routes (`/api/x`, `/api/x/*`, `example.com/`); they replace
    /// the default `/<name>` mount.
    pub routes: Option<Vec<String>>,
    /// Whether explicit prefix routes strip their prefix (`/api/*` strips `/api`).
    pub strip_prefix: bool,
    /// Per-request limits.
    pub limits: Limits,
    /// What the plugin may touch; everything else is denied.
    pub grants: Grants,
}

impl Sidecar {
    /// Reads and validates a sidecar file.
    pub fn load(path: &Path) -> Result<Sidecar> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: path.to_path_buf(),
            message: format!("cannot read the sidecar: {e}"),
        })?;
        Sidecar::parse(&text, path)
    }

    /// Parses and validates sidecar text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Sidecar> {
        let sidecar: Sidecar = toml::from_str(text).map_err(|e| Error::Config {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let bad = |message: String| Error::Config {
            file: file.to_path_buf(),
            message,
        };
        if sidecar.limits.timeout_ms == 0 {
            return Err(bad("[limits] timeout_ms must be at least 1".to_owned()));
        }
        if !(1..=4096).contains(&sidecar.limits.memory_mb) {
            return Err(bad(
                "[limits] memory_mb must be between 1 and 4096".to_owned()
            ));
        }
        if let Some(routes) = &sidecar.routes {
            if routes.is_empty() {
                return Err(bad(
                    "routes is empty: list at least one route, or remove the key to mount at /<name>"
                        .to_owned(),
                ));
            }
            for route in routes {
                crate::router::Pattern::parse(route).map_err(bad)?;
            }
        }
        Ok(sidecar)
    }
}

/// `[limits]` of a sidecar.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall-clock deadline of one request, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory cap of one instance, in MiB.
    pub memory_mb: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 30_000,
            memory_mb: 128,
        }
    }
}

/// `[grants]` of a sidecar: everything is denied unless named here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Host environment variables the plugin may read.
    pub env: Vec<String>,
    /// Origins the plugin may call over HTTP.
    pub outbound: Vec<String>,
    /// Named database pools the plugin may use.
    pub databases: Vec<String>,
    /// Whether the plugin may use the key-value store.
    pub kv: bool,
}

#[cfg(test)]
mod tests;
