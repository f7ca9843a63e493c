//! The per-request state of a plugin instance: what its store holds, and
//! therefore everything the plugin can reach.

use crate::capability::Held;
use crate::capability::outbound::OutboundPolicy;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The data of one instance's `Store`.
pub struct Sandbox {
    /// WASI: only the granted environment; no files, no sockets.
    pub wasi: WasiCtx,
    /// wasi:http state of this request.
    pub http: WasiHttpCtx,
    /// Resources (streams, requests, responses) handed to the guest.
    pub table: ResourceTable,
    /// The memory cap.
    pub limits: MemoryCap,
    /// Decides what outbound HTTP requests may leave.
    pub outbound: OutboundPolicy,
    /// The sql and kv grants, and the pools they reach.
    pub capabilities: Held,
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Sandbox {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// The memory cap of one instance: `[limits] memory_mb` over all its linear
/// memories together (a component may hold several core modules, each with
/// its own). A growth past it traps, as does one the pool refuses; tables
/// and instance counts keep wasmtime's defaults.
pub struct MemoryCap {
    limit: usize,
    /// The bytes of every memory of the instance, as last grown.
    used: usize,
}

impl MemoryCap {
    /// A cap of `memory_mb` mebibytes.
    pub fn new(memory_mb: u64) -> MemoryCap {
        MemoryCap {
            limit: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
            used: 0,
        }
    }
}

/// A memory growth [`MemoryCap`] refused.
#[derive(Debug, thiserror::Error)]
#[error("its memories would hold {used_mb} MiB, past its memory_mb of {limit_mb} MiB")]
pub struct PastMemoryCap {
    used_mb: usize,
    limit_mb: usize,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let used = self.used.saturating_sub(current).saturating_add(desired);
        if used > self.limit {
            return Err(wasmtime::Error::new(PastMemoryCap {
                used_mb: used >> 20,
                limit_mb: self.limit >> 20,
            }));
        }
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Err(wasmtime::format_err!(
                "a memory would grow past its own maximum of {maximum:?} bytes"
            ));
        }
        self.used = used;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("a memory could not grow"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|maximum| desired <= maximum))
    }
}
