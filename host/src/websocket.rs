//! WebSockets on plugin routes, terminated by the host: HTTP/1.1 upgrades
//! and HTTP/2 extended CONNECT streams alike. The plugin sees
//! events, not sockets: `on-open` (which may refuse the connection), one
//! `on-message` per message, `on-close`; each in a fresh instance, one at a
//! time per connection. The host keeps the socket, pings it when idle,
//! enforces the size and rate limits of `[realtime]`, writes what the hub
//! queues for it, and forgets its subscriptions when it closes.
//!
//! tokio-tungstenite speaks the protocol over hyper's upgraded connection;
//! its read buffer is kept small so an idle connection costs little memory.

use crate::capability::realtime::{Hub, Inbox, Message, Outbound};
use crate::config::RealtimeConfig;
use crate::listener::ConnectionHold;
use crate::plugin::Plugin;
use crate::plugin::events::{Event, OpenRequest, Rejection, Transport};
use crate::plugin::mounts::Mounts;
use crate::server::{Body, text};
use futures_util::{SinkExt, StreamExt};
use governor::{Quota, RateLimiter};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message as Frame};

/// Whether a request asks for a WebSocket: an HTTP/1.1 upgrade, or an
/// HTTP/2 extended CONNECT (RFC 8441) with `:protocol websocket`.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    match request.version() {
        http::Version::HTTP_2 => {
            request.method() == http::Method::CONNECT
                && request
                    .extensions()
                    .get::<hyper::ext::Protocol>()
                    .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
        }
        _ => {
            request.method() == http::Method::GET
                && header_has(request, header::CONNECTION, "upgrade")
                && header_has(request, header::UPGRADE, "websocket")
        }
    }
}

fn header_has<B>(request: &Request<B>, name: header::HeaderName, token: &str) -> bool {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// The request as a plugin's `on-open` sees it.
fn open_request<B>(request: &Request<B>, transport: Transport) -> OpenRequest {
    OpenRequest {
        transport,
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or("").to_owned(),
        headers: request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
    }
}

/// Registers a new connection of `plugin` in the hub and asks its
/// `on-open` whether it accepts it; on refusal or failure, forgets it and
/// returns the answer for the client.
pub async fn open<B>(
    plugin: &Plugin,
    request: &Request<B>,
    transport: Transport,
) -> Result<(Arc<Hub>, Inbox), Response<Body>> {
    let hub = plugin.provisions.load().realtime.clone();
    let inbox = hub.open(&plugin.granted.plugin);
    // Forgets the connection unless it is accepted, also when this future is
    // dropped while `on-open` runs (the client left, the stream was reset).
    let mut pending = Pending {
        hub: hub.clone(),
        id: Some(inbox.id),
    };
    let opened = open_request(request, transport);
    let refused = match plugin.event(Event::Open(inbox.id, opened)).await {
        Ok(None) => {
            pending.id = None;
            return Ok((hub, inbox));
        }
        Ok(Some(Rejection { status, body })) => {
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::FORBIDDEN);
            text(status, body)
        }
        Err(failure) => {
            tracing::warn!(plugin = %plugin.name, "on-open failed: {failure}");
            text(
                failure.status(),
                format!("plugin `{}` {}", plugin.name, failure.public_message()),
            )
        }
    };
    Err(refused)
}

/// A connection registered in the hub whose `on-open` has not accepted it.
struct Pending {
    hub: Arc<Hub>,
    id: Option<u64>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.hub.remove(id);
        }
    }
}

/// Runs `on-close` after a connection ended, logging a failure.
pub async fn closed(plugin: &Plugin, hub: &Hub, id: u64, code: u16, reason: String) {
    hub.remove(id);
    if let Err(failure) = plugin.event(Event::Close(id, code, reason)).await {
        tracing::warn!(plugin = %plugin.name, "on-close failed: {failure}");
    }
}

/// Accepts a WebSocket on a route of `plugin`: asks its `on-open`, then
/// answers (101 to an HTTP/1.1 upgrade, 200 to an HTTP/2 CONNECT) and runs
/// the connection in its own task.
pub async fn accept(
    plugin: Arc<Plugin>,
    mounts: Arc<Mounts>,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let h2 = request.version() == http::Version::HTTP_2;
    // HTTP/2 has no key to answer: the stream itself is the handshake.
    let key = request
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| tungstenite::handshake::derive_accept_key(key.as_bytes()));
    if key.is_none() && !h2 {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs a Sec-WebSocket-Key header",
        );
    }
    if request
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version != "13")
    {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is spoken here",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let (hub, inbox) = match open(&plugin, &request, Transport::Websocket).await {
        Ok(opened) => opened,
        Err(refused) => return refused,
    };

    let upgrade = hyper::upgrade::on(&mut request);
    let limits = hub.limits();
    let id = inbox.id;
    // The socket counts as a connection (firewall caps) and as a running
    // request (idle timeout) for as long as it is open.
    let held = request
        .extensions()
        .get::<ConnectionHold>()
        .map(|hold| (hold.clone(), hold.running()));
    tokio::spawn(async move {
        let _held = held;
        let (plugin, code, reason) = match upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER)
                    .write_buffer_size(0)
                    .max_message_size(Some(limits.max_message_bytes))
                    .max_frame_size(Some(limits.max_message_bytes));
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                let mut connection = Connection {
                    plugin,
                    mounts,
                    inbox,
                    limits: &limits,
                };
                let (code, reason) = connection.run(socket).await;
                (connection.handler(), code, reason)
            }
            Err(e) => {
                tracing::debug!(plugin = %plugin.name, "WebSocket upgrade failed: {e}");
                (plugin, 1006, String::new())
            }
        };
        closed(&plugin, &hub, id, code, reason).await;
    });

    let mut response = Response::new(Body::default());
    if h2 {
        return response;
    }
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Some(accept) = key.and_then(|key| HeaderValue::from_str(&key).ok()) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Bytes read from a socket at a time: most messages are small, and an idle
/// connection holds this much.
const READ_BUFFER: usize = 4096;

