//! Dev mode (`wharf serve --watch`): edit a component's source and see it
//! served seconds later, without a restart.
//!
//! Watches `components/<name>/` for each configured component (and the guest
//! SDK, which rebuilds them all). After a change settles it runs cargo for
//! `wasm32-wasip2` and hands the new wasm to the same [`Deployer::deploy`] the
//! admin API uses. A build error is printed and the running version stays.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::deploy::Deployer;

/// Quiet time after the last file event before building: editors write in bursts.
const SETTLE: Duration = Duration::from_millis(300);

/// One component to watch: its crate directory and the wasm cargo produces.
pub struct Watched {
    pub name: String,
    pub dir: PathBuf,
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
    let sdk = workspace.join("components/wharf-sdk");
    for w in watched.iter().map(|w| &w.dir).chain(sdk.exists().then_some(&sdk)) {
        watcher.watch(w, RecursiveMode::Recursive).with_context(|| format!("watching {}", w.display()))?;
        tracing::info!(dir = %w.display(), "watching for changes");
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
        let names = affected(&changed, &watched, &sdk);
        for w in watched.iter().filter(|w| names.contains(&w.name)) {
            rebuild(&deployer, &workspace, w).await;
        }
    }
}

/// Components whose sources are among `changed` (all of them for an SDK change).
fn affected(changed: &[PathBuf], watched: &[Watched], sdk: &Path) -> BTreeSet<String> {
    let relevant = |p: &&PathBuf| !p.components().any(|c| c.as_os_str() == "target") && !is_editor_noise(p);
    let mut names = BTreeSet::new();
    for p in changed.iter().filter(relevant) {
        if p.starts_with(sdk) {
            names.extend(watched.iter().map(|w| w.name.clone()));
        }
        names.extend(watched.iter().filter(|w| p.starts_with(&w.dir)).map(|w| w.name.clone()));
    }
    names
}

fn is_editor_noise(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with(".#") || name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp")
}

async fn rebuild(deployer: &Arc<Deployer>, workspace: &Path, w: &Watched) {
    tracing::info!(component = %w.name, "source changed: rebuilding");
    let build = tokio::process::Command::new("cargo")
        .args(["build", "--profile", "component", "--target", "wasm32-wasip2", "--message-format", "short", "-p"])
        .arg(&w.name)
        .current_dir(workspace)
        .output()
        .await;
    match build {
        Err(e) => tracing::error!(component = %w.name, error = %e, "cannot run cargo"),
        Ok(out) if !out.status.success() => {
            let errors = String::from_utf8_lossy(&out.stderr);
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
        let w = |n: &str| Watched {
            name: n.into(),
            dir: PathBuf::from(format!("/ws/components/{n}")),
            wasm: PathBuf::new(),
        };
        let watched = vec![w("inventory"), w("payment")];
        let sdk = PathBuf::from("/ws/components/wharf-sdk");
        let got = affected(&[PathBuf::from("/ws/components/payment/src/lib.rs")], &watched, &sdk);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), vec!["payment"]);
        let got = affected(&[PathBuf::from("/ws/components/wharf-sdk/src/kv.rs")], &watched, &sdk);
        assert_eq!(got.len(), 2);
        let got = affected(
            &[PathBuf::from("/ws/components/payment/target/x"), PathBuf::from("/ws/components/payment/src/.#lib.rs")],
            &watched,
            &sdk,
        );
        assert!(got.is_empty());
    }
}
