//! Server-Sent Events on plugin routes, for clients that cannot use
//! WebSockets: a `GET` with `Accept: text/event-stream` to a plugin that
//! handles connections opens a connection like a WebSocket does (`on-open`,
//! channels, `send`, `close`, `on-close`), whose messages flow to the client
//! only. Text goes out as `data:` lines; binary as base64 in events named
//! `binary`. An idle stream gets a comment line every ping interval, which is
//! also how the host notices a client that left.

use crate::capability::realtime::{Hub, Inbox, Message, Outbound};
use crate::plugin::Plugin;
use crate::plugin::events::Transport;
use crate::plugin::mounts::Mounts;
use crate::server::{Body, BoxError};
use crate::websocket::{closed, open};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use std::sync::Arc;
use std::time::Duration;

/// Whether a request asks for an event stream.
pub fn is_request<B>(request: &Request<B>) -> bool {
    request.method() == http::Method::GET
        && request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|part| {
                part.split(';')
                    .next()
                    .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("text/event-stream"))
            })
}

/// Opens an event stream on a route of `plugin`: asks its `on-open`, then
/// answers 200 with a body that lasts as long as the connection.
pub async fn accept<B>(
    plugin: Arc<Plugin>,
    mounts: Arc<Mounts>,
    request: Request<B>,
) -> Response<Body> {
    let (hub, inbox) = match open(&plugin, &request, Transport::EventStream).await {
        Ok(opened) => opened,
        Err(refused) => return refused,
    };
    let every = Duration::from_millis(hub.limits().ping_interval_ms);
    let stream = Stream {
        ping: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        queue_limit: hub.limits().queue,
        plugin,
        mounts,
        hub,
        inbox,
        ended: None,
    };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next().await?;
        Some((Ok::<_, BoxError>(Frame::data(chunk)), stream))
    });
    let mut response = Response::new(StreamBody::new(body).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells a proxy in front (nginx) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One open event stream: the body of its response.
struct Stream {
    plugin: Arc<Plugin>,
    /// Where `on-close` finds the version mounted by then.
    mounts: Arc<Mounts>,
    hub: Arc<Hub>,
    inbox: Inbox,
    ping: tokio::time::Interval,
    queue_limit: usize,
    /// Why the stream ended, when the host or the plugin ended it.
    ended: Option<(u16, String)>,
}

impl Stream {
    /// The next chunk to write, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended.is_some() {
            return None;
        }
        tokio::select! {
            outbound = self.inbox.queue.recv() => match outbound {
                Some(Outbound::Message(Message::Text(text))) => Some(event(None, text.as_str())),
                Some(Outbound::Message(Message::Binary(bytes))) => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    Some(event(Some("binary"), &encoded))
                }
                Some(Outbound::Close(code, reason)) => {
                    self.ended = Some((code, reason));
                    None
                }
                None => {
                    self.ended = Some((1001, String::new()));
                    None
                }
            },
            _ = self.ping.tick() => Some(Bytes::from_static(b": ping\n\n")),
            () = self.inbox.overflow.notified() => {
                self.ended = Some((1008, format!("too slow: over {} messages queued", self.queue_limit)));
                None
            }
        }
    }
}

impl Drop for Stream {
    /// The response body is dropped when the stream ends or the client
    /// leaves: forget the connection and tell the plugin.
    fn drop(&mut self) {
        let (code, reason) = self.ended.take().unwrap_or((1001, String::new()));
        let plugin = self.mounts.connection_handler(&self.plugin);
        let (hub, id) = (self.hub.clone(), self.inbox.id);
        hub.remove(id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { closed(&plugin, &hub, id, code, reason).await });
        }
    }
}

/// One event: each line of `data` on a `data:` line, then a blank line.
fn event(name: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 16);
    if let Some(name) = name {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    for line in data.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}
