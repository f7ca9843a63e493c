//! The request path inside the host: the edge's request filters, the
//! router, the route's filters around its action (a plugin, an upstream
//! pool, a static folder or a redirect), then the access log line.

use crate::acme::Challenges;
use crate::firewall::{Firewall, Stats};
use crate::listener::{Connection, Edge};
use crate::plugin::mounts::Mounts;
use crate::proxy::{self, Forwarding};
use crate::request_body::{self, BodyError};
use crate::router::{self, Action};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Any error a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the host writes.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A response with a whole body in memory.
pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// A small plain-text response; the message gets a final newline.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = message.into();
    message.push('\n');
    full(status, "text/plain; charset=utf-8", message)
}

/// What the public listeners share.
pub struct Server {
    /// The mounted plugins and the route table.
    pub mounts: Arc<Mounts>,
    /// Who may connect and how often; swapped on config reload.
    pub firewall: ArcSwap<Firewall>,
    /// HTTP-01 answers of pending ACME orders.
    pub acme: Arc<Challenges>,
    /// The port of the first TLS listener, for redirects (0: none).
    pub https_port: AtomicU32,
}

/// Serves one request from a public listener: the edge filters (client
/// address, firewall, rate limit, ACME challenges, https redirect, body
/// limit), then the router and the plugin.
pub async fn handle(
    server: &Server,
    edge: &Edge,
    request: Request<Incoming>,
    connection: Connection,
) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let log = AccessLog {
        method: &method,
        path: &path,
        started,
    };
    let mut response = match filter(server, edge, request, connection).await {
        Ok((request, client)) => dispatch(server, edge, request, client, connection, &log).await,
        Err(response) => {
            log.write(response.status(), "-");
            response
        }
    };
    if connection.tls
        && let Some(hsts) = &edge.hsts
    {
        response
            .headers_mut()
            .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}

/// The request a plugin gets: its body streamed or, when it came chunked,
/// read whole within the body limit.
type PluginRequest = Request<UnsyncBoxBody<Bytes, BodyError>>;

/// The edge's phases before routing; `Err` is the answer that ends the request.
async fn filter(
    server: &Server,
    edge: &Edge,
    request: Request<Incoming>,
    connection: Connection,
) -> Result<(Request<Incoming>, IpAddr), Response<Body>> {
    let firewall = &*server.firewall.load();
    let client = firewall.client_ip(connection.peer, request.headers());
    // Every request, not only a connection's first: a deny added by a
    // reload reaches keep-alive and HTTP/2 connections already open.
    if !firewall.permits(client) {
        Stats::count(&firewall.stats.requests_denied);
        firewall.log.warn(|| match client == connection.peer {
            true => format!("denied a request from {client}"),
            false => format!("denied a request forwarded for {client}"),
        });
        return Err(text(StatusCode::FORBIDDEN, "forbidden"));
    }
    if let Err(wait) = firewall.check_rate(client) {
        Stats::count(&firewall.stats.requests_rate_limited);
        firewall.log.warn(|| format!("rate limited {client}"));
        return Err(too_many_requests(wait));
    }
    if let Some(token) = request
        .uri()
        .path()
        .strip_prefix(crate::acme::HTTP01_PREFIX)
    {
        return Err(match server.acme.http01(token) {
            Some(answer) => full(StatusCode::OK, "application/octet-stream", answer),
            None => text(StatusCode::NOT_FOUND, "no such ACME challenge"),
        });
    }
    if edge.config.redirect_https {
        let port = server.https_port.load(Ordering::Relaxed);
        return Err(redirect_to_https(
            &request,
            u16::try_from(port).ok().filter(|p| *p != 0),
        ));
    }

    let limit = edge.limits.max_body_bytes;
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        let body = request_body::Timed::new(
            request.into_body(),
            Duration::from_millis(edge.limits.body_timeout_ms),
            server.firewall.load_full(),
            client,
        );
        let _ = read_within(body, limit).await;
        return Err(body_too_large(firewall, limit));
    }
    Ok((request, client))
}

