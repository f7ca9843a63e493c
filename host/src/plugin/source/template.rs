//! `gatehouse new`: a working plugin source folder per language, and the
//! WIT of `gatehouse:plugin` that every language builds against. Both are
//! built into the binary (from `templates/` and `wit/`), so `new` works
//! anywhere.

use super::Lang;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The WIT package and its vendored `wasi:*` dependencies.
const WIT: &[(&str, &str)] = &[
    ("world.wit", include_str!("../../../../wit/world.wit")),
    ("deps/cli.wit", include_str!("../../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../../wit/deps/filesystem.wit"),
    ),
    (
        "deps/http.wit",
        include_str!("../../../../wit/deps/http.wit"),
    ),
    ("deps/io.wit", include_str!("../../../../wit/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../../wit/deps/sockets.wit"),
    ),
];

/// The files of each language's template; `{{name}}` becomes the plugin's name.
fn files(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            (
                "Cargo.toml",
                include_str!("../../../../templates/rust/Cargo.toml"),
            ),
            (
                "src/main.rs",
                include_str!("../../../../templates/rust/src/main.rs"),
            ),
        ],
        Lang::Python => &[(
            "app.py",
            include_str!("../../../../templates/python/app.py"),
        )],
        Lang::Js => &[("app.js", include_str!("../../../../templates/js/app.js"))],
        Lang::C => &[("app.c", include_str!("../../../../templates/c/app.c"))],
        Lang::Zig => &[(
            "main.zig",
            include_str!("../../../../templates/zig/main.zig"),
        )],
    }
}

const SIDECAR: &str = include_str!("../../../../templates/sidecar.toml");
const SIDECAR_CGI: &str = include_str!("../../../../templates/zig/sidecar.toml");

/// Writes the WIT into `dir` (`world.wit` and `deps/`), leaving files that
/// already hold the same text untouched.
pub fn write_wit(dir: &Path) -> Result<()> {
    for (file, text) in WIT {
        write_if_changed(&dir.join(file), text)?;
    }
    Ok(())
}

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Makes `DIR/NAME/` (the sources, with `wit/`) and its sidecar
/// `DIR/NAME.toml`; returns what it wrote. Refuses to overwrite anything.
pub fn new_plugin(name: &str, lang: Lang, dir: &Path) -> Result<Vec<PathBuf>> {
    let refuse = |message: String| Error::Build {
        name: name.to_owned(),
        output: message,
    };
    if !super::super::folder::valid_name(name) {
        return Err(refuse(format!(
            "`{name}` is not a plugin name: use [a-z0-9][a-z0-9_-]* (it becomes the mount path /{name})"
        )));
    }
    let folder = dir.join(name);
    let sidecar = dir.join(format!("{name}.toml"));
    for taken in [&folder, &sidecar] {
        if taken.exists() {
            return Err(refuse(format!(
                "{} already exists: choose another name or remove it",
                taken.display()
            )));
        }
    }
    let mut written = Vec::new();
    for (file, text) in files(lang) {
        let path = folder.join(file);
        write_if_changed(&path, &text.replace("{{name}}", name))?;
        written.push(path);
    }
    let sidecar_text = if lang == Lang::Zig {
        // A CGI program reaches no capabilities: nothing to grant, no WIT.
        SIDECAR_CGI
    } else {
        write_wit(&folder.join("wit"))?;
        written.push(folder.join("wit"));
        SIDECAR
    };
    write_if_changed(&sidecar, &sidecar_text.replace("{{name}}", name))?;
    written.push(sidecar);
    Ok(written)
}
