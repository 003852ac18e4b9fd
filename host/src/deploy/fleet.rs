//! The fleet: one desired state for every host on a Redis.
//!
//! Each host keeps its versions on its own disk (`artifacts`), but what a
//! component should run is decided once, in Redis: a deploy or rollback
//! through any host's admin API writes the component's record (the version,
//! where it came from, who and when, with a revision from one counter) and
//! the wasm beside it, content-addressed. Every host watches the records:
//! a change is announced on a small stream, read with a blocking read, and
//! every record is read again every few seconds, so a lost announcement
//! costs seconds, not forever. A host whose running version differs from a
//! newer record fetches the wasm, checks its sha256, and swaps (its own
//! precompiled copy spares the compile after the first time). This is the
//! controller pattern (desired against observed), inside the host.
//!
//! Each host also beats every second with what it runs (a hash that
//! expires): `GET /admin/components` shows, per component, the record and
//! every live host's version, and whether they agree.
//!
//! A version a host cannot run (it does not compile there, its grants
//! refuse it) is reported beside the record; that host keeps what it ran
//! and does not try that revision again, so nothing flaps.
//!
//! A record may also name a canary tried beside its version on every host
//! (`canary`): a share of the traffic, and a verdict the fleet reaches by
//! itself.
//!
//! Whoever may write these keys may choose the code every host runs: the
//! Redis ACL is the boundary, as it is for the data. The wasm still runs
//! in the sandbox, under the grants of each host's `wharf.toml`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use crate::engine::tally::Counts;
use crate::storage::{Store, text};
use crate::streams::entry::ReadReply;

/// One slot for the records and their stream: a record's change and its
/// announcement are one script.
pub(super) const RECORD: &str = "wharf:{fleet}:record:";
pub(super) const HISTORY: &str = "wharf:{fleet}:history:";
pub(super) const CHANGES: &str = "wharf:{fleet}:changes";
pub(super) const REVISION: &str = "wharf:{fleet}:revision";
const NAMES: &str = "wharf:{fleet}:components";
const HOSTS: &str = "wharf:{fleet}:hosts";
const HOST: &str = "wharf:{fleet}:host:";
const FAILED: &str = "wharf:{fleet}:failed:";

/// A record's history keeps this many versions, newest first.
pub(super) const HISTORY_LEN: isize = 20;
/// How often a host beats, and how long a beat lasts.
pub const BEAT: Duration = Duration::from_secs(1);
const BEAT_TTL: Duration = Duration::from_secs(5);
/// Every record is read again this often, announced or not.
const REREAD: Duration = Duration::from_secs(5);

fn artifact_key(sha: &str) -> String {
    format!("wharf:artifact:{{{sha}}}")
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What a component should run, as the fleet decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: String,
    pub sha: String,
    pub revision: u64,
    /// `file` or `deploy`, as for a host's own history.
    pub source: String,
    /// The host that wrote it.
    pub by: String,
    pub at_ms: u64,
    /// A canary tried beside it on every host (`canary`).
    pub canary: Option<CanaryPlan>,
}

/// A canary as the record names it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryPlan {
    pub sha: String,
    /// Percent of requests and events it takes.
    pub share: u32,
    pub window_ms: u64,
    pub started_ms: u64,
}

/// A live host, as its last beat said.
#[derive(Debug, Clone)]
pub struct HostView {
    pub id: String,
    pub addr: String,
    pub started_ms: u64,
    /// Component -> sha256 it runs.
    pub versions: BTreeMap<String, String>,
}

pub struct Fleet {
    pub(super) redis: Store,
    /// This host: its consumer name, unique per process.
    pub id: String,
    addr: String,
    started_ms: u64,
    /// Per component, the newest revision this host applied, or gave up on.
    seen: Mutex<HashMap<String, u64>>,
    /// Canaries this host could not load: not tried again.
    pub(super) refused_canaries: Mutex<std::collections::HashSet<String>>,
}

/// Writes a record, its history line and its announcement in one step.
/// KEYS: record, history, changes, revision counter, names.
/// ARGV: name, sha, source, by, at (ms), history length.
const WRITE_RECORD: &str = r"
local rev = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[1], 'sha', ARGV[2], 'source', ARGV[3], 'by', ARGV[4], 'at', ARGV[5], 'revision', rev)
-- A deployment ends any canary: it was tried against the version replaced.
redis.call('HDEL', KEYS[1], 'canary', 'canary_share', 'canary_window', 'canary_at')
redis.call('LPUSH', KEYS[2], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. rev)
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[6]) - 1)
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 1000, '*', 'component', ARGV[1], 'revision', rev)
return rev
";

