//! Listeners: accept a TCP connection, read its PROXY header when a trusted
//! proxy sends one, admit it through the firewall,
//! terminate TLS, and serve HTTP/1.1 and HTTP/2 on it (hyper-util's auto
//! builder) under the request limits; drain on shutdown.

use crate::config::{LimitsConfig, ListenerConfig};
use crate::error::{Error, Result};
use crate::firewall::{Firewall, Refusal, Stats};
use crate::server::Body;
use crate::shutdown::Shutdown;
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

/// Accepts connections on `listener` and serves each request with
/// `service(request, connection)` until `shutdown`; then stops accepting
/// and lets open connections finish their requests for up to `grace`.
pub async fn run<S, F>(
    listener: TcpListener,
    edge: Arc<Edge>,
    service: S,
    shutdown: Shutdown,
    grace: Duration,
) where
    S: Fn(hyper::Request<Incoming>, Connection) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let builder = Arc::new(http_builder(&edge.limits));
    let graceful = GracefulShutdown::new();
    let stop = shutdown.wait();
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
        let (edge, builder, service, watcher) = (
            edge.clone(),
            builder.clone(),
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
            let _slot = match &edge.firewall {
                Some(firewall) => match firewall.admit(client) {
                    Ok(slot) => Some(slot),
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
                return serve(&builder, stream, connection, service, watcher, &edge).await;
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
            serve(&builder, stream, connection, service, watcher, &edge).await
        });
    }
    drop(listener);
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
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
    edge: &Edge,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(hyper::Request<Incoming>, Connection) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = hyper::Response<Body>> + Send + 'static,
{
    let hyper_service = hyper::service::service_fn(move |request| {
        let response = service(request, connection);
        async move { Ok::<_, std::convert::Infallible>(response.await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), hyper_service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
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
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}
