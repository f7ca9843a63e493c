//! What the drop-in folder holds: `<name>.wasm` files, `<name>/` source
//! folders and `<name>.toml` sidecars. Anything else is ignored (and said so).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The kind of a plugin entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A built component, `<name>.wasm`.
    File,
    /// A source folder, `<name>/` with a language's marker file
    /// (`Cargo.toml`, `app.py`, `app.js`).
    Source(crate::plugin::source::Lang),
}

/// One plugin found in the folder.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The mount name.
    pub name: String,
    /// File or source folder.
    pub kind: Kind,
    /// The `.wasm` file or the source folder.
    pub path: PathBuf,
    /// `<name>.toml` beside it, when present.
    pub sidecar: Option<PathBuf>,
}

/// Whether `name` is a valid plugin name: `[a-z0-9][a-z0-9_-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Lists the plugins in `dir`, and the names of entries that are not plugins
/// (hidden files are skipped without a word: editors and copies leave them).
pub fn scan(dir: &Path) -> Result<(Vec<Entry>, Vec<String>)> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading the plugins folder {}", dir.display()), e))?;
    let mut names: Vec<(String, PathBuf, bool)> = Vec::new();
    for item in read.flatten() {
        let file_name = item.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue;
        }
        let is_dir = item.file_type().map(|t| t.is_dir()).unwrap_or(false);
        names.push((file_name, item.path(), is_dir));
    }
    names.sort();

    let mut entries = Vec::new();
    let mut ignored = Vec::new();
    for (file_name, path, is_dir) in &names {
        let entry = if *is_dir {
            crate::plugin::source::Lang::detect(path)
                .filter(|_| valid_name(file_name))
                .map(|lang| Entry {
                    name: file_name.clone(),
                    kind: Kind::Source(lang),
                    path: path.clone(),
                    sidecar: None,
                })
        } else {
            file_name
                .strip_suffix(".wasm")
                .filter(|stem| valid_name(stem))
                .map(|stem| Entry {
                    name: stem.to_owned(),
                    kind: Kind::File,
                    path: path.clone(),
                    sidecar: None,
                })
        };
        match entry {
            Some(entry) => entries.push(entry),
            None if file_name.ends_with(".toml") => {}
            None => ignored.push(file_name.clone()),
        }
    }

    // A name taken by both a file and a folder: the built file wins, loudly.
    // (Not neighbours once sorted: `api/` < `api-v2.wasm` < `api.wasm`.)
    let mut by_name: std::collections::BTreeMap<String, Entry> = Default::default();
    for entry in entries {
        let file_name = |e: &Entry| {
            e.path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };
        match by_name.get_mut(&entry.name) {
            None => {
                by_name.insert(entry.name.clone(), entry);
            }
            Some(kept) if kept.kind != Kind::File && entry.kind == Kind::File => {
                ignored.push(file_name(kept));
                *kept = entry;
            }
            Some(_) => ignored.push(file_name(&entry)),
        }
    }
    let mut entries: Vec<Entry> = by_name.into_values().collect();
    for (file_name, _, is_dir) in &names {
        let Some(stem) = file_name.strip_suffix(".toml").filter(|_| !is_dir) else {
            continue;
        };
        match entries.iter_mut().find(|e| e.name == stem) {
            Some(entry) => entry.sidecar = Some(dir.join(file_name)),
            None => ignored.push(file_name.clone()),
        }
    }
    Ok((entries, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_taken_by_a_file_and_a_folder_is_the_files_even_with_names_between() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("api")).unwrap();
        std::fs::write(dir.path().join("api/Cargo.toml"), "[package]\n").unwrap();
        for file in ["api-v2.wasm", "api.wasm", "api.toml"] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        let (entries, ignored) = scan(dir.path()).unwrap();
        let names: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(names, [("api", Kind::File), ("api-v2", Kind::File)]);
        assert_eq!(entries[0].sidecar, Some(dir.path().join("api.toml")));
        assert_eq!(ignored, ["api"]);
    }

    #[test]
    fn names_follow_the_convention() {
        assert!(valid_name("hello"));
        assert!(valid_name("a1_b-c"));
        assert!(!valid_name("Hello"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("x.y"));
        assert!(!valid_name(""));
    }
}
