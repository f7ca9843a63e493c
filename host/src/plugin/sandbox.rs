//! The per-request state of a plugin instance: what its store holds, and
//! therefore everything the plugin can reach.

use crate::capability::Held;
use crate::capability::outbound::OutboundPolicy;
use wasmtime::StoreLimits;
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
    pub limits: StoreLimits,
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
