//! The floor under a plugin request: a fresh instance of a wasi:http
//! component from its `InstancePre`, one call of its handler with a GET, its
//! whole response body read, the store dropped. No sockets, no HTTP server,
//! no capabilities; the engine is gatehouse's own configuration.
//!
//! Usage: instance-floor COMPONENT.wasm [REQUESTS] [PATH]
//! Prints the mean time per request of three rounds.

use http_body_util::{BodyExt, Empty};
use std::time::Instant;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

// The allocator gatehouse runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: DefaultHooks,
}

struct DefaultHooks;

impl WasiHttpHooks for DefaultHooks {}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// One request through a fresh instance; the length of its response body.
async fn request(engine: &Engine, pre: &ProxyPre<State>, uri: &str) -> wasmtime::Result<usize> {
    let state = State {
        wasi: WasiCtx::builder().build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        hooks: DefaultHooks,
    };
    let mut store = Store::new(engine, state);
    store.set_epoch_deadline(u64::MAX / 2);
    let body = Empty::<bytes::Bytes>::new().map_err(|never| -> ErrorCode { match never {} });
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let mut http = store.data_mut().http();
    let req = http.new_incoming_request(Scheme::Http, http::Request::get(uri).body(body)?)?;
    let out = http.new_response_outparam(sender)?;
    let proxy = pre.instantiate_async(&mut store).await?;
    proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut store, req, out)
        .await?;
    let response = receiver.await??;
    Ok(response.into_body().collect().await?.to_bytes().len())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> wasmtime::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or_else(|| {
        wasmtime::format_err!("usage: instance-floor COMPONENT.wasm [REQUESTS] [PATH]")
    })?;
    let requests: u32 = args.next().map_or(Ok(20_000), |n| n.parse())?;
    let uri = format!("http://localhost{}", args.next().as_deref().unwrap_or("/"));
    let engine = Engine::new(&gatehouse::plugin::runtime::engine_config())?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    let component = Component::from_file(&engine, &path)?;
    let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
    let bytes = request(&engine, &pre, &uri).await?;
    println!("{path}: {bytes}-byte answer to GET {uri}");
    for round in 1..=3 {
        let start = Instant::now();
        for _ in 0..requests {
            request(&engine, &pre, &uri).await?;
        }
        let each = start.elapsed().as_secs_f64() * 1e6 / f64::from(requests);
        println!("round {round}: {each:.1} µs per request ({requests} requests)");
    }
    Ok(())
}
