//! The read cache behind `batch.get-many-cached`: values this host read
//! recently, kept coherent by Redis itself (server-assisted client-side
//! caching, `CLIENT TRACKING ... BCAST`).
//!
//! Why: one Redis round trip costs the host about as much CPU as the rest of
//! a product read (instance, guest, HTTP); see `docs/PERFORMANCE.md`. A read
//! that is shown rather than acted on can skip it.
//!
//! How it stays coherent:
//! - a connection of its own (the *listener*) asks Redis for invalidation
//!   messages for every namespace read through the cache
//!   (`BCAST PREFIX wharf:{<ns>}:kv:`), whoever writes the key;
//! - a write through this host drops the key when Redis answers (or when
//!   the call is abandoned): a host always reads its own writes;
//! - a read that raced an invalidation is not stored (each shard counts its
//!   invalidations, and a read stores its answer only if the count it saw
//!   before asking Redis is still current);
//! - while the listener is not connected and registered, nothing is served
//!   from or stored in the cache; when its connection closes, or stops
//!   answering a PING every [`PING_EVERY`] within [`PING_TIMEOUT`], the
//!   cache is emptied, and a read that started in an earlier session of the
//!   listener stores nothing;
//! - a key with an expiry is never cached (Redis reports an expiry only when
//!   it deletes the key, which may be later);
//! - an entry lives at most [`MAX_AGE`] even so.
//!
//! What it does not promise: a write through *another* host is seen here
//! once its invalidation message arrives (normally well under a
//! millisecond), not at the instant the write is acknowledged.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::storage::{Store, connection};

/// Longest an entry is trusted, whatever Redis says: a bound on staleness
/// should an invalidation ever be lost without the connection dropping.
pub const MAX_AGE: Duration = Duration::from_secs(10);
/// Values larger than this are not cached: they would crowd out many small
/// ones. With the entry bound, it caps the cache's memory (10,000 entries:
/// at most about 160 MiB of values, far less for small values).
const MAX_VALUE: usize = 16 * 1024;
const SHARDS: usize = 16;
/// How often the listener proves its connection alive, and how long a PING
/// may take before the connection counts as gone.
pub const PING_EVERY: Duration = Duration::from_millis(500);
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// The cache: sharded maps from full Redis key to the value read (or its
/// absence).
pub struct ReadCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
    /// Namespaces whose invalidations the listener currently receives.
    registered: Mutex<HashSet<String>>,
    /// Namespaces read through the cache but not yet registered.
    wanted: mpsc::UnboundedSender<String>,
    wanted_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// Whether the listener is connected (set after it registered everything).
    live: AtomicBool,
    /// Bumped whenever the listener goes down: a read that started before
    /// stores nothing, even if the listener is back by the time it returns.
    session: AtomicU64,
}

#[derive(Default)]
struct Shard {
    /// Invalidations so far: a read stores its answer only if none happened
    /// in its shard while it was in flight.
    generation: u64,
    map: HashMap<String, Entry>,
}

struct Entry {
    value: Option<Vec<u8>>,
    stored: Instant,
}

/// What a cache lookup found.
pub enum Lookup {
    /// Every key, from the cache.
    Hit(Vec<Option<Vec<u8>>>),
    /// Ask Redis; then [`ReadCache::fill`] with this ticket.
    Miss(Ticket),
}

/// The listener session and shard generations a read saw before it went to Redis.
pub struct Ticket {
    session: u64,
    generations: Option<Vec<u64>>,
}

impl Ticket {
    /// Whether what Redis answers may be stored (the cache was usable at lookup).
    pub fn can_fill(&self) -> bool {
        self.generations.is_some()
    }
}

