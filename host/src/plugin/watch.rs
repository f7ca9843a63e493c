//! Watches the drop-in folder and reconciles the mounted set after changes.
//!
//! Events are debounced: a copy in place writes a file in many steps, so the
//! folder is looked at once it has been quiet for [`DEBOUNCE`]. A file read
//! mid-copy fails its checks and leaves the previous version serving; the
//! copy's next write triggers another look.

use super::mounts::Mounts;
use crate::error::{Error, Result};
use notify::{RecursiveMode, Watcher};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the folder must be quiet before it is looked at.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Mounts what the folder holds now, then keeps watching it until the
/// returned watcher is dropped.
pub async fn start(
    mounts: Arc<Mounts>,
    ignore: Option<PathBuf>,
) -> Result<notify::RecommendedWatcher> {
    let dir = mounts.plugins_dir().to_path_buf();
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let root = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
    let ignore = ignore.map(|p| std::fs::canonicalize(&p).unwrap_or(p));
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event
            .paths
            .iter()
            .any(|p| relevant(&root, ignore.as_deref(), p))
        {
            let _ = tx.send(());
        }
    })
    .map_err(|e| {
        Error::io(
            format!("watching {}", dir.display()),
            std::io::Error::other(e),
        )
    })?;
    watcher.watch(&dir, RecursiveMode::Recursive).map_err(|e| {
        Error::io(
            format!("watching {}", dir.display()),
            std::io::Error::other(e),
        )
    })?;

    tokio::spawn(async move {
        let mut retry = mounts.reconcile().await;
        loop {
            // A change, a config reload that replaced a database, or (after
            // a load that may pass by itself) the time to try again.
            let change = async {
                tokio::select! {
                    woke = rx.recv() => woke,
                    () = mounts.asked_to_look_again() => Some(()),
                }
            };
            let woke = if retry {
                tokio::time::timeout(super::mounts::RETRY, change)
                    .await
                    .unwrap_or(Some(()))
            } else {
                change.await
            };
            if woke.is_none() {
                return;
            }
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            retry = mounts.reconcile().await;
        }
    });
    Ok(watcher)
}

/// Whether a changed path can matter: not build output (`target/`) inside a
/// source folder, not the host's own data folder.
fn relevant(root: &Path, ignore: Option<&Path>, path: &Path) -> bool {
    if ignore.is_some_and(|ignore| path.starts_with(ignore)) {
        return false;
    }
    let relative = path.strip_prefix(root).unwrap_or(path);
    !relative
        .components()
        .skip(1)
        .any(|c| matches!(c, Component::Normal(n) if n == "target"))
}
