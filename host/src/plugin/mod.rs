//! The plugin runtime: loading components, running one per request, and the
//! drop-in folder that mounts and hot-swaps them.
//!
//! - [`runtime`]: the engine, linker, epoch ticker and compiled-code cache.
//! - [`sandbox`]: what one instance's store holds (and so can reach).
//! - [`invoke`]: one request through a fresh instance, under its limits.
//! - [`output`]: what a plugin prints, logged a line at a time under its name.
//! - [`cgi`]: CGI plugins (WASI preview1 modules), one run per request.
//! - [`events`]: one WebSocket or event-stream event through a fresh instance.
//! - [`source`]: building plugin source folders (Rust, Python, JavaScript)
//!   into components, and `gatehouse new`.
//! - [`folder`]: what the drop-in folder holds.
//! - [`mounts`]: the mounted set, swapped atomically, and its status.
//! - [`watch`]: the folder watcher that keeps the mounted set current.

pub mod cgi;
pub mod events;
pub mod folder;
pub mod invoke;
pub mod mounts;
pub mod output;
pub mod runtime;
pub mod sandbox;
pub mod source;
pub mod watch;

use crate::config::Sidecar;
use runtime::Compiled;
use sandbox::Sandbox;
use std::path::PathBuf;
use std::time::SystemTime;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Where a plugin's code came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum Origin {
    /// A `.wasm` component dropped in the folder.
    File(PathBuf),
    /// A source folder built by the host.
    Rust(PathBuf),
    Python(PathBuf),
    Js(PathBuf),
    C(PathBuf),
    Zig(PathBuf),
}

/// A plugin's code, linked and ready to instantiate.
pub enum Code {
    /// A wasi:http component.
    Component(ProxyPre<Sandbox>),
    /// A CGI module.
    Cgi(cgi::Program),
}

impl Code {
    pub fn engine(&self) -> &wasmtime::Engine {
        match self {
            Code::Component(pre) => pre.engine(),
            Code::Cgi(program) => program.engine(),
        }
    }
}

/// One loaded plugin version. Requests hold an `Arc` of it, so a swap never
/// pulls it from under a request in flight.
pub struct Plugin {
    /// The mount name (`hello` for `hello.wasm`).
    pub name: String,
    /// The file or folder it was loaded from.
    pub origin: Origin,
    /// SHA-256 of the component bytes.
    pub sha256: String,
    /// Its sidecar (defaults when there is none).
    pub sidecar: Sidecar,
    /// Its migrations, if it has any.
    pub migrations: Option<mounts::Migrations>,
    /// Its sql and kv grants.
    pub granted: crate::capability::Granted,
    /// The origins it may call.
    pub outbound: crate::capability::outbound::Grant,
    /// The host's pools and secrets, current at each request.
    pub provisions: std::sync::Arc<arc_swap::ArcSwap<crate::capability::Provisions>>,
    /// The pre-linked code: instantiating it per request is cheap.
    pub code: Code,
    /// Its `websocket-handler` export, if it handles connections.
    pub events: Option<events::Handler>,
    /// When this version was mounted.
    pub loaded_at: SystemTime,
    /// Whether its compiled code came from the cache.
    pub compiled: Compiled,
    /// Its sidecar's `[firewall]`, checked after routing.
    pub firewall: Option<std::sync::Arc<crate::firewall::Firewall>>,
    /// The lines its instances may still log.
    pub log_budget: std::sync::Arc<output::Budget>,
}

impl Plugin {
    /// Takes over from `previous`, the version this one replaces, what
    /// belongs to the plugin rather than to a version: its clients' rate
    /// allowances and open connections under the sidecar's `[firewall]`, its
    /// outbound requests in flight (when `outbound_concurrency` is
    /// unchanged) and its log budget. A swap then neither hands a client a
    /// fresh burst nor lets the plugin have twice its outbound requests out.
    pub fn inherit(&mut self, previous: &Plugin) {
        if let (Some(rules), Some(old)) = (&self.sidecar.firewall, &previous.firewall) {
            let firewall = crate::firewall::Firewall::after(&rules.as_firewall(), old);
            self.firewall = Some(std::sync::Arc::new(firewall));
        }
        if self.sidecar.limits.outbound_concurrency == previous.sidecar.limits.outbound_concurrency
        {
            self.outbound.share_slots(&previous.outbound);
        }
        self.log_budget = previous.log_budget.clone();
    }
}
