//! The request body as the host reads it: a client that stops sending its
//! body for `[limits] body_timeout_ms` is cut off (nginx's
//! `client_body_timeout`). The clock runs only while the host waits for the
//! next piece, so a plugin that reads slowly is not held against the client.

use crate::firewall::{Firewall, Stats};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::Sleep;

/// Why a request body ended before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent nothing for the timeout while the host waited.
    #[error("the client sent no part of its request body for {} ms", .0.as_millis())]
    TimedOut(Duration),
    /// The connection broke, or the body was malformed.
    #[error("the request body was cut off: {0}")]
    Client(#[from] hyper::Error),
}

/// A plugin reading a body that timed out sees wasi:http's
/// `connection-read-timeout`; one that broke, the hyper error.
impl From<BodyError> for wasmtime_wasi_http::Error {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::TimedOut(_) => wasmtime_wasi_http::Error::ConnectionReadTimeout,
            BodyError::Client(e) => wasmtime_wasi_http::Error::Hyper(e),
        }
    }
}

/// A request body with a limit on how long the client may pause.
pub struct Timed {
    body: Incoming,
    timeout: Duration,
    /// Set while the host waits for the next frame.
    waiting: Option<Pin<Box<Sleep>>>,
    /// Counts and logs a cut-off client.
    firewall: Arc<Firewall>,
    client: IpAddr,
    done: bool,
}

impl Timed {
    /// `body` from `client`, cut off after `timeout` without a frame.
    pub fn new(
        body: Incoming,
        timeout: Duration,
        firewall: Arc<Firewall>,
        client: IpAddr,
    ) -> Timed {
        Timed {
            body,
            timeout,
            waiting: None,
            firewall,
            client,
            done: false,
        }
    }
}

impl Body for Timed {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame.map(|frame| frame.map_err(BodyError::from)));
        }
        let timeout = this.timeout;
        let waiting = this
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(waiting.as_mut().poll(cx));
        this.done = true;
        this.waiting = None;
        Stats::count(&this.firewall.stats.body_timeouts);
        let client = this.client;
        this.firewall.log.warn(|| {
            format!(
                "cut off the request body of {client}: nothing came for {} ms",
                timeout.as_millis()
            )
        });
        Poll::Ready(Some(Err(BodyError::TimedOut(timeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
