//! `gatehouse doctor`: which plugin builders this machine has, and the
//! command that installs each one it lacks.

use super::{Lang, c, js, python, rust::WASM_TARGET, zig};
use std::path::Path;

/// One builder's state.
pub struct Check {
    pub lang: Lang,
    /// What was found (versions), or `None` when something is missing.
    pub found: Result<String, String>,
}

/// Checks every language's builder.
pub async fn check_all() -> Vec<Check> {
    let mut checks = Vec::new();
    for lang in Lang::ALL {
        checks.push(Check {
            lang,
            found: check(lang).await,
        });
    }
    checks
}

/// `Ok(versions)`, or `Err(the command that installs what is missing)`.
async fn check(lang: Lang) -> Result<String, String> {
    match lang {
        Lang::Rust => {
            let cargo = version("cargo", &["--version"])
                .await
                .ok_or("install Rust: https://rustup.rs")?;
            let targets = version("rustup", &["target", "list", "--installed"])
                .await
                .unwrap_or_default();
            if !targets.lines().any(|t| t.trim() == WASM_TARGET) {
                return Err(format!("rustup target add {WASM_TARGET}"));
            }
            Ok(format!("{cargo}, target {WASM_TARGET}"))
        }
        Lang::Python => version("componentize-py", &["--version"])
            .await
            .ok_or_else(|| python::INSTALL.to_owned()),
        Lang::Js => {
            let node = version("node", &["--version"])
                .await
                .ok_or("apt-get install nodejs npm")?;
            let module = js::componentize_js(Path::new("."))
                .await
                .ok_or_else(|| js::INSTALL.to_owned())?;
            Ok(format!("node {node}, {}", module.display()))
        }
        Lang::C => {
            let clang = version("clang", &["--version"])
                .await
                .ok_or(c::INSTALL_CLANG)?;
            if !Path::new("/usr/lib/wasm32-wasi/libc.a").is_file() {
                return Err(c::INSTALL_CLANG.to_owned());
            }
            let bindgen = version("wit-bindgen", &["--version"])
                .await
                .ok_or(c::INSTALL_BINDGEN)?;
            let tools = version("wasm-tools", &["--version"])
                .await
                .ok_or(c::INSTALL_WASM_TOOLS)?;
            Ok(format!("{clang}, {bindgen}, {tools}"))
        }
        Lang::Zig => version("python3", &["-m", "ziglang", "version"])
            .await
            .map(|v| format!("zig {v} (python3 -m ziglang)"))
            .ok_or_else(|| zig::INSTALL.to_owned()),
    }
}

/// The first line a command prints, if it runs and succeeds.
async fn version(command: &str, args: &[&str]) -> Option<String> {
    let output = tokio::process::Command::new(command)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    Some(if args == ["target", "list", "--installed"] {
        text
    } else {
        text.lines().next().unwrap_or_default().trim().to_owned()
    })
}
