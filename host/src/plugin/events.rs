//! One event of a WebSocket or event-stream connection through a fresh
//! instance of the plugin that accepted it, under the same deadline and
//! memory cap as a request: `on-open`, `on-message` and `on-close` of the
//! plugin's `gatehouse:plugin/websocket-handler` export.

use super::Plugin;
use super::invoke::Failure;
use crate::capability::bindings::exports::gatehouse::plugin::websocket_handler as wit;
use crate::capability::bindings::gatehouse::plugin::realtime::Message;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Where a plugin's `websocket-handler` functions are, found at load time.
pub type Handler = wit::GuestIndices;

pub use wit::{OpenRequest, Rejection, Transport};

/// The handler export of a loaded plugin, if it has one.
pub fn handler_of(pre: &ProxyPre<super::sandbox::Sandbox>) -> Option<Handler> {
    wit::GuestIndices::new(pre.instance_pre()).ok()
}

/// One event for a plugin.
pub enum Event {
    Open(u64, OpenRequest),
    Message(u64, Message),
    Close(u64, u16, String),
}

impl Event {
    fn name(&self) -> &'static str {
        match self {
            Event::Open(..) => "on-open",
            Event::Message(..) => "on-message",
            Event::Close(..) => "on-close",
        }
    }
}

impl Plugin {
    /// Whether this plugin handles WebSockets and event streams.
    pub fn handles_connections(&self) -> bool {
        self.events.is_some()
    }

    /// Runs one event in a fresh instance. `Ok(Some(rejection))` only for an
    /// `on-open` the plugin refused.
    pub async fn event(&self, event: Event) -> Result<Option<Rejection>, Failure> {
        let Some(handler) = &self.events else {
            return Err(Failure::Unavailable(format!(
                "plugin `{}` does not export gatehouse:plugin/websocket-handler",
                self.name
            )));
        };
        let (mut store, deadline) = self.store();
        let timeout_ms = self.sidecar.limits.timeout_ms;
        let std_deadline = deadline.into_std();
        let name = event.name();
        let run = async {
            let super::Code::Component(pre) = &self.code else {
                return Err(Failure::Unavailable(
                    "a CGI plugin has no events".to_owned(),
                ));
            };
            let instance = pre
                .instance_pre()
                .instantiate_async(&mut store)
                .await
                .map_err(|e| Failure::Unavailable(format!("{e:#}")))?;
            let guest = handler
                .load(&mut store, &instance)
                .map_err(|e| Failure::Unavailable(format!("{e:#}")))?;
            let outcome = match event {
                Event::Open(id, request) => guest
                    .call_on_open(&mut store, id, &request)
                    .await
                    .map(|answer| answer.err()),
                Event::Message(id, message) => guest
                    .call_on_message(&mut store, id, &message)
                    .await
                    .map(|()| None),
                Event::Close(id, code, reason) => guest
                    .call_on_close(&mut store, id, code, &reason)
                    .await
                    .map(|()| None),
            };
            outcome.map_err(|e| {
                if std::time::Instant::now() >= std_deadline {
                    Failure::Timeout(timeout_ms)
                } else {
                    Failure::Trap(format!("{name}: {e:?}"))
                }
            })
        };
        match tokio::time::timeout_at(deadline, run).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout(timeout_ms)),
        }
    }
}
