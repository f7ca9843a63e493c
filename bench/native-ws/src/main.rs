//! The native baseline of the realtime benchmark: the job the realtime
//! fixture does in gatehouse, without wasm. hyper with the same auto (h1/h2)
//! server and upgrades gatehouse uses, tokio-tungstenite over the upgraded
//! connection with gatehouse's socket settings (4 KiB read buffer, no write
//! buffer), and a hub like gatehouse's: a bounded tokio mpsc queue per
//! connection (256, gatehouse's default `[realtime] queue`), filled by a
//! publish and drained by the connection's task, which also pings an idle
//! client every 30 s.
//!
//! - `GET /ws?channel=X` (a WebSocket upgrade): subscribes the connection to
//!   each `channel`, sends it `welcome <id>`;
//! - `POST /publish/X`: queues the body for every subscriber of X and
//!   answers how many it reached.
//!
//! Usage: native-ws ADDR

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

/// gatehouse's default `[realtime] queue`.
const QUEUE: usize = 256;
/// gatehouse's default `[realtime] ping_interval_ms`.
const PING: Duration = Duration::from_secs(30);
/// gatehouse's WebSocket read buffer.
const READ_BUFFER: usize = 4096;

/// Channels to their subscribers' queues.
#[derive(Default)]
struct Hub {
    next_id: AtomicU64,
    channels: Mutex<HashMap<String, HashMap<u64, mpsc::Sender<Utf8Bytes>>>>,
}

impl Hub {
    fn subscribe(&self, id: u64, channel: &str, queue: &mpsc::Sender<Utf8Bytes>) {
        let mut channels = self.channels.lock().unwrap();
        channels
            .entry(channel.to_owned())
            .or_default()
            .insert(id, queue.clone());
    }

    fn remove(&self, id: u64, channels: &[String]) {
        let mut all = self.channels.lock().unwrap();
        for channel in channels {
            if let Some(members) = all.get_mut(channel) {
                members.remove(&id);
                if members.is_empty() {
                    all.remove(channel);
                }
            }
        }
    }

    /// Queues `text` for every subscriber of `channel` without waiting;
    /// returns how many it reached.
    fn publish(&self, channel: &str, text: Utf8Bytes) -> usize {
        let channels = self.channels.lock().unwrap();
        let Some(members) = channels.get(channel) else {
            return 0;
        };
        members
            .values()
            .filter(|queue| queue.try_send(text.clone()).is_ok())
            .count()
    }
}

type Body = Full<Bytes>;

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn header_has(request: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

async fn handle(hub: Arc<Hub>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    if path == "/ws" && request.method() == hyper::Method::GET {
        return upgrade(hub, request);
    }
    if let Some(channel) = path.strip_prefix("/publish/")
        && request.method() == hyper::Method::POST
    {
        let body = match request.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let Ok(text) = Utf8Bytes::try_from(body) else {
            return answer(StatusCode::BAD_REQUEST, "the body is not UTF-8\n");
        };
        return answer(StatusCode::OK, hub.publish(channel, text).to_string());
    }
    answer(StatusCode::NOT_FOUND, "no route\n")
}

/// Answers 101 and runs the connection in its own task.
fn upgrade(hub: Arc<Hub>, mut request: Request<Incoming>) -> Response<Body> {
    if !header_has(&request, header::CONNECTION, "upgrade")
        || !header_has(&request, header::UPGRADE, "websocket")
    {
        return answer(StatusCode::BAD_REQUEST, "a WebSocket upgrade is expected\n");
    }
    let Some(key) = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| tungstenite::handshake::derive_accept_key(key.as_bytes()))
    else {
        return answer(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key\n");
    };
    let channels: Vec<String> = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("channel="))
        .map(str::to_owned)
        .collect();
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let (queue, inbox) = mpsc::channel(QUEUE);
    for channel in &channels {
        hub.subscribe(id, channel, &queue);
    }
    // Like the fixture, the welcome goes through the connection's queue.
    let _ = queue.try_send(Utf8Bytes::from(format!("welcome {id}")));
    drop(queue);

    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let config = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                .write_buffer_size(0);
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            run(socket, inbox).await;
        }
        hub.remove(id, &channels);
    });

    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    headers.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    if let Ok(accept) = header::HeaderValue::from_str(&key) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Writes what the hub queues to the socket until either side closes;
/// drops what the client sends.
async fn run<S>(mut socket: WebSocketStream<S>, mut inbox: mpsc::Receiver<Utf8Bytes>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    let mut heard = true;
    loop {
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(Message::Close(_))) => {
                    let _ = socket.flush().await;
                    return;
                }
                Some(Ok(_)) => heard = true,
                Some(Err(_)) | None => return,
            },
            text = inbox.recv() => match text {
                Some(text) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            _ = ping.tick() => {
                if !heard {
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return;
                }
                heard = false;
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: native-ws ADDR");
        std::process::exit(2);
    };
    let hub = Arc::new(Hub::default());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("listening on http://{}", listener.local_addr().unwrap());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: say so, and go on.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let hub = hub.clone();
                async move { Ok::<_, Infallible>(handle(hub, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
