//! Rust plugins: a folder with a `Cargo.toml`, built with cargo for
//! `wasm32-wasip2` into `<data>/build`, a target folder shared by every Rust
//! plugin so their dependencies are compiled once.

use super::BUILD_LOCK;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The Rust target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Builds the Rust plugin in `dir` and returns the component's bytes. A
/// failed build returns the compiler's messages.
pub async fn build_rust(name: &str, dir: &Path, target_dir: &Path) -> Result<Vec<u8>> {
    let _one_at_a_time = BUILD_LOCK.lock().await;
    ensure_wasm_target().await?;
    tracing::info!(
        plugin = name,
        "building {} with cargo for {WASM_TARGET}",
        dir.display()
    );
    let started = std::time::Instant::now();
    let output = cargo()
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--message-format",
            "json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Build {
            name: name.to_owned(),
            output: format!("cannot run cargo ({e}); install Rust from https://rustup.rs"),
        })?;
    if !output.status.success() {
        return Err(Error::Build {
            name: name.to_owned(),
            output: String::from_utf8_lossy(&output.stderr)
                .trim_end()
                .to_owned(),
        });
    }
    let artefact = String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact")
        .filter_map(|msg| {
            msg["filenames"].as_array()?.iter().find_map(|f| {
                f.as_str()
                    .filter(|f| f.ends_with(".wasm"))
                    .map(PathBuf::from)
            })
        })
        .next()
        .ok_or_else(|| Error::Build {
            name: name.to_owned(),
            output:
                "cargo built no .wasm: the crate needs a binary (src/main.rs) or a cdylib library"
                    .to_owned(),
        })?;
    let bytes = std::fs::read(&artefact)
        .map_err(|e| Error::io(format!("reading {}", artefact.display()), e))?;
    tracing::info!(
        plugin = name,
        ms = started.elapsed().as_millis() as u64,
        "built {}",
        artefact.display()
    );
    Ok(bytes)
}

/// A cargo command without the variables an outer cargo (`cargo run`,
/// `cargo test`) sets for its own build, which would leak into this one.
fn cargo() -> tokio::process::Command {
    let mut command =
        tokio::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
    ] {
        command.env_remove(var);
    }
    command.kill_on_drop(true);
    command
}

/// Installs the `wasm32-wasip2` target with rustup when it is missing.
pub(super) async fn ensure_wasm_target() -> Result<()> {
    let failed = |output: String| Error::Build {
        name: WASM_TARGET.to_owned(),
        output,
    };
    let sysroot = tokio::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .await
        .map_err(|e| {
            failed(format!(
                "cannot run rustc ({e}); install Rust from https://rustup.rs"
            ))
        })?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(WASM_TARGET).is_dir() {
        return Ok(());
    }
    tracing::info!(
        "the {WASM_TARGET} target is missing: running `rustup target add {WASM_TARGET}`"
    );
    let output = tokio::process::Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .output()
        .await
        .map_err(|e| failed(format!("cannot run rustup ({e}); install the target by hand: rustup target add {WASM_TARGET}")))?;
    if !output.status.success() {
        return Err(failed(format!(
            "`rustup target add {WASM_TARGET}` failed:\n{}",
            String::from_utf8_lossy(&output.stderr).trim_end()
        )));
    }
    Ok(())
}