impl ReadCache {
    /// A cache of about `entries` values (rounded up to a multiple of the
    /// shard count; 0: off, every read goes to Redis).
    pub fn new(entries: usize) -> Arc<ReadCache> {
        let (wanted, wanted_rx) = mpsc::unbounded_channel();
        Arc::new(ReadCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: entries.div_ceil(SHARDS),
            hasher: RandomState::new(),
            registered: Mutex::default(),
            wanted,
            wanted_rx: Mutex::new(Some(wanted_rx)),
            live: AtomicBool::new(false),
            session: AtomicU64::new(0),
        })
    }

    fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks `keys` (full Redis keys of namespace `ns`) up: all of them
    /// cached and fresh, or a ticket for reading them from Redis.
    pub fn lookup(&self, ns: &str, keys: &[String]) -> Lookup {
        // The session first: a `down()` after this point changes it, and the ticket is void.
        let session = self.session.load(Ordering::Acquire);
        let usable = self.enabled() && self.live.load(Ordering::Acquire) && self.is_registered(ns);
        if !usable {
            return Lookup::Miss(Ticket { session, generations: None });
        }
        let now = Instant::now();
        let mut values = Vec::with_capacity(keys.len());
        let mut generations = Vec::with_capacity(keys.len());
        for key in keys {
            let mut shard = self.shard(key);
            generations.push(shard.generation);
            match shard.map.get(key) {
                Some(e) if now.duration_since(e.stored) < MAX_AGE => values.push(e.value.clone()),
                Some(_) => {
                    shard.map.remove(key);
                }
                None => {}
            }
        }
        if values.len() == keys.len() {
            Lookup::Hit(values)
        } else {
            Lookup::Miss(Ticket { session, generations: Some(generations) })
        }
    }

    /// Stores what Redis answered for `keys` (each with its `PTTL`), unless
    /// the listener went down or an invalidation of any of their shards
    /// happened since the lookup. Keys with an expiry are not stored.
    pub fn fill(&self, ticket: Ticket, keys: &[String], values: &[(Option<Vec<u8>>, i64)]) {
        let Some(generations) = ticket.generations else { return };
        let now = Instant::now();
        for ((key, (value, pttl)), seen) in keys.iter().zip(values).zip(generations) {
            // -1: no expiry; -2: no key. Anything else expires, and Redis announces
            // that only when it deletes the key, possibly after its TTL.
            if !matches!(pttl, -1 | -2) || value.as_ref().is_some_and(|v| v.len() > MAX_VALUE) {
                continue;
            }
            let mut shard = self.shard(key);
            if shard.generation != seen || self.session.load(Ordering::Acquire) != ticket.session {
                continue;
            }
            if shard.map.len() >= self.per_shard && !shard.map.contains_key(key) {
                // Full: make room by dropping any one entry (cheap, and fair enough
                // for a cache whose entries expire within MAX_AGE anyway).
                if let Some(victim) = shard.map.keys().next().cloned() {
                    shard.map.remove(&victim);
                }
            }
            shard.map.insert(key.clone(), Entry { value: value.clone(), stored: now });
        }
    }

    /// Drops `key` (a full Redis key): it was written, or may have been.
    pub fn invalidate(&self, key: &str) {
        if !self.enabled() {
            return;
        }
        let mut shard = self.shard(key);
        shard.generation += 1;
        shard.map.remove(key);
    }

    /// Drops everything.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            let mut shard = s.lock().unwrap_or_else(|e| e.into_inner());
            shard.generation += 1;
            shard.map.clear();
        }
    }

    fn is_registered(&self, ns: &str) -> bool {
        let registered = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if registered.contains(ns) {
            return true;
        }
        drop(registered);
        let _ = self.wanted.send(ns.to_string());
        false
    }

    /// Applies one message from Redis: invalidated keys, or a flush (nil).
    fn on_push(&self, push: PushInfo) {
        if push.kind != PushKind::Invalidate {
            return;
        }
        match push.data.first() {
            Some(Value::Array(keys)) => {
                for key in keys {
                    if let Value::BulkString(k) = key {
                        self.invalidate(&String::from_utf8_lossy(k));
                    }
                }
            }
            // FLUSHALL / FLUSHDB: no key list.
            _ => self.clear(),
        }
    }

    /// Marks the listener down and empties the cache.
    fn down(&self) {
        self.live.store(false, Ordering::Release);
        self.session.fetch_add(1, Ordering::AcqRel);
        self.registered.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.clear();
    }
}

/// Drops keys from the cache when dropped: after a write's answer, and also
/// when the call is abandoned mid-write (its deadline), since the write may
/// have landed anyway.
pub struct InvalidateOnDrop {
    cache: Arc<ReadCache>,
    keys: Vec<String>,
}

impl Drop for InvalidateOnDrop {
    fn drop(&mut self) {
        for k in &self.keys {
            self.cache.invalidate(k);
        }
    }
}

impl ReadCache {
    /// A guard that drops `keys` when the write it covers is over, however it ends.
    pub fn invalidate_on_drop(self: &Arc<Self>, keys: Vec<String>) -> InvalidateOnDrop {
        InvalidateOnDrop { cache: self.clone(), keys }
    }
}

/// The prefixes a namespace's values live under: its own tag's and each
/// of its shards' (see `storage::kv_key`).
fn prefixes(ns: &str) -> Vec<String> {
    crate::storage::partition::all_tags(ns).iter().map(|tag| format!("wharf:{{{tag}}}:kv:")).collect()
}

