//! `gatehouse.toml` and the plugin sidecars: their shape, defaults and validation.
//!
//! Every table rejects keys it does not know, so a typo is an error that names
//! the key and the file instead of a setting silently ignored.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
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
    /// Who may connect, and how often.
    pub firewall: FirewallConfig,
    /// Limits on every request and connection.
    pub limits: LimitsConfig,
    /// The routing table: plugins, upstream pools, static folders and
    /// redirects by host and path.
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Named database pools; `main` is an embedded SQLite file in the data
    /// folder unless given here.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// Secret values for plugins, read from env vars or files; plugins see
    /// them through `[grants] env`.
    pub secrets: BTreeMap<String, SecretSource>,
    /// Limits on WebSocket and event-stream connections.
    pub realtime: RealtimeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            listeners: vec![ListenerConfig::plain(SocketAddr::from((
                [127, 0, 0, 1],
                8080,
            )))],
            admin: AdminConfig::default(),
            firewall: FirewallConfig::default(),
            limits: LimitsConfig::default(),
            routes: Vec::new(),
            databases: BTreeMap::new(),
            secrets: BTreeMap::new(),
            realtime: RealtimeConfig::default(),
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// The socket address to bind, e.g. `0.0.0.0:80`.
    pub addr: SocketAddr,
    /// Serve TLS on this listener with these certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Answer every request (but ACME challenges) with a redirect to https.
    #[serde(default)]
    pub redirect_https: bool,
    /// The `Strict-Transport-Security` header for a TLS listener: `true`
    /// for `max-age=31536000`, or the header value itself.
    #[serde(default)]
    pub hsts: Option<Hsts>,
    /// Read a PROXY protocol header (v1 or v2) first when the peer is a
    /// trusted proxy, and take the client address from it.
    #[serde(default)]
    pub proxy_protocol: bool,
}

impl ListenerConfig {
    /// A plain HTTP listener on `addr`.
    pub fn plain(addr: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            addr,
            tls: None,
            redirect_https: false,
            hsts: None,
            proxy_protocol: false,
        }
    }

    /// The HSTS header value, when one is configured.
    pub fn hsts_value(&self) -> Option<String> {
        match &self.hsts {
            Some(Hsts::On(true)) => Some("max-age=31536000".to_owned()),
            Some(Hsts::Value(value)) => Some(value.clone()),
            _ => None,
        }
    }
}

/// `hsts = true` or `hsts = "max-age=…; includeSubDomains"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(
    untagged,
    expecting = "true, false, or a Strict-Transport-Security value such as \"max-age=31536000; includeSubDomains\""
)]
pub enum Hsts {
    /// On with a year's max-age, or off.
    On(bool),
    /// The header value as written.
    Value(String),
}

/// Why a written `Strict-Transport-Security` value would not work: browsers
/// ignore a header without `max-age` (RFC 6797, 6.1.1), and one that is not
/// a valid header value cannot be sent at all.
fn hsts_ok(value: &str) -> Result<(), &'static str> {
    if http::HeaderValue::from_str(value).is_err() {
        return Err("is not a valid header value");
    }
    let max_age = value.split(';').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().trim_matches('"'))
    });
    match max_age {
        Some(seconds) if !seconds.is_empty() && seconds.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(())
        }
        Some(_) => Err("has a max-age that is not a number of seconds"),
        None => Err("has no max-age, so browsers would ignore it"),
    }
}

/// `tls = { … }` of a listener.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the default certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key of the default certificate.
    pub key: Option<PathBuf>,
    /// More certificates, each chosen when SNI names a host it is valid for.
    pub sni: Vec<CertPair>,
    /// Obtain and renew certificates with ACME.
    pub acme: Option<AcmeConfig>,
}

/// A certificate chain and its key, PEM files.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `acme = { … }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The names the certificate covers.
    pub domains: Vec<String>,
    /// The account contact.
    #[serde(default)]
    pub email: Option<String>,
    /// The ACME directory URL (Let's Encrypt by default).
    #[serde(default = "AcmeConfig::default_directory")]
    pub directory: String,
    /// A PEM root certificate to trust for the directory, besides the system
    /// roots (for a private CA).
    #[serde(default)]
    pub directory_ca: Option<PathBuf>,
    /// Renew when the certificate has fewer days left than this.
    #[serde(default = "AcmeConfig::default_renew_days")]
    pub renew_before_days: u64,
}

