//! Outbound HTTP from plugins (`wasi:http/outgoing-handler`).
//!
//! A request leaves only for an origin its plugin's `[grants] outbound`
//! lists; anything else gets `HTTP-request-denied`, the wasi:http error code
//! for a destination the host does not allow. Allowed requests share one
//! pooled client (keep-alive, TLS with the webpki roots) across plugins and
//! requests, under connect, first-byte and between-bytes timeouts.

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::{CaptureConnection, HttpConnector, capture_connection};
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// How long a connection may take when the plugin sets no timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest connect timeout a plugin may set: the shared connector's
/// own limit, under the per-request one.
const MOST_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the response head may take when the plugin sets no timeout.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the response body may pause when the plugin sets no timeout.
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// One origin of `[grants] outbound`: `https://api.example.com`,
/// `http://127.0.0.1:8080`, `https://*.example.com`. Without a port, the
/// scheme's default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    scheme: String,
    host: AllowedHost,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedHost {
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com` (not the apex).
    Subdomains(String),
}

impl Allowed {
    /// Parses a granted origin.
    pub fn parse(text: &str) -> Result<Allowed, String> {
        let form = "write it as scheme://host[:port], e.g. https://api.example.com or https://*.example.com";
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("`{text}` has no scheme: {form}"))?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("`{text}`: the scheme must be http or https")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{text}` is not an origin (no path, query or user): {form}"
            ));
        }
        let authority: http::uri::Authority = rest
            .parse()
            .map_err(|_| format!("`{text}` has an invalid host: {form}"))?;
        let host = authority.host().to_ascii_lowercase();
        let host = match host.strip_prefix("*.") {
            Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                AllowedHost::Subdomains(format!(".{domain}"))
            }
            _ if host.contains('*') => {
                return Err(format!(
                    "`{text}`: a wildcard is only allowed as the first label, as in https://*.example.com"
                ));
            }
            _ => AllowedHost::Exact(host),
        };
        Ok(Allowed {
            scheme: scheme.to_owned(),
            host,
            port: authority.port_u16().unwrap_or(default_port),
        })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme
            && self.port == port
            && match &self.host {
                AllowedHost::Exact(name) => name == host,
                AllowedHost::Subdomains(suffix) => host.ends_with(suffix.as_str()),
            }
    }
}

/// The outbound decision of one plugin: its granted origins, and the slots
/// of `[limits] outbound_concurrency` its instances share.
#[derive(Debug, Clone)]
pub struct Grant {
    allowed: Arc<[Allowed]>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Grant {
    /// The grant of a sidecar's `[grants] outbound` (already validated), with
    /// `concurrency` requests in flight at once.
    pub fn new(origins: &[String], concurrency: u32) -> Grant {
        Grant {
            allowed: origins
                .iter()
                .filter_map(|o| Allowed::parse(o).ok())
                .collect(),
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency as usize)),
        }
    }

    /// Counts this grant's requests in flight with `previous`'s, whose
    /// concurrency is the same.
    pub fn share_slots(&mut self, previous: &Grant) {
        self.slots = previous.slots.clone();
    }

    /// Which grant lets `uri` out, if any: an exact one before a wildcard,
    /// whatever their order, since only an exact grant reaches the admin
    /// listener.
    fn find(&self, uri: &http::Uri) -> Option<&Allowed> {
        let scheme = uri.scheme_str()?;
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.allowed
            .iter()
            .filter(|allowed| allowed.matches(scheme, &host, port))
            .min_by_key(|allowed| matches!(allowed.host, AllowedHost::Subdomains(_)))
    }
}

/// The admin listeners of this process (bound addresses): a request let out
/// by a wildcard grant never connects to one, whatever its name resolves to
/// (checked on the connected socket, so DNS rebinding and `0.0.0.0` do not
/// get past it). Only an exact grant reaches an admin listener.
static ADMIN_LISTENERS: std::sync::RwLock<Vec<SocketAddr>> = std::sync::RwLock::new(Vec::new());

/// Registers the admin listener bound at `addr`.
pub fn guard_admin_listener(addr: SocketAddr) {
    let mut admins = ADMIN_LISTENERS.write().unwrap_or_else(|e| e.into_inner());
    if !admins.contains(&addr) {
        admins.push(addr);
    }
}

