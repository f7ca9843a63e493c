//! What a plugin prints: its stdout and stderr go to the host's log a line
//! at a time, each line naming the plugin, so an operator running many
//! plugins can tell who said what (stdout at `info`, stderr at `warn`, where
//! a guest's panic message lands).
//!
//! Guest output is untrusted: a line is cut at [`MAX_LINE`] bytes, invalid
//! UTF-8 is replaced, and the log formatter escapes control characters. A
//! plugin logs at most [`LINES_PER_SECOND`] lines a second (in bursts of up
//! to [`LINES_BURST`]); the lines past that are dropped and counted, and the
//! count is logged with the plugin's next line that gets through, so one
//! plugin printing in a loop cannot flood the log or the disk under it.

use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest line logged whole; longer ones are cut into pieces this long.
pub const MAX_LINE: usize = 16 << 10;

/// Lines a plugin may log per second, over all its instances and streams.
pub const LINES_PER_SECOND: u32 = 100;

/// Lines a plugin may log at once before [`LINES_PER_SECOND`] holds.
pub const LINES_BURST: u32 = 1000;

/// The lines one plugin may still log, and how many it lost meanwhile.
pub struct Budget {
    limiter: DefaultDirectRateLimiter,
    dropped: AtomicU64,
}

impl Default for Budget {
    fn default() -> Budget {
        let rate = NonZeroU32::new(LINES_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(LINES_BURST).unwrap_or(NonZeroU32::MIN);
        Budget {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Budget {
    /// Whether one more line may be logged; `Some(n)` when it may, with the
    /// `n` lines dropped since the last one logged.
    fn take(&self) -> Option<u64> {
        match self.limiter.check() {
            Ok(()) => Some(self.dropped.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// Which of the plugin's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One stream of one plugin, given to its instances as stdout or stderr.
#[derive(Clone)]
pub struct PluginOutput {
    plugin: Arc<str>,
    stream: Stream,
    budget: Arc<Budget>,
}

impl PluginOutput {
    /// `stream` of `plugin`, logging within the plugin's `budget`.
    pub fn new(plugin: Arc<str>, stream: Stream, budget: Arc<Budget>) -> PluginOutput {
        PluginOutput {
            plugin,
            stream,
            budget,
        }
    }

    fn lines(&self) -> Lines {
        Lines {
            plugin: self.plugin.clone(),
            stream: self.stream,
            budget: self.budget.clone(),
            pending: Vec::new(),
        }
    }
}

impl IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for PluginOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.lines())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.lines())
    }
}

/// Collects bytes into lines and logs each whole line; what is left when the
/// instance ends is logged as its last line.
pub struct Lines {
    plugin: Arc<str>,
    stream: Stream,
    budget: Arc<Budget>,
    pending: Vec<u8>,
}

impl Lines {
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let (take, ends_line) = match bytes.iter().take(room).position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None if bytes.len() >= room => (room, true),
                None => (bytes.len(), false),
            };
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if ends_line {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        let Some(dropped) = self.budget.take() else {
            self.pending.clear();
            return;
        };
        if dropped > 0 {
            tracing::warn!(
                target: "gatehouse::plugin",
                plugin = &*self.plugin,
                "dropped {dropped} lines of output: a plugin may log {LINES_PER_SECOND} lines a second"
            );
        }
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.trim_end_matches(['\n', '\r']);
        let (plugin, stream) = (&*self.plugin, self.stream.name());
        match self.stream {
            Stream::Stdout => tracing::info!(target: "gatehouse::plugin", plugin, stream, "{line}"),
            Stream::Stderr => tracing::warn!(target: "gatehouse::plugin", plugin, stream, "{line}"),
        }
        self.pending.clear();
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit();
        }
    }
}

impl OutputStream for Lines {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    /// Whole lines are logged as they come; a partial line waits for its end
    /// (Rust's stderr writes a panic message in pieces).
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Lines {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Lines {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_at_newlines_and_cut_when_too_long() {
        let mut lines = PluginOutput::new("p".into(), Stream::Stdout, Default::default()).lines();
        lines.push(b"par");
        assert_eq!(lines.pending, b"par");
        lines.push(b"tial\nnext");
        assert_eq!(lines.pending, b"next");
        lines.push(&vec![b'x'; MAX_LINE * 2 + 5]);
        assert_eq!(lines.pending.len(), 4 + 5);
    }

    #[test]
    fn a_plugin_logs_no_more_than_its_budget_and_counts_the_rest() {
        let budget = Budget::default();
        let logged = (0..LINES_BURST * 3)
            .filter(|_| budget.take().is_some())
            .count();
        // The burst, and what the rate refilled while the loop ran.
        assert!(logged >= LINES_BURST as usize && logged < LINES_BURST as usize + 50);
        let dropped = budget.dropped.load(Ordering::Relaxed);
        assert_eq!(dropped as usize, LINES_BURST as usize * 3 - logged);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(budget.take(), Some(dropped));
    }
}
