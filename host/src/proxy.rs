//! The reverse proxy: a pool of upstream servers behind a route.
//!
//! A request's life here, in phases:
//! - `pick`: round robin or least connections over the upstreams that are
//!   up (not ejected by passive health, not failed by active checks);
//! - `upstream_request`: hop-by-hop headers removed, X-Forwarded-For,
//!   -Proto, -Host and X-Real-IP set, the body streamed as it arrives;
//! - `send`: on hyper-util's pooled client (keep-alive connections to each
//!   upstream), under the connect timeout (502) and the response timeout
//!   (504); a request that is idempotent, has no body and never reached an
//!   upstream is retried on the next one;
//! - `downstream_response`: hop-by-hop headers removed, the body streamed
//!   back; a `101 Switching Protocols` joins the two upgraded connections
//!   (WebSockets).

use crate::config::{Balance, HealthCheck, RouteConfig};
use crate::listener::ConnectionHold;
use crate::server::{Body, BoxError, text};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The body sent upstream.
pub type UpstreamBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_MAX_FAILS: u32 = 3;
const DEFAULT_FAIL_TIMEOUT_MS: u64 = 10_000;

/// Checks a `proxy = [...]` list and its options without building anything.
pub fn check(upstreams: &[String], config: &RouteConfig) -> Result<(), String> {
    if upstreams.is_empty() {
        return Err(
            "proxy is empty: list at least one upstream, like \"http://127.0.0.1:5000\"".into(),
        );
    }
    for url in upstreams {
        parse_upstream(url)?;
    }
    if config.max_fails == Some(0) {
        return Err("max_fails must be at least 1".into());
    }
    if config.connect_timeout_ms == Some(0) || config.timeout_ms == Some(0) {
        return Err("timeouts must be at least 1 ms".into());
    }
    if let Some(check) = &config.health_check {
        if !check.path.starts_with('/') {
            return Err(format!(
                "health_check path `{}` must start with `/`",
                check.path
            ));
        }
        if check.interval_ms == 0 || check.timeout_ms == 0 {
            return Err("health_check interval_ms and timeout_ms must be at least 1".into());
        }
    }
    Ok(())
}

/// An upstream's address and base path, from `http://host:port[/base]`.
fn parse_upstream(url: &str) -> Result<(http::uri::Authority, String), String> {
    let bad = |why: &str| format!("upstream `{url}` {why}: write it like http://127.0.0.1:5000");
    let uri: Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "is not an http:// URL (TLS to upstreams is not supported)",
        ));
    }
    let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
    if uri.query().is_some() {
        return Err(bad("has a query"));
    }
    let base = uri.path().trim_end_matches('/').to_owned();
    Ok((authority, base))
}

/// One upstream server and what the pool knows of its health.
pub struct Upstream {
    /// `host:port`.
    authority: http::uri::Authority,
    /// A path put in front of every request path (`http://x/base`).
    base: String,
    /// Requests in flight, for least connections.
    active: AtomicUsize,
    /// Consecutive failures (connect errors and timeouts).
    fails: AtomicU32,
    /// Until when it is ejected after `max_fails` failures.
    ejected_until: Mutex<Option<Instant>>,
    /// What the last active health check said.
    healthy: AtomicBool,
}

impl Upstream {
    fn is_up(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Relaxed)
            && self
                .ejected_until
                .lock()
                .unwrap()
                .is_none_or(|until| until <= now)
    }
}

/// A route's pool of upstreams and the client that reaches them.
pub struct Pool {
    /// The route, for log lines.
    route: String,
    upstreams: Vec<Upstream>,
    balance: Balance,
    /// Keep-alive connections to every upstream.
    client: Client<HttpConnector, UpstreamBody>,
    connect_timeout: Duration,
    timeout: Duration,
    max_fails: u32,
    fail_timeout: Duration,
    health_check: Option<HealthCheck>,
    /// The round-robin position.
    next: AtomicUsize,
}

/// The upstream state the admin API shows.
#[derive(Debug, serde::Serialize)]
pub struct UpstreamReport {
    pub route: String,
    pub upstream: String,
    /// `up`, `ejected` (passive health) or `unhealthy` (active checks).
    pub state: &'static str,
    pub active: usize,
    pub fails: u32,
}

