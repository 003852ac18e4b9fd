//! Dev mode (`wharf serve --watch`): edit a component's source and see it
//! served seconds later, without a restart.
//!
//! Watches `components/<name>/` for each configured component (and its
//! language's SDK, which rebuilds every component of the language). After a
//! change settles it builds the component as its language does (`build`:
//! cargo, componentize-py or componentize-js) and hands the new wasm to the same
//! [`Deployer::deploy`] the admin API uses. A build error is printed and the
//! running version stays.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::deploy::Deployer;
use crate::dev::build::{self, Lang};

/// Quiet time after the last file event before building: editors write in bursts.
const SETTLE: Duration = Duration::from_millis(300);

/// One component to watch: its source directory, its language and the wasm
/// its build produces.
pub struct Watched {
    pub name: String,
    pub dir: PathBuf,
    pub lang: Lang,
    pub wasm: PathBuf,
}

pub async fn run(
    deployer: Arc<Deployer>,
    workspace: PathBuf,
    watched: Vec<Watched>,
    shutdown: CancellationToken,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && (ev.kind.is_modify() || ev.kind.is_create() || ev.kind.is_remove())
        {
            for p in ev.paths {
                let _ = tx.send(p);
            }
        }
    })?;
    let sdks: BTreeSet<PathBuf> = watched.iter().map(|w| w.lang.sdk(&workspace)).filter(|d| d.exists()).collect();
    for dir in watched.iter().map(|w| &w.dir).chain(&sdks) {
        watcher.watch(dir, RecursiveMode::Recursive).with_context(|| format!("watching {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), "watching for changes");
    }
    loop {
        let first = tokio::select! {
            p = rx.recv() => match p { Some(p) => p, None => return Ok(()) },
            _ = shutdown.cancelled() => return Ok(()),
        };
        let mut changed = vec![first];
        while let Ok(Some(p)) = tokio::time::timeout(SETTLE, rx.recv()).await {
            changed.push(p);
        }
        let names = affected(&changed, &watched, &workspace);
        for w in watched.iter().filter(|w| names.contains(&w.name)) {
            rebuild(&deployer, &workspace, w).await;
        }
    }
}

/// Components whose sources are among `changed` (all of a language's for a
/// change to its SDK).
fn affected(changed: &[PathBuf], watched: &[Watched], workspace: &Path) -> BTreeSet<String> {
    let relevant = |p: &&PathBuf| {
        !p.components().any(|c| ["target", "__pycache__", "node_modules"].iter().any(|skip| c.as_os_str() == *skip))
            && !is_editor_noise(p)
    };
    let mut names = BTreeSet::new();
    for p in changed.iter().filter(relevant) {
        let touches = |w: &&Watched| p.starts_with(&w.dir) || p.starts_with(w.lang.sdk(workspace));
        names.extend(watched.iter().filter(touches).map(|w| w.name.clone()));
    }
    names
}

fn is_editor_noise(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with(".#")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp")
        || name.ends_with(".pyc")
}

async fn rebuild(deployer: &Arc<Deployer>, workspace: &Path, w: &Watched) {
    tracing::info!(component = %w.name, "source changed: rebuilding");
    let mut build = build::command(w.lang, workspace, &w.name, &w.wasm);
    match build.output().await {
        Err(e) => tracing::error!(component = %w.name, error = %e, command = ?build.as_std(), "cannot run the build"),
        Ok(out) if !out.status.success() => {
            let errors = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
            tracing::error!(component = %w.name, "build failed; the running version keeps serving:\n{errors}");
        }
        Ok(_) => match std::fs::read(&w.wasm) {
            Err(e) => {
                tracing::error!(component = %w.name, wasm = %w.wasm.display(), error = %e, "built, but cannot read the wasm")
            }
            Ok(wasm) => match deployer.deploy(&w.name, &wasm, crate::deploy::Source::File).await {
                Ok(d) => {
                    tracing::info!(component = %w.name, version = %&d.version.sha256[..12], swap_ms = d.millis, "new version serving")
                }
                Err(e) => {
                    tracing::error!(component = %w.name, error = %format!("{e:#}"), "new version refused; the running version keeps serving")
                }
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_changes_rebuild_everything_and_target_is_ignored() {
        let w = |n: &str, lang| Watched {
            name: n.into(),
            dir: PathBuf::from(format!("/ws/components/{n}")),
            lang,
            wasm: PathBuf::new(),
        };
        let watched = vec![w("inventory", Lang::Rust), w("payment", Lang::Rust), w("loyalty", Lang::Python)];
        let ws = Path::new("/ws");
        let got = affected(&[PathBuf::from("/ws/components/payment/src/lib.rs")], &watched, ws);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec!["payment"]);
        let got = affected(&[PathBuf::from("/ws/components/wharf-sdk/src/kv.rs")], &watched, ws);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec!["inventory", "payment"]);
        let got = affected(&[PathBuf::from("/ws/components/wharf-py/wharf/kv.py")], &watched, ws);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec!["loyalty"]);
        let got = affected(
            &[
                PathBuf::from("/ws/components/payment/target/x"),
                PathBuf::from("/ws/components/payment/src/.#lib.rs"),
                PathBuf::from("/ws/components/loyalty/__pycache__/rules.cpython-311.pyc"),
            ],
            &watched,
            ws,
        );
        assert!(got.is_empty());
    }
}
