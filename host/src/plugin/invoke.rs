//! One request through a plugin: a fresh instance from the plugin's
//! `InstancePre`, a wall-clock deadline and a memory cap. A plugin that traps,
//! loops or exhausts its memory fails only its own request.

use super::Plugin;
use super::output::{PluginOutput, Stream};
use super::sandbox::Sandbox;
use crate::capability::outbound::OutboundPolicy;
use futures_util::FutureExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

/// An instance's run not yet ended: dropped, it goes on in a task of its
/// own, so a plugin finishes its work (and its body) whether or not the
/// request's task is still there.
struct Detached<F: Future<Output = Result<(), Failure>> + Send + 'static>(Option<Pin<Box<F>>>);

impl<F: Future<Output = Result<(), Failure>> + Send + 'static> Drop for Detached<F> {
    fn drop(&mut self) {
        if let Some(run) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run);
        }
    }
}

/// Why a plugin gave no response.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// It ran past `[limits] timeout_ms`.
    #[error("ran past its {0} ms deadline")]
    Timeout(u64),
    /// It trapped (a panic, a stack overflow, memory exhausted, …).
    #[error("trapped: {0}")]
    Trap(String),
    /// It returned without setting a response.
    #[error("returned without a response")]
    NoResponse,
    /// It answered with a wasi:http error code instead of a response.
    #[error("answered with an error: {0}")]
    ErrorCode(String),
    /// No instance could be made (the pool is full, or the request is unusable).
    #[error("could not start: {0}")]
    Unavailable(String),
}

impl Failure {
    /// What the client is told: the kind of failure, not the plugin's
    /// internals (the log has those).
    pub fn public_message(&self) -> &'static str {
        match self {
            Failure::Timeout(_) => "ran past its deadline",
            Failure::Trap(_) => "trapped",
            Failure::NoResponse => "returned without a response",
            Failure::ErrorCode(_) => "answered with an error",
            Failure::Unavailable(_) => "could not start; try again",
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Failure::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
            Failure::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Plugin {
    /// Runs `request` through a fresh instance of this plugin. The response
    /// body streams from the instance, which lives on in its own task until
    /// the body is done or the deadline passes.
    pub async fn invoke<B>(
        self: &Arc<Self>,
        request: http::Request<B>,
    ) -> Result<http::Response<HyperOutgoingBody>, Failure>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let pre = match &self.code {
            super::Code::Component(pre) => pre.clone(),
            super::Code::Cgi(program) => return self.invoke_cgi(program, request).await,
        };
        let (mut store, deadline) = self.store();
        let std_deadline = deadline.into_std();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let req = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| Failure::Unavailable(format!("{e:#}")))?;
        let out = http
            .new_response_outparam(sender)
            .map_err(|e| Failure::Unavailable(format!("{e:#}")))?;

        let timeout_ms = self.sidecar.limits.timeout_ms;
        let run = async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await.map_err(|e| {
                    // Memories past the cap at the start fail every time:
                    // not a busy pool to try again on.
                    match e.is::<super::sandbox::PastMemoryCap>() {
                        true => Failure::Trap(format!("{e:#}")),
                        false => Failure::Unavailable(format!("{e:#}")),
                    }
                })?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map_err(|e| {
                        if std::time::Instant::now() >= std_deadline {
                            Failure::Timeout(timeout_ms)
                        } else {
                            Failure::Trap(format!("{e:?}"))
                        }
                    })
            };
            // A panic in a host call fails this request only, as it would
            // in a task of its own.
            let run = std::panic::AssertUnwindSafe(tokio::time::timeout_at(deadline, run));
            match run.catch_unwind().await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(Failure::Timeout(timeout_ms)),
                Err(_) => Err(Failure::Trap("a host call panicked".to_owned())),
            }
        };

        // The instance runs in this request's task until it has answered;
        // a small answer is usually written whole by then. What is left of
        // it (the rest of a body, or all of it if the client is gone) runs
        // on in a task of its own.
        let mut instance = Detached(Some(Box::pin(run)));
        let mut receiver = receiver;
        let first = std::future::poll_fn(|cx| {
            if let Some(run) = instance.0.as_mut()
                && let Poll::Ready(ended) = run.as_mut().poll(cx)
            {
                instance.0 = None;
                return Poll::Ready(Err(ended));
            }
            Pin::new(&mut receiver).poll(cx).map(Ok)
        })
        .await;
        let (answer, ended) = match first {
            Ok(Ok(answer)) => (Some(answer), None),
            Err(ended) => (receiver.try_recv().ok(), Some(ended)),
            // The plugin dropped its response outparam unset: its run says why.
            Ok(Err(_)) => (None, None),
        };
        let ended = match (answer, ended) {
            (Some(Ok(response)), _) => return Ok(response),
            (Some(Err(code)), _) => return Err(Failure::ErrorCode(format!("{code:?}"))),
            (None, Some(ended)) => ended,
            (None, None) => match instance.0.as_mut() {
                Some(run) => {
                    let ended = run.await;
                    instance.0 = None;
                    ended
                }
                None => Ok(()),
            },
        };
        Err(ended.err().unwrap_or(Failure::NoResponse))
    }

    /// A store for one fresh instance, under the plugin's memory cap and
    /// wall-clock deadline, and that deadline.
    pub(super) fn store(&self) -> (Store<Sandbox>, Instant) {
        let deadline = Instant::now() + Duration::from_millis(self.sidecar.limits.timeout_ms);
        let mut store = Store::new(self.code.engine(), self.sandbox());
        store.limiter(|sandbox| &mut sandbox.limits);
        // Every epoch tick the guest yields to the scheduler, so a looping
        // plugin never holds a worker thread; past the deadline it traps.
        store.set_epoch_deadline(1);
        let std_deadline = deadline.into_std();
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= std_deadline {
                Err(wasmtime::format_err!("deadline exceeded"))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        (store, deadline)
    }

    /// The sandbox of one instance: granted environment only, output to the
    /// log under the plugin's name, no preopened folders, no sockets, outbound HTTP by policy, memory capped.
    fn sandbox(&self) -> Sandbox {
        let provisions = self.provisions.load_full();
        let env = crate::capability::env::resolve(&self.sidecar.grants.env, &provisions.secrets);
        let mut wasi = WasiCtx::builder();
        wasi.envs(&env)
            .stdout(PluginOutput::new(
                self.granted.plugin.clone(),
                Stream::Stdout,
                self.log_budget.clone(),
            ))
            .stderr(PluginOutput::new(
                self.granted.plugin.clone(),
                Stream::Stderr,
                self.log_budget.clone(),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        Sandbox {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: wasmtime::component::ResourceTable::new(),
            limits: super::sandbox::MemoryCap::new(self.sidecar.limits.memory_mb),
            outbound: OutboundPolicy {
                plugin: self.granted.plugin.clone(),
                grant: self.outbound.clone(),
            },
            capabilities: crate::capability::Held {
                granted: self.granted.clone(),
                databases: provisions.databases.clone(),
                realtime: crate::capability::realtime::Realtime {
                    plugin: self.granted.plugin.clone(),
                    granted: self.granted.realtime,
                    hub: provisions.realtime.clone(),
                },
            },
        }
    }
}
