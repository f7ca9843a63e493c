//! Real upstream servers for the proxy tests: hyper on 127.0.0.1, each
//! with a name, a hit counter and a few endpoints:
//! - `/headers`: the request's method, path and headers as JSON;
//! - `/slow?ms=N`: answers after N ms (the most at once is kept);
//! - `/echo`: streams the request body back as it arrives;
//! - `/health`: 200, or 503 while made unhealthy;
//! - `/ws`: a WebSocket echo;
//! - anything else: `<name> <path>`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A running upstream; stops accepting when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub healthy: Arc<AtomicBool>,
    pub slow: Arc<InFlight>,
    task: tokio::task::JoinHandle<()>,
}

/// Requests being answered at once, now and at the most.
#[derive(Default)]
pub struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    /// The requests in flight now.
    pub fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    async fn during<T>(&self, work: impl Future<Output = T>) -> T {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let out = work.await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

impl Upstream {
    /// Starts an upstream called `name` on a free port.
    pub async fn start(name: &str) -> Upstream {
        Upstream::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts an upstream on `addr`.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let slow = Arc::new(InFlight::default());
        let (name, counter, health, in_flight) =
            (name.to_owned(), hits.clone(), healthy.clone(), slow.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, counter, health, in_flight) = (
                    name.clone(),
                    counter.clone(),
                    health.clone(),
                    in_flight.clone(),
                );
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (name, counter, health, in_flight) = (
                            name.clone(),
                            counter.clone(),
                            health.clone(),
                            in_flight.clone(),
                        );
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                answer(&name, &counter, &health, &in_flight, request).await,
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            hits,
            healthy,
            slow,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port with nothing listening on it.
pub fn dead_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).map_err(|e| match e {}).boxed());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}

async fn answer(
    name: &str,
    hits: &AtomicUsize,
    healthy: &AtomicBool,
    slow: &InFlight,
    mut request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if path == "/health" {
        return match healthy.load(Ordering::SeqCst) {
            true => text(200, "ok"),
            false => text(503, "unhealthy"),
        };
    }
    hits.fetch_add(1, Ordering::SeqCst);
    match path.as_str() {
        "/headers" => {
            let headers: serde_json::Map<String, serde_json::Value> = request
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
                .collect();
            let body = serde_json::json!({
                "upstream": name,
                "method": request.method().as_str(),
                "uri": request.uri().to_string(),
                "headers": headers,
            });
            text(200, body.to_string())
        }
        "/slow" => {
            let ms: u64 = request
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            slow.during(tokio::time::sleep(Duration::from_millis(ms)))
                .await;
            text(200, format!("{name} slow"))
        }
        "/echo" => {
            let body = request.into_body().map_err(|e| e.into()).boxed();
            Response::new(body)
        }
        "/ws" => {
            let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
                return text(400, "not a websocket request");
            };
            let upgrade = hyper::upgrade::on(&mut request);
            tokio::spawn(async move {
                use futures_util::{SinkExt, StreamExt};
                let Ok(upgraded) = upgrade.await else { return };
                let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        let _ = socket.send(message).await;
                    }
                }
            });
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
                .unwrap()
        }
        _ => text(200, format!("{name} {path}")),
    }
}
