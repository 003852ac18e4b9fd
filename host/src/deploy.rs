//! Deployments: putting a version of a component into service, hot.
//!
//! Every way in (start-up, the admin API, `wharf deploy`, watch mode) ends in
//! [`Deployer::deploy`], which:
//! 1. compiles the wasm (or takes the cached artifact), links it against the
//!    world, instantiates it once and reads its manifest: any failure stops
//!    here and the running version keeps serving;
//! 2. installs it with one atomic store: calls in flight finish on the old
//!    version, every new one runs on the new;
//! 3. starts readers for subscriptions it adds (their groups read from the
//!    stream's beginning, so nothing is missed), stops readers for those it
//!    dropped, and records the version.
//!
//! Versions are content-addressed (sha256 of the wasm) under
//! `<data_dir>/artifacts`, with their precompiled form beside them; the
//! history per component lives in `<data_dir>/deployed/<name>`, so a restart
//! comes back with what was last deployed and a rollback recompiles nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use tokio::sync::{Mutex, watch};

use crate::config::Config;
use crate::runtime::{ComponentVersion, Runtime};
use crate::store::is_valid_name;
use crate::streams::Consumer;

/// A running subscription reader and the switch that stops it.
struct Reader {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Deployer {
    rt: Arc<Runtime>,
    config: Config,
    artifacts: PathBuf,
    deployed: PathBuf,
    /// Consumer name shared by this process's readers (unique per process).
    consumer: String,
    /// Readers by (component, stream, group).
    readers: Mutex<HashMap<(String, String, String), Reader>>,
    /// One deployment at a time: their steps must not interleave.
    serial: Mutex<()>,
    shutdown: watch::Receiver<bool>,
    /// Where readers and their handlers run (see `background`).
    background: tokio::runtime::Handle,
}

/// What a deployment did, for the admin API and logs.
pub struct Deployed {
    pub version: Arc<ComponentVersion>,
    pub previous: Option<String>,
    pub millis: f64,
}

impl Deployer {
    pub fn new(
        rt: Arc<Runtime>,
        config: Config,
        consumer: String,
        shutdown: watch::Receiver<bool>,
        background: tokio::runtime::Handle,
    ) -> Result<Arc<Self>> {
        let artifacts = config.data_dir.join("artifacts");
        let deployed = config.data_dir.join("deployed");
        std::fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
        std::fs::create_dir_all(&deployed)?;
        Ok(Arc::new(Deployer {
            rt,
            config,
            artifacts,
            deployed,
            consumer,
            readers: Mutex::default(),
            serial: Mutex::default(),
            shutdown,
            background,
        }))
    }

