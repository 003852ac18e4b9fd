//! The Redis connection and Wharf's key layout.
//!
//! Every key one atomic step touches shares a hash tag, so each step runs
//! in one slot of a Redis Cluster. `<tag>` is the component's name, or, for
//! a key that names a partition (`stock:{p1}`), one of its 16 shards'
//! tags, `<component>:<n>` (`partition`):
//! - `wharf:{<tag>}:kv:<key>`: a component's value (a hash: `v`, `ver`);
//! - `wharf:{<tag>}:index`: the index of the keys under the tag (sorted
//!   set, for listing);
//! - `wharf:{<tag>}:outbox`: events its writes scheduled (sorted set by due
//!   time; `outbox.rs`);
//! - `wharf:stream:{<name>}`: a stream, with `...:dead` (dead letters) and
//!   `...:delayed` (events not yet due) beside it in the same slot; a
//!   stream of several partitions has one such trio per partition, under
//!   `{<name>:<i>}` (`stream_partition`);
//! - `wharf:stream-partitions`: each stream's partition count;
//! - `wharf:partitioned`: the components that have partitioned keys.
//!
//! A component names only the part after the tag; the host adds the rest, so
//! no key a component writes can land in another component's namespace.

pub mod connection;
pub mod partition;
pub mod scripts;
pub mod stream_partition;
pub mod topology;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use redis::{ClientTlsConfig, TlsCertificates};
use serde::Deserialize;

pub use connection::{Conn, Target};

/// TLS material (PEM files) for a `rediss://` URL. Without `ca_file` the
/// system's trust store verifies the server; `cert_file` and `key_file` are
/// the client certificate for servers that ask for one (Redis does by
/// default: `tls-auth-clients yes`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisTls {
    /// `REDIS_TLS_CA_FILE`
    pub ca_file: Option<PathBuf>,
    /// `REDIS_TLS_CERT_FILE`
    pub cert_file: Option<PathBuf>,
    /// `REDIS_TLS_KEY_FILE`
    pub key_file: Option<PathBuf>,
}

