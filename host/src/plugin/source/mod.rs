//! Plugin source folders, built into components off the request path, one
//! module per language:
//!
//! - [`rust`]: a `Cargo.toml`, built with cargo for `wasm32-wasip2`.
//! - [`python`]: an `app.py`, built with componentize-py.
//! - [`js`]: an `app.js`, built with ComponentizeJS (through node).
//! - [`c`]: an `app.c`, built with wit-bindgen's C generator, clang and
//!   wasm-tools.
//! - [`zig`]: a `main.zig`, built with Zig into a WASI preview1 module that
//!   runs as a CGI program ([`crate::plugin::cgi`]).
//!
//! Every language builds against the WIT of `gatehouse:plugin`: the folder's
//! own `wit/` when it has one (`gatehouse new` writes it), else the copy
//! built into this binary. [`template`] writes new plugin folders and
//! [`toolchain`] says which builders this machine has.

pub mod c;
pub mod js;
pub mod python;
pub mod rust;
pub mod template;
pub mod toolchain;
pub mod zig;

pub use rust::{WASM_TARGET, build_rust};

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// One build at a time: the builders are heavy, and cargo locks the shared
/// target folder anyway.
static BUILD_LOCK: Mutex<()> = Mutex::const_new(());

/// The language of a source folder, told by the file it starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
    Zig,
}

impl Lang {
    pub const ALL: [Lang; 5] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C, Lang::Zig];

    /// The name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
            Lang::Zig => "zig",
        }
    }

    /// The file that marks a folder as a plugin of this language.
    pub fn marker(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Python => "app.py",
            Lang::Js => "app.js",
            Lang::C => "app.c",
            Lang::Zig => "main.zig",
        }
    }

    /// The language of `dir`, if it holds a plugin's sources.
    pub fn detect(dir: &Path) -> Option<Lang> {
        Lang::ALL
            .into_iter()
            .find(|lang| dir.join(lang.marker()).is_file())
    }

    pub fn parse(name: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|lang| lang.name() == name)
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds the plugin in source folder `dir` and returns the component's
/// bytes. `build_dir` holds build outputs (`<data>/build`). A failed build
/// returns the builder's messages; a missing builder, the command that
/// installs it.
pub async fn build(lang: Lang, name: &str, dir: &Path, build_dir: &Path) -> Result<Vec<u8>> {
    match lang {
        Lang::Rust => build_rust(name, dir, build_dir).await,
        Lang::Python => python::build(name, dir, build_dir).await,
        Lang::Js => js::build(name, dir, build_dir).await,
        Lang::C => c::build(name, dir, build_dir).await,
        Lang::Zig => zig::build(name, dir, build_dir).await,
    }
}

/// The WIT folder a build uses: the plugin's own `wit/`, or the built-in
/// copy written under `build_dir`.
pub fn wit_dir(dir: &Path, build_dir: &Path) -> Result<PathBuf> {
    if dir.join("wit").join("world.wit").is_file() {
        return Ok(dir.join("wit"));
    }
    let wit = build_dir.join("wit");
    template::write_wit(&wit)?;
    Ok(wit)
}

/// Runs a builder command to its end and returns its output, or the error a
/// plugin's status shows: the builder's own messages when it failed, how to
/// install it when it is missing.
pub(crate) async fn run_builder(
    name: &str,
    mut command: tokio::process::Command,
    tool: &str,
    install: &str,
) -> Result<std::process::Output> {
    command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = command.output().await.map_err(|e| Error::Build {
        name: name.to_owned(),
        output: if e.kind() == std::io::ErrorKind::NotFound {
            format!("{tool} is not installed: {install} (or run scripts/install-toolchains)")
        } else {
            format!("cannot run {tool}: {e}")
        },
    })?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stderr)
            .trim_end()
            .to_owned();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !stdout.trim().is_empty() {
            text = format!("{}\n{text}", stdout.trim_end());
        }
        return Err(Error::Build {
            name: name.to_owned(),
            output: text,
        });
    }
    Ok(output)
}

/// Where a build of `lang` writes plugin `name`: `<build>/<lang>/<name>.wasm`.
pub(crate) fn output(build_dir: &Path, lang: Lang, name: &str) -> Result<PathBuf> {
    let dir = build_dir.join(lang.name());
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir.join(format!("{name}.wasm")))
}

/// Reads a built component, and says how long the build took.
pub(crate) fn read_built(
    name: &str,
    out: &Path,
    started: std::time::Instant,
    lang: Lang,
) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(out).map_err(|e| Error::io(format!("reading {}", out.display()), e))?;
    tracing::info!(
        plugin = name,
        ms = started.elapsed().as_millis() as u64,
        "built {} ({lang}, {} KiB)",
        out.display(),
        bytes.len() / 1024
    );
    Ok(bytes)
}

/// A fingerprint of a source folder: its files' paths and contents, without
/// build outputs (`target/`, `node_modules/`, `__pycache__/`) or hidden
/// entries. A change in it means a rebuild.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for relative in files {
        let bytes = std::fs::read(dir.join(&relative))
            .map_err(|e| Error::io(format!("reading {}", dir.join(&relative).display()), e))?;
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let read =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    for item in read.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.')
            || matches!(
                &*name,
                "target" | "node_modules" | "__pycache__" | "zig-out"
            )
        {
            continue;
        }
        let path = item.path();
        let Ok(kind) = item.file_type() else { continue };
        if kind.is_dir() {
            collect(root, &path, files)?;
        } else if kind.is_file() {
            files.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}