/// Runs the listener until `stop`: connects with RESP3, registers every
/// namespace wanted so far, applies invalidations as they arrive (in the
/// connection's reader task, without a hop through a channel), pings every
/// [`PING_EVERY`], and on any failure marks the cache down and starts over.
pub async fn run_listener(cache: Arc<ReadCache>, redis: Store, stop: CancellationToken) {
    if !cache.enabled() {
        return;
    }
    let Some(rx) = cache.wanted_rx.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
    let mut hold = Hold { cache: &cache, rx: Some(rx) };
    let wanted_rx = hold.rx.as_mut().expect("just set");
    let mut known: HashSet<String> = HashSet::new();
    let first_backoff = Duration::from_millis(50);
    let mut backoff = first_backoff;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let started = std::time::Instant::now();
        let session = listen(&cache, &redis, wanted_rx, &mut known, &stop).await;
        // A session that lasted was a good one: the next drop starts backing off afresh.
        if started.elapsed() > PING_EVERY * 4 {
            backoff = first_backoff;
        }
        cache.down();
        match session {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "kv read cache off until its Redis connection is back");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// The listener's hold on the cache. However the listener ends (a panic
/// included), the cache goes down and the namespaces' channel goes back, so
/// a restarted listener (`background::Supervisor`) carries on: lookups ask
/// for their namespaces again once it is live.
struct Hold<'a> {
    cache: &'a ReadCache,
    rx: Option<mpsc::UnboundedReceiver<String>>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.cache.down();
        if let Some(rx) = self.rx.take() {
            *self.cache.wanted_rx.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
        }
    }
}

/// One connected session of the listener; Ok(()) only when told to stop.
/// On a cluster it holds one connection per primary (each primary reports
/// the writes to its own slots), and the session ends, emptying the cache,
/// when any of them is lost or the set of primaries changes (a failover or
/// a new node): the next session watches the new ones.
async fn listen(
    cache: &Arc<ReadCache>,
    redis: &Store,
    wanted_rx: &mut mpsc::UnboundedReceiver<String>,
    known: &mut HashSet<String>,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let seed = redis.target.node_info();
    let settings = seed.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
    let seed = seed.set_redis_settings(settings);
    let primaries = if redis.target.is_cluster() {
        let found = tokio::time::timeout(redis.timeout, connection::primaries(&mut redis.conn())).await??;
        anyhow::ensure!(!found.is_empty(), "the cluster reports no primary");
        Some(found)
    } else {
        None
    };
    let infos = match &primaries {
        Some(found) => found.iter().map(|(host, port)| connection::at_node(&seed, host, *port)).collect(),
        None => vec![seed],
    };
    let (closed_tx, mut closed) = mpsc::unbounded_channel::<()>();
    let mut conns = Vec::with_capacity(infos.len());
    for info in infos {
        let (for_push, closed_tx) = (cache.clone(), closed_tx.clone());
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(redis.timeout))
            .set_response_timeout(Some(redis.timeout))
            .set_push_sender(move |push: PushInfo| -> Result<(), ()> {
                if push.kind == PushKind::Disconnection {
                    let _ = closed_tx.send(());
                } else {
                    for_push.on_push(push);
                }
                Ok(())
            });
        let client = redis::Client::open(info)?;
        conns.push(client.get_multiplexed_async_connection_with_config(&config).await?);
    }
    // Everything read through the cache before this session must be watched again.
    while let Ok(ns) = wanted_rx.try_recv() {
        known.insert(ns);
    }
    for ns in known.iter() {
        track(&mut conns, ns).await?;
    }
    cache.registered.lock().unwrap_or_else(|e| e.into_inner()).extend(known.iter().cloned());
    cache.live.store(true, Ordering::Release);
    tracing::debug!(namespaces = known.len(), primaries = conns.len(), "kv read cache listening for invalidations");
    let mut ping = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = closed.recv() => anyhow::bail!("the connection closed"),
            Some(ns) = wanted_rx.recv() => {
                if known.contains(&ns) {
                    continue;
                }
                track(&mut conns, &ns).await?;
                cache.registered.lock().unwrap_or_else(|e| e.into_inner()).insert(ns.clone());
                known.insert(ns);
            }
            _ = ping.tick() => {
                for conn in conns.iter_mut() {
                    let pong = tokio::time::timeout(PING_TIMEOUT, redis::cmd("PING").query_async::<String>(conn)).await;
                    match pong {
                        Ok(r) => { r?; }
                        Err(_) => anyhow::bail!("no answer to PING within {PING_TIMEOUT:?}"),
                    }
                }
                if let Some(watched) = &primaries {
                    let now = tokio::time::timeout(PING_TIMEOUT, connection::primaries(&mut redis.conn())).await;
                    if now.as_ref().is_ok_and(|r| r.as_ref().is_ok_and(|now| now != watched)) {
                        anyhow::bail!("the cluster's primaries changed");
                    }
                }
            }
        }
    }
}