impl RedisTls {
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// A cheap-to-clone handle on Redis that reconnects by itself.
#[derive(Clone)]
pub struct Store {
    /// One server or a cluster (`connection`).
    pub target: Target,
    /// The shared connections; opened again, all at once, when a cluster's
    /// primaries change (`topology`).
    conns: Arc<ArcSwap<Shared>>,
    /// How many times `conns` were opened again: a blocking reader's own
    /// connection follows when it changes.
    generation: Arc<AtomicU64>,
    /// The runtimes the shared connections belong to: the gateway's
    /// (`open`'s caller) and the background one, only ever used from there.
    foreground_rt: tokio::runtime::Handle,
    background_rt: tokio::runtime::Handle,
    /// Bound on one round trip: past it a capability call fails as `unavailable`.
    pub timeout: Duration,
    /// `redis_durability = "replicated"`: how long a call that wrote waits
    /// for a replica to confirm it (`confirm_replicated`). None: answered
    /// once the primary has it.
    pub replicated: Option<Duration>,
    next_wait: Arc<AtomicUsize>,
    /// Which namespaces have partitioned keys (`partition::Registry`).
    pub partitions: Arc<partition::Registry>,
    /// Each stream's partition count (`stream_partition::Counts`).
    pub stream_counts: Arc<stream_partition::Counts>,
    /// On a cluster: one fence key per primary, read from the slot map when
    /// first needed and again after any failed wait.
    fences: Arc<std::sync::Mutex<Option<Arc<Vec<String>>>>>,
}

/// A blocking reader's own connection, opened again when the shared ones
/// are (`Store::reopen`): a fresh one reads the cluster's new slot map.
pub struct Blocking {
    store: Store,
    block: Duration,
    generation: u64,
    conn: Conn,
}

impl Blocking {
    /// The connection to read with now.
    pub fn current(&mut self) -> &mut Conn {
        let now = self.store.generation();
        if now != self.generation
            && let Ok(fresh) = self.store.target.connection(self.block + self.store.timeout)
        {
            (self.conn, self.generation) = (fresh, now);
        }
        &mut self.conn
    }
}

/// The connections every caller shares.
struct Shared {
    /// One multiplexed connection per runtime: each pipelines its callers'
    /// commands (more connections measured no better on 2 cores), and its
    /// replies wake only threads of the runtime that sent them.
    foreground: Conn,
    background: Conn,
    /// Connections for `confirm_replicated` alone: a `WAIT` holds its
    /// connection until a replica answers, so it never runs on the shared
    /// ones (every other command behind it would wait too).
    waits: Vec<Conn>,
}

/// Connections `confirm_replicated` spreads its `WAIT`s over.
const WAIT_CONNECTIONS: usize = 4;
/// The key each `WAIT` is fenced by (see `confirm_replicated`).
const FENCE_KEY: &str = "wharf:durability-fence";

impl Store {
    /// Connects lazily: the host starts (and answers 503) even while Redis is down.
    /// A `rediss://` URL speaks TLS (rustls), verified against `tls.ca_file`
    /// or the system's trust store; user and password in the URL log in as
    /// that ACL user. A cluster is named by `connection::cluster_seeds`.
    /// Call from the gateway's runtime: its connection's tasks start there.
    pub fn open(
        url: &str,
        cluster: bool,
        timeout: Duration,
        tls: &RedisTls,
        background_rt: tokio::runtime::Handle,
    ) -> Result<Store> {
        let invalid = || format!("invalid Redis URL {}", redact(url));
        let certs = if tls.is_set() {
            let read = |p: &Option<PathBuf>| -> Result<Option<Vec<u8>>> {
                p.as_ref().map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display()))).transpose()
            };
            let client_tls = match (read(&tls.cert_file)?, read(&tls.key_file)?) {
                (Some(client_cert), Some(client_key)) => Some(ClientTlsConfig { client_cert, client_key }),
                _ => None,
            };
            Some(TlsCertificates { client_tls, root_cert: read(&tls.ca_file)? })
        } else {
            None
        };
        let (seeds, cluster) = connection::cluster_seeds(url, cluster).with_context(invalid)?;
        let target = Target::open(&seeds, cluster, certs).with_context(invalid)?;
        let foreground_rt = tokio::runtime::Handle::current();
        let shared = Shared::open(&target, timeout, &foreground_rt, &background_rt)?;
        Ok(Store {
            target,
            conns: Arc::new(ArcSwap::from_pointee(shared)),
            generation: Default::default(),
            foreground_rt,
            background_rt,
            timeout,
            replicated: None,
            next_wait: Default::default(),
            partitions: Default::default(),
            stream_counts: Arc::new(stream_partition::Counts::new(0, Default::default())),
            fences: Default::default(),
        })
    }

    /// With `replicated`, waits until a replica has every write the primary
    /// had applied when it was asked: the writes of the call that asks, on
    /// whichever connection they went. `WAIT` covers only what its own
    /// connection wrote, so it is fenced: one `INCR` of a key of its own,
    /// then `WAIT 1 <ms>`, in one pipeline on a connection kept for waits.
    /// The fence's place in the replication stream is after every write
    /// answered before it. On a cluster, one fenced wait per primary (the
    /// call may have written to any), each fence key in a slot its primary
    /// owns (`connection::fence_keys`). Err: no replica confirmed in time
    /// (or Redis did not answer); the caller must not report the write as
    /// done.
    pub async fn confirm_replicated(&self) -> Result<(), String> {
        let Some(wait) = self.replicated else { return Ok(()) };
        let conn = {
            let waits = &self.conns.load().waits;
            waits[self.next_wait.fetch_add(1, Ordering::Relaxed) % waits.len()].clone()
        };
        if !self.target.is_cluster() {
            return fenced_wait(conn, FENCE_KEY, wait, self.timeout).await;
        }
        // A cluster: the call may have written to any primary, and a WAIT
        // covers one, so one fenced WAIT per primary, all at once (each
        // pipeline goes to its fence key's primary).
        let cached = self.fences.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let fences = match cached {
            Some(fences) => fences,
            None => {
                let (mut conn, prefix) = (self.conn(), format!("{FENCE_KEY}:"));
                let fences = match tokio::time::timeout(self.timeout, connection::fence_keys(&mut conn, &prefix)).await
                {
                    Ok(Ok(fences)) if !fences.is_empty() => Arc::new(fences),
                    _ => return Err("waiting for replicas: cannot read the cluster's primaries".into()),
                };
                *self.fences.lock().unwrap_or_else(|e| e.into_inner()) = Some(fences.clone());
                fences
            }
        };
        let waits = fences.iter().map(|key| fenced_wait(conn.clone(), key, wait, self.timeout));
        let failed = futures::future::join_all(waits).await.into_iter().find_map(Result::err);
        match failed {
            None => Ok(()),
            Some(why) => {
                // The primaries may have changed: read them again next time.
                *self.fences.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Err(why)
            }
        }
    }

    /// The partitions of `stream`, its count read (or recorded) first:
    /// what publishing and consuming go by. One round trip per stream per
    /// host, then none.
    pub async fn stream_parts(&self, stream: &str) -> redis::RedisResult<Arc<[stream_partition::Part]>> {
        let counts = &self.stream_counts;
        if let Some(known) = counts.known(stream) {
            return Ok(known);
        }
        let mut conn = self.conn();
        let settle = counts.settle(&mut conn, self.target.is_cluster(), stream);
        match tokio::time::timeout(self.timeout, settle).await {
            Ok(parts) => parts,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        }
    }

    /// A connection for one command or pipeline: the calling runtime's own.
    pub fn conn(&self) -> Conn {
        let shared = self.conns.load();
        if crate::background::is_current() { shared.background.clone() } else { shared.foreground.clone() }
    }

    /// Opens the shared connections again, each on its runtime, in place
    /// of the old ones (commands under way finish on those); each new one
    /// reads the cluster's slot map afresh (`topology`).
    pub fn reopen(&self) -> Result<()> {
        let shared = Shared::open(&self.target, self.timeout, &self.foreground_rt, &self.background_rt)?;
        self.conns.store(Arc::new(shared));
        *self.fences.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The addresses the cluster was named by (`cluster_seeds`): where the
    /// map can be asked for without the cluster client (`topology`).
    pub fn seeds(&self) -> Vec<redis::ConnectionInfo> {
        match &self.target {
            Target::Cluster { seeds, .. } => seeds.clone(),
            Target::Node(client) => vec![client.get_connection_info().clone()],
        }
    }

    /// Changes each time the shared connections are opened again: a holder
    /// of a connection of its own opens it again too.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A separate connection for blocking reads (XREADGROUP BLOCK), so they never
    /// hold up the shared connection's other commands.
    pub fn blocking_connection(&self, block: Duration) -> Result<Blocking> {
        Ok(Blocking {
            generation: self.generation(),
            conn: self.target.connection(block + self.timeout)?,
            store: self.clone(),
            block,
        })
    }

    /// True if Redis answers PING in time on both shared connections: the
    /// gateway's and the events'. Either one down means part of the host is.
    /// On a cluster, every primary must answer: each holds part of the data.
    /// Each is pinged from its own runtime: a ping may be what (re)connects
    /// it, and the connection's reader task starts on the calling runtime.
    pub async fn ping(&self) -> bool {
        let timeout = self.timeout;
        let ping = move |mut conn: Conn| async move {
            let cmd = redis::cmd("PING");
            matches!(tokio::time::timeout(timeout, conn.on_every_primary(&cmd)).await, Ok(Ok(_)))
        };
        let shared = self.conns.load_full();
        let background = self.background_rt.spawn(ping(shared.background.clone()));
        let (foreground, background) = tokio::join!(ping(shared.foreground.clone()), background);
        foreground && background.unwrap_or(false)
    }
}