impl Pool {
    /// Builds a pool (no connection is made until a request comes).
    pub fn new(route: &str, urls: &[String], config: &RouteConfig) -> Result<Pool, String> {
        check(urls, config)?;
        let upstreams = urls
            .iter()
            .map(|url| {
                let (authority, base) = parse_upstream(url)?;
                Ok(Upstream {
                    authority,
                    base,
                    active: AtomicUsize::new(0),
                    fails: AtomicU32::new(0),
                    ejected_until: Mutex::new(None),
                    healthy: AtomicBool::new(true),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let connect_timeout = Duration::from_millis(
            config
                .connect_timeout_ms
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
        );
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .build(connector);
        Ok(Pool {
            route: route.to_owned(),
            upstreams,
            balance: config.balance,
            client,
            connect_timeout,
            timeout: Duration::from_millis(config.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
            max_fails: config.max_fails.unwrap_or(DEFAULT_MAX_FAILS),
            fail_timeout: Duration::from_millis(
                config.fail_timeout_ms.unwrap_or(DEFAULT_FAIL_TIMEOUT_MS),
            ),
            health_check: config.health_check.clone(),
            next: AtomicUsize::new(0),
        })
    }

    /// Starts the active health checks, if configured; they stop when the
    /// pool is dropped (a config reload that removes or replaces it).
    pub fn start(self: &Arc<Self>) {
        let Some(check) = self.health_check.clone() else {
            return;
        };
        let pool = Arc::downgrade(self);
        tokio::spawn(health_checks(pool, check));
    }

    /// The state of each upstream, for the admin API.
    pub fn report(&self) -> Vec<UpstreamReport> {
        let now = Instant::now();
        self.upstreams
            .iter()
            .map(|u| UpstreamReport {
                route: self.route.clone(),
                upstream: u.authority.to_string(),
                state: if !u.healthy.load(Ordering::Relaxed) {
                    "unhealthy"
                } else if u.is_up(now) {
                    "up"
                } else {
                    "ejected"
                },
                active: u.active.load(Ordering::Relaxed),
                fails: u.fails.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Picks an upstream not in `tried`: among those up when there are any,
    /// else among the rest (an all-down pool still gets its chance).
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let untried = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !tried.contains(i));
        let up: Vec<usize> = untried
            .clone()
            .filter(|&i| self.upstreams[i].is_up(now))
            .collect();
        let candidates: Vec<usize> = if up.is_empty() { untried.collect() } else { up };
        match self.balance {
            Balance::RoundRobin => candidates.first().copied(),
            Balance::LeastConnections => candidates
                .iter()
                .copied()
                .min_by_key(|&i| self.upstreams[i].active.load(Ordering::Relaxed)),
        }
    }

    fn failed(&self, upstream: &Upstream, why: &str) {
        let fails = upstream.fails.fetch_add(1, Ordering::Relaxed) + 1;
        if fails >= self.max_fails {
            let mut until = upstream.ejected_until.lock().unwrap();
            let was_up = until.is_none_or(|t| t <= Instant::now());
            *until = Some(Instant::now() + self.fail_timeout);
            if was_up {
                tracing::warn!(
                    route = %self.route,
                    upstream = %upstream.authority,
                    "upstream ejected for {} ms after {fails} failures in a row; last: {why}",
                    self.fail_timeout.as_millis()
                );
            }
        }
    }

    fn succeeded(&self, upstream: &Upstream) {
        if upstream.fails.swap(0, Ordering::Relaxed) >= self.max_fails {
            *upstream.ejected_until.lock().unwrap() = None;
            tracing::info!(route = %self.route, upstream = %upstream.authority, "upstream is back");
        }
    }
}

/// Who sent the request, for the forwarding headers.
pub struct Forwarding {
    /// The client, as the firewall resolved it.
    pub client: IpAddr,
    /// The socket peer.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy (its X-Forwarded-* are kept).
    pub peer_trusted: bool,
    /// Whether the client connection is TLS.
    pub tls: bool,
}

/// Why a request did not get an upstream's answer.
enum Failure {
    /// No connection could be made: the request never left.
    Connect(String),
    /// The upstream took longer than the response timeout.
    Timeout,
    /// The client's body went over the body limit.
    BodyTooLarge,
    /// The exchange broke after the request was sent.
    Broken(String),
}

/// Sends `request` (path already relative to the route) to the pool and
/// streams back the answer.
pub async fn forward(
    pool: &Arc<Pool>,
    mut request: Request<UpstreamBody>,
    from: &Forwarding,
) -> Response<Body> {
    let upgrade = wants_upgrade(&request).then(|| ClientUpgrade {
        on: hyper::upgrade::on(&mut request),
        hold: request.extensions().get::<ConnectionHold>().cloned(),
    });
    let (mut parts, body) = request.into_parts();
    let headers = upstream_headers(&mut parts, from, upgrade.is_some());
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    // Only a request that can be sent again as it was may be retried.
    let retryable = idempotent(&parts.method) && http_body::Body::is_end_stream(&body);
    let mut body = Some(body);
    let mut headers = Some(headers);
    let mut tried = Vec::new();
    loop {
        let Some(index) = pool.pick(&tried) else {
            return text(StatusCode::BAD_GATEWAY, "no upstream is available");
        };
        tried.push(index);
        let upstream = &pool.upstreams[index];
        let body = match body.take() {
            Some(body) => body,
            None => Empty::new().map_err(|never| match never {}).boxed_unsync(),
        };
        let uri = format!(
            "http://{}{}{}",
            upstream.authority, upstream.base, path_and_query
        );
        let mut outgoing = Request::new(body);
        *outgoing.method_mut() = parts.method.clone();
        *outgoing.version_mut() = Version::HTTP_11;
        // Keep a copy only for a request that may be sent again.
        *outgoing.headers_mut() = match (retryable, &headers) {
            (true, Some(headers)) => headers.clone(),
            _ => headers.take().unwrap_or_default(),
        };
        match uri.parse() {
            Ok(uri) => *outgoing.uri_mut() = uri,
            Err(_) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "the request path cannot be forwarded",
                );
            }
        }

        let in_flight = ActiveToken::new(pool, index);
        let failure = match send(pool, outgoing).await {
            Ok(response) => {
                pool.succeeded(upstream);
                return downstream_response(pool, response, upgrade, in_flight);
            }
            Err(failure) => failure,
        };
        drop(in_flight);
        let (status, message) = match &failure {
            Failure::Connect(why) => {
                pool.failed(upstream, why);
                if retryable && tried.len() < pool.upstreams.len() {
                    continue;
                }
                (
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "bad gateway: upstream {} cannot be reached ({why}) within {} ms",
                        upstream.authority,
                        pool.connect_timeout.as_millis()
                    ),
                )
            }
            Failure::Timeout => {
                pool.failed(upstream, "response timeout");
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "gateway timeout: upstream {} did not answer within {} ms",
                        upstream.authority,
                        pool.timeout.as_millis()
                    ),
                )
            }
            Failure::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than the limit".to_owned(),
            ),
            Failure::Broken(why) => (
                StatusCode::BAD_GATEWAY,
                format!("bad gateway: upstream {} failed: {why}", upstream.authority),
            ),
        };
        tracing::warn!(route = %pool.route, upstream = %upstream.authority, "{message}");
        return text(status, message);
    }
}

