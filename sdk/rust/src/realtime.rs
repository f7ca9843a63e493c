//! The plugin's WebSocket and event-stream connections and its channels
//! (`[grants] realtime = true`). To handle connection events, export
//! `gatehouse:plugin/websocket-handler` (see the `likes` demo).

use crate::bindings::gatehouse::plugin::realtime as wit;
pub use wit::{ConnectionId, Error, Message, close, publish, send, subscribe, unsubscribe};

/// Publishes text to every subscriber of `channel`; returns how many it reached.
pub fn publish_text(channel: &str, text: impl Into<String>) -> Result<u32, Error> {
    publish(channel, &Message::Text(text.into()))
}

/// Publishes a value as JSON text.
pub fn publish_json(channel: &str, value: &impl serde::Serialize) -> Result<u32, Error> {
    let text = serde_json::to_string(value).map_err(|e| Error::Other(e.to_string()))?;
    publish_text(channel, text)
}

/// Sends text to one connection.
pub fn send_text(connection: ConnectionId, text: impl Into<String>) -> Result<(), Error> {
    send(connection, &Message::Text(text.into()))
}
