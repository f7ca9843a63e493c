//! Outbound HTTP from plugins (`wasi:http/outgoing-handler`).
//!
//! A request leaves only for an origin its plugin's `[grants] outbound`
//! lists; anything else gets `HTTP-request-denied`, the wasi:http error code
//! for a destination the host does not allow. Allowed requests share one
//! pooled client (keep-alive, TLS with the webpki roots) across plugins and
//! requests, under connect, first-byte and between-bytes timeouts.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// How long a connection may take when the plugin sets no timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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

/// The outbound decision of one plugin: its granted origins, and the host's
/// admin address, which only an exact grant reaches.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    allowed: Arc<[Allowed]>,
    admin: Option<SocketAddr>,
}

impl Grant {
    /// The grant of a sidecar's `[grants] outbound` (already validated).
    pub fn new(origins: &[String], admin: Option<SocketAddr>) -> Grant {
        Grant {
            allowed: origins
                .iter()
                .filter_map(|o| Allowed::parse(o).ok())
                .collect(),
            admin,
        }
    }

    /// Which grant lets `uri` out, if any.
    fn find(&self, uri: &http::Uri) -> Option<&Allowed> {
        let scheme = uri.scheme_str()?;
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        self.allowed
            .iter()
            .find(|allowed| allowed.matches(scheme, &host, port))
    }

    /// Whether a host matched by a wildcard resolves to the admin listener.
    async fn reaches_admin(&self, uri: &http::Uri) -> bool {
        let (Some(admin), Some(host)) = (self.admin, uri.host()) else {
            return false;
        };
        let port = uri.port_u16().unwrap_or(80);
        match tokio::net::lookup_host((host, port)).await {
            Ok(addrs) => addrs.into_iter().any(|addr| {
                addr.port() == admin.port()
                    && (addr.ip() == admin.ip()
                        || admin.ip().is_unspecified() && addr.ip().is_loopback())
            }),
            Err(_) => false,
        }
    }
}

/// What an instance's store holds for outbound HTTP.
#[derive(Debug, Default)]
pub struct OutboundPolicy {
    /// The plugin's name, for the log.
    pub plugin: Arc<str>,
    pub grant: Grant,
}

type Pooled = Client<hyper_rustls::HttpsConnector<HttpConnector>, WasiBody>;

/// The client every plugin's allowed requests share.
static CLIENT: LazyLock<Pooled> = LazyLock::new(|| {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(https)
});

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
            let Some(allowed) = grant.find(&uri) else {
                tracing::info!(%plugin, %uri, "outbound request denied: the origin is not in [grants] outbound");
                return Err(Error::HttpRequestDenied);
            };
            if matches!(allowed.host, AllowedHost::Subdomains(_)) && grant.reaches_admin(&uri).await
            {
                tracing::warn!(%plugin, %uri, "outbound request denied: it resolves to the admin listener");
                return Err(Error::HttpRequestDenied);
            }
            send(request, options).await
        })
    }
}

/// Sends an allowed request on the shared client under the timeouts.
async fn send(
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let options = options.unwrap_or_default();
    let connect = options.connect_timeout.unwrap_or(CONNECT_TIMEOUT);
    let first_byte = options.first_byte_timeout.unwrap_or(FIRST_BYTE_TIMEOUT);
    let between_bytes = options
        .between_bytes_timeout
        .unwrap_or(BETWEEN_BYTES_TIMEOUT)
        .max(Duration::from_nanos(1));
    let response = tokio::time::timeout(connect + first_byte, CLIENT.request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(client_error)?;
    let response = response.map(|body| {
        Paced {
            body,
            timeout: Box::pin(tokio::time::sleep(between_bytes)),
            between_bytes,
        }
        .boxed_unsync()
    });
    Ok((response, Box::new(async { Ok(()) })))
}

/// The wasi:http error code of a failed client request.
fn client_error(error: hyper_util::client::legacy::Error) -> Error {
    use std::error::Error as _;
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
                std::io::ErrorKind::TimedOut => Error::ConnectionTimeout,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                    Error::ConnectionTerminated
                }
                _ if io.to_string().contains("dns error") => Error::DnsError {
                    rcode: None,
                    info_code: None,
                },
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

/// A response body that fails when it pauses longer than `between_bytes`.
struct Paced {
    body: hyper::body::Incoming,
    timeout: Pin<Box<tokio::time::Sleep>>,
    between_bytes: Duration,
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

    #[test]
    fn origins_match_scheme_host_and_port() {
        let grant = Grant::new(
            &[
                "https://api.example.com".into(),
                "http://127.0.0.1:8080".into(),
                "https://*.example.org".into(),
            ],
            None,
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
