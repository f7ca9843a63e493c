//! JavaScript plugins: a folder with an `app.js` ES module exporting
//! `incomingHandler` (`wasi:http/incoming-handler`), built with
//! ComponentizeJS (from npm) against the `gatehouse:plugin/plugin` world.
//! Imports are by interface: `gatehouse:plugin/kv@0.1.0`,
//! `gatehouse:plugin/sql@0.1.0`, `wasi:http/types@0.2.12`.
//!
//! ComponentizeJS is found in the plugin's own `node_modules`, else among
//! npm's global packages; node runs it through a small script built into
//! this binary.

use super::{BUILD_LOCK, Lang, output, read_built, run_builder, wit_dir};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The npm package that builds JavaScript components.
pub const PACKAGE: &str = "@bytecodealliance/componentize-js";

/// The command that installs the builder.
pub const INSTALL: &str = "npm install -g @bytecodealliance/componentize-js";

/// Calls ComponentizeJS: `node componentize.mjs MODULE SOURCE WIT WORLD OUT`.
const SCRIPT: &str = r#"
import { writeFile } from "node:fs/promises";
import { pathToFileURL } from "node:url";
const [module, sourcePath, witPath, worldName, out] = process.argv.slice(2);
const { componentize } = await import(pathToFileURL(module).href);
const { component } = await componentize({ sourcePath, witPath, worldName });
await writeFile(out, component);
"#;

/// Builds `dir/app.js` into a component.
pub async fn build(name: &str, dir: &Path, build_dir: &Path) -> Result<Vec<u8>> {
    let _one_at_a_time = BUILD_LOCK.lock().await;
    let module = componentize_js(dir).await.ok_or_else(|| Error::Build {
        name: name.to_owned(),
        output: format!(
            "ComponentizeJS ({PACKAGE}) is not installed: {INSTALL} (or run scripts/install-toolchains)"
        ),
    })?;
    let wit = wit_dir(dir, build_dir)?;
    let out = output(build_dir, Lang::Js, name)?;
    let script = out.with_file_name("componentize.mjs");
    std::fs::write(&script, SCRIPT)
        .map_err(|e| Error::io(format!("writing {}", script.display()), e))?;
    tracing::info!(
        plugin = name,
        "building {} with ComponentizeJS",
        dir.display()
    );
    let started = std::time::Instant::now();
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(dir)
        .arg(&script)
        .arg(&module)
        .arg(dir.join("app.js"))
        .arg(&wit)
        .arg("gatehouse:plugin/plugin")
        .arg(&out);
    run_builder(name, command, "node", "apt-get install nodejs npm").await?;
    read_built(name, &out, started, Lang::Js)
}

/// ComponentizeJS's entry module: in the plugin's `node_modules`, else in
/// npm's global folder.
pub async fn componentize_js(dir: &Path) -> Option<PathBuf> {
    let entry = |root: &Path| {
        let path = root.join(PACKAGE).join("src").join("componentize.js");
        path.is_file().then_some(path)
    };
    if let Some(local) = entry(&dir.join("node_modules")) {
        return Some(local);
    }
    let global = tokio::process::Command::new("npm")
        .args(["root", "-g"])
        .output()
        .await
        .ok()?;
    entry(Path::new(String::from_utf8_lossy(&global.stdout).trim()))
}
