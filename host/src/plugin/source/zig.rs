//! Zig plugins: a folder with a `main.zig`, built with Zig (the `ziglang`
//! package on PyPI) into a WASI preview1 command that gatehouse runs as a
//! CGI program, once per request ([`crate::plugin::cgi`]).

use super::{BUILD_LOCK, Lang, output, read_built, run_builder};
use crate::error::Result;
use std::path::Path;

/// The command that installs the builder.
pub const INSTALL: &str = "pip install ziglang";

/// Builds `dir/main.zig` into a preview1 module.
pub async fn build(name: &str, dir: &Path, build_dir: &Path) -> Result<Vec<u8>> {
    let _one_at_a_time = BUILD_LOCK.lock().await;
    let out = output(build_dir, Lang::Zig, name)?;
    let cache = build_dir.join("zig-cache");
    tracing::info!(plugin = name, "building {} with zig", dir.display());
    let started = std::time::Instant::now();
    let mut command = tokio::process::Command::new("python3");
    command
        .current_dir(dir)
        .args([
            "-m",
            "ziglang",
            "build-exe",
            "-target",
            "wasm32-wasi",
            "-O",
            "ReleaseSmall",
        ])
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--global-cache-dir")
        .arg(&cache)
        .arg(format!("-femit-bin={}", out.display()))
        .arg("main.zig");
    run_builder(name, command, "zig (python3 -m ziglang)", INSTALL).await?;
    read_built(name, &out, started, Lang::Zig)
}