impl Shared {
    /// Each connection opened from the runtime that will use it: a cluster
    /// connection's tasks run where it was made.
    fn open(
        target: &Target,
        timeout: Duration,
        foreground_rt: &tokio::runtime::Handle,
        background_rt: &tokio::runtime::Handle,
    ) -> Result<Shared> {
        let on = |rt: &tokio::runtime::Handle| {
            let _on = rt.enter();
            target.connection(timeout)
        };
        Ok(Shared {
            foreground: on(foreground_rt)?,
            background: on(background_rt)?,
            waits: (0..WAIT_CONNECTIONS).map(|_| on(foreground_rt)).collect::<Result<Vec<_>, _>>()?,
        })
    }
}

/// `INCR fence` then `WAIT 1 <ms>` in one pipeline: Ok once a replica of
/// the fence's primary has everything that primary had applied before it.
async fn fenced_wait(mut conn: Conn, fence: &str, wait: Duration, timeout: Duration) -> Result<(), String> {
    let mut fenced = redis::pipe();
    fenced.cmd("INCR").arg(fence).ignore().cmd("WAIT").arg(1).arg(wait.as_millis() as u64);
    match tokio::time::timeout(wait + timeout, fenced.query_async::<(i64,)>(&mut conn)).await {
        Ok(Ok((n,))) if n >= 1 => Ok(()),
        Ok(Ok(_)) => Err(format!("no replica confirmed the write within {} ms", wait.as_millis())),
        Ok(Err(e)) => Err(format!("waiting for a replica failed: {e}")),
        Err(_) => Err("waiting for a replica: redis did not answer in time".into()),
    }
}

