//! The wasm engine shared by every plugin: its configuration, the linker of
//! host interfaces, the epoch ticker and the on-disk cache of compiled code.

use super::sandbox::Sandbox;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How often the epoch ticker advances the engine's epoch. A running plugin
/// yields to the scheduler at every tick and checks its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bytes of each linear memory kept resident between instances.
const KEEP_RESIDENT: usize = 4 << 20;

/// Memory slots released per batch of madvise calls.
const DECOMMIT_BATCH: usize = 8;

/// How many instances may run at once across all plugins (pool capacity).
const MAX_CONCURRENT_INSTANCES: u32 = 1000;

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compiled {
    /// Read back from the on-disk cache.
    Cache,
    /// Compiled from the `.wasm` now (and written to the cache).
    Fresh,
}

/// The engine, the linker and the code cache.
pub struct Runtime {
    engine: Engine,
    /// Every host interface a plugin may import, granted or not: an import
    /// missing here is refused at load time, not at call time.
    linker: Linker<Sandbox>,
    /// WASI preview1 only, for CGI modules.
    cgi_linker: wasmtime::Linker<super::cgi::CgiState>,
    /// `<data>/cache`: compiled components by content hash.
    cache_dir: PathBuf,
    /// Tells cached code compiled by another engine build apart.
    engine_tag: String,
}

impl Runtime {
    /// Builds the engine (see [`engine_config`]) and starts its epoch
    /// ticker.
    pub fn new(data_dir: &std::path::Path) -> Result<Runtime> {
        let config = engine_config();
        let engine = Engine::new(&config).map_err(|e| Error::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| crate::capability::add_to_linker(&mut linker))
            .map_err(|e| Error::Engine(format!("{e:#}")))?;

        let cgi_linker =
            super::cgi::linker(&engine).map_err(|e| Error::Engine(format!("{e:#}")))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_tag = format!("{:016x}", hasher.finish());

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| Error::io("starting the epoch ticker", e))?;

        let cache_dir = data_dir.join("cache");
        std::fs::create_dir_all(&cache_dir)
            .map_err(|e| Error::io(format!("creating {}", cache_dir.display()), e))?;
        Ok(Runtime {
            engine,
            linker,
            cgi_linker,
            cache_dir,
            engine_tag,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component, or reads its compiled code back from the cache.
    /// Runs the compiler: call it off the request path.
    pub fn compile(&self, name: &str, wasm: &[u8], sha256: &str) -> Result<(Component, Compiled)> {
        let cached = self
            .cache_dir
            .join(format!("{sha256}-{}.cwasm", self.engine_tag));
        if cached.exists() {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility tag, into the host's own data
            // folder; a file that fails wasmtime's checks is compiled afresh.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok((component, Compiled::Cache)),
                Err(e) => tracing::warn!(
                    plugin = name,
                    "ignoring the compiled cache entry {}: {e:#}",
                    cached.display()
                ),
            }
        }
        if !wasm.starts_with(b"\0asm") {
            return Err(Error::plugin(
                name,
                "the file is not WebAssembly (it does not start with \\0asm)",
            ));
        }
        let component = Component::new(&self.engine, wasm).map_err(|e| Error::plugin(name, e))?;
        match component.serialize() {
            Ok(bytes) => {
                let tmp = cached.with_extension("tmp");
                if let Err(e) =
                    std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &cached))
                {
                    tracing::warn!(
                        plugin = name,
                        "cannot write the compiled cache {}: {e}",
                        cached.display()
                    );
                }
            }
            Err(e) => tracing::warn!(plugin = name, "cannot serialize compiled code: {e:#}"),
        }
        Ok((component, Compiled::Fresh))
    }

    /// Links a component against the host interfaces and checks it exports
    /// `wasi:http/incoming-handler`.
    pub fn prepare(&self, name: &str, component: &Component) -> Result<ProxyPre<Sandbox>> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            Error::plugin(
                name,
                format!("imports something gatehouse does not provide: {e:#}"),
            )
        })?;
        ProxyPre::new(pre).map_err(|e| {
            Error::plugin(
                name,
                format!("is not a wasi:http/proxy component (it must export wasi:http/incoming-handler): {e:#}"),
            )
        })
    }
}

impl Runtime {
    /// Compiles and links a CGI module (a WASI preview1 command). These are
    /// small: they are compiled afresh, not cached.
    pub fn prepare_cgi(&self, name: &str, wasm: &[u8]) -> Result<super::cgi::Program> {
        super::cgi::prepare(name, &self.cgi_linker, wasm)
    }
}

/// The configuration of the plugin engine: the pooling allocator,
/// copy-on-write memory images, epoch interruption, the component model.
pub fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * 2)
        .total_memories(MAX_CONCURRENT_INSTANCES * 2)
        .total_tables(MAX_CONCURRENT_INSTANCES * 2)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        .max_memory_size(4 << 30)
        // Reset the pages an instance touched with memset instead of
        // madvise, so the next instance in the slot takes no page faults;
        // with PAGEMAP_SCAN (Linux 6.7+) only the touched pages are reset.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT / 16)
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(DECOMMIT_BATCH);
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .wasm_component_model(true);
    config
}

/// The hex SHA-256 of some bytes: the identity of a plugin build.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