    /// Loads every configured component (the version last deployed if there
    /// is one, else the file named in the configuration), and every component
    /// deployed through the admin API since.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        for name in self.deployed_names().into_iter().filter(|n| !self.config.components.contains_key(n)) {
            let Some(sha) = self.history(&name).last().cloned() else { continue };
            let wasm = std::fs::read(self.artifacts.join(format!("{sha}.wasm")))?;
            let d = self.deploy(&name, &wasm).await.with_context(|| format!("restoring component {name}"))?;
            tracing::info!(component = %name, sha256 = %&d.version.sha256[..12], "deployed component restored");
        }
        for (name, c) in &self.config.components {
            let wasm = match self.history(name).last() {
                Some(sha) => match std::fs::read(self.artifacts.join(format!("{sha}.wasm"))) {
                    Ok(w) => {
                        tracing::info!(component = %name, sha256 = %&sha[..12], "restoring the last deployed version");
                        w
                    }
                    Err(_) => read_wasm(&c.wasm)?,
                },
                None => read_wasm(&c.wasm)?,
            };
            let d = self.deploy(name, &wasm).await.with_context(|| format!("loading component {name}"))?;
            tracing::info!(component = %name, sha256 = %&d.version.sha256[..12], routes = d.version.manifest.routes.len(), ms = d.millis, "component loaded");
        }
        if self.config.components.is_empty() {
            tracing::warn!("no components configured: only /healthz and /readyz will answer");
        }
        Ok(())
    }

    /// Puts `wasm` into service as component `name` (see the module docs).
    pub async fn deploy(self: &Arc<Self>, name: &str, wasm: &[u8]) -> Result<Deployed> {
        if !is_valid_name(name) {
            bail!("component names are 1-64 characters of a-z, 0-9, - and _");
        }
        let _one_at_a_time = self.serial.lock().await;
        let started = Instant::now();
        let configured = self.config.components.get(name);
        let config = configured.map(|c| c.config.clone()).unwrap_or_default();
        let grants = match configured.and_then(|c| c.grants.clone()) {
            None if self.config.require_grants => Some(Default::default()),
            grants => grants,
        };
        let version = self.rt.load(wasm, config, grants, Some(&self.artifacts)).await?;
        if version.name != name {
            bail!("the component calls itself {:?} in its manifest, not {name:?}", version.name);
        }
        let previous = self.rt.registry.get(name);
        if previous.as_ref().is_some_and(|p| p.sha256 == version.sha256) {
            return Ok(Deployed {
                version: previous.clone().unwrap(),
                previous: previous.map(|p| p.sha256.clone()),
                millis: 0.0,
            });
        }
        self.rt.registry.check(&version)?;
        self.keep_artifact(&version.sha256, wasm)?;

        let wanted: Vec<(String, String)> =
            version.manifest.subscriptions.iter().map(|s| (s.stream.clone(), s.group.clone())).collect();
        self.rt.registry.install(version.clone())?;
        // Readers start after the swap, so no event of a new subscription can
        // reach the old version; groups start at the stream's beginning, so
        // nothing published meanwhile is missed.
        self.start_readers(name, &wanted).await;
        self.stop_readers_except(name, &wanted).await;
        self.record(name, &version.sha256)?;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        if let Some(p) = &previous {
            self.rt.metrics.swapped(name, started.elapsed());
            tracing::info!(component = name, from = %&p.sha256[..12], to = %&version.sha256[..12], ms = millis, "component swapped");
        }
        Ok(Deployed { version, previous: previous.map(|p| p.sha256.clone()), millis })
    }

    /// Goes back to the version deployed before the current one.
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<Deployed> {
        let history = self.history(name);
        let current = self.rt.registry.get(name).map(|v| v.sha256.clone());
        // The newest entry that differs from what runs now.
        let Some(target) = history.iter().rev().find(|sha| Some(*sha) != current.as_ref()).cloned() else {
            bail!("{name} has no earlier version to roll back to");
        };
        let wasm = std::fs::read(self.artifacts.join(format!("{target}.wasm")))
            .with_context(|| format!("the artifact of {target} is missing"))?;
        // Drop the current version from the history so a second rollback goes further back.
        if let Some(cur) = current {
            let mut h = history.clone();
            if h.last() == Some(&cur) {
                h.pop();
            }
            self.write_history(name, &h)?;
        }
        self.deploy(name, &wasm).await
    }

    async fn start_readers(&self, component: &str, wanted: &[(String, String)]) {
        let mut readers = self.readers.lock().await;
        for (stream, group) in wanted {
            let key = (component.to_string(), stream.clone(), group.clone());
            if readers.contains_key(&key) {
                continue;
            }
            let (stop, stopped) = watch::channel(false);
            let consumer = Arc::new(Consumer {
                rt: self.rt.clone(),
                component: component.to_string(),
                stream: stream.clone(),
                group: group.clone(),
                consumer: self.consumer.clone(),
                cfg: self.config.streams.clone(),
            });
            // Create the group now, so it exists when the swap is answered; if
            // Redis is unreachable the reader keeps trying on its own.
            let mut conn = self.rt.redis.conn();
            let stream_key = crate::store::stream_key(stream);
            match tokio::time::timeout(self.rt.redis.timeout, consumer.ensure_group(&mut conn, &stream_key)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(stream, group, error = %e, "consumer group not created yet"),
                Err(_) => tracing::warn!(stream, group, "consumer group not created yet: redis timed out"),
            }
            let shutdown = self.shutdown.clone();
            let task = self.background.spawn(consumer.run(either(stopped, shutdown)));
            readers.insert(key, Reader { stop, task });
        }
    }

    async fn stop_readers_except(&self, component: &str, wanted: &[(String, String)]) {
        let mut readers = self.readers.lock().await;
        let gone: Vec<_> = readers
            .keys()
            .filter(|(c, s, g)| c == component && !wanted.iter().any(|(ws, wg)| ws == s && wg == g))
            .cloned()
            .collect();
        for key in gone {
            if let Some(r) = readers.remove(&key) {
                tracing::info!(component, stream = %key.1, group = %key.2, "subscription removed; stopping its reader");
                let _ = r.stop.send(true);
                // Its handlers in flight finish on their own; nothing waits here.
                drop(r.task);
            }
        }
    }

    /// Waits for every reader to stop (after shutdown was signalled).
    pub async fn join_readers(&self) {
        let readers: Vec<Reader> = self.readers.lock().await.drain().map(|(_, r)| r).collect();
        for r in readers {
            let _ = r.task.await;
        }
    }

    fn deployed_names(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.deployed) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| is_valid_name(n)).collect()
    }

    /// Version history of `name`, oldest first.
    pub fn history(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.deployed.join(name))
            .map(|s| s.lines().filter(|l| l.len() == 64).map(String::from).collect())
            .unwrap_or_default()
    }

    fn write_history(&self, name: &str, history: &[String]) -> Result<()> {
        let tmp = self.deployed.join(format!("{name}.tmp"));
        std::fs::write(&tmp, history.join("\n") + "\n")?;
        std::fs::rename(&tmp, self.deployed.join(name))?;
        Ok(())
    }

    fn record(&self, name: &str, sha: &str) -> Result<()> {
        let mut h = self.history(name);
        h.retain(|s| s != sha);
        h.push(sha.to_string());
        // Keep a bounded history; artifacts stay on disk (content addressed).
        let skip = h.len().saturating_sub(20);
        self.write_history(name, &h[skip..])
    }

    fn keep_artifact(&self, sha: &str, wasm: &[u8]) -> Result<()> {
        let path = self.artifacts.join(format!("{sha}.wasm"));
        if !path.exists() {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, wasm)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    /// Per-component summary for `GET /admin/components`.
    pub fn describe(&self) -> Vec<serde_json::Value> {
        let table = self.rt.registry.snapshot();
        table
            .components
            .values()
            .map(|v| {
                let loaded_at = v.loaded_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                serde_json::json!({
                    "name": v.name,
                    "version": v.sha256,
                    "loaded_at_ms": loaded_at,
                    "requests": v.requests.load(std::sync::atomic::Ordering::Relaxed),
                    "routes": v.manifest.routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
                    "subscriptions": v.manifest.subscriptions.iter().map(|s| serde_json::json!({"stream": s.stream, "group": s.group})).collect::<Vec<_>>(),
                    "publishes": v.manifest.publishes,
                    "history": self.history(&v.name).iter().map(|sha| serde_json::json!({
                        "version": sha,
                        "requests": self.rt.requests_of(sha).load(std::sync::atomic::Ordering::Relaxed),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    pub fn known(&self, name: &str) -> bool {
        self.config.components.contains_key(name) || self.rt.registry.get(name).is_some()
    }
}

fn read_wasm(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A receiver that turns true when either input does.
fn either(mut a: watch::Receiver<bool>, mut b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*a.borrow() || *b.borrow());
    tokio::spawn(async move {
        tokio::select! {
            _ = a.wait_for(|v| *v) => {}
            _ = b.wait_for(|v| *v) => {}
            _ = tx.closed() => return,
        }
        let _ = tx.send(true);
    });
    rx
}
