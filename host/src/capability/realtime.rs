//! The connections the host keeps open for plugins (WebSockets and event
//! streams), their channels and subscriptions: `gatehouse:plugin/realtime`.
//!
//! A connection belongs to the plugin that accepted it and channels belong
//! to a plugin: no plugin can reach another's connections or channels. The
//! hub only queues messages; each connection's task ([`crate::websocket`])
//! writes them to its socket, so a slow client never slows a publisher. A
//! client whose queue is full is disconnected.

use crate::config::RealtimeConfig;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};

use super::bindings::gatehouse::plugin::realtime as wit;

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 256;

/// A message for a client, cheap to clone for a fan-out.
#[derive(Debug, Clone)]
pub enum Message {
    Text(tokio_tungstenite::tungstenite::Utf8Bytes),
    Binary(Bytes),
}

impl Message {
    fn len(&self) -> usize {
        match self {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
        }
    }
}

impl From<wit::Message> for Message {
    fn from(message: wit::Message) -> Self {
        match message {
            wit::Message::Text(text) => Message::Text(text.into()),
            wit::Message::Binary(bytes) => Message::Binary(bytes.into()),
        }
    }
}

impl From<Message> for wit::Message {
    fn from(message: Message) -> Self {
        match message {
            Message::Text(text) => wit::Message::Text(text.as_str().to_owned()),
            Message::Binary(bytes) => wit::Message::Binary(bytes.to_vec()),
        }
    }
}

/// What a connection's task is asked to do.
#[derive(Debug)]
pub enum Outbound {
    Message(Message),
    /// Close with a WebSocket close code and reason.
    Close(u16, String),
}

/// The receiving side of one connection, held by its task.
pub struct Inbox {
    pub id: u64,
    pub queue: mpsc::Receiver<Outbound>,
    /// Fires when the client fell too far behind.
    pub overflow: Arc<Notify>,
}

/// One open connection in the hub.
struct Entry {
    plugin: Arc<str>,
    queue: mpsc::Sender<Outbound>,
    overflow: Arc<Notify>,
    channels: HashSet<String>,
}

#[derive(Default)]
struct State {
    connections: HashMap<u64, Entry>,
    /// (plugin, channel) to the connections subscribed to it.
    channels: HashMap<(Arc<str>, String), HashSet<u64>>,
}

/// Every connection, channel and subscription of the process.
pub struct Hub {
    next_id: AtomicU64,
    state: Mutex<State>,
    limits: ArcSwap<RealtimeConfig>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish()
    }
}

impl Hub {
    pub fn new(limits: RealtimeConfig) -> Hub {
        Hub {
            next_id: AtomicU64::new(1),
            state: Mutex::default(),
            limits: ArcSwap::from_pointee(limits),
        }
    }

    /// The limits of the current config.
    pub fn limits(&self) -> Arc<RealtimeConfig> {
        self.limits.load_full()
    }