impl AcmeConfig {
    fn default_directory() -> String {
        "https://acme-v02.api.letsencrypt.org/directory".to_owned()
    }
    fn default_renew_days() -> u64 {
        30
    }
}

/// `[firewall]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// When not empty, only these networks may connect.
    pub allow: Vec<Cidr>,
    /// These networks may not connect (deny wins over allow).
    pub deny: Vec<Cidr>,
    /// Peers whose X-Forwarded-For and PROXY headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Requests per client address.
    pub rate: Option<RateConfig>,
    /// Open connections in all.
    pub max_connections: Option<usize>,
    /// Open connections per client address.
    pub max_connections_per_ip: Option<usize>,
}

/// A network, written `10.0.0.0/8`, `2001:db8::/32` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = if text.contains('/') {
            text.parse::<ipnet::IpNet>().ok()
        } else {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        };
        parsed.map(Cidr).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a network: write an address or CIDR, like 203.0.113.0/24 or 2001:db8::/32"
            ))
        })
    }
}

/// `rate = { per_ip = "100/s", burst = 200 }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// `N/s`, `N/m` or `N/h`.
    pub per_ip: String,
    /// How many requests may come at once before the rate applies (default: N).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateConfig {
    /// The steady rate as (count, period).
    pub fn parse(&self) -> Result<(u32, std::time::Duration), String> {
        let bad = || {
            format!(
                "rate per_ip = \"{}\" is not a rate: write N/s, N/m or N/h with N at least 1",
                self.per_ip
            )
        };
        let (count, unit) = self.per_ip.split_once('/').ok_or_else(bad)?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(bad)?;
        let period = match unit.trim() {
            "s" => std::time::Duration::from_secs(1),
            "m" => std::time::Duration::from_secs(60),
            "h" => std::time::Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok((count, period))
    }
}

/// `[limits]` of the host.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// A client must send a whole request head within this time (hyper's
    /// timer also closes an HTTP/1 connection that waits longer for its next
    /// request); a TLS handshake too.
    pub header_timeout_ms: u64,
    /// A connection with no request running for this long is closed
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout_ms: u64,
    /// A connection whose client takes none of a response body for this
    /// long is closed (nginx's `send_timeout`).
    pub send_timeout_ms: u64,
    /// A request body whose client sends none of the rest for this long is
    /// cut off (nginx's `client_body_timeout`): 408 before a plugin runs,
    /// `connection-read-timeout` to a plugin reading it.
    pub body_timeout_ms: u64,
    /// The largest request head, in bytes (431 beyond).
    pub max_header_bytes: usize,
    /// The largest request body, in bytes (413 beyond), chunked or not.
    pub max_body_bytes: u64,
    /// HTTP/2 streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
    /// The largest HTTP/2 frame a client may send.
    pub h2_max_frame_size: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            send_timeout_ms: 60_000,
            body_timeout_ms: 60_000,
            max_header_bytes: 16_384,
            max_body_bytes: 1 << 20,
            h2_max_concurrent_streams: 128,
            h2_max_frame_size: 16_384,
        }
    }
}

/// `[realtime]`: limits on the WebSocket and event-stream connections the
/// host keeps for plugins.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// The largest message, in bytes, either way (a bigger one from a client
    /// closes its WebSocket with 1009).
    pub max_message_bytes: usize,
    /// Messages a client may send per second, on average; beyond `burst`
    /// its WebSocket is closed with 1008.
    pub messages_per_second: u32,
    /// Messages a client may send at once.
    pub burst: u32,
    /// An idle connection is pinged this often (an event stream gets a
    /// comment); a WebSocket that answers nothing for two intervals is closed.
    pub ping_interval_ms: u64,
    /// Messages queued for one connection; a client that falls this far
    /// behind is disconnected.
    pub queue: usize,
    /// Channels one connection may be subscribed to at once.
    pub channels_per_connection: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            max_message_bytes: 64 << 10,
            messages_per_second: 20,
            burst: 40,
            ping_interval_ms: 30_000,
            queue: 256,
            channels_per_connection: 100,
        }
    }
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