/// Asks for invalidations of every value of namespace `ns`.
/// On every primary's connection.
async fn track(conns: &mut [redis::aio::MultiplexedConnection], ns: &str) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKING").arg("ON").arg("BCAST");
    for p in prefixes(ns) {
        cmd.arg("PREFIX").arg(p);
    }
    for conn in conns.iter_mut() {
        cmd.query_async::<()>(conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_cache(entries: usize) -> Arc<ReadCache> {
        let c = ReadCache::new(entries);
        c.registered.lock().unwrap().insert("ns".into());
        c.live.store(true, Ordering::Release);
        c
    }

    /// A value without an expiry, as Redis answers it.
    fn val(v: &[u8]) -> (Option<Vec<u8>>, i64) {
        (Some(v.to_vec()), -1)
    }

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    fn miss(c: &ReadCache, k: &[String]) -> Ticket {
        match c.lookup("ns", k) {
            Lookup::Miss(t) => t,
            Lookup::Hit(v) => panic!("unexpected hit {v:?}"),
        }
    }

    #[test]
    fn a_filled_read_hits_until_invalidated() {
        let c = live_cache(100);
        let k = keys(&["a", "b"]);
        let t = miss(&c, &k);
        c.fill(t, &k, &[val(b"1"), (None, -2)]);
        assert!(matches!(c.lookup("ns", &k), Lookup::Hit(v) if v == vec![Some(b"1".to_vec()), None]));
        c.invalidate("b");
        miss(&c, &k);
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_stored() {
        let c = live_cache(100);
        let k = keys(&["a"]);
        let t = miss(&c, &k);
        c.invalidate("a"); // a write landed while the read was in flight
        c.fill(t, &k, &[val(b"old")]);
        miss(&c, &k);
    }

    #[test]
    fn nothing_is_served_or_stored_while_the_listener_is_down() {
        let c = live_cache(100);
        let k = keys(&["a"]);
        let t = miss(&c, &k);
        c.fill(t, &k, &[val(b"1")]);
        c.down();
        miss(&c, &k);
        let t = miss(&c, &k);
        c.fill(t, &k, &[val(b"1")]);
        c.live.store(true, Ordering::Release);
        c.registered.lock().unwrap().insert("ns".into());
        miss(&c, &k);
    }

    #[test]
    fn an_unregistered_namespace_is_asked_for_and_not_cached() {
        let c = live_cache(100);
        let k = keys(&["x"]);
        assert!(matches!(c.lookup("other", &k), Lookup::Miss(Ticket { generations: None, .. })));
        let mut rx = c.wanted_rx.lock().unwrap().take().unwrap();
        assert_eq!(rx.try_recv().ok().as_deref(), Some("other"));
    }

    #[test]
    fn a_flush_or_an_invalidation_message_drops_entries() {
        let c = live_cache(100);
        let k = keys(&["a", "b"]);
        let t = miss(&c, &k);
        c.fill(t, &k, &[val(b"1"), val(b"2")]);
        c.on_push(PushInfo {
            kind: PushKind::Invalidate,
            data: vec![Value::Array(vec![Value::BulkString(b"a".to_vec())])],
        });
        miss(&c, &keys(&["a"]));
        assert!(matches!(c.lookup("ns", &keys(&["b"])), Lookup::Hit(_)));
        c.on_push(PushInfo { kind: PushKind::Invalidate, data: vec![Value::Nil] });
        miss(&c, &keys(&["b"]));
    }

    #[test]
    fn the_cache_stays_within_its_size() {
        let c = live_cache(SHARDS * 2);
        for i in 0..1000 {
            let k = keys(&[&format!("k{i}")]);
            let t = miss(&c, &k);
            c.fill(t, &k, &[val(b"1")]);
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().map.len()).sum();
        assert!(total <= SHARDS * 2, "{total} entries");
        assert!(total > 0);
    }

    #[test]
    fn a_read_from_before_the_listener_dropped_is_not_stored_after_it_is_back() {
        let c = live_cache(100);
        let k = keys(&["a"]);
        let t = miss(&c, &k);
        c.down();
        c.live.store(true, Ordering::Release);
        c.registered.lock().unwrap().insert("ns".into());
        c.fill(t, &k, &[val(b"read while nothing was tracked")]);
        miss(&c, &k);
    }

    #[test]
    fn a_key_with_an_expiry_is_not_cached() {
        let c = live_cache(100);
        let k = keys(&["a", "b"]);
        let t = miss(&c, &k);
        c.fill(t, &k, &[(Some(b"1".to_vec()), 5_000), val(b"2")]);
        miss(&c, &keys(&["a"]));
        assert!(matches!(c.lookup("ns", &keys(&["b"])), Lookup::Hit(_)));
    }

    #[test]
    fn a_zero_sized_cache_is_off() {
        let c = live_cache(0);
        let k = keys(&["a"]);
        let t = miss(&c, &k);
        c.fill(t, &k, &[val(b"1")]);
        miss(&c, &k);
    }
}