fn body_too_large(firewall: &Firewall, limit: u64) -> Response<Body> {
    Stats::count(&firewall.stats.bodies_too_large);
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The body a plugin reads: as it comes when its length is declared, else
/// (chunked) read whole within the limit, to answer 413 before the plugin
/// sees a byte.
async fn plugin_body(
    request: Request<Incoming>,
    (limit, timeout): (u64, Duration),
    firewall: &Arc<Firewall>,
    client: IpAddr,
) -> Result<PluginRequest, Response<Body>> {
    let declared = request.headers().contains_key(http::header::CONTENT_LENGTH);
    let (parts, body) = request.into_parts();
    let streamed = declared || body.is_end_stream();
    let body = request_body::Timed::new(body, timeout, firewall.clone(), client);
    let request = match streamed {
        true => Request::from_parts(parts, body.boxed_unsync()),
        false => {
            // Chunked: read it whole, up to the limit, to answer 413 before
            // the plugin sees a byte.
            let bytes = match read_within(body, limit).await {
                Ok(bytes) => bytes,
                Err(Unread::TooLarge) => return Err(body_too_large(firewall, limit)),
                Err(Unread::Broken(BodyError::TimedOut(_))) => {
                    return Err(text(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "the request body stalled: nothing came for {} ms",
                            timeout.as_millis()
                        ),
                    ));
                }
                Err(Unread::Broken(BodyError::Client(_))) => {
                    return Err(text(
                        StatusCode::BAD_REQUEST,
                        "the request body was cut off",
                    ));
                }
            };
            Request::from_parts(
                parts,
                Full::new(bytes)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
        }
    };
    Ok(request)
}

/// Why a chunked body was not read.
enum Unread {
    TooLarge,
    Broken(BodyError),
}

/// Reads a body of at most `limit` bytes. Past the limit it goes on reading
/// and dropping what the client sends (for up to a second, at most four
/// times the limit) so that the 413 reaches a client still sending, rather
/// than a reset.
async fn read_within(mut body: request_body::Timed, limit: u64) -> Result<Bytes, Unread> {
    let mut kept = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    let mut drain_until = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Unread::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen <= limit {
            kept.extend_from_slice(&data);
            continue;
        }
        let until =
            *drain_until.get_or_insert_with(|| Instant::now() + std::time::Duration::from_secs(1));
        if seen > limit.saturating_mul(4) || Instant::now() > until {
            break;
        }
    }
    if seen > limit {
        Err(Unread::TooLarge)
    } else {
        Ok(kept.freeze())
    }
}

/// The firewall rules of a plugin's sidecar, after routing: the refusal,
/// if the client is refused.
fn route_firewall(global: &Firewall, rules: &Firewall, client: IpAddr) -> Option<Response<Body>> {
    if !rules.permits(client) {
        Stats::count(&global.stats.requests_denied);
        return Some(text(StatusCode::FORBIDDEN, "forbidden"));
    }
    let wait = rules.check_rate(client).err()?;
    Stats::count(&global.stats.requests_rate_limited);
    Some(too_many_requests(wait))
}

/// 429 with Retry-After in whole seconds, at least 1.
fn too_many_requests(wait: std::time::Duration) -> Response<Body> {
    let mut response = text(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests: slow down",
    );
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// The permanent redirect of a plain listener to https.
fn redirect_to_https<B>(request: &Request<B>, https_port: Option<u16>) -> Response<Body> {
    let host = request_host(request).unwrap_or_else(|| "localhost".to_owned());
    let port = match https_port {
        Some(443) | None => String::new(),
        Some(port) => format!(":{port}"),
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{host}{port}{path}");
    let mut response = text(
        StatusCode::PERMANENT_REDIRECT,
        format!("moved to {location}"),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(http::header::LOCATION, value);
    }
    response
}

/// Routes a request that passed the edge and runs the route's action
/// inside its filters.
async fn dispatch(
    server: &Server,
    edge: &Edge,
    mut request: Request<Incoming>,
    client: IpAddr,
    connection: Connection,
    log: &AccessLog<'_>,
) -> Response<Body> {
    let (method, path) = (log.method, log.path);
    let mounted = server.mounts.snapshot();
    let host = request_host(&request);
    let Some(matched) = mounted.table.lookup(host.as_deref(), path) else {
        let response = text(StatusCode::NOT_FOUND, format!("no route for {path}"));
        log.write(response.status(), "-");
        return response;
    };
    let route = matched.route;
    let (action, filters) = (route.action.clone(), route.filters.clone());
    let inner = router::strip(path, matched.stripped);
    if !server.firewall.load().is_trusted(connection.peer) {
        // Said by the client itself: plugins, CGI's SCRIPT_NAME, folder
        // redirects and upstreams must not take its word for the mount
        // prefix or an RFC 7239 chain.
        request.headers_mut().remove("x-forwarded-prefix");
        request.headers_mut().remove(http::header::FORWARDED);
    }
    if let Some(prefix) = matched.stripped {
        *request.uri_mut() = with_path(request.uri(), &inner);
        if let Ok(value) = HeaderValue::from_str(prefix) {
            request.headers_mut().insert("x-forwarded-prefix", value);
        }
    }
    if host.is_none() {
        // HTTP/1.0 without Host: wasi:http and upstreams need an authority.
        if let Ok(value) = HeaderValue::from_str(&connection.local.to_string()) {
            request.headers_mut().insert(http::header::HOST, value);
        }
    }
    let plugin = match &action {
        Action::Plugin(name) => match mounted.plugins.get(name) {
            Some(plugin) => Some(plugin.clone()),
            None => {
                let response = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "plugin `{name}` is not mounted: add {name}.wasm or {name}/ to the plugins folder"
                    ),
                );
                log.write(response.status(), name);
                return response;
            }
        },
        _ => None,
    };
    drop(mounted);
    let firewall = server.firewall.load_full();
    if let Some(rules) = plugin.as_ref().and_then(|p| p.firewall.as_ref())
        && let Some(response) = route_firewall(&firewall, rules, client)
    {
        log.write(response.status(), label(&action));
        return response;
    }

    let body_limits = (
        edge.limits.max_body_bytes,
        Duration::from_millis(edge.limits.body_timeout_ms),
    );
    // The action owns what it uses: the future must not borrow from here.
    let (method_owned, path_owned) = (method.clone(), path.to_owned());
    let answer = action.clone();
    let mounts = server.mounts.clone();
    let act = move |request: Request<Incoming>| async move {
        let (method, path) = (&method_owned, path_owned.as_str());
        match &answer {
            Action::Plugin(_) => {
                let plugin = plugin.expect("looked up above");
                if plugin.handles_connections() {
                    if crate::websocket::is_upgrade(&request) {
                        return crate::websocket::accept(
                            plugin,
                            mounts,
                            with_client(request, client, connection),
                        )
                        .await;
                    }
                    if crate::event_stream::is_request(&request) {
                        return crate::event_stream::accept(
                            plugin,
                            mounts,
                            with_client(request, client, connection),
                        )
                        .await;
                    }
                }
                let request = match plugin_body(request, body_limits, &firewall, client).await {
                    Ok(request) => request,
                    Err(response) => return response,
                };
                invoke(&plugin, request, client, connection, method, path).await
            }
            Action::Proxy(pool) => {
                let from = Forwarding {
                    client,
                    peer: connection.peer,
                    peer_trusted: firewall.is_trusted(connection.peer),
                    tls: connection.tls,
                };
                let (limit, timeout) = body_limits;
                let request = request.map(|body| {
                    let body = request_body::Timed::new(body, timeout, firewall.clone(), client);
                    http_body_util::Limited::new(body, limit as usize).boxed_unsync()
                });
                proxy::forward(pool, request, &from).await
            }
            Action::Static(folder) => folder.serve(request).await,
            Action::Redirect(redirect) => {
                let location = redirect.location(request.uri(), &inner);
                let _ = (method, path);
                let mut response = text(redirect.status, format!("moved to {location}"));
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(http::header::LOCATION, value);
                }
                response
            }
        }
    };
    let response = match &filters {
        Some(filters) => {
            let act: crate::filters::Action<Incoming> =
                Box::new(move |request| Box::pin(act(request)));
            filters.around(request, act).await
        }
        None => act(request).await,
    };
    log.write(response.status(), label(&action));
    response
}