/// Where the configuration comes from, so that it can be read again on
/// reload: the file and the command-line flags over it.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    /// `--config`, if given.
    pub file: Option<PathBuf>,
    /// The flags.
    pub overrides: Overrides,
}

impl Loader {
    /// Reads the file (or the defaults) and applies the flags.
    pub fn load(&self) -> Result<Config> {
        let mut config = Config::load(self.file.as_deref())?;
        config.apply(&self.overrides)?;
        Ok(config)
    }

    /// The same loader, held to the file it reads now: a server started
    /// from `./gatehouse.toml` reads that file again on reload, and a
    /// reload that finds it gone fails (the config serving stays) rather
    /// than falling back to the defaults.
    pub fn pinned(self) -> Loader {
        Loader {
            file: self.file(),
            ..self
        }
    }

    /// The file read, if any: the one given, or `./gatehouse.toml` if present.
    pub fn file(&self) -> Option<PathBuf> {
        self.file
            .clone()
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()))
    }
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
        for tls in config.listeners.iter_mut().filter_map(|l| l.tls.as_mut()) {
            for path in [&mut tls.cert, &mut tls.key].into_iter().flatten() {
                *path = base.join(&*path);
            }
            for pair in &mut tls.sni {
                pair.cert = base.join(&pair.cert);
                pair.key = base.join(&pair.key);
            }
            if let Some(ca) = tls.acme.as_mut().and_then(|a| a.directory_ca.as_mut()) {
                *ca = base.join(&*ca);
            }
        }
        for folder in config
            .routes
            .iter_mut()
            .filter_map(|r| r.static_dir.as_mut())
        {
            *folder = base.join(&*folder);
        }
        for database in config.databases.values_mut() {
            database.url = database.url_from(base);
        }
        for secret in config.secrets.values_mut() {
            if let SecretSource::File { file } = secret {
                *file = base.join(&*file);
            }
        }
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
        config.validate().map_err(|message| Error::Config {
            file: file.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        for (i, listener) in self.listeners.iter().enumerate() {
            if listener.addr.port() != 0
                && self.listeners[..i].iter().any(|l| l.addr == listener.addr)
            {
                return Err(format!(
                    "two [[listener]] tables use {}: give each its own address",
                    listener.addr
                ));
            }
        }
        for listener in &self.listeners {
            let addr = listener.addr;
            if let Some(tls) = &listener.tls {
                if listener.redirect_https {
                    return Err(format!(
                        "[[listener]] {addr}: redirect_https belongs on a plain listener, not a TLS one"
                    ));
                }
                if tls.cert.is_some() != tls.key.is_some() {
                    return Err(format!("[[listener]] {addr}: tls needs both cert and key"));
                }
                if tls.cert.is_none() && tls.sni.is_empty() && tls.acme.is_none() {
                    return Err(format!(
                        "[[listener]] {addr}: tls has no certificate: set cert and key, sni, or acme"
                    ));
                }
                if let Some(acme) = &tls.acme
                    && acme.domains.is_empty()
                {
                    return Err(format!(
                        "[[listener]] {addr}: acme needs at least one domain"
                    ));
                }
            } else if listener.hsts.is_some() {
                return Err(format!(
                    "[[listener]] {addr}: hsts is only sent on a TLS listener"
                ));
            }
            if let Some(Hsts::Value(value)) = &listener.hsts {
                hsts_ok(value).map_err(|why| {
                    format!(
                        "[[listener]] {addr}: hsts = {value:?} {why}: write it as \"max-age=SECONDS\", \
                         optionally followed by \"; includeSubDomains\" and \"; preload\", or use hsts = true"
                    )
                })?;
            }
        }
        if let Some(rate) = &self.firewall.rate {
            rate.parse()?;
        }
        if self.limits.max_header_bytes < 8192 {
            return Err("[limits] max_header_bytes must be at least 8192".to_owned());
        }
        if !(16_384..=16_777_215).contains(&self.limits.h2_max_frame_size) {
            return Err("[limits] h2_max_frame_size must be between 16384 and 16777215".to_owned());
        }
        for (key, value) in [
            ("header_timeout_ms", self.limits.header_timeout_ms),
            ("idle_timeout_ms", self.limits.idle_timeout_ms),
        ] {
            if value < 100 {
                return Err(format!(
                    "[limits] {key} = {value} would close connections before a client can send a request; use at least 100 (the default is {})",
                    if key == "header_timeout_ms" {
                        10_000
                    } else {
                        75_000
                    }
                ));
            }
        }
        if self.limits.h2_max_concurrent_streams == 0 {
            return Err(
                "[limits] h2_max_concurrent_streams = 0 would let no HTTP/2 request through; use at least 1 (the default is 128)"
                    .to_owned(),
            );
        }
        if self.limits.send_timeout_ms < 1000 {
            return Err(
                "[limits] send_timeout_ms must be at least 1000: a client on a slow link may take a second to make room"
                    .to_owned(),
            );
        }
        if self.limits.body_timeout_ms < 1000 {
            return Err(format!(
                "[limits] body_timeout_ms = {} would cut off clients on a slow link between two packets; use at least 1000 (the default is 60000)",
                self.limits.body_timeout_ms
            ));
        }
        let realtime = &self.realtime;
        if realtime.max_message_bytes == 0
            || realtime.messages_per_second == 0
            || realtime.burst == 0
            || realtime.queue == 0
            || realtime.channels_per_connection == 0
        {
            return Err("[realtime] max_message_bytes, messages_per_second, burst, queue and channels_per_connection must be above 0".to_owned());
        }
        if realtime.ping_interval_ms < 100 {
            return Err("[realtime] ping_interval_ms must be at least 100".to_owned());
        }
        crate::router::check_routes(&self.routes)?;
        for (name, database) in &self.databases {
            database.validate(name)?;
        }
        for name in self.secrets.keys() {
            if !valid_env_name(name) {
                return Err(format!(
                    "[secrets] {name}: a secret's name is what the plugin reads as an env var; \
                     use letters, digits and _ (not starting with a digit)"
                ));
            }
        }
        Ok(())
    }

    /// Applies command-line flags over the file's values.
    pub fn apply(&mut self, overrides: &Overrides) -> Result<()> {
        if !overrides.listen.is_empty() {
            self.listeners = overrides
                .listen
                .iter()
                .map(|addr| Ok(ListenerConfig::plain(parse_addr("--listen", addr)?)))
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

/// `[databases.NAME]`: one pool.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (relative to the config file's folder,
    /// also when written `sqlite:path/to/file.db`) or
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Connections kept open at most.
    #[serde(default = "DatabaseConfig::default_max_connections")]
    pub max_connections: u32,
    /// How long a statement waits for a free connection (or a new one)
    /// before it fails with `unavailable`.
    #[serde(default = "DatabaseConfig::default_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// How long one statement may run.
    #[serde(default = "DatabaseConfig::default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
}

impl DatabaseConfig {
    fn default_max_connections() -> u32 {
        10
    }

    fn default_acquire_timeout_ms() -> u64 {
        2_000
    }

    fn default_statement_timeout_ms() -> u64 {
        10_000
    }

    /// The embedded SQLite database `main` in the data folder.
    pub fn embedded(data_dir: &Path, file: &str) -> DatabaseConfig {
        DatabaseConfig {
            url: format!("sqlite://{}", data_dir.join(file).display()),
            max_connections: Self::default_max_connections(),
            acquire_timeout_ms: Self::default_acquire_timeout_ms(),
            statement_timeout_ms: Self::default_statement_timeout_ms(),
        }
    }

    /// Whether this is a SQLite database.
    pub fn is_sqlite(&self) -> bool {
        self.url.starts_with("sqlite:")
    }

    /// The URL with a relative SQLite path taken from `base`, written
    /// `sqlite://relative.db` or, as sqlx also reads it, `sqlite:relative.db`.
    fn url_from(&self, base: &Path) -> String {
        let path = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"));
        match path {
            // An absolute path, `:memory:`, or a `file:` URI (SQLite reads
            // it, and the guard on the host's own file with it) stays.
            Some(rest) if !rest.starts_with(['/', ':']) && !rest.starts_with("file:") => {
                format!("sqlite://{}", base.join(rest).display())
            }
            _ => self.url.clone(),
        }
    }

    fn validate(&self, name: &str) -> Result<(), String> {
        let scheme = self.url.split(':').next().unwrap_or_default();
        if !matches!(scheme, "sqlite" | "postgres" | "postgresql") {
            return Err(format!(
                "[databases.{name}] url `{}`: use sqlite://FILE or postgres://USER@HOST/DB",
                crate::capability::sql::without_password(&self.url)
            ));
        }
        if self.max_connections == 0 {
            return Err(format!(
                "[databases.{name}] max_connections must be at least 1"
            ));
        }
        if self.acquire_timeout_ms == 0 || self.statement_timeout_ms == 0 {
            return Err(format!(
                "[databases.{name}] acquire_timeout_ms and statement_timeout_ms must be at least 1"
            ));
        }
        Ok(())
    }
}

/// Where a `[secrets]` value comes from; the value itself is never written
/// in the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, untagged)]
pub enum SecretSource {
    /// `NAME = { env = "VAR" }`: the host's environment variable `VAR`.
    Env { env: String },
    /// `NAME = { file = "path" }`: the contents of a file (trailing newline
    /// removed), e.g. a mounted Kubernetes or systemd credential.
    File { file: PathBuf },
}

/// Whether `name` can be an environment variable's name.
pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One `[[route]]`: a host and path, and what answers there.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// `example.com`, `*.example.com` (any subdomain), or any host when absent.
    pub host: Option<String>,
    /// `/exact` or `/prefix/*` (which also matches `/prefix`); `/*` when absent.
    pub path: Option<String>,
    /// Action: the mounted plugin of this name answers.
    pub plugin: Option<String>,
    /// Action: a pool of `http://host:port[/base]` upstreams answers.
    pub proxy: Option<Vec<String>>,
    /// Action: files from this folder (relative to the config file).
    #[serde(rename = "static")]
    pub static_dir: Option<PathBuf>,
    /// Action: a redirect to this target; `{uri}` is replaced by the request's
    /// path and query, `{path}` by the path after the route's prefix.
    pub redirect: Option<String>,
    /// The redirect's status: 301 (default), 302, 303, 307 or 308.
    pub status: Option<u16>,
    /// Remove the route's prefix before passing the path on (default: true
    /// for static folders, false for plugins and upstreams).
    pub strip_prefix: Option<bool>,
    /// How the pool picks an upstream.
    pub balance: Balance,
    /// How long connecting to an upstream may take (502 beyond).
    pub connect_timeout_ms: Option<u64>,
    /// How long an upstream may take to send its response head (504 beyond).
    pub timeout_ms: Option<u64>,
    /// Consecutive failures that eject an upstream from the pool.
    pub max_fails: Option<u32>,
    /// How long an ejected upstream stays out before it is tried again.
    pub fail_timeout_ms: Option<u64>,
    /// Active health checks of every upstream.
    pub health_check: Option<HealthCheck>,
    /// Cross-origin rules; preflight requests are answered by the host.
    pub cors: Option<CorsConfig>,
    /// Compress responses (gzip, br, zstd) when the client accepts it.
    pub compress: bool,
}

/// `balance = "round_robin" | "least_connections"`
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each upstream in turn.
    #[default]
    RoundRobin,
    /// The upstream with the fewest requests in flight.
    LeastConnections,
}

