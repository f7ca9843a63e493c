//! The router: which action answers a request, by host and path.
//!
//! A route is a host (exact `example.com`, wildcard `*.example.com`, or
//! any) and a path, exact (`/about`) or a prefix (`/api/*`, which also
//! matches `/api` itself). The most specific route wins: an exact host over
//! a wildcard over any host, then the longer path, then exact over prefix.
//! Two routes with the same pattern are a clash, reported with both names.
//!
//! The actions: a plugin, an upstream pool ([`crate::proxy`]), a static
//! folder ([`crate::static_files`]) or a redirect; each route may carry
//! response filters ([`crate::filters`]: CORS, compression).

use crate::config::RouteConfig;
use crate::filters::Filters;
use crate::proxy::Pool;
use crate::static_files::Folder;
use std::sync::Arc;

/// Which hosts a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// Any host.
    Any,
    /// One host name, lowercase.
    Exact(String),
    /// Any subdomain of this suffix, stored with its dot (`.example.com`).
    Wildcard(String),
}

impl Host {
    /// Parses `example.com`, `*.example.com`, or `*` for any host.
    pub fn parse(text: &str) -> Result<Host, String> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() || text == "*" {
            return Ok(Host::Any);
        }
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text.as_str()),
        };
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(format!(
                "`{text}` is not a host name: write `example.com` or `*.example.com`"
            ));
        }
        Ok(if wildcard {
            Host::Wildcard(format!(".{name}"))
        } else {
            Host::Exact(name.to_owned())
        })
    }

    fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (Host::Any, _) => true,
            (Host::Exact(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Host::Wildcard(suffix), Some(got)) => {
                got.len() > suffix.len()
                    && got.is_char_boundary(got.len() - suffix.len())
                    && got[got.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
            (_, None) => false,
        }
    }

    /// Exact hosts first, then wildcards by length, then any host.
    fn rank(&self) -> (u8, usize) {
        match self {
            Host::Exact(name) => (2, name.len()),
            Host::Wildcard(suffix) => (1, suffix.len()),
            Host::Any => (0, 0),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Any => Ok(()),
            Host::Exact(name) => f.write_str(name),
            Host::Wildcard(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The hosts it answers.
    pub host: Host,
    /// The literal path: the whole path when exact, the prefix when not.
    pub path: String,
    /// Whether this is a prefix route (`/api/*`).
    pub prefix: bool,
}

impl Pattern {
    /// Parses `/path`, `/path/*`, `/*`, `host/path…` or `*.host/path…`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (host, path) = match text.find('/') {
            Some(0) => (Host::Any, text),
            Some(i) => (
                Host::parse(&text[..i]).map_err(|e| format!("route `{text}`: {e}"))?,
                &text[i..],
            ),
            None => {
                return Err(format!(
                    "route `{text}` has no path: write `/path`, `/path/*` or `host/path`"
                ));
            }
        };
        Pattern::new(host, path).map_err(|e| format!("route `{text}`: {e}"))
    }

    /// A pattern from a host and a path (`/x` or `/x/*`).
    pub fn new(host: Host, path: &str) -> Result<Pattern, String> {
        if !path.starts_with('/') {
            return Err(format!("the path `{path}` must start with `/`"));
        }
        let (path, prefix) = match path.strip_suffix("/*") {
            Some(stem) => (stem.to_owned(), true),
            None => (path.to_owned(), false),
        };
        if path.contains('*') {
            return Err("`*` may only end a path, as in `/api/*`".to_owned());
        }
        Ok(Pattern { host, path, prefix })
    }

    fn matches_path(&self, path: &str) -> bool {
        if !self.prefix {
            return path == self.path;
        }
        match path.strip_prefix(self.path.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// Orders routes so that the most specific comes first.
    fn specificity(&self) -> ((u8, usize), usize, bool) {
        (self.host.rank(), self.path.len(), !self.prefix)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.host, self.path)?;
        if self.prefix {
            f.write_str("/*")?;
        }
        Ok(())
    }
}

/// What answers a route.
#[derive(Clone)]
pub enum Action {
    /// The mounted plugin of this name.
    Plugin(String),
    /// An upstream pool.
    Proxy(Arc<Pool>),
    /// A folder of files.
    Static(Arc<Folder>),
    /// A redirect.
    Redirect(Arc<Redirect>),
}

/// `redirect = "https://example.com{uri}"` with its status.
#[derive(Debug)]
pub struct Redirect {
    /// The target, with `{uri}` and `{path}` placeholders.
    pub target: String,
    /// 301, 302, 303, 307 or 308.
    pub status: http::StatusCode,
}

impl Redirect {
    /// The Location for a request of `uri` whose route-relative path is `path`.
    pub fn location(&self, uri: &http::Uri, path: &str) -> String {
        let whole = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        self.target.replace("{uri}", whole).replace("{path}", path)
    }
}

/// Where a route was declared, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The n-th `[[route]]` of gatehouse.toml (from 1).
    Config(usize),
    /// A plugin's default mount or sidecar routes.
    Plugin(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Config(n) => write!(f, "[[route]] {n}"),
            Owner::Plugin(name) => write!(f, "plugin `{name}`"),
        }
    }
}