    /// Applies the limits of a reloaded config to new connections.
    pub fn set_limits(&self, limits: RealtimeConfig) {
        self.limits.store(Arc::new(limits));
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.lock().connections.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still
        // consistent (every change is one insert or remove), so go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection of `plugin`; messages sent to it queue in
    /// the returned inbox until its task reads them.
    pub fn open(&self, plugin: &Arc<str>) -> Inbox {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = mpsc::channel(self.limits.load().queue);
        let overflow = Arc::new(Notify::new());
        self.lock().connections.insert(
            id,
            Entry {
                plugin: plugin.clone(),
                queue,
                overflow: overflow.clone(),
                channels: HashSet::new(),
            },
        );
        Inbox {
            id,
            queue: receiver,
            overflow,
        }
    }

    /// Asks every connection to close with 1001 (going away) and `reason`:
    /// a WebSocket gets the close frame, an event stream ends.
    pub fn close_all(&self, reason: &str) {
        let state = self.lock();
        for entry in state.connections.values() {
            deliver(entry, Outbound::Close(1001, reason.to_owned()));
        }
    }

    /// Forgets a connection and its subscriptions.
    pub fn remove(&self, id: u64) {
        let mut state = self.lock();
        let Some(entry) = state.connections.remove(&id) else {
            return;
        };
        for channel in entry.channels {
            let key = (entry.plugin.clone(), channel);
            if let Some(members) = state.channels.get_mut(&key) {
                members.remove(&id);
                if members.is_empty() {
                    state.channels.remove(&key);
                }
            }
        }
    }

    /// Queues `outbound` for connection `id` of `plugin`. A connection
    /// whose queue is full is being closed (its client fell too far
    /// behind): the message is not queued, and the caller is told so.
    pub fn send(&self, plugin: &str, id: u64, outbound: Outbound) -> Result<(), wit::Error> {
        let state = self.lock();
        let entry = owned(&state, plugin, id)?;
        if !deliver(entry, outbound) {
            return Err(wit::Error::NoSuchConnection(id));
        }
        Ok(())
    }

    /// Subscribes connection `id` of `plugin` to `channel`, up to
    /// `[realtime] channels_per_connection` channels at once.
    pub fn subscribe(&self, plugin: &str, id: u64, channel: &str) -> Result<(), wit::Error> {
        check_channel(channel)?;
        let limit = self.limits.load().channels_per_connection;
        let mut state = self.lock();
        let entry = owned_mut(&mut state, plugin, id)?;
        if !entry.channels.contains(channel) && entry.channels.len() >= limit {
            return Err(wit::Error::TooLarge(format!(
                "connection {id} is subscribed to {limit} channels, \
                 [realtime] channels_per_connection: unsubscribe from one first"
            )));
        }
        if entry.channels.insert(channel.to_owned()) {
            let key = (entry.plugin.clone(), channel.to_owned());
            state.channels.entry(key).or_default().insert(id);
        }
        Ok(())
    }

    pub fn unsubscribe(&self, plugin: &str, id: u64, channel: &str) -> Result<(), wit::Error> {
        let mut state = self.lock();
        let entry = owned_mut(&mut state, plugin, id)?;
        if entry.channels.remove(channel) {
            let key = (entry.plugin.clone(), channel.to_owned());
            if let Some(members) = state.channels.get_mut(&key) {
                members.remove(&id);
                if members.is_empty() {
                    state.channels.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// Queues `message` for every subscriber of `plugin`'s `channel`;
    /// returns how many it was queued for.
    pub fn publish(&self, plugin: &Arc<str>, channel: &str, message: Message) -> u32 {
        let state = self.lock();
        let Some(members) = state.channels.get(&(plugin.clone(), channel.to_owned())) else {
            return 0;
        };
        let mut reached = 0;
        for id in members {
            if let Some(entry) = state.connections.get(id)
                && deliver(entry, Outbound::Message(message.clone()))
            {
                reached += 1;
            }
        }
        reached
    }

    /// Checks a message a plugin wants to send against the size limit.
    fn check_size(&self, message: &Message) -> Result<(), wit::Error> {
        let limit = self.limits.load().max_message_bytes;
        if message.len() > limit {
            return Err(wit::Error::TooLarge(format!(
                "the message is {} bytes; [realtime] max_message_bytes is {limit}",
                message.len()
            )));
        }
        Ok(())
    }
}

/// Queues without waiting; a full queue means the client is too slow, and
/// its task is told to disconnect it.
fn deliver(entry: &Entry, outbound: Outbound) -> bool {
    match entry.queue.try_send(outbound) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            entry.overflow.notify_one();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

fn owned<'s>(state: &'s State, plugin: &str, id: u64) -> Result<&'s Entry, wit::Error> {
    match state.connections.get(&id) {
        Some(entry) if &*entry.plugin == plugin => Ok(entry),
        _ => Err(wit::Error::NoSuchConnection(id)),
    }
}

fn owned_mut<'s>(state: &'s mut State, plugin: &str, id: u64) -> Result<&'s mut Entry, wit::Error> {
    match state.connections.get_mut(&id) {
        Some(entry) if &*entry.plugin == plugin => Ok(entry),
        _ => Err(wit::Error::NoSuchConnection(id)),
    }
}

fn check_channel(channel: &str) -> Result<(), wit::Error> {
    if channel.len() > MAX_CHANNEL_BYTES {
        return Err(wit::Error::TooLarge(format!(
            "the channel name is {} bytes; the limit is {MAX_CHANNEL_BYTES}",
            channel.len()
        )));
    }
    Ok(())
}

/// The realtime side of one instance: its plugin, its grant and the hub.
pub struct Realtime {
    pub plugin: Arc<str>,
    pub granted: bool,
    pub hub: Arc<Hub>,
}

impl Realtime {
    fn hub(&self) -> Result<&Hub, wit::Error> {
        if !self.granted {
            return Err(wit::Error::NotGranted(format!(
                "realtime is not granted to plugin `{0}`: add `realtime = true` under [grants] in {0}.toml",
                self.plugin
            )));
        }
        Ok(&self.hub)
    }

    pub fn send(&self, id: u64, message: wit::Message) -> Result<(), wit::Error> {
        let hub = self.hub()?;
        let message = Message::from(message);
        hub.check_size(&message)?;
        hub.send(&self.plugin, id, Outbound::Message(message))
    }

    pub fn subscribe(&self, id: u64, channel: &str) -> Result<(), wit::Error> {
        self.hub()?.subscribe(&self.plugin, id, channel)
    }

    pub fn unsubscribe(&self, id: u64, channel: &str) -> Result<(), wit::Error> {
        self.hub()?.unsubscribe(&self.plugin, id, channel)
    }

    pub fn publish(&self, channel: &str, message: wit::Message) -> Result<u32, wit::Error> {
        let hub = self.hub()?;
        check_channel(channel)?;
        let message = Message::from(message);
        hub.check_size(&message)?;
        Ok(hub.publish(&self.plugin, channel, message))
    }

    pub fn close(&self, id: u64, code: u16, reason: String) -> Result<(), wit::Error> {
        let hub = self.hub()?;
        // Close codes a server may send (RFC 6455 7.4): 1000-1003, 1007-1014,
        // and the 3000-4999 application range.
        let code = match code {
            1000..=1003 | 1007..=1014 | 3000..=4999 => code,
            _ => 1000,
        };
        let mut reason = reason;
        // A close frame's reason fits in 123 bytes.
        while reason.len() > 123 {
            reason.pop();
        }
        hub.send(&self.plugin, id, Outbound::Close(code, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(queue: usize, channels_per_connection: usize) -> Hub {
        Hub::new(RealtimeConfig {
            queue,
            channels_per_connection,
            ..RealtimeConfig::default()
        })
    }

    fn hello() -> Outbound {
        Outbound::Message(Message::Text("hello".into()))
    }

    #[test]
    fn a_send_that_finds_the_queue_full_is_not_reported_sent() {
        let hub = hub(1, 100);
        let inbox = hub.open(&Arc::from("p"));
        assert!(hub.send("p", inbox.id, hello()).is_ok());
        let full = hub.send("p", inbox.id, hello());
        assert!(
            matches!(full, Err(wit::Error::NoSuchConnection(id)) if id == inbox.id),
            "{full:?}"
        );
        // Another plugin cannot reach it at all.
        let foreign = hub.send("q", inbox.id, hello());
        assert!(
            matches!(foreign, Err(wit::Error::NoSuchConnection(_))),
            "{foreign:?}"
        );
    }

    #[test]
    fn a_connection_is_on_at_most_channels_per_connection_channels() {
        let hub = hub(8, 2);
        let inbox = hub.open(&Arc::from("p"));
        hub.subscribe("p", inbox.id, "a").unwrap();
        hub.subscribe("p", inbox.id, "b").unwrap();
        // Subscribing again to one it is on is not one more.
        hub.subscribe("p", inbox.id, "a").unwrap();
        let third = hub.subscribe("p", inbox.id, "c");
        assert!(
            matches!(&third, Err(wit::Error::TooLarge(text)) if text.contains("channels_per_connection")),
            "{third:?}"
        );
        hub.unsubscribe("p", inbox.id, "a").unwrap();
        hub.subscribe("p", inbox.id, "c").unwrap();
        assert_eq!(
            hub.publish(&Arc::from("p"), "c", Message::Text("x".into())),
            1
        );
        assert_eq!(
            hub.publish(&Arc::from("p"), "a", Message::Text("x".into())),
            0
        );
    }
}
