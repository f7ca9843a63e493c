//! Listeners: accept a TCP connection, read its PROXY header when a trusted
//! proxy sends one, admit it through the firewall,
//! terminate TLS, and serve HTTP/1.1 and HTTP/2 on it (hyper-util's auto
//! builder) under the request limits; drain on shutdown.

use crate::config::{LimitsConfig, ListenerConfig};
use crate::error::{Error, Result};
use crate::firewall::{Firewall, Refusal, Slot, Stats};
use crate::server::Body;
use arc_swap::ArcSwap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Binds a listening socket, with an error that names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                ": another process holds it; stop it or choose another with --listen"
            }
            std::io::ErrorKind::PermissionDenied => {
                ": ports below 1024 need root or CAP_NET_BIND_SERVICE"
            }
            _ => "",
        };
        Error::io(format!("cannot listen on {addr}{hint}"), e)
    })
}

/// What a listener puts in front of its service.
pub struct Edge {
    /// The `[[listener]]` it serves.
    pub config: ListenerConfig,
    /// The TLS acceptor of a TLS listener.
    pub tls: Option<TlsAcceptor>,
    /// The firewall; `None` on the admin listener.
    pub firewall: Option<Arc<Firewall>>,
    /// Request and connection limits.
    pub limits: LimitsConfig,
    /// The Strict-Transport-Security value of a TLS listener.
    pub hsts: Option<http::HeaderValue>,
}

/// What the service knows of the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct Connection {
    /// The listener's own address.
    pub local: SocketAddr,
    /// The peer's address.
    pub peer: IpAddr,
    /// Whether it is a TLS connection.
    pub tls: bool,
}

/// The service of a listener: a request, its connection, and the edge the
/// connection was accepted under.
pub trait Service<F>:
    Fn(hyper::Request<Incoming>, Connection, Arc<Edge>) -> F + Clone + Send + Sync + 'static
{
}

impl<S, F> Service<F> for S where
    S: Fn(hyper::Request<Incoming>, Connection, Arc<Edge>) -> F + Clone + Send + Sync + 'static
{
}

/// Accepts connections on `listener` and serves each request with
/// `service` until `stop` resolves; then stops accepting and lets open
/// connections finish their requests for up to `grace()`. Each connection
/// is served under the edge current when it was accepted, so a config
/// reload applies to new connections.
pub async fn run<S, F>(
    listener: TcpListener,
    edge: Arc<ArcSwap<Edge>>,
    service: S,
    stop: impl Future<Output = ()>,
    grace: impl FnOnce() -> Duration,
) where
    S: Service<F>,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept on {local}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let edge = edge.load_full();
        let (builder, service, watcher) = (
            http_builder(&edge.limits),
            service.clone(),
            graceful.watcher(),
        );
        tokio::spawn(async move {
            let mut stream = stream;
            let timeout = Duration::from_millis(edge.limits.header_timeout_ms);
            let mut client = peer.ip();
            if let Some(firewall) = &edge.firewall
                && edge.config.proxy_protocol
                && firewall.is_trusted(client)
            {
                match tokio::time::timeout(timeout, crate::proxy_protocol::read_header(&mut stream))
                    .await
                {
                    Ok(Ok(named)) => client = named.unwrap_or(client),
                    Ok(Err(e)) => {
                        Stats::count(&firewall.stats.proxy_header_errors);
                        firewall.log.warn(|| format!("{local}: {e} from {client}"));
                        return;
                    }
                    Err(_) => {
                        Stats::count(&firewall.stats.header_timeouts);
                        return;
                    }
                }
            }
            let slot = match &edge.firewall {
                Some(firewall) => match firewall.admit(client) {
                    Ok(slot) => Some(Arc::new(slot)),
                    Err(refusal) => {
                        firewall.log.warn(|| {
                            let why = match refusal {
                                Refusal::Denied => "its network is denied",
                                Refusal::OverTotal => "max_connections are open",
                                Refusal::OverPerIp => "max_connections_per_ip are open from it",
                            };
                            format!("{local}: refused a connection from {client}: {why}")
                        });
                        return; // dropping the stream closes it, before any TLS
                    }
                },
                None => None,
            };
            let connection = Connection {
                local,
                peer: client,
                tls: edge.tls.is_some(),
            };
            let Some(tls) = &edge.tls else {
                return serve(&builder, stream, connection, slot, service, watcher, &edge).await;
            };
            let stream = match tokio::time::timeout(timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    if let Some(firewall) = &edge.firewall {
                        Stats::count(&firewall.stats.tls_handshake_failures);
                        firewall.log.warn(|| {
                            format!(
                                "{local}: TLS handshake with {} failed: {e}",
                                connection.peer
                            )
                        });
                    }
                    return;
                }
                Err(_) => {
                    if let Some(firewall) = &edge.firewall {
                        Stats::count(&firewall.stats.header_timeouts);
                    }
                    return;
                }
            };
            if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                return; // a TLS-ALPN-01 validation: the handshake was all of it
            }
            serve(&builder, stream, connection, slot, service, watcher, &edge).await
        });
    }
    drop(listener);
    let grace = grace();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("{local}: requests still running after the {} ms grace period are cut off", grace.as_millis());
        }
    }
}