async fn send(
    pool: &Pool,
    request: Request<UpstreamBody>,
) -> Result<Response<hyper::body::Incoming>, Failure> {
    match tokio::time::timeout(pool.timeout, pool.client.request(request)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) if e.is_connect() => Err(Failure::Connect(root_cause(&e))),
        Ok(Err(e)) if caused_by_body_limit(&e) => Err(Failure::BodyTooLarge),
        Ok(Err(e)) => Err(Failure::Broken(root_cause(&e))),
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn caused_by_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// `GET`, `HEAD`, `OPTIONS`, `PUT`, `DELETE` and `TRACE` may be sent twice.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The client's side of an upgrade: its connection once switched, and what
/// keeps that connection counted meanwhile.
struct ClientUpgrade {
    on: hyper::upgrade::OnUpgrade,
    hold: Option<ConnectionHold>,
}

/// An HTTP/1.1 `Connection: upgrade` request with an `Upgrade` header.
fn wants_upgrade<B>(request: &Request<B>) -> bool {
    request.version() == Version::HTTP_11
        && request.headers().contains_key(header::UPGRADE)
        && connection_tokens(request.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The headers of one hop only (RFC 9110 7.6.1), and those the
/// `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The headers sent upstream.
fn upstream_headers(
    parts: &mut http::request::Parts,
    from: &Forwarding,
    upgrade: bool,
) -> HeaderMap {
    let mut headers = std::mem::take(&mut parts.headers);
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    remove_hop_by_hop(&mut headers);
    if upgrade && let Some(protocol) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    // HTTP/2 carries the host in the URI; upstreams speak HTTP/1.1.
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    if let Some(value) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(header::HOST, value.clone());
        if !(from.peer_trusted && headers.contains_key("x-forwarded-host")) {
            headers.insert("x-forwarded-host", value);
        }
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(chain) if from.peer_trusted => format!("{chain}, {}", from.peer),
        _ => from.peer.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    if !(from.peer_trusted && headers.contains_key("x-forwarded-proto")) {
        headers.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if from.tls { "https" } else { "http" }),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&from.client.to_string()) {
        headers.insert("x-real-ip", value);
    }
    headers
}

/// The upstream's response as the client gets it.
fn downstream_response(
    pool: &Pool,
    response: Response<hyper::body::Incoming>,
    client_upgrade: Option<ClientUpgrade>,
    in_flight: ActiveToken,
) -> Response<Body> {
    let mut response = response;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return text(
                StatusCode::BAD_GATEWAY,
                "bad gateway: the upstream switched protocols unasked",
            );
        };
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let route = pool.route.clone();
        tokio::spawn(async move {
            // The joined connections count against the firewall's caps.
            let _hold = client_upgrade.hold;
            let (client, upstream) = match tokio::try_join!(client_upgrade.on, upstream_upgrade) {
                Ok(both) => both,
                Err(e) => return tracing::debug!(%route, "upgrade failed: {e}"),
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::default());
    }
    remove_hop_by_hop(response.headers_mut());
    // The request stays in flight until its body is done.
    response.map(|body| {
        Counted {
            body,
            done: Some(in_flight),
        }
        .boxed_unsync()
    })
}

/// Counts a request in flight on an upstream until dropped; holds the pool
/// weakly so a streaming body does not keep a replaced pool alive.
struct ActiveToken {
    pool: Weak<Pool>,
    index: usize,
}

impl ActiveToken {
    fn new(pool: &Arc<Pool>, index: usize) -> ActiveToken {
        pool.upstreams[index].active.fetch_add(1, Ordering::Relaxed);
        ActiveToken {
            pool: Arc::downgrade(pool),
            index,
        }
    }
}

impl Drop for ActiveToken {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.upstreams[self.index]
                .active
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A response body that releases its in-flight count when done.
struct Counted {
    body: hyper::body::Incoming,
    done: Option<ActiveToken>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &polled {
            self.done = None;
        }
        polled.map_err(|e| Box::new(e) as BoxError)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Checks every upstream of a pool until the pool is gone.
async fn health_checks(pool: Weak<Pool>, check: HealthCheck) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let timeout = Duration::from_millis(check.timeout_ms);
    loop {
        let Some(strong) = pool.upgrade() else {
            return;
        };
        let targets: Vec<(usize, String)> = strong
            .upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| (i, format!("http://{}{}{}", u.authority, u.base, check.path)))
            .collect();
        drop(strong);
        for (i, url) in targets {
            let Ok(uri) = url.parse::<Uri>() else {
                continue;
            };
            let outcome = tokio::time::timeout(timeout, client.get(uri)).await;
            let healthy = matches!(&outcome, Ok(Ok(r)) if r.status().is_success() || r.status().is_redirection());
            let Some(strong) = pool.upgrade() else {
                return;
            };
            let upstream = &strong.upstreams[i];
            if upstream.healthy.swap(healthy, Ordering::Relaxed) != healthy {
                if healthy {
                    tracing::info!(route = %strong.route, upstream = %upstream.authority, "health check passes again");
                } else {
                    let why = match outcome {
                        Err(_) => format!("no answer within {} ms", check.timeout_ms),
                        Ok(Err(e)) => root_cause(&e),
                        Ok(Ok(r)) => format!("status {}", r.status()),
                    };
                    tracing::warn!(route = %strong.route, upstream = %upstream.authority, "health check of {} failed: {why}", check.path);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(check.interval_ms)).await;
    }
}