/// One entry of the table.
#[derive(Clone)]
pub struct Route {
    /// What it matches.
    pub pattern: Pattern,
    /// What answers.
    pub action: Action,
    /// Whether a prefix route removes its prefix before passing the path on.
    pub strip_prefix: bool,
    /// CORS and compression around the action, if any.
    pub filters: Option<Arc<Filters>>,
    /// Who declared it.
    pub owner: Owner,
}

impl Route {
    /// The route a plugin gets for `pattern`.
    pub fn plugin(pattern: Pattern, plugin: &str, strip_prefix: bool) -> Route {
        Route {
            pattern,
            action: Action::Plugin(plugin.to_owned()),
            strip_prefix,
            filters: None,
            owner: Owner::Plugin(plugin.to_owned()),
        }
    }

    /// The plugin that answers, if a plugin does.
    pub fn plugin_name(&self) -> Option<&str> {
        match &self.action {
            Action::Plugin(name) => Some(name),
            _ => None,
        }
    }
}

/// What the router decided for one request.
pub struct Matched<'a> {
    /// The route.
    pub route: &'a Route,
    /// The prefix removed from the path, if any (for `X-Forwarded-Prefix`).
    pub stripped: Option<&'a str>,
}

/// A route that lost its pattern to another: (the loser, who holds it).
pub type Clash = (Route, Owner);

/// The routes in order of specificity.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds a table; a route whose pattern is already taken is returned as a
    /// clash (with the owner that holds it) instead of shadowing silently.
    /// Earlier routes win.
    pub fn build(routes: impl IntoIterator<Item = Route>) -> (RouteTable, Vec<Clash>) {
        let mut table: Vec<Route> = Vec::new();
        let mut clashes = Vec::new();
        for route in routes {
            match table.iter().find(|r| r.pattern == route.pattern) {
                Some(holder) => {
                    let holder = holder.owner.clone();
                    clashes.push((route, holder));
                }
                None => table.push(route),
            }
        }
        table.sort_by_key(|r| std::cmp::Reverse(r.pattern.specificity()));
        (RouteTable { routes: table }, clashes)
    }

    /// Finds the route for a request to `host` (without port) and `path`.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<Matched<'_>> {
        let route = self
            .routes
            .iter()
            .find(|r| r.pattern.host.matches(host) && r.pattern.matches_path(path))?;
        let strip = route.strip_prefix && route.pattern.prefix && !route.pattern.path.is_empty();
        Some(Matched {
            route,
            stripped: strip.then_some(route.pattern.path.as_str()),
        })
    }

    /// The routes of one plugin, as written.
    pub fn routes_of(&self, plugin: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| r.plugin_name() == Some(plugin))
            .map(|r| r.pattern.to_string())
            .collect()
    }

    /// Every route, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

/// The path passed on once `stripped` is removed: never empty.
pub fn strip(path: &str, stripped: Option<&str>) -> String {
    match stripped.and_then(|p| path.strip_prefix(p)) {
        Some("") => "/".to_owned(),
        Some(rest) => rest.to_owned(),
        None => path.to_owned(),
    }
}

/// Builds the routes of `[[route]]` tables: every action made ready (pools
/// built, folders opened) but nothing started. A route that is invalid, or
/// that clashes with an earlier one, is an error naming it (and the other).
pub fn build(configs: &[RouteConfig]) -> Result<Vec<Route>, String> {
    let routes = configs
        .iter()
        .enumerate()
        .map(|(i, config)| from_config(i + 1, config))
        .collect::<Result<Vec<_>, _>>()?;
    let (_, clashes) = RouteTable::build(routes.iter().cloned());
    if let Some((route, holder)) = clashes.first() {
        return Err(format!(
            "{} ({}) clashes with {holder}, which has the same host and path; \
             change one of them or remove one",
            route.owner, route.pattern
        ));
    }
    Ok(routes)
}

