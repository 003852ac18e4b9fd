//! The key-value capability: a component's namespaced, versioned values in
//! Redis, one file per WIT interface: `wharf:plugin/kv` here, `atomics`,
//! `batch`, and `outbox` (in `capability::outbox`, with its publisher).
//!
//! Each value is a hash `{v, ver}` so every write bumps a version that
//! compare-and-swap can check. Every write is one Lua script that also keeps
//! the namespace's index (a sorted set scored 0, so `ZRANGEBYLEX` lists keys
//! by prefix without ever scanning the keyspace). Script keys all carry the
//! namespace's hash tag, so each script runs in one slot on Redis Cluster.

pub(crate) mod atomics;
mod batch;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use crate::capability::backend::Backend;
use crate::capability::kv_cache::ReadCache;
use crate::capability::refusals::Refusals;
use crate::engine::bindings::wharf::plugin::atomics::CasOutcome;
use crate::engine::bindings::wharf::plugin::{atomics as wit_atomics, batch as wit_batch, kv};
use crate::engine::bindings::{CapError, CapFailure};
use crate::storage::scripts::{DELETE, SET, SET_IF_ABSENT};
use crate::storage::{kv_index, kv_key, partition};

/// Longest key a component may use, in bytes.
const MAX_KEY: usize = 1024;
/// Most keys one `get-many` or `list-keys` may touch.
const MAX_BATCH: usize = 1000;

/// The longest expiry a write may ask for: far beyond any use, and well
/// inside what `PEXPIRE` accepts, so the script never fails half-way.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// The kv unit of one host: Redis, the read cache, the value limit.
pub struct Kv {
    backend: Backend,
    cache: Arc<ReadCache>,
    value_bytes: usize,
}

/// What one component version reaches through kv: its own namespace.
pub struct KvGrant {
    kv: Arc<Kv>,
    ns: String,
    refusals: Arc<Refusals>,
}

/// One call's kv context. A call adds nothing to its version's grant: every
/// key it names lands in that namespace.
pub struct KvCtx {
    grant: Arc<KvGrant>,
    /// Redis answered `unavailable` during this call (`converts_errors`).
    pub(crate) redis_unavailable: bool,
}

impl Kv {
    pub fn new(backend: Backend, cache: Arc<ReadCache>, value_bytes: usize) -> Arc<Kv> {
        Arc::new(Kv { backend, cache, value_bytes })
    }

    /// The values `batch.get-many-cached` keeps, coherent through Redis.
    pub fn cache(&self) -> &Arc<ReadCache> {
        &self.cache
    }

    /// A loaded version's grant: the namespace named after it.
    pub fn grant(self: &Arc<Self>, namespace: &str, refusals: Arc<Refusals>) -> Arc<KvGrant> {
        Arc::new(KvGrant { kv: self.clone(), ns: namespace.to_string(), refusals })
    }
}

/// Puts `kv`, `atomics` and `batch` in `linker`; `get` finds the call's context.
pub fn add_to_linker<T: Send + 'static>(linker: &mut Linker<T>, get: fn(&mut T) -> &mut KvCtx) -> wasmtime::Result<()> {
    kv::add_to_linker::<T, HasSelf<KvCtx>>(linker, get)?;
    wit_atomics::add_to_linker::<T, HasSelf<KvCtx>>(linker, get)?;
    wit_batch::add_to_linker::<T, HasSelf<KvCtx>>(linker, get)
}

impl KvCtx {
    pub fn new(grant: &Arc<KvGrant>) -> KvCtx {
        KvCtx { grant: grant.clone(), redis_unavailable: false }
    }
}

impl std::ops::Deref for KvCtx {
    type Target = KvGrant;
    fn deref(&self) -> &KvGrant {
        &self.grant
    }
}

crate::capability::converts_errors!(KvCtx, notes_redis_outages);

/// Refuses an expiry Redis would reject after the value is written.
pub(crate) fn check_ttl(ttl_ms: Option<u64>) -> Result<(), CapError> {
    match ttl_ms {
        Some(ms) if ms > MAX_TTL_MS => {
            Err(CapError::Invalid(format!("ttl-ms must be at most {MAX_TTL_MS} (100 years)")))
        }
        _ => Ok(()),
    }
}

/// A compare-and-swap's answer: `{1, new version}`, or `{0, stored version}`
/// (-1 when the key is absent).
pub(crate) fn cas_outcome((ok, ver): (i64, i64)) -> CasOutcome {
    match (ok, ver) {
        (1, v) => CasOutcome::Swapped(v as u64),
        (_, -1) => CasOutcome::Conflict(None),
        (_, v) => CasOutcome::Conflict(Some(v as u64)),
    }
}

impl KvGrant {
    pub(crate) fn ns(&self) -> &str {
        &self.ns
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.kv.backend
    }

    pub(crate) fn cache(&self) -> &Arc<ReadCache> {
        &self.kv.cache
    }