/// One accepted WebSocket while it is open.
struct Connection<'a> {
    /// The plugin version that handled its last event.
    plugin: Arc<Plugin>,
    /// Where the version mounted now is found, for the next event.
    mounts: Arc<Mounts>,
    inbox: Inbox,
    limits: &'a RealtimeConfig,
}

impl Connection<'_> {
    /// The plugin version for the next event (see
    /// [`Mounts::connection_handler`]).
    fn handler(&mut self) -> Arc<Plugin> {
        self.plugin = self.mounts.connection_handler(&self.plugin);
        self.plugin.clone()
    }

    /// Relays messages both ways until either side closes; returns the
    /// close code and reason for `on-close`.
    async fn run<S>(&mut self, mut socket: WebSocketStream<S>) -> (u16, String)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let id = self.inbox.id;
        let limits = self.limits;
        let rate = Quota::per_second(
            NonZeroU32::new(limits.messages_per_second).unwrap_or(NonZeroU32::MIN),
        )
        .allow_burst(NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN));
        let rate = RateLimiter::direct(rate);
        let every = Duration::from_millis(limits.ping_interval_ms);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        // After a long plugin event, one tick, not a burst of missed ones.
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Anything heard from the client since the last ping.
        let mut heard = true;
        loop {
            tokio::select! {
                frame = socket.next() => {
                    heard = true;
                    let message = match frame {
                        Some(Ok(Frame::Text(text))) => Message::Text(text),
                        Some(Ok(Frame::Binary(bytes))) => Message::Binary(bytes),
                        Some(Ok(Frame::Close(frame))) => {
                            // tungstenite queued the reply; send it, but do
                            // not wait on a client that stopped reading.
                            let _ = tokio::time::timeout(Duration::from_secs(1), socket.flush()).await;
                            return frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.as_str().to_owned()));
                        }
                        Some(Ok(_)) => continue, // ping, pong: tungstenite answers pings itself
                        Some(Err(tungstenite::Error::Capacity(_))) => {
                            let reason = format!("message over {} bytes", limits.max_message_bytes);
                            return close(&mut socket, 1009, reason).await;
                        }
                        Some(Err(_)) | None => return (1006, String::new()),
                    };
                    if rate.check().is_err() {
                        let reason = format!("over {} messages per second", limits.messages_per_second);
                        return close(&mut socket, 1008, reason).await;
                    }
                    let plugin = self.handler();
                    if let Err(failure) = plugin.event(Event::Message(id, message.into())).await {
                        tracing::warn!(plugin = %plugin.name, "on-message failed: {failure}");
                    }
                }
                outbound = self.inbox.queue.recv() => match outbound {
                    Some(Outbound::Message(message)) => {
                        let frame = match message {
                            Message::Text(text) => Frame::Text(text),
                            Message::Binary(bytes) => Frame::Binary(bytes),
                        };
                        match tokio::time::timeout(every, socket.send(frame)).await {
                            Ok(Ok(())) => {}
                            _ => return (1006, String::new()),
                        }
                    }
                    Some(Outbound::Close(code, reason)) => return close(&mut socket, code, reason).await,
                    None => return close(&mut socket, 1001, String::new()).await,
                },
                _ = ping.tick() => {
                    if !heard {
                        return close(&mut socket, 1001, "no answer to ping".to_owned()).await;
                    }
                    heard = false;
                    if tokio::time::timeout(every, socket.send(Frame::Ping(Default::default()))).await.is_err() {
                        return (1006, String::new());
                    }
                }
                () = self.inbox.overflow.notified() => {
                    let reason = format!("too slow: over {} messages queued", limits.queue);
                    return close(&mut socket, 1008, reason).await;
                }
            }
        }
    }
}

/// Sends a close frame (without waiting long for the client) and returns
/// the code and reason.
async fn close<S>(socket: &mut WebSocketStream<S>, code: u16, reason: String) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.as_str().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(Some(frame))).await;
    (code, reason)
}