impl Fleet {
    pub fn new(redis: Store, id: String, addr: String) -> Arc<Fleet> {
        Arc::new(Fleet {
            redis,
            id,
            addr,
            started_ms: now_ms(),
            seen: Mutex::default(),
            refused_canaries: Mutex::default(),
        })
    }

    pub(super) async fn bounded<T>(
        &self,
        within: Duration,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(within, f).await {
            Ok(r) => Ok(r?),
            Err(_) => bail!("redis did not answer within {within:?}"),
        }
    }

    /// One command, within `times` round-trip deadlines.
    pub(super) async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd, times: u32) -> Result<T> {
        let mut conn = self.redis.conn();
        self.bounded(self.redis.timeout * times, cmd.query_async(&mut conn)).await
    }

    /// Makes `wasm` (sha256 `sha`) what `name` runs on every host: stores
    /// the wasm (once per version), then the record. Returns its revision.
    pub async fn publish(&self, name: &str, sha: &str, wasm: &[u8], source: &str) -> Result<u64> {
        self.store_artifact(sha, wasm).await?;
        let script = redis::Script::new(WRITE_RECORD);
        let mut inv = script.key(format!("{RECORD}{name}"));
        inv.key(format!("{HISTORY}{name}")).key(CHANGES).key(REVISION).key(NAMES);
        inv.arg(name).arg(sha).arg(source).arg(&self.id).arg(now_ms()).arg(HISTORY_LEN);
        let mut conn = self.redis.conn();
        let revision: u64 = self
            .bounded(self.redis.timeout, inv.invoke_async(&mut conn))
            .await
            .context("writing the deployment record")?;
        self.saw(name, revision);
        let _ = self.query::<()>(redis::cmd("DEL").arg(format!("{FAILED}{name}")).to_owned(), 1).await;
        Ok(revision)
    }

    /// Stores version `sha` (`wasm`) where every host can fetch it, once.
    pub(super) async fn store_artifact(&self, sha: &str, wasm: &[u8]) -> Result<()> {
        // A large artifact may take a while to send: more than one call's deadline.
        let store = redis::cmd("SET").arg(artifact_key(sha)).arg(wasm).arg("NX").to_owned();
        self.query::<()>(store, 20).await.context("storing the artifact in redis")
    }

    fn saw(&self, name: &str, revision: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let at = seen.entry(name.to_string()).or_insert(0);
        *at = (*at).max(revision);
    }

    fn seen(&self, name: &str) -> u64 {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).get(name).copied().unwrap_or(0)
    }

    /// Every component's record.
    pub async fn records(&self) -> Result<Vec<Record>> {
        let names: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(NAMES).to_owned(), 1).await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let h: HashMap<String, redis::Value> =
                self.query(redis::cmd("HGETALL").arg(format!("{RECORD}{name}")).to_owned(), 1).await?;
            let field = |k: &str| text(h.get(k));
            let sha = field("sha");
            if sha.len() != 64 {
                continue;
            }
            let canary = Some(field("canary")).filter(|c| c.len() == 64).map(|sha| CanaryPlan {
                sha,
                share: field("canary_share").parse().unwrap_or(0),
                window_ms: field("canary_window").parse().unwrap_or(0),
                started_ms: field("canary_at").parse().unwrap_or(0),
            });
            out.push(Record {
                canary,
                sha,
                revision: field("revision").parse().unwrap_or(0),
                source: field("source"),
                by: field("by"),
                at_ms: field("at").parse().unwrap_or(0),
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The wasm of version `sha`, checked against it.
    pub async fn fetch(&self, sha: &str) -> Result<Vec<u8>> {
        let wasm: Option<Vec<u8>> = self.query(redis::cmd("GET").arg(artifact_key(sha)).to_owned(), 20).await?;
        let wasm = wasm.with_context(|| format!("the artifact {} is not in redis", &sha[..12]))?;
        let got = hex::encode(sha2::Sha256::digest(&wasm));
        if got != sha {
            bail!("the artifact {} in redis has sha256 {}: refused", &sha[..12], &got[..12]);
        }
        Ok(wasm)
    }

    /// Says beside the record that this host cannot run `sha`.
    pub(super) async fn report_failure(&self, name: &str, sha: &str, why: &str) {
        let set =
            redis::cmd("HSET").arg(format!("{FAILED}{name}")).arg(&self.id).arg(format!("{sha} {why}")).to_owned();
        let _ = self.query::<()>(set, 1).await;
    }

    /// The hosts that cannot run the record's version, with why.
    pub async fn failures(&self, name: &str) -> Result<BTreeMap<String, String>> {
        self.query(redis::cmd("HGETALL").arg(format!("{FAILED}{name}")).to_owned(), 1).await
    }

    /// One beat: what this host runs now, for `BEAT_TTL`.
    pub async fn beat(&self, versions: &BTreeMap<String, String>) -> Result<()> {
        let key = format!("{HOST}{}", self.id);
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&key)
            .arg("addr")
            .arg(&self.addr)
            .arg("started")
            .arg(self.started_ms)
            .arg("versions")
            .arg(serde_json::to_string(versions)?)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(BEAT_TTL.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(HOSTS)
            .arg(&self.id)
            .ignore();
        let mut conn = self.redis.conn();
        self.bounded(self.redis.timeout, pipe.query_async::<()>(&mut conn)).await
    }

    /// Leaves the fleet (at shutdown): the others stop counting this host.
    pub async fn leave(&self) {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(format!("{HOST}{}", self.id)).ignore().cmd("SREM").arg(HOSTS).arg(&self.id).ignore();
        let mut conn = self.redis.conn();
        let _ = self.bounded(self.redis.timeout, pipe.query_async::<()>(&mut conn)).await;
    }

    /// The live hosts (whose last beat has not expired).
    pub async fn hosts(&self) -> Result<Vec<HostView>> {
        let ids: Vec<String> = self.query(redis::cmd("SMEMBERS").arg(HOSTS).to_owned(), 1).await?;
        let mut out = Vec::new();
        for id in ids {
            let h: HashMap<String, redis::Value> =
                self.query(redis::cmd("HGETALL").arg(format!("{HOST}{id}")).to_owned(), 1).await?;
            if h.is_empty() {
                // Its beat expired: it is gone.
                let _ = self.query::<()>(redis::cmd("SREM").arg(HOSTS).arg(&id).to_owned(), 1).await;
                continue;
            }
            out.push(HostView {
                addr: text(h.get("addr")),
                started_ms: text(h.get("started")).parse().unwrap_or(0),
                versions: serde_json::from_str(&text(h.get("versions"))).unwrap_or_default(),
                id,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

/// What a host does with a record, given what it runs.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Runs it already, or tried this revision before: nothing.
    Nothing,
    /// Swap to the record's version.
    Apply,
}

/// The pure decision: `running` the sha this host runs (None: not loaded),
/// `seen` the newest revision it applied or gave up on.
pub fn step(record: &Record, running: Option<&str>, seen: u64) -> Step {
    if running == Some(record.sha.as_str()) || record.revision <= seen { Step::Nothing } else { Step::Apply }
}

/// What applies a record on this host: the deployer, without writing the
/// record again.
pub trait Apply: Send + Sync {
    fn running(&self, name: &str) -> Option<String>;
    fn apply(&self, name: &str, wasm: Vec<u8>) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;
    /// The canary this host runs beside `name`, if any.
    fn canary(&self, name: &str) -> Option<String>;
    /// Loads `wasm` as `name`'s canary, taking `share` percent.
    fn start_canary(
        &self,
        name: &str,
        wasm: Vec<u8>,
        share: u32,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send + '_>>;
    fn end_canary(&self, name: &str);
    /// Each canary's tallies since the last call: (component, canary sha,
    /// current side, canary side).
    fn take_tallies(&self) -> Vec<(String, String, Counts, Counts)>;
}

impl Fleet {
    /// Brings this host to every record: fetch, check, swap. A version it
    /// cannot run is reported and not tried again.
    pub async fn sync(&self, to: &dyn Apply) -> Result<()> {
        let records = self.records().await?;
        for record in records.iter().cloned() {
            let running = to.running(&record.name);
            if step(&record, running.as_deref(), self.seen(&record.name)) == Step::Nothing {
                if running.as_deref() == Some(record.sha.as_str()) {
                    self.saw(&record.name, record.revision);
                }
                continue;
            }
            let applied = match self.fetch(&record.sha).await {
                Ok(wasm) => to.apply(&record.name, wasm).await,
                Err(e) => Err(e),
            };
            match applied {
                Ok(()) => {
                    tracing::info!(component = %record.name, sha256 = %&record.sha[..12], revision = record.revision, by = %record.by, "following the fleet's deployment");
                    self.saw(&record.name, record.revision);
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(component = %record.name, error = %format!("{e:#}"), "cannot follow the fleet's deployment yet; will retry");
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::error!(component = %record.name, sha256 = %&record.sha[..12], error = %why, "this host cannot run the fleet's version; it keeps its own");
                    self.report_failure(&record.name, &record.sha, &why).await;
                    self.saw(&record.name, record.revision);
                }
            }
        }
        // Canaries after the versions they are tried against.
        for record in &records {
            self.follow_canary(record, to).await;
        }
        Ok(())
    }

    /// Follows the records until `stop`: every announcement at once, and
    /// all of them every `REREAD`.
    pub async fn watch(self: Arc<Self>, to: Arc<dyn Apply>, stop: CancellationToken) {
        let block = Duration::from_millis(1000);
        let mut blocking = match self.redis.blocking_connection(block) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the fleet's watch connection");
                return;
            }
        };
        // From the newest announcement now: "$" again at each read would
        // miss one made between two reads (the re-read would catch it, 5 s on).
        let newest = redis::cmd("XREVRANGE").arg(CHANGES).arg("+").arg("-").arg("COUNT").arg(1).to_owned();
        let mut last = match self.query::<redis::streams::StreamRangeReply>(newest, 1).await {
            Ok(r) => r.ids.first().map_or_else(|| "0-0".to_string(), |e| e.id.clone()),
            Err(_) => "$".to_string(),
        };
        let mut reread = tokio::time::Instant::now();
        loop {
            let read = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(100)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(CHANGES)
                .arg(&last)
                .to_owned();
            let announced = tokio::select! {
                r = read.query_async::<Option<ReadReply>>(blocking.current()) => r,
                _ = stop.cancelled() => return,
            };
            let due = match announced {
                Ok(Some(reply)) => {
                    if let Some(entry) = reply.0.into_iter().last() {
                        last = entry.id;
                    }
                    true
                }
                Ok(None) => reread.elapsed() >= REREAD,
                Err(e) => {
                    tracing::debug!(error = %e, "reading the fleet's announcements failed");
                    tokio::select! {
                        _ = tokio::time::sleep(block) => {}
                        _ = stop.cancelled() => return,
                    }
                    true
                }
            };
            if due {
                reread = tokio::time::Instant::now();
                if let Err(e) = self.sync(to.as_ref()).await {
                    tracing::warn!(error = %format!("{e:#}"), "reading the fleet's records failed; will retry");
                }
            }
        }
    }

    /// Beats every `BEAT` until `stop`, then leaves.
    pub async fn beat_until(
        self: Arc<Self>,
        to: Arc<dyn Apply>,
        names: impl Fn() -> Vec<String>,
        stop: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(BEAT);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => break,
            }
            let versions: BTreeMap<String, String> =
                names().into_iter().filter_map(|n| to.running(&n).map(|sha| (n, sha))).collect();
            if let Err(e) = self.beat(&versions).await {
                tracing::debug!(error = %format!("{e:#}"), "fleet heartbeat failed");
            }
        }
        self.leave().await;
    }
}

/// Redis, not the version: try again later.
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<redis::RedisError>().is_some() || c.to_string().contains("did not answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sha: &str, revision: u64) -> Record {
        let (name, source, by) = ("c".into(), "deploy".into(), "h".into());
        Record { name, sha: sha.into(), revision, source, by, at_ms: 0, canary: None }
    }

    #[test]
    fn a_host_follows_a_newer_record_once() {
        assert_eq!(step(&record("b", 2), Some("a"), 1), Step::Apply, "newer: swap");
        assert_eq!(step(&record("b", 2), None, 0), Step::Apply, "not loaded here: load");
        assert_eq!(step(&record("a", 2), Some("a"), 1), Step::Nothing, "runs it already");
        assert_eq!(step(&record("b", 2), Some("a"), 2), Step::Nothing, "tried (or refused) that revision");
    }
}