/// Checks `[[route]]` tables without touching the file system.
pub fn check_routes(configs: &[RouteConfig]) -> Result<(), String> {
    for (i, config) in configs.iter().enumerate() {
        check_one(i + 1, config)?;
    }
    let patterns = configs
        .iter()
        .enumerate()
        .map(|(i, c)| Ok((i + 1, pattern_of(i + 1, c)?)))
        .collect::<Result<Vec<_>, String>>()?;
    for (i, (n, pattern)) in patterns.iter().enumerate() {
        if let Some((m, _)) = patterns[..i].iter().find(|(_, p)| p == pattern) {
            return Err(format!(
                "[[route]] {n} ({pattern}) clashes with [[route]] {m}, which has the same host and path; \
                 change one of them or remove one"
            ));
        }
    }
    Ok(())
}

fn pattern_of(n: usize, config: &RouteConfig) -> Result<Pattern, String> {
    let host = Host::parse(config.host.as_deref().unwrap_or(""))
        .map_err(|e| format!("[[route]] {n}: host {e}"))?;
    Pattern::new(host, config.path.as_deref().unwrap_or("/*"))
        .map_err(|e| format!("[[route]] {n}: path: {e}"))
}

fn check_one(n: usize, config: &RouteConfig) -> Result<(), String> {
    pattern_of(n, config)?;
    let actions = [
        config.plugin.is_some(),
        config.proxy.is_some(),
        config.static_dir.is_some(),
        config.redirect.is_some(),
    ];
    match actions.iter().filter(|a| **a).count() {
        1 => {}
        0 => {
            return Err(format!(
                "[[route]] {n} has no action: set one of plugin, proxy, static or redirect"
            ));
        }
        _ => {
            return Err(format!(
                "[[route]] {n} has more than one action: keep one of plugin, proxy, static or redirect"
            ));
        }
    }
    let proxy_only = config.connect_timeout_ms.is_some()
        || config.timeout_ms.is_some()
        || config.max_fails.is_some()
        || config.fail_timeout_ms.is_some()
        || config.health_check.is_some()
        || config.balance != crate::config::Balance::RoundRobin;
    if proxy_only && config.proxy.is_none() {
        return Err(format!(
            "[[route]] {n}: balance, timeouts, max_fails and health_check apply to proxy routes only"
        ));
    }
    if config.status.is_some() && config.redirect.is_none() {
        return Err(format!(
            "[[route]] {n}: status applies to redirect routes only"
        ));
    }
    if let Some(status) = config.status
        && ![301, 302, 303, 307, 308].contains(&status)
    {
        return Err(format!(
            "[[route]] {n}: redirect status {status} is not a redirect: use 301, 302, 303, 307 or 308"
        ));
    }
    if let Some(name) = &config.plugin
        && !crate::plugin::folder::valid_name(name)
    {
        return Err(format!(
            "[[route]] {n}: `{name}` is not a plugin name (names are [a-z0-9][a-z0-9_-]*)"
        ));
    }
    if let Some(upstreams) = &config.proxy {
        crate::proxy::check(upstreams, config).map_err(|e| format!("[[route]] {n}: {e}"))?;
    }
    if let Some(cors) = &config.cors {
        Filters::check_cors(cors).map_err(|e| format!("[[route]] {n}: cors: {e}"))?;
    }
    Ok(())
}

fn from_config(n: usize, config: &RouteConfig) -> Result<Route, String> {
    check_one(n, config)?;
    let pattern = pattern_of(n, config)?;
    let in_route = |e: String| format!("[[route]] {n} ({pattern}): {e}");
    let (action, strip_default) = if let Some(name) = &config.plugin {
        (Action::Plugin(name.clone()), false)
    } else if let Some(upstreams) = &config.proxy {
        let pool = Pool::new(&pattern.to_string(), upstreams, config).map_err(in_route)?;
        (Action::Proxy(Arc::new(pool)), false)
    } else if let Some(dir) = &config.static_dir {
        (
            Action::Static(Arc::new(Folder::open(dir).map_err(in_route)?)),
            true,
        )
    } else {
        let target = config.redirect.clone().unwrap_or_default();
        let status = http::StatusCode::from_u16(config.status.unwrap_or(301))
            .map_err(|e| in_route(e.to_string()))?;
        (
            Action::Redirect(Arc::new(Redirect { target, status })),
            true,
        )
    };
    let filters = Filters::new(config.cors.as_ref(), config.compress).map_err(in_route)?;
    Ok(Route {
        strip_prefix: config.strip_prefix.unwrap_or(strip_default),
        pattern,
        action,
        filters: filters.map(Arc::new),
        owner: Owner::Config(n),
    })
}

#[cfg(test)]
mod tests;