/// Redis's clock, in ms: the clock due times and leases are kept on (see
/// `scripts`).
pub async fn redis_now_ms(conn: &mut Conn) -> redis::RedisResult<u64> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// The URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// A component's value: under its namespace's tag, or, for a key that
/// names a partition, its shard's (`partition`).
pub fn kv_key(namespace: &str, key: &str) -> String {
    format!("wharf:{{{}}}:kv:{key}", partition::tag(namespace, key))
}

/// The index of the keys under `tag` (a namespace, or one of its shards).
pub fn kv_index(tag: &str) -> String {
    format!("wharf:{{{tag}}}:index")
}

/// The transactional outbox (`outbox.rs`) of the writes under `tag`: in the
/// same hash slot, so a write and its event are one atomic step.
pub fn outbox_key(tag: &str) -> String {
    format!("wharf:{{{tag}}}:outbox")
}

/// The counter that numbers an outbox's entries in write order.
pub fn outbox_seq_key(tag: &str) -> String {
    format!("wharf:{{{tag}}}:outbox:seq")
}

/// Names of components and streams: short, lower-case, no key syntax.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A Redis reply value as text (empty when absent or not a string).
pub fn text(v: Option<&redis::Value>) -> String {
    match v {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_slot_per_namespace() {
        assert_eq!(kv_key("inventory", "stock:1"), "wharf:{inventory}:kv:stock:1");
        // A key that names a partition goes to one of our shards, whatever it names.
        let tag = partition::tag("inventory", "{payment}:x");
        assert!(tag.starts_with("inventory:"), "{tag}");
        assert_eq!(kv_key("inventory", "{payment}:x"), format!("wharf:{{{tag}}}:kv:{{payment}}:x"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("redis://user:secret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }

    #[test]
    fn names_have_no_key_syntax() {
        assert!(is_valid_name("order_completed"));
        for bad in ["", "a:b", "{a}", "a*", "A", "a b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The slot-deciding part of a key, as Redis Cluster computes it.
        fn hash_tag(key: &str) -> &str {
            if let Some(open) = key.find('{')
                && let Some(len) = key[open + 1..].find('}')
                && len > 0
            {
                return &key[open + 1..open + 1 + len];
            }
            key
        }

        proptest! {
            /// Whatever a component names its key (braces, globs, colons,
            /// slashes), it stays in its own namespace: its hash tag is the
            /// namespace or one of the namespace's shards.
            #[test]
            fn component_keys_cannot_leave_their_namespace(ns in "[a-z][a-z0-9_-]{0,20}", key in "\\PC{1,100}") {
                let full = kv_key(&ns, &key);
                let tag = hash_tag(&full);
                prop_assert!(tag == ns || partition::shard_tags(&ns).iter().any(|t| t == tag), "{full}");
                let prefix = format!("wharf:{{{tag}}}:kv:");
                prop_assert!(full.starts_with(&prefix));
                let index = kv_index(&ns);
                prop_assert_eq!(hash_tag(&index), ns.as_str());
            }
        }
    }
}