/// Whether a connection from `local` to `peer` reaches an admin listener:
/// the listener's address, or its port on this machine when it listens on
/// every address (a connection to this machine comes from the address it
/// goes to).
fn reaches_admin_listener(local: SocketAddr, peer: SocketAddr) -> bool {
    let same_ip = |a: std::net::IpAddr, b: std::net::IpAddr| a.to_canonical() == b.to_canonical();
    let to_this_machine = same_ip(local.ip(), peer.ip()) || peer.ip().is_loopback();
    ADMIN_LISTENERS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|admin| {
            admin.port() == peer.port()
                && (same_ip(admin.ip(), peer.ip())
                    || admin.ip().is_unspecified() && to_this_machine)
        })
}

/// A connector that refuses a connection reaching an admin listener, for
/// requests let out by a wildcard grant.
#[derive(Clone)]
struct AwayFromAdmin(HttpConnector);

impl tower::Service<http::Uri> for AwayFromAdmin {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            let stream = io.inner();
            let (local, peer) = (stream.local_addr()?, stream.peer_addr()?);
            if reaches_admin_listener(local, peer) {
                return Err(AdminRefused(peer).into());
            }
            Ok(io)
        })
    }
}

/// The connection a wildcard grant made reached the admin listener.
#[derive(Debug, thiserror::Error)]
#[error("{0} is the admin listener, which only an exact grant reaches")]
struct AdminRefused(SocketAddr);

/// What an instance's store holds for outbound HTTP.
#[derive(Debug)]
pub struct OutboundPolicy {
    /// The plugin's name, for the log.
    pub plugin: Arc<str>,
    pub grant: Grant,
}

type Pooled<C> = Client<hyper_rustls::HttpsConnector<C>, WasiBody>;

/// A pooled client on `connector` (keep-alive, TLS with the webpki roots).
fn client<C>(mut connector: HttpConnector, wrap: impl FnOnce(HttpConnector) -> C) -> Pooled<C>
where
    C: tower::Service<http::Uri> + Clone + Send + Sync + 'static,
    C::Response: hyper::rt::Read
        + hyper::rt::Write
        + hyper_util::client::legacy::connect::Connection
        + Send
        + Unpin,
    C::Future: Send + Unpin + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(MOST_CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(wrap(connector));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
}

/// The client every plugin's requests under exact grants share.
static CLIENT: LazyLock<Pooled<HttpConnector>> =
    LazyLock::new(|| client(HttpConnector::new(), |c| c));

/// The client of requests under wildcard grants: it never connects to an
/// admin listener.
static AWAY_FROM_ADMIN: LazyLock<Pooled<AwayFromAdmin>> =
    LazyLock::new(|| client(HttpConnector::new(), AwayFromAdmin));

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        let plugin = self.plugin.clone();
        let grant = self.grant.clone();
        Box::new(async move {
            let uri = request.uri().clone();
            // Logs name the origin only: a path, a query or user info may
            // carry a credential.
            let origin = origin(&uri);
            let Some(allowed) = grant.find(&uri) else {
                tracing::info!(%plugin, %origin, "outbound request denied: the origin is not in [grants] outbound");
                take_body(request.into_body()).await;
                return Err(Error::HttpRequestDenied);
            };
            let wildcard = matches!(allowed.host, AllowedHost::Subdomains(_));
            let mut request = request;
            if move_user_info(&mut request).is_none() {
                tracing::info!(%plugin, %origin, "outbound request refused: its user info does not fit a header");
                take_body(request.into_body()).await;
                return Err(Error::HttpRequestUriInvalid);
            }
            send(request, options, wildcard, &grant.slots).await.inspect_err(|error| {
                match error {
                    Error::HttpRequestDenied => tracing::warn!(%plugin, %origin, "outbound request denied: it reached the admin listener"),
                    Error::ConnectionLimitReached => tracing::warn!(%plugin, %origin, "outbound request refused: its [limits] outbound_concurrency stayed full past the connect timeout"),
                    _ => {}
                }
            })
        })
    }
}