/// `health_check = { path = "/health", interval_ms = 2000, timeout_ms = 1000 }`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The path requested with GET; any 2xx or 3xx is healthy.
    pub path: String,
    /// Time between checks.
    #[serde(default = "HealthCheck::default_interval")]
    pub interval_ms: u64,
    /// How long one check may take.
    #[serde(default = "HealthCheck::default_timeout")]
    pub timeout_ms: u64,
}

impl HealthCheck {
    fn default_interval() -> u64 {
        2_000
    }
    fn default_timeout() -> u64 {
        1_000
    }
}

/// `cors = { origins = […], methods = […], headers = […] }`
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Allowed origins, like `https://app.example.com`, or `["*"]` for any.
    pub origins: Vec<String>,
    /// Allowed methods (default: GET, HEAD, POST).
    pub methods: Vec<String>,
    /// Allowed request headers.
    pub headers: Vec<String>,
    /// Response headers the browser may read.
    pub expose_headers: Vec<String>,
    /// Whether cookies and credentials may be sent.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer, in seconds.
    pub max_age_s: Option<u64>,
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
    /// Firewall rules for this plugin's routes, on top of `[firewall]`.
    pub firewall: Option<RouteFirewall>,
    /// The plugin's own schema migrations.
    pub migrations: Option<MigrationsConfig>,
}