    /// The full Redis key of a component's key, refusing a bad one.
    pub(crate) fn key(&self, key: &str) -> Result<String, CapError> {
        check_key(key).map_err(|e| match e {
            CapError::Invalid(why) => self.refusals.refuse("key", why),
            other => other,
        })?;
        Ok(kv_key(&self.ns, key))
    }

    /// The index `key` is listed in: its partition's shard's, or the namespace's.
    pub(crate) fn index(&self, key: &str) -> String {
        kv_index(&partition::tag(&self.ns, key))
    }

    /// Before a write of `key`: if it names a partition, makes sure the
    /// namespace is known to have partitions (`partition::Registry`), so
    /// lists and the outbox look at its shards.
    pub(crate) async fn note_partition(&self, key: &str) -> Result<(), CapError> {
        if partition::partition_of(key).is_none() {
            return Ok(());
        }
        let registry = self.backend().redis.partitions.clone();
        self.backend().bounded(registry.note(&mut self.backend().conn(), &self.ns)).await
    }

    /// The keys of one atomic step, which must share a partition.
    pub(crate) fn one_partition<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> Result<(), CapError> {
        partition::check_one_partition(keys).map_err(|why| self.refusals.refuse("key", why))
    }

    /// Refuses a value over `limits.value_bytes`.
    pub(crate) fn check_value(&self, value: &[u8]) -> Result<(), CapError> {
        let limit = self.kv.value_bytes;
        if value.len() > limit {
            return Err(CapError::Invalid(format!("the value has {} bytes; at most {limit} are allowed", value.len())));
        }
        Ok(())
    }

    /// Refuses values that together pass `limits.value_bytes` (a `write-many`).
    pub(crate) fn check_value_total(&self, bytes: usize) -> Result<(), CapError> {
        let limit = self.kv.value_bytes;
        if bytes > limit {
            return Err(CapError::Invalid(format!(
                "the values have {bytes} bytes together; at most {limit} are allowed"
            )));
        }
        Ok(())
    }

    /// The full Redis keys of a batch read, refusing oversized batches.
    pub(crate) fn batch(&self, keys: &[String]) -> Result<Vec<String>, CapError> {
        if keys.len() > MAX_BATCH {
            return Err(CapError::Invalid(format!("at most {MAX_BATCH} keys at once")));
        }
        keys.iter().map(|k| self.key(k)).collect()
    }

    /// The values at `keys` (full Redis keys), in one round trip.
    pub(crate) async fn read_values(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, CapError> {
        self.read_per_slot(keys, |pipe, k| {
            pipe.cmd("HGET").arg(k).arg("v");
        })
        .await
    }

    /// Reads `keys` (full Redis keys), each with the commands `add` puts in
    /// a pipeline, and returns one answer per key in order. Keys of several
    /// hash tags (partitions) go as one pipeline per tag, all at once: on a
    /// cluster a pipeline must stay in one slot. A read of several keys was
    /// never one snapshot, so nothing is lost by splitting it.
    pub(crate) async fn read_per_slot<T: redis::FromRedisValue + Clone>(
        &self,
        keys: &[String],
        add: impl Fn(&mut redis::Pipeline, &str),
    ) -> Result<Vec<T>, CapError> {
        // Redis refuses an empty pipeline ("empty command"): nothing to read is no values.
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let tag_of = |k: &str| partition::partition_of(k).map(str::to_string);
        let mut groups: Vec<(Option<String>, Vec<usize>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let t = tag_of(k);
            match groups.iter_mut().find(|(g, _)| *g == t) {
                Some((_, at)) => at.push(i),
                None => groups.push((t, vec![i])),
            }
        }
        let reads = groups.iter().map(|(_, at)| {
            let mut pipe = redis::pipe();
            for &i in at {
                add(&mut pipe, &keys[i]);
            }
            let mut conn = self.backend().conn();
            async move { self.backend().bounded(pipe.query_async::<Vec<T>>(&mut conn)).await }
        });
        let answers = futures::future::join_all(reads).await;
        let mut out: Vec<Option<T>> = vec![None; keys.len()];
        for ((_, at), answer) in groups.iter().zip(answers) {
            for (&i, v) in at.iter().zip(answer?) {
                out[i] = Some(v);
            }
        }
        out.into_iter().map(|v| v.ok_or_else(|| CapError::Internal("a read answered too few keys".into()))).collect()
    }
}

/// A key is confined to its namespace by the prefix the host puts before it,
/// whatever it holds; braces (Redis Cluster hash tags) and control characters
/// have no business in one, so they are refused as an attempt to confuse the
/// key layout rather than stored.
pub fn check_key(key: &str) -> Result<(), CapError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(CapError::Invalid(format!("keys must have 1 to {MAX_KEY} bytes")));
    }
    if key.chars().any(char::is_control) {
        return Err(CapError::Invalid(format!("key {key:?} holds a control character")));
    }
    // Braces only as one partition tag, `{partition}` (`storage::partition`).
    let (opens, closes) = (key.matches('{').count(), key.matches('}').count());
    let tagged = partition::partition_of(key).is_some();
    if opens + closes > 0 && !(opens == 1 && closes == 1 && tagged) {
        return Err(CapError::Invalid(format!(
            "key {key:?}: braces may only enclose its partition, once and not empty (as in \"stock:{{p1}}\")"
        )));
    }
    Ok(())
}