/// Serves HTTP on one connection until it closes or shutdown drains it.
async fn serve<I, S, F>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    connection: Connection,
    slot: Option<Arc<Slot>>,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    edge: &Arc<Edge>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<F>,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let tracker = activity.clone();
    let service_edge = edge.clone();
    let hyper_service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let guard = tracker.begin();
        // An upgrade (a WebSocket to a plugin, any protocol through the
        // proxy) or a CONNECT stream may outlive its request.
        if request.method() == hyper::Method::CONNECT
            || request.headers().contains_key(hyper::header::UPGRADE)
        {
            request.extensions_mut().insert(ConnectionHold {
                _slot: slot.clone(),
                activity: tracker.clone(),
            });
        }
        let response = service(request, connection, service_edge.clone());
        async move {
            // The request counts as running until its response body is done.
            let response = response.await.map(|body| {
                BodyExt::boxed_unsync(Tracked {
                    body,
                    guard,
                    handed: false,
                })
            });
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), hyper_service);
    let served = watcher.watch(conn.into_owned());
    let idle = Duration::from_millis(edge.limits.idle_timeout_ms);
    let send = Duration::from_millis(edge.limits.send_timeout_ms);
    // Dropping the connection closes it.
    let result = tokio::select! {
        result = served => result,
        () = activity.idle_for(idle) => return,
        () = activity.stalled_for(send) => {
            if let Some(firewall) = &edge.firewall {
                Stats::count(&firewall.stats.send_timeouts);
                firewall.log.warn(|| {
                    format!(
                        "{}: closed a connection from {}: it took none of its response for {} ms",
                        connection.local, connection.peer, send.as_millis()
                    )
                });
            }
            return;
        }
    };
    if let Err(e) = result {
        let Some(firewall) = &edge.firewall else {
            return;
        };
        let e = e.downcast_ref::<hyper::Error>();
        if e.is_some_and(hyper::Error::is_timeout) {
            Stats::count(&firewall.stats.header_timeouts);
            firewall.log.warn(|| {
                format!(
                    "{}: closed a connection from {}: its request head was too slow",
                    connection.local, connection.peer
                )
            });
        } else if e.is_some_and(hyper::Error::is_parse_too_large) {
            Stats::count(&firewall.stats.headers_too_large);
        }
    }
}

/// The HTTP/1 and HTTP/2 settings of every connection.
fn http_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_timeout = Duration::from_millis(limits.header_timeout_ms);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_frame_size(limits.h2_max_frame_size)
        // WebSockets over HTTP/2 (RFC 8441).
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// When a connection last finished a request, and how many it is running:
/// a connection with none running for `idle_timeout_ms` is closed. And
/// whether its client takes what it is sent: a connection with response
/// data handed to hyper, and none taken since, for `send_timeout_ms` is
/// closed too.
pub struct Activity {
    running: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<tokio::time::Instant>,
    /// Response bodies whose last frame hyper has not asked past.
    waiting: std::sync::atomic::AtomicUsize,
    /// When a response body last moved on.
    progress: std::sync::Mutex<tokio::time::Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            running: std::sync::atomic::AtomicUsize::new(0),
            last: std::sync::Mutex::new(tokio::time::Instant::now()),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            progress: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// A body handed hyper a frame: hyper asks for the next one once it
    /// has room for it, that is once the client has taken some of it.
    fn frame_handed(&self) {
        if self
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            *self.progress.lock().unwrap() = tokio::time::Instant::now();
        }
    }

    /// Hyper asked a body that had handed it a frame for the next one.
    fn frame_taken(&self) {
        *self.progress.lock().unwrap() = tokio::time::Instant::now();
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Resolves once response data has waited on the client for `limit`
    /// (found within twice that).
    async fn stalled_for(&self, limit: Duration) {
        loop {
            let since = *self.progress.lock().unwrap();
            let now = tokio::time::Instant::now();
            let waiting = self.waiting.load(std::sync::atomic::Ordering::Relaxed) > 0;
            if waiting && now >= since + limit {
                return;
            }
            let next = if waiting { since + limit } else { now + limit };
            tokio::time::sleep_until(next.max(now + Duration::from_millis(100))).await;
        }
    }

    /// A request starts; it ends when the guard drops.
    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Resolves once no request has run for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let since = *self.last.lock().unwrap();
            if tokio::time::Instant::now() >= since + idle
                && self.running.load(std::sync::atomic::Ordering::Relaxed) == 0
            {
                return;
            }
            tokio::time::sleep_until(
                (since + idle).max(tokio::time::Instant::now() + Duration::from_millis(100)),
            )
            .await;
        }
    }
}

/// Marks one request of a connection as running.
pub struct RequestGuard(Arc<Activity>);

/// Keeps a connection counted against the firewall's connection caps and
/// busy against its idle timeout while something outlives the request that
/// started it: a WebSocket holds it until it closes (an HTTP/1.1 upgrade
/// leaves hyper's connection, an HTTP/2 one leaves no response body).
/// Every upgrade or CONNECT request carries one in its extensions.
#[derive(Clone)]
pub struct ConnectionHold {
    _slot: Option<Arc<Slot>>,
    activity: Arc<Activity>,
}

impl ConnectionHold {
    /// Counts a request as running on the connection until the guard drops.
    pub fn running(&self) -> RequestGuard {
        self.activity.begin()
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap() = tokio::time::Instant::now();
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A response body that holds its request's guard until it is done, and
/// tells its connection's [`Activity`] when the client takes it.
struct Tracked {
    body: Body,
    guard: RequestGuard,
    /// Whether the last poll handed hyper a frame.
    handed: bool,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.handed {
            self.guard.0.frame_taken();
        }
    }
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = crate::server::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if std::mem::take(&mut this.handed) {
            this.guard.0.frame_taken();
        }
        let frame = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &frame {
            this.handed = true;
            this.guard.0.frame_handed();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
