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
//! `<data_dir>/artifacts`, with their precompiled form beside them
//! (`artifacts`); the history per component, each version with where it
//! came from (`file` or `deploy`), lives in `<data_dir>/deployed/<name>`,
//! and the sha256 of the configured file when it was last loaded in
//! `<data_dir>/deployed/<name>.file`. At start-up [`choose_at_start`]
//! decides between the configured file and the last deployment: a file that
//! changed since it was last loaded wins (a developer rebuilt it), else the
//! last deployment stays (an operator deployed it). A rollback recompiles
//! nothing. Beyond this host, the fleet's record in Redis decides
//! (`fleet`): a deploy or rollback here writes it, and every host follows.

pub mod artifacts;
pub mod canary;
pub mod cli;
pub mod fleet;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::Digest;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::background::Supervisor;
use crate::config::Config;
use crate::deploy::artifacts::{Artifacts, ensure_private_dir, write_atomically};
use crate::deploy::fleet::Fleet;
use crate::engine::canary::Canary;
use crate::engine::runtime::{ComponentVersion, Runtime, Settings};
use crate::engine::tally::Counts;
use crate::storage::is_valid_name;
use crate::streams::Subscription;

/// A running subscription reader and the switch that stops it.
struct Reader {
    /// A child of the host's shutdown token: cancelled by either.
    stop: CancellationToken,
}

/// Where a version came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The wasm file the configuration names (start-up, watch mode).
    File,
    /// The admin API or `wharf deploy` (a rollback keeps the version's own).
    Deploy,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Deploy => "deploy",
        }
    }

    fn parse(s: &str) -> Source {
        if s == "file" { Source::File } else { Source::Deploy }
    }
}

/// One entry of a component's history.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub sha: String,
    pub source: Source,
}