/// `[migrations]` of a sidecar. Without it, a source folder's `migrations/`
/// folder is applied to the first granted database.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationsConfig {
    /// The folder of `NNNN_name.sql` files, relative to the plugins folder.
    pub path: Option<PathBuf>,
    /// The database they apply to; it must be granted. The first of
    /// `[grants] databases` when absent.
    pub database: Option<String>,
}

/// `[firewall]` of a sidecar: who may reach these routes, and how often.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RouteFirewall {
    /// When not empty, only clients in these networks (403 otherwise).
    pub allow: Vec<Cidr>,
    /// Clients in these networks get 403.
    pub deny: Vec<Cidr>,
    /// Requests per client address to these routes (429 beyond).
    pub rate: Option<RateConfig>,
}

impl RouteFirewall {
    /// The same rules as a `[firewall]` table with no connection caps.
    pub fn as_firewall(&self) -> FirewallConfig {
        FirewallConfig {
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            rate: self.rate.clone(),
            ..FirewallConfig::default()
        }
    }
}

impl Sidecar {
    /// The database its migrations apply to: `[migrations] database`, else
    /// the first granted one.
    pub fn migrations_database(&self) -> Option<&str> {
        self.migrations
            .as_ref()
            .and_then(|m| m.database.as_deref())
            .or_else(|| self.grants.databases.first().map(String::as_str))
    }

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
        if !(1..=MAX_KV_MB).contains(&sidecar.limits.kv_mb) {
            return Err(bad(format!(
                "[limits] kv_mb must be between 1 and {MAX_KV_MB}"
            )));
        }
        if !(1..=MAX_OUTBOUND_CONCURRENCY).contains(&sidecar.limits.outbound_concurrency) {
            return Err(bad(format!(
                "[limits] outbound_concurrency must be between 1 and {MAX_OUTBOUND_CONCURRENCY}"
            )));
        }
        if let Some(rate) = sidecar.firewall.as_ref().and_then(|f| f.rate.as_ref()) {
            rate.parse().map_err(bad)?;
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
        let grants = &sidecar.grants;
        if let Some(name) = grants.env.iter().find(|n| !valid_env_name(n)) {
            return Err(bad(format!(
                "[grants] env: `{name}` is not an env var name (letters, digits and _)"
            )));
        }
        for origin in &grants.outbound {
            crate::capability::outbound::Allowed::parse(origin)
                .map_err(|e| bad(format!("[grants] outbound: {e}")))?;
        }
        if let Some(database) = sidecar
            .migrations
            .as_ref()
            .and_then(|m| m.database.as_ref())
            && !grants.databases.contains(database)
        {
            return Err(bad(format!(
                "[migrations] database `{database}` is not in [grants] databases: grant it, or name a granted one"
            )));
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
    /// What the plugin's kv namespace may hold (keys and values), in MiB.
    pub kv_mb: u64,
    /// Outbound HTTP requests in flight at once from all of the plugin's
    /// instances (until each response body ends); more wait for a slot.
    pub outbound_concurrency: u32,
}

/// The largest `[limits] kv_mb`: 1 TiB.
const MAX_KV_MB: u64 = 1 << 20;

/// The largest `[limits] outbound_concurrency`.
const MAX_OUTBOUND_CONCURRENCY: u32 = 10_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 30_000,
            memory_mb: 128,
            kv_mb: 64,
            outbound_concurrency: 64,
        }
    }
}

/// `[grants]` of a sidecar: everything is denied unless named here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// Host environment variables the plugin may read.
    pub env: Vec<String>,
    /// Origins the plugin may call over HTTP: `https://api.example.com`,
    /// `http://127.0.0.1:8080`, `https://*.example.com`.
    pub outbound: Vec<String>,
    /// Named database pools the plugin may use.
    pub databases: Vec<String>,
    /// Whether the plugin may use the key-value store.
    pub kv: bool,
    /// Whether the plugin may use realtime connections and channels.
    pub realtime: bool,
}

#[cfg(test)]
mod tests;