/// What the access log names as the answer of a route: the plugin, or
/// the kind of action.
fn label(action: &Action) -> &str {
    match action {
        Action::Plugin(name) => name,
        Action::Proxy(_) => "proxy",
        Action::Static(_) => "static",
        Action::Redirect(_) => "redirect",
    }
}

/// Runs a plugin for a request and turns its failure into an answer.
async fn invoke(
    plugin: &Arc<crate::plugin::Plugin>,
    request: PluginRequest,
    client: IpAddr,
    connection: Connection,
    method: &http::Method,
    path: &str,
) -> Response<Body> {
    let request = with_client(request, client, connection);
    match plugin.invoke(request).await {
        Ok(response) => {
            response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
        }
        Err(failure) => {
            tracing::warn!(plugin = %plugin.name, %method, %path, "plugin failed: {failure}");
            text(
                failure.status(),
                format!("plugin `{}` {}", plugin.name, failure.public_message()),
            )
        }
    }
}

/// Tells a plugin who the client is: `X-Real-IP` and `X-Forwarded-Proto`.
fn with_client<B>(mut request: Request<B>, client: IpAddr, connection: Connection) -> Request<B> {
    let headers = request.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&client.to_string()) {
        headers.insert("x-real-ip", value);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if connection.tls { "https" } else { "http" }),
    );
    request
}

/// The host a request was sent to, without port, from the URI (HTTP/2) or
/// the Host header (HTTP/1).
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let authority = match request.uri().authority() {
        Some(authority) => authority.host().to_owned(),
        None => {
            let host = request.headers().get(http::header::HOST)?.to_str().ok()?;
            host.parse::<http::uri::Authority>().ok()?.host().to_owned()
        }
    };
    Some(authority.to_ascii_lowercase())
}

/// `uri` with its path replaced, query kept.
fn with_path(uri: &Uri, path: &str) -> Uri {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// The access log line of one request.
struct AccessLog<'a> {
    method: &'a http::Method,
    path: &'a str,
    started: Instant,
}

impl AccessLog<'_> {
    /// Writes the line: the status, and the plugin or kind of action that answered.
    fn write(&self, status: StatusCode, plugin: &str) {
        tracing::info!(
            target: "gatehouse::access",
            method = %self.method,
            path = self.path,
            status = status.as_u16(),
            plugin,
            ms = format_args!("{:.2}", self.started.elapsed().as_secs_f64() * 1000.0),
        );
    }
}