/// What start-up serves for a configured component, and why (for the log).
#[derive(Debug, PartialEq)]
pub enum StartChoice {
    File(&'static str),
    LastDeployed(&'static str),
}

/// The start-up decision for a configured component: `file` is the sha256
/// of the configured file now (None: unreadable), `file_loaded_before` that
/// of the file when it was last loaded, `last` the last version deployed.
pub fn choose_at_start(file: Option<&str>, file_loaded_before: Option<&str>, last: Option<&Entry>) -> StartChoice {
    match (file, last) {
        (None, Some(_)) => StartChoice::LastDeployed("the configured file cannot be read"),
        (None, None) => StartChoice::File("nothing was deployed before"),
        (Some(_), None) => StartChoice::File("nothing was deployed before"),
        (Some(f), Some(last)) if last.sha == f => StartChoice::File("the configured file is the last deployed version"),
        (Some(f), Some(_)) if file_loaded_before == Some(f) => {
            StartChoice::LastDeployed("the configured file is unchanged since it was loaded")
        }
        (Some(_), Some(_)) if file_loaded_before.is_none() => {
            StartChoice::File("the configured file was never loaded from here before")
        }
        (Some(_), Some(_)) => StartChoice::File("the configured file changed since it was last loaded"),
    }
}

/// At start-up, whether the fleet's record of a configured component wins
/// over this host's own choice: it does whenever there is one, unless the
/// configured file changed since this host last loaded it (a developer
/// rebuilt it; it then becomes the fleet's). A file never loaded here
/// loses, and is noted as seen: a new host with a stale build must not
/// revert the fleet, and a rebuild after that is a change.
pub fn fleet_wins_at_start(recorded: bool, file: Option<&str>, file_loaded_before: Option<&str>) -> bool {
    let rebuilt = matches!((file, file_loaded_before), (Some(f), Some(before)) if f != before);
    recorded && !rebuilt
}

/// The deployer as the fleet sees it: what runs here, and how to follow a record.
pub struct Follower(pub Arc<Deployer>);

impl fleet::Apply for Follower {
    fn running(&self, name: &str) -> Option<String> {
        self.0.rt.registry.get(name).map(|v| v.sha256.clone())
    }

    fn apply(&self, name: &str, wasm: Vec<u8>) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        let name = name.to_string();
        Box::pin(async move { self.0.follow(&name, &wasm).await.map(|_| ()) })
    }

    fn canary(&self, name: &str) -> Option<String> {
        self.0.rt.registry.canary(name).map(|c| c.version.sha256.clone())
    }

    fn start_canary(
        &self,
        name: &str,
        wasm: Vec<u8>,
        share: u32,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>> {
        let name = name.to_string();
        Box::pin(async move {
            let version = self.0.load_version(&name, &wasm).await?;
            self.0.rt.registry.set_canary(&name, Some(Arc::new(Canary::new(version, share))))
        })
    }

    fn end_canary(&self, name: &str) {
        let _ = self.0.rt.registry.set_canary(name, None);
    }

    fn take_tallies(&self) -> Vec<(String, String, Counts, Counts)> {
        let table = self.0.rt.registry.snapshot();
        table
            .canaries
            .iter()
            .map(|(name, c)| (name.clone(), c.version.sha256.clone(), c.stable.take(), c.canary.take()))
            .collect()
    }
}

pub struct Deployer {
    rt: Arc<Runtime>,
    config: Config,
    artifacts: Arc<Artifacts>,
    deployed: PathBuf,
    /// Consumer name shared by this process's readers (unique per process).
    consumer: String,
    /// Readers by (component, stream, group).
    readers: Mutex<HashMap<(String, String, String), Reader>>,
    /// One deployment at a time: their steps must not interleave.
    serial: Mutex<()>,
    /// Readers run on its background runtime; shutdown waits for every one,
    /// a removed one's too.
    supervisor: Supervisor,
    /// The desired state every host on this Redis shares (`fleet`).
    pub fleet: Arc<Fleet>,
}

/// What a deployment did, for the admin API and logs.
pub struct Deployed {
    pub version: Arc<ComponentVersion>,
    pub previous: Option<String>,
    pub millis: f64,
    /// The fleet's record of it: its revision, or why it was not written
    /// (this host runs it; the others do not know).
    pub fleet: Option<Result<u64, String>>,
}

impl Deployer {
    pub fn new(rt: Arc<Runtime>, config: Config, consumer: String, supervisor: Supervisor) -> Result<Arc<Self>> {
        let artifacts = Arc::new(Artifacts::open(&config.data_dir)?);
        let deployed = config.data_dir.join("deployed");
        ensure_private_dir(&deployed)?;
        let fleet = Fleet::new(rt.redis.clone(), consumer.clone(), config.listen.to_string());
        Ok(Arc::new(Deployer {
            fleet,
            rt,
            config,
            artifacts,
            deployed,
            consumer,
            readers: Mutex::default(),
            serial: Mutex::default(),
            supervisor,
        }))
    }

    /// Loads every component deployed through the admin API that the
    /// configuration does not name, then every configured one: its file or
    /// its last deployment, as [`choose_at_start`] decides. With a fleet
    /// record, the record wins ([`fleet_wins_at_start`]). Then follows every
    /// other record, so a host that was down comes up on what the fleet runs.
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        let records = match self.fleet.records().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the fleet's deployments; starting from this host's own");
                Vec::new()
            }
        };
        let recorded = |name: &str| records.iter().any(|r| r.name == name);
        for name in self.deployed_names().into_iter().filter(|n| !self.config.components.contains_key(n)) {
            if recorded(&name) {
                continue; // the fleet's record decides (below)
            }
            let Some(last) = self.history(&name).pop() else { continue };
            let wasm = self.artifacts.read_wasm(&last.sha).with_context(|| format!("restoring component {name}"))?;
            let d =
                self.deploy(&name, &wasm, last.source).await.with_context(|| format!("restoring component {name}"))?;
            tracing::info!(component = %name, sha256 = %&d.version.sha256[..12], "deployed component restored");
        }
        let mut deferred = Vec::new();
        for (name, c) in &self.config.components {
            let file = read_wasm(&c.wasm);
            let file_sha = file.as_ref().ok().map(|w| hex::encode(sha2::Sha256::digest(w)));
            let loaded_before = self.file_loaded_before(name);
            if fleet_wins_at_start(recorded(name), file_sha.as_deref(), loaded_before.as_deref()) {
                let why = match (&file_sha, &loaded_before) {
                    (None, _) => "the configured file cannot be read",
                    (Some(_), None) => "the configured file was never loaded from here before",
                    (Some(_), Some(_)) => "the configured file is unchanged since it was loaded",
                };
                tracing::info!(component = %name, file = %c.wasm.display(), "serving the fleet's recorded version: {why}");
                // Noted as seen: a later change to it is a rebuild, which wins.
                if let Some(sha) = &file_sha {
                    self.write_file_loaded(name, sha)?;
                }
                deferred.push((name.clone(), file, file_sha));
                continue;
            }
            self.start_from_here(name, file, file_sha.as_deref(), loaded_before.as_deref(), true).await?;
        }
        if let Err(e) = self.fleet.sync(&Follower(self.clone())).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot follow the fleet's deployments yet; the watch will");
        }
        // A record this host could not follow (its artifact gone, say): its
        // own, from the file read above.
        for (name, file, file_sha) in deferred.into_iter().filter(|(n, _, _)| self.rt.registry.get(n).is_none()) {
            let loaded_before = self.file_loaded_before(&name);
            self.start_from_here(&name, file, file_sha.as_deref(), loaded_before.as_deref(), false).await?;
        }
        if self.config.components.is_empty() && records.is_empty() {
            tracing::warn!("no components configured: only /healthz and /readyz will answer");
        }
        Ok(())
    }

    /// Loads configured component `name` from this host's file or history,
    /// as [`choose_at_start`] decides; `publish`: and makes it the fleet's.
    async fn start_from_here(
        self: &Arc<Self>,
        name: &str,
        file: Result<Vec<u8>>,
        file_sha: Option<&str>,
        loaded_before: Option<&str>,
        publish: bool,
    ) -> Result<()> {
        let c = &self.config.components[name];
        let last = self.history(name).pop();
        let choice = choose_at_start(file_sha, loaded_before, last.as_ref());
        let (wasm, source) = match (&choice, last) {
            (StartChoice::LastDeployed(why), Some(last)) => {
                tracing::info!(component = %name, sha256 = %&last.sha[..12], source = last.source.as_str(), file = %c.wasm.display(), "serving the last deployed version: {why}");
                (self.artifacts.read_wasm(&last.sha).with_context(|| format!("loading component {name}"))?, last.source)
            }
            (StartChoice::File(why), _) | (StartChoice::LastDeployed(why), None) => {
                tracing::info!(component = %name, file = %c.wasm.display(), "serving the configured file: {why}");
                (file?, Source::File)
            }
        };
        let d = if publish {
            self.deploy(name, &wasm, source).await
        } else {
            let _one_at_a_time = self.serial.lock().await;
            self.deploy_locked(name, &wasm, source).await
        }
        .with_context(|| format!("loading component {name}"))?;
        tracing::info!(component = %name, sha256 = %&d.version.sha256[..12], routes = d.version.manifest.routes.len(), ms = d.millis, "component loaded");
        Ok(())
    }

    /// Puts `wasm` into service as component `name` (see the module docs),
    /// here, then on every host: the fleet's record follows.
    pub async fn deploy(self: &Arc<Self>, name: &str, wasm: &[u8], source: Source) -> Result<Deployed> {
        let _one_at_a_time = self.serial.lock().await;
        let mut deployed = self.deploy_locked(name, wasm, source).await?;
        deployed.fleet = Some(self.publish(name, &deployed.version.sha256, wasm, source).await);
        Ok(deployed)
    }

    /// Writes the fleet's record of what `name` runs here now.
    async fn publish(&self, name: &str, sha: &str, wasm: &[u8], source: Source) -> Result<u64, String> {
        self.fleet.publish(name, sha, wasm, source.as_str()).await.map_err(|e| {
            let why = format!("{e:#}");
            tracing::warn!(component = name, error = %why, "deployed here, but the fleet's record was not written: the other hosts keep their version");
            why
        })
    }

    /// A version the fleet's record names, put into service here without
    /// writing the record again.
    pub async fn follow(self: &Arc<Self>, name: &str, wasm: &[u8]) -> Result<Deployed> {
        let _one_at_a_time = self.serial.lock().await;
        self.deploy_locked(name, wasm, Source::Deploy).await
    }

    /// Tries `wasm` as a canary of `name` beside the version the fleet
    /// runs, on every host: it takes `share` percent of requests and events,
    /// and the fleet promotes or rolls it back after `window` (`canary`).
    /// Returns the canary's sha256.
    pub async fn canary(self: &Arc<Self>, name: &str, wasm: &[u8], share: u32, window: Duration) -> Result<String> {
        let _one_at_a_time = self.serial.lock().await;
        let Some(live) = self.rt.registry.get(name) else { bail!("{name} is not running here: deploy it first") };
        let version = self.load_version(name, wasm).await?;
        if version.sha256 == live.sha256 {
            bail!("the canary is the version {name} runs already");
        }
        let sha = version.sha256.clone();
        self.rt.registry.set_canary(name, Some(Arc::new(Canary::new(version, share))))?;
        self.artifacts.keep_wasm(&sha, wasm)?;
        if let Err(e) = self.fleet.start_canary(name, &live.sha256, &sha, wasm, share, window).await {
            self.rt.registry.set_canary(name, None)?;
            return Err(e);
        }
        tracing::info!(component = name, canary = %&sha[..12], share, window_ms = window.as_millis() as u64, "canary started");
        Ok(sha)
    }

    /// Compiles (or takes from the cache) and checks `wasm` as component
    /// `name`, under its configured settings and grants; installs nothing.
    async fn load_version(&self, name: &str, wasm: &[u8]) -> Result<Arc<ComponentVersion>> {
        if !is_valid_name(name) {
            bail!("component names are 1-64 characters of a-z, 0-9, - and _");
        }
        let configured = self.config.components.get(name);
        let config = configured.map(|c| c.config.clone()).unwrap_or_default();
        let grants = match configured.and_then(|c| c.grants.clone()) {
            None if self.config.require_grants => Some(Default::default()),
            grants => grants,
        };
        let settings = Settings {
            config,
            grants,
            instance_reuse: configured.map_or(0, |c| c.instance_reuse),
            instance_reuse_for: configured.map(|c| c.instance_reuse_for).unwrap_or_default(),
            mount: configured.and_then(|c| c.mount.clone()),
        };
        let version = self.rt.load(name, wasm, settings, Some(self.artifacts.clone())).await?;
        if version.name != name {
            bail!("the component calls itself {:?} in its manifest, not {name:?}", version.name);
        }
        Ok(version)
    }

    /// `deploy`, with the deployment lock held by the caller.
    async fn deploy_locked(self: &Arc<Self>, name: &str, wasm: &[u8], source: Source) -> Result<Deployed> {
        let started = Instant::now();
        let configured = self.config.components.get(name);
        let version = self.load_version(name, wasm).await?;
        if source == Source::File && configured.is_some() {
            self.write_file_loaded(name, &version.sha256)?;
        }
        let previous = self.rt.registry.get(name);
        if previous.as_ref().is_some_and(|p| p.sha256 == version.sha256) {
            self.record(name, &version.sha256, source)?;
            return Ok(Deployed {
                version: previous.clone().unwrap(),
                previous: previous.map(|p| p.sha256.clone()),
                millis: 0.0,
                fleet: None,
            });
        }
        self.rt.registry.check(&version)?;
        self.artifacts.keep_wasm(&version.sha256, wasm)?;

        let wanted: Vec<(String, String)> =
            version.manifest.subscriptions.iter().map(|s| (s.stream.clone(), s.group.clone())).collect();
        self.rt.registry.install(version.clone())?;
        // Readers start after the swap, so no event of a new subscription can
        // reach the old version; groups start at the stream's beginning, so
        // nothing published meanwhile is missed.
        self.start_readers(name, &wanted).await;
        self.stop_readers_except(name, &wanted).await;
        self.record(name, &version.sha256, source)?;
        let millis = started.elapsed().as_secs_f64() * 1000.0;
        if let Some(p) = &previous {
            self.rt.metrics.swapped(name, started.elapsed());
            tracing::info!(component = name, from = %&p.sha256[..12], to = %&version.sha256[..12], source = source.as_str(), ms = millis, "component swapped");
        }
        Ok(Deployed { version, previous: previous.map(|p| p.sha256.clone()), millis, fleet: None })
    }

    /// Goes back to the version deployed before the current one. The whole
    /// of it holds the deployment lock, and the history changes only once
    /// the older version serves: a refused rollback changes nothing.
    pub async fn rollback(self: &Arc<Self>, name: &str) -> Result<Deployed> {
        let _one_at_a_time = self.serial.lock().await;
        let history = self.history(name);
        let current = self.rt.registry.get(name).map(|v| v.sha256.clone());
        // The newest entry that differs from what runs now.
        let Some(target) = history.iter().rev().find(|e| Some(&e.sha) != current.as_ref()).cloned() else {
            bail!("{name} has no earlier version to roll back to");
        };
        let wasm = self.artifacts.read_wasm(&target.sha)?;
        let mut deployed = self.deploy_locked(name, &wasm, target.source).await?;
        deployed.fleet = Some(self.publish(name, &target.sha, &wasm, target.source).await);
        // Drop the version rolled back from, so a second rollback goes further back.
        if let Some(cur) = current {
            let mut h = self.history(name);
            h.retain(|e| e.sha != cur);
            self.write_history(name, &h)?;
        }
        Ok(deployed)
    }

    async fn start_readers(&self, component: &str, wanted: &[(String, String)]) {
        let mut readers = self.readers.lock().await;
        for (stream, group) in wanted {
            let key = (component.to_string(), stream.clone(), group.clone());
            if readers.contains_key(&key) {
                continue;
            }
            let stop = self.supervisor.child_token();
            let subscription = Subscription::new(
                self.rt.clone(),
                component,
                stream,
                group,
                &self.consumer,
                self.config.streams.clone(),
            );
            // Create the group now, so it exists when the swap is answered; if
            // Redis is unreachable the reader keeps trying on its own.
            match tokio::time::timeout(self.rt.redis.timeout * 2, subscription.ensure_groups()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(stream, group, error = %e, "consumer group not created yet"),
                Err(_) => tracing::warn!(stream, group, "consumer group not created yet: redis timed out"),
            }
            self.supervisor.spawn_on_background(subscription.run(stop.clone()));
            readers.insert(key, Reader { stop });
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
                // Its handlers in flight finish on their own; shutdown waits
                // for them (the task is tracked).
                r.stop.cancel();
            }
        }
    }

    fn deployed_names(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(&self.deployed) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| is_valid_name(n)).collect()
    }

    /// Version history of `name`, oldest first. A line is `<sha256> <source>`
    /// (a bare sha256, from before sources were kept, counts as a deploy).
    pub fn history(&self, name: &str) -> Vec<Entry> {
        std::fs::read_to_string(self.deployed.join(name))
            .map(|s| {
                s.lines()
                    .filter_map(|l| {
                        let mut parts = l.split_whitespace();
                        let sha = parts.next().filter(|s| s.len() == 64)?;
                        Some(Entry { sha: sha.to_string(), source: Source::parse(parts.next().unwrap_or("deploy")) })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn write_history(&self, name: &str, history: &[Entry]) -> Result<()> {
        let text: String = history.iter().map(|e| format!("{} {}\n", e.sha, e.source.as_str())).collect();
        write_atomically(&self.deployed.join(name), text.as_bytes())
    }

    fn record(&self, name: &str, sha: &str, source: Source) -> Result<()> {
        let mut h = self.history(name);
        h.retain(|e| e.sha != sha);
        h.push(Entry { sha: sha.to_string(), source });
        // Keep a bounded history; artifacts stay on disk (content addressed).
        let skip = h.len().saturating_sub(20);
        self.write_history(name, &h[skip..])
    }

    /// The sha256 of `name`'s configured file when it was last loaded, or
    /// last seen at start-up while the fleet's version served.
    fn file_loaded_before(&self, name: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.deployed.join(format!("{name}.file"))).ok()?;
        Some(text.trim().to_string()).filter(|s| s.len() == 64)
    }

    fn write_file_loaded(&self, name: &str, sha: &str) -> Result<()> {
        write_atomically(&self.deployed.join(format!("{name}.file")), format!("{sha}\n").as_bytes())
    }

    /// Per-component summary for `GET /admin/components`: what runs here,
    /// and under `fleet` the record, every live host's version, whether they
    /// agree (`converged`), and the hosts that cannot run it (`failed`).
    /// Redis unreachable: the fleet part says so, the rest is this host's.
    pub async fn describe(&self) -> Vec<serde_json::Value> {
        let mut out = self.describe_here();
        let fleet = match (self.fleet.records().await, self.fleet.hosts().await) {
            (Ok(records), Ok(hosts)) => Some((records, hosts)),
            _ => None,
        };
        for c in &mut out {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            c["fleet"] = match &fleet {
                None => serde_json::json!({"error": "redis did not answer"}),
                Some((records, hosts)) => {
                    let record = records.iter().find(|r| r.name == name);
                    let failed = self.fleet.failures(&name).await.unwrap_or_default();
                    let live: Vec<serde_json::Value> = hosts
                        .iter()
                        .map(|h| serde_json::json!({"id": h.id, "addr": h.addr, "started_ms": h.started_ms, "version": h.versions.get(&name)}))
                        .collect();
                    let converged = record.is_some_and(|r| hosts.iter().all(|h| h.versions.get(&name) == Some(&r.sha)));
                    let canary = match record.and_then(|r| r.canary.as_ref()) {
                        None => serde_json::Value::Null,
                        Some(plan) => {
                            let (stable, canary) = self.fleet.tallies(&name, &plan.sha).await.unwrap_or_default();
                            let side = |c: &Counts| serde_json::json!({"answers": c.answers, "errors": c.errors, "p99_ms": c.p99_ms()});
                            serde_json::json!({
                                "version": plan.sha, "share": plan.share, "window_ms": plan.window_ms,
                                "started_ms": plan.started_ms, "canary": side(&canary), "current": side(&stable),
                            })
                        }
                    };
                    let verdict = self.fleet.verdict(&name).await.unwrap_or_default();
                    serde_json::json!({
                        "desired": record.map(|r| serde_json::json!({"version": r.sha, "revision": r.revision, "source": r.source, "by": r.by, "at_ms": r.at_ms})),
                        "hosts": live,
                        "converged": converged,
                        "failed": failed,
                        "canary": canary,
                        "last_canary": if verdict.is_empty() { serde_json::Value::Null } else { serde_json::json!(verdict) },
                    })
                }
            };
        }
        out
    }

    fn describe_here(&self) -> Vec<serde_json::Value> {
        let table = self.rt.registry.snapshot();
        table
            .components
            .values()
            .map(|v| {
                let history = self.history(&v.name);
                let loaded_at = v.loaded_at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
                serde_json::json!({
                    "name": v.name,
                    "version": v.sha256,
                    "loaded_at_ms": loaded_at,
                    "requests": v.requests.load(std::sync::atomic::Ordering::Relaxed),
                    "routes": v.manifest.routes.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>(),
                    "subscriptions": v.manifest.subscriptions.iter().map(|s| serde_json::json!({"stream": s.stream, "group": s.group})).collect::<Vec<_>>(),
                    "publishes": v.manifest.publishes,
                    "source": history.iter().rev().find(|e| e.sha == v.sha256).map_or("deploy", |e| e.source.as_str()),
                    "history": history.iter().map(|e| serde_json::json!({
                        "version": e.sha,
                        "source": e.source.as_str(),
                        "requests": self.rt.requests_of(&e.sha).load(std::sync::atomic::Ordering::Relaxed),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect()
    }

    pub fn known(&self, name: &str) -> bool {
        self.config.components.contains_key(name) || self.rt.registry.get(name).is_some()
    }
}

/// The configured file of a component.
fn read_wasm(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sha: &str, source: Source) -> Entry {
        Entry { sha: sha.to_string(), source }
    }

    #[test]
    fn a_changed_file_wins_and_an_unchanged_one_keeps_the_deployment() {
        let deployed = entry("d", Source::Deploy);
        let file = |why| StartChoice::File(why);
        // A developer rebuilt the configured file: it serves (the bug: the old build did).
        assert!(matches!(
            choose_at_start(Some("f2"), Some("f1"), Some(&entry("f1", Source::File))),
            StartChoice::File(_)
        ));
        assert!(matches!(choose_at_start(Some("f2"), Some("f1"), Some(&deployed)), StartChoice::File(_)));
        // An operator deployed: it stays while the file is what was loaded.
        assert!(matches!(choose_at_start(Some("f1"), Some("f1"), Some(&deployed)), StartChoice::LastDeployed(_)));
        // Nothing known of the file (a data dir from before): the file.
        assert!(matches!(choose_at_start(Some("f1"), None, Some(&deployed)), StartChoice::File(_)));
        assert_eq!(choose_at_start(Some("f1"), None, None), file("nothing was deployed before"));
        // The file is gone: the last deployment keeps the component up.
        assert!(matches!(choose_at_start(None, Some("f1"), Some(&deployed)), StartChoice::LastDeployed(_)));
        assert!(matches!(choose_at_start(Some("d"), Some("f1"), Some(&deployed)), StartChoice::File(_)));
    }
}
