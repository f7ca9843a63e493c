//! The router: which plugin answers a request, by host and path.
//!
//! A route is `[host]path`, where the path is exact (`/about`) or a prefix
//! (`/api/*`, which also matches `/api` itself). The most specific route
//! wins: a named host over any host, then the longer path, then exact over
//! prefix. Two routes with the same pattern are a clash, reported by name.

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The host it is bound to (lowercase, no port), or any host.
    pub host: Option<String>,
    /// The literal path: the whole path when exact, the prefix when not.
    pub path: String,
    /// Whether this is a prefix route (`/api/*`).
    pub prefix: bool,
}

impl Pattern {
    /// Parses `/path`, `/path/*`, `/*` or `host/path…`.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let (host, path) = match text.find('/') {
            Some(0) => (None, text),
            Some(i) => (Some(text[..i].to_ascii_lowercase()), &text[i..]),
            None => {
                return Err(format!(
                    "route `{text}` has no path: write `/path`, `/path/*` or `host/path`"
                ));
            }
        };
        if let Some(host) = &host
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(format!("route `{text}`: `{host}` is not a host name"));
        }
        let (path, prefix) = match path.strip_suffix("/*") {
            Some(stem) => (stem.to_owned(), true),
            None => (path.to_owned(), false),
        };
        if path.contains('*') {
            return Err(format!(
                "route `{text}`: `*` may only end a route, as in `/api/*`"
            ));
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
    fn specificity(&self) -> (bool, usize, bool) {
        (self.host.is_some(), self.path.len(), !self.prefix)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(host) = &self.host {
            f.write_str(host)?;
        }
        f.write_str(&self.path)?;
        if self.prefix {
            f.write_str("/*")?;
        }
        Ok(())
    }
}

/// One entry of the table: a pattern and the plugin behind it.
#[derive(Debug, Clone)]
pub struct Route {
    /// What it matches.
    pub pattern: Pattern,
    /// The plugin that answers.
    pub plugin: String,
    /// Whether a prefix route removes its prefix before the plugin sees the path.
    pub strip_prefix: bool,
}

/// What the router decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    /// The plugin that answers.
    pub plugin: &'a str,
    /// The prefix removed from the path, if any (for `X-Forwarded-Prefix`).
    pub stripped: Option<&'a str>,
}

/// The routes in order of specificity.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Builds a table; a route whose pattern is already taken is returned as a
    /// clash (with the plugin that holds it) instead of shadowing silently.
    pub fn build(routes: impl IntoIterator<Item = Route>) -> (RouteTable, Vec<(Route, String)>) {
        let mut table: Vec<Route> = Vec::new();
        let mut clashes = Vec::new();
        for route in routes {
            match table.iter().find(|r| r.pattern == route.pattern) {
                Some(holder) => {
                    let holder = holder.plugin.clone();
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
        let route = self.routes.iter().find(|r| {
            let host_ok = match (&r.pattern.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && r.pattern.matches_path(path)
        })?;
        let strip = route.strip_prefix && route.pattern.prefix && !route.pattern.path.is_empty();
        Some(Matched {
            plugin: &route.plugin,
            stripped: strip.then_some(route.pattern.path.as_str()),
        })
    }

    /// The routes of one plugin, as written.
    pub fn routes_of(&self, plugin: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| r.plugin == plugin)
            .map(|r| r.pattern.to_string())
            .collect()
    }
}

/// The path a plugin sees once `stripped` is removed: never empty.
pub fn strip(path: &str, stripped: Option<&str>) -> String {
    match stripped.and_then(|p| path.strip_prefix(p)) {
        Some("") => "/".to_owned(),
        Some(rest) => rest.to_owned(),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests;