/// Moves user info in the URI (`https://user:secret@host/`) to an
/// `Authorization: Basic` header, as curl, Go and Python's requests do,
/// unless the request has that header already. wasi:http keeps it in the
/// authority, and so in the `Host` header the server would see. `None` when
/// the URI cannot be rebuilt without it.
fn move_user_info(request: &mut http::Request<WasiBody>) -> Option<()> {
    let Some((user_info, host)) = request
        .uri()
        .authority()
        .and_then(|a| a.as_str().rsplit_once('@'))
        .map(|(user_info, host)| (user_info.to_owned(), host.to_owned()))
    else {
        return Some(());
    };
    let host: http::uri::Authority = host.parse().ok()?;
    let mut credentials: Vec<u8> = percent_encoding::percent_decode_str(&user_info).collect();
    if !credentials.contains(&b':') {
        credentials.push(b':');
    }
    let basic = http::HeaderValue::try_from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    ))
    .ok()?;
    let mut parts = request.uri().clone().into_parts();
    parts.authority = Some(host.clone());
    *request.uri_mut() = http::Uri::from_parts(parts).ok()?;
    let headers = request.headers_mut();
    headers.insert(
        http::header::HOST,
        http::HeaderValue::from_str(host.as_str()).ok()?,
    );
    headers.entry(http::header::AUTHORIZATION).or_insert(basic);
    Some(())
}