pub(crate) fn opt_num(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

impl kv::Host for KvCtx {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, CapFailure> {
        let k = self.key(&key)?;
        let mut conn = self.backend().conn();
        Ok(self.backend().bounded(redis::cmd("HGET").arg(k).arg("v").query_async::<Option<Vec<u8>>>(&mut conn)).await?)
    }

    async fn get_versioned(&mut self, key: String) -> Result<Option<kv::Versioned>, CapFailure> {
        let k = self.key(&key)?;
        let mut conn = self.backend().conn();
        let got = self
            .backend()
            .bounded(
                redis::cmd("HMGET").arg(k).arg("v").arg("ver").query_async::<(Option<Vec<u8>>, Option<u64>)>(&mut conn),
            )
            .await?;
        let (v, ver) = got;
        Ok(v.map(|value| kv::Versioned { value, version: ver.unwrap_or(0) }))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<u64, CapFailure> {
        self.check_value(&value)?;
        let k = self.key(&key)?;
        self.note_partition(&key).await?;
        let _drop_from_cache = self.cache().invalidate_on_drop(vec![k.clone()]);
        let mut conn = self.backend().conn();
        let mut inv = SET.key(&k);
        inv.key(self.index(&key)).arg(value).arg(&key);
        Ok(self.backend().bounded(inv.invoke_async::<u64>(&mut conn)).await?)
    }

    async fn set_if_absent(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<bool, CapFailure> {
        self.check_value(&value)?;
        let k = self.key(&key)?;
        check_ttl(ttl_ms)?;
        self.note_partition(&key).await?;
        let _drop_from_cache = self.cache().invalidate_on_drop(vec![k.clone()]);
        let mut conn = self.backend().conn();
        let mut inv = SET_IF_ABSENT.key(&k);
        inv.key(self.index(&key)).arg(value).arg(&key).arg(ttl_ms.unwrap_or(0));
        Ok(self.backend().bounded(inv.invoke_async::<i64>(&mut conn)).await? == 1)
    }

    async fn delete(&mut self, key: String) -> Result<bool, CapFailure> {
        let k = self.key(&key)?;
        let _drop_from_cache = self.cache().invalidate_on_drop(vec![k.clone()]);
        let mut conn = self.backend().conn();
        let mut inv = DELETE.key(&k);
        inv.key(self.index(&key)).arg(&key);
        Ok(self.backend().bounded(inv.invoke_async::<i64>(&mut conn)).await? == 1)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, CapFailure> {
        let limit = (limit as usize).min(MAX_BATCH);
        let min = match start_after {
            Some(after) if after.as_str() >= prefix.as_str() => format!("({after}"),
            _ => format!("[{prefix}"),
        };
        // No valid UTF-8 key contains byte 0xFF, so this bounds the prefix range.
        let mut max = format!("[{prefix}").into_bytes();
        max.push(0xFF);
        // A prefix with a whole partition tag lists that partition's shard;
        // any other, the namespace's index and, once it has partitioned
        // keys, every shard's, merged in key order.
        let tags = match partition::partition_of(&prefix) {
            Some(_) => vec![partition::tag(self.ns(), &prefix)],
            None => {
                let registry = self.backend().redis.partitions.clone();
                let has = self.backend().bounded(registry.has(&mut self.backend().conn(), self.ns())).await?;
                if has { partition::all_tags(self.ns()) } else { vec![self.ns().to_string()] }
            }
        };
        let backend = self.backend();
        let reads = tags.iter().map(|tag| {
            let cmd = redis::cmd("ZRANGEBYLEX")
                .arg(kv_index(tag))
                .arg(&min)
                .arg(&max)
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .to_owned();
            let mut conn = backend.conn();
            async move { backend.bounded(cmd.query_async::<Vec<String>>(&mut conn)).await }
        });
        let mut keys = Vec::new();
        for page in futures::future::join_all(reads).await {
            keys.extend(page?);
        }
        keys.sort_unstable();
        keys.truncate(limit);
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_redis_would_reject_half_way_is_refused_first() {
        assert!(check_ttl(None).is_ok());
        assert!(check_ttl(Some(24 * 3600 * 1000)).is_ok());
        assert!(check_ttl(Some(MAX_TTL_MS)).is_ok());
        assert!(matches!(check_ttl(Some(MAX_TTL_MS + 1)), Err(CapError::Invalid(_))));
        assert!(matches!(check_ttl(Some(u64::MAX)), Err(CapError::Invalid(_))));
    }
}
