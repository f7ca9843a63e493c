//! Python plugins: a folder with an `app.py` whose `IncomingHandler` class
//! implements `wasi:http/incoming-handler`, built with componentize-py (from
//! PyPI) against the `gatehouse:plugin/plugin` world. The generated
//! bindings are the `wit_world` package: `wit_world.imports.kv`,
//! `wit_world.imports.sql`, `wit_world.imports.types` (wasi:http), …

use super::{BUILD_LOCK, Lang, output, read_built, run_builder, wit_dir};
use crate::error::Result;
use std::path::Path;

/// The command that installs the builder.
pub const INSTALL: &str = "pip install componentize-py";

/// Builds `dir/app.py` into a component.
pub async fn build(name: &str, dir: &Path, build_dir: &Path) -> Result<Vec<u8>> {
    let _one_at_a_time = BUILD_LOCK.lock().await;
    let wit = wit_dir(dir, build_dir)?;
    let out = output(build_dir, Lang::Python, name)?;
    tracing::info!(
        plugin = name,
        "building {} with componentize-py",
        dir.display()
    );
    let started = std::time::Instant::now();
    let mut command = tokio::process::Command::new("componentize-py");
    command
        .current_dir(dir)
        .arg("-d")
        .arg(&wit)
        .args(["-w", "gatehouse:plugin/plugin", "componentize", "app", "-o"])
        .arg(&out);
    run_builder(name, command, "componentize-py", INSTALL).await?;
    read_built(name, &out, started, Lang::Python)
}