/// `scheme://host[:port]` of `uri`, without user info, path or query.
fn origin(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or_default();
    match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

/// Reads a denied request's body to its end (at most 1 MiB, for at most
/// 250 ms) before the denial is given. A plugin writes the body while it
/// waits for the response (wstd does both at once); had the body been
/// dropped first, its write would fail and the plugin would see a broken
/// stream instead of `HTTP-request-denied`, depending on which task ran
/// first.
async fn take_body(mut body: WasiBody) {
    const MOST: usize = 1 << 20;
    let mut taken = 0;
    let _ = tokio::time::timeout(Duration::from_millis(250), async {
        while taken <= MOST {
            match body.frame().await {
                Some(Ok(frame)) => taken += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
}

/// Sends an allowed request (let out by a wildcard grant when `wildcard`)
/// on the shared client under the plugin's timeouts, holding one of the
/// plugin's `slots` until the response body ends.
///
/// The timeouts mean what wasi:http says: the connect timeout covers the
/// wait for a slot and the connection together (a request that finds no
/// free slot in it gets `connection-limit-reached`, one that cannot
/// connect in it `connection-timeout`); the first-byte timeout runs from
/// the connection (new or pooled) to the response head
/// (`connection-read-timeout`; a request the client sends again on a new
/// connection, because its pooled one had closed, reconnects within it);
/// the between-bytes timeout covers each pause in the response body.
async fn send(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
    wildcard: bool,
    slots: &Arc<tokio::sync::Semaphore>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let options = options.unwrap_or_default();
    let connect_by = tokio::time::Instant::now()
        + options
            .connect_timeout
            .unwrap_or(CONNECT_TIMEOUT)
            .min(MOST_CONNECT_TIMEOUT);
    let first_byte = options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(BETWEEN_BYTES_TIMEOUT)
        .max(Duration::from_nanos(1));
    let slot = match tokio::time::timeout_at(connect_by, slots.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        Ok(Err(_)) | Err(_) => {
            take_body(request.into_body()).await;
            return Err(Error::ConnectionLimitReached);
        }
    };
    let connected = capture_connection(&mut request);
    let sending = if wildcard {
        AWAY_FROM_ADMIN.request(request)
    } else {
        CLIENT.request(request)
    };
    let response = response_head(sending, connected, connect_by, first_byte).await?;
    let response = response.map(|body| {
        Paced {
            body,
            timeout: Box::pin(tokio::time::sleep(between_bytes)),
            between_bytes,
            _slot: slot,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// Waits for the response head of `sending`: its connection by
/// `connect_by`, then the head within `first_byte` of the connection.
async fn response_head(
    sending: impl Future<Output = Result<http::Response<hyper::body::Incoming>, ClientError>>,
    mut connected: CaptureConnection,
    connect_by: tokio::time::Instant,
    first_byte: Duration,
) -> Result<http::Response<hyper::body::Incoming>, Error> {
    let mut sending = std::pin::pin!(sending);
    // The capture resolves when the client has a connection for the
    // request, or at once when the request failed before it had one.
    let before_connection = tokio::time::timeout_at(connect_by, async {
        tokio::select! {
            biased;
            response = &mut sending => Some(response),
            _ = connected.wait_for_connection_metadata() => None,
        }
    });
    let response = match before_connection.await {
        Err(_) => return Err(Error::ConnectionTimeout),
        Ok(Some(response)) => response,
        Ok(None) => tokio::time::timeout(first_byte, sending)
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?,
    };
    response.map_err(client_error)
}

/// The wasi:http error code of a failed client request.
fn client_error(error: ClientError) -> Error {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.is::<AdminRefused>() {
            return Error::HttpRequestDenied;
        }
        // hyper-util's connector says "dns error" over the resolver's own
        // error.
        if cause.to_string() == "dns error" {
            return Error::DnsError {
                rcode: None,
                info_code: None,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
                std::io::ErrorKind::TimedOut => Error::ConnectionTimeout,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                    Error::ConnectionTerminated
                }
                _ => Error::DestinationUnavailable,
            };
        }
        source = cause.source();
    }
    if error.is_connect() {
        if error.to_string().contains("timed out") {
            return Error::ConnectionTimeout;
        }
        return Error::DestinationUnavailable;
    }
    Error::ConnectionTerminated
}

/// A response body that fails when it pauses longer than `between_bytes`,
/// holding its request's slot until it is dropped.
struct Paced {
    body: hyper::body::Incoming,
    timeout: Pin<Box<tokio::time::Sleep>>,
    between_bytes: Duration,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.timeout.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timeout.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::Service as _;

    #[tokio::test]
    async fn a_wildcard_grant_never_connects_to_an_admin_listener() {
        // An admin listener on every address, and a service beside it.
        let admin = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let admin_port = admin.local_addr().unwrap().port();
        guard_admin_listener(admin.local_addr().unwrap());
        let service = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let service_port = service.local_addr().unwrap().port();

        let mut connector = AwayFromAdmin(HttpConnector::new());
        // Whatever a name resolves to, and `0.0.0.0` too: the check is on
        // the connected socket.
        for host in ["localhost", "127.0.0.1", "0.0.0.0"] {
            let uri: http::Uri = format!("http://{host}:{admin_port}/").parse().unwrap();
            let error = connector.call(uri).await.expect_err("refused");
            assert!(error.is::<AdminRefused>(), "{host}: {error}");
        }
        let uri: http::Uri = format!("http://localhost:{service_port}/").parse().unwrap();
        assert!(connector.call(uri).await.is_ok());
        // An admin listener on loopback only is reached through `0.0.0.0`.
        let loopback = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        guard_admin_listener(loopback.local_addr().unwrap());
        let port = loopback.local_addr().unwrap().port();
        let uri: http::Uri = format!("http://0.0.0.0:{port}/").parse().unwrap();
        assert!(
            connector
                .call(uri)
                .await
                .expect_err("refused")
                .is::<AdminRefused>()
        );

        // Through the client, the plugin gets the code for a denied request.
        let request = http::Request::get(format!("http://localhost:{admin_port}/plugins"))
            .body(
                http_body_util::Empty::new()
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            )
            .unwrap();
        let error = AWAY_FROM_ADMIN.request(request).await.expect_err("refused");
        assert!(matches!(client_error(error), Error::HttpRequestDenied));
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let grant = Grant::new(
            &[
                "https://api.example.com".into(),
                "http://127.0.0.1:8080".into(),
                "https://*.example.org".into(),
            ],
            1,
        );
        let allowed = |uri: &str| grant.find(&uri.parse().unwrap()).is_some();
        assert!(allowed("https://api.example.com/v1"));
        assert!(allowed("https://API.example.com:443/"));
        assert!(!allowed("http://api.example.com/"));
        assert!(!allowed("https://api.example.com:8443/"));
        assert!(allowed("http://127.0.0.1:8080/x"));
        assert!(!allowed("http://127.0.0.1:8081/x"));
        assert!(allowed("https://a.b.example.org/"));
        assert!(!allowed("https://example.org/"));
        assert!(!allowed("https://evilexample.org/"));
    }

    #[test]
    fn an_exact_grant_is_found_before_a_wildcard_in_any_order() {
        for origins in [
            ["http://*.0.0.1:9901", "http://127.0.0.1:9901"],
            ["http://127.0.0.1:9901", "http://*.0.0.1:9901"],
        ] {
            let grant = Grant::new(&origins.map(String::from), 1);
            let found = grant.find(&"http://127.0.0.1:9901/plugins".parse().unwrap());
            assert_eq!(
                found.map(|allowed| &allowed.host),
                Some(&AllowedHost::Exact("127.0.0.1".into())),
                "{origins:?}"
            );
        }
    }

    #[test]
    fn bad_origins_say_how_to_write_them() {
        for bad in [
            "api.example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://a.*.com",
            "https://u@x.com",
        ] {
            let e = Allowed::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
