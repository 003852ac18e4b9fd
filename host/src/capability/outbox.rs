//! The transactional outbox (`outbox.set-if-absent-and-publish`,
//! `outbox.compare-and-swap-and-publish`, `outbox.delete-and-publish`): a write that
//! schedules an event in the same atomic step, and the task that publishes
//! the due entries to their streams.
//!
//! On a single Redis server an event due now is appended to its stream by
//! the script that writes: one step, one round trip, and nothing for the
//! publisher to do. Otherwise (a delay, or a cluster, where the stream lives
//! in another slot than the write) the event waits as an entry in a sorted
//! set in the component's own hash slot (`wharf:{<ns>}:outbox`, scored by
//! its due time), so the write and the entry are one Lua script, on Redis
//! Cluster too. Publishing cannot join that step there: the publisher first
//! leases the due entries (one script pushes their score a lease ahead, so
//! another host leaves them alone meanwhile), appends them to their streams,
//! then removes them. Due times and leases are on Redis's clock
//! (see `storage::scripts`): a host whose clock runs ahead cannot take over
//! entries another host still holds. A host that dies in between, or stalls past the lease,
//! leaves its entries to be published again: at least once, as every event
//! is. An entry that could not be appended is put back a second later; none
//! is removed before Redis has appended it. Entries due in the same
//! millisecond are numbered in write order, so one publisher sends a
//! component's events in the order its writes happened.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{HasSelf, Linker};

use crate::capability::backend::Backend;
use crate::capability::events::{EventsGrant, append_args, entry_fields};
use crate::capability::kv::{KvGrant, cas_outcome, check_ttl};
use crate::engine::bindings::wharf::plugin::{atomics, outbox};
use crate::engine::bindings::{CapError, CapFailure};
use crate::storage::scripts::{
    COMPARE_AND_SWAP_AND_PUBLISH, DELETE_AND_PUBLISH, OUTBOX_LEASE_DUE, OUTBOX_SETTLE_BATCH, SET_IF_ABSENT_AND_PUBLISH,
};
use crate::storage::stream_partition::{for_route, route};
use crate::storage::{kv_index, outbox_key, outbox_seq_key, partition};
use crate::telemetry::trail::Trail;

/// Entries leased and published per round trip, per namespace and pass.
const BATCH: usize = 200;
/// How long after a failed append an entry is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The outbox unit of one host: its publisher, and what wakes it when an
/// entry is due at once, so an event written with no delay does not wait
/// for the next poll.
pub struct Outbox {
    backend: Backend,
    due_now: Mutex<HashSet<String>>,
    wake: Notify,
    /// Set once Redis refused a script that writes and appends (`CROSSSLOT`:
    /// a server that enforces hash slots though it is not used as a
    /// cluster, such as a one-shard cluster or a sharding proxy): from then
    /// on every event waits in the outbox, as on a cluster.
    slots_enforced: AtomicBool,
}

/// What one version's outbox writes reach: its kv namespace, and the
/// streams it may publish to.
pub struct OutboxGrant {
    outbox: Arc<Outbox>,
    kv: Arc<KvGrant>,
    events: Arc<EventsGrant>,
}

/// One call's outbox context: the grant, and the request its events belong to.
pub struct OutboxCtx {
    grant: Arc<OutboxGrant>,
    trail: Trail,
    /// Redis answered `unavailable` during this call (`converts_errors`).
    pub(crate) redis_unavailable: bool,
}

impl Outbox {
    pub fn new(backend: Backend) -> Arc<Outbox> {
        Arc::new(Outbox {
            backend,
            due_now: Mutex::default(),
            wake: Notify::new(),
            slots_enforced: AtomicBool::new(false),
        })
    }

    /// A loaded version's grant: the kv and events grants it already has.
    pub fn grant(self: &Arc<Self>, kv: &Arc<KvGrant>, events: &Arc<EventsGrant>) -> Arc<OutboxGrant> {
        Arc::new(OutboxGrant { outbox: self.clone(), kv: kv.clone(), events: events.clone() })
    }

    fn kick(&self, namespace: &str) {
        let mut due = self.due_now.lock().unwrap_or_else(|e| e.into_inner());
        if !due.contains(namespace) {
            due.insert(namespace.to_string());
        }
        drop(due);
        self.wake.notify_one();
    }

    fn take_kicked(&self) -> Vec<String> {
        self.due_now.lock().unwrap_or_else(|e| e.into_inner()).drain().collect()
    }

    /// How long a leased entry is left to the host that leased it: well
    /// past the two Redis calls (each under `redis_timeout`) that publish a batch.
    fn lease(&self) -> Duration {
        (self.backend.redis.timeout * 4).max(Duration::from_secs(5))
    }
}

impl OutboxCtx {
    pub fn new(grant: &Arc<OutboxGrant>, trail: Trail) -> OutboxCtx {
        OutboxCtx { grant: grant.clone(), trail, redis_unavailable: false }
    }
}

/// Puts `outbox` in `linker`; `get` finds the call's context.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut OutboxCtx,
) -> wasmtime::Result<()> {
    outbox::add_to_linker::<T, HasSelf<OutboxCtx>>(linker, get)
}

crate::capability::converts_errors!(OutboxCtx, notes_redis_outages);

/// An entry: `<number>\n<stream>@<route>\n<origin>\n<trail line>\n<payload>`
/// (`Trail::line`: the request id and the publisher's span, or empty).
/// The script that schedules it puts the number in front:
/// it orders entries written in the same millisecond and keeps equal
/// events distinct. `route` is the written key's (`stream_partition::route`):
/// it picks the stream's partition when the entry is published.
/// (Entries of hosts before it carry a random id there, and no route.)
fn entry(stream: &str, route: u16, origin: &str, trail: &Trail, payload: &[u8]) -> Vec<u8> {
    let mut m = format!("\n{stream}@{route}\n{origin}\n{}\n", trail.line()).into_bytes();
    m.extend_from_slice(payload);
    m
}

/// What an entry holds.
#[derive(Debug, PartialEq)]
struct Parsed<'a> {
    stream: &'a str,
    /// None in an entry of a host from before partitions: partition 0.
    route: Option<u16>,
    origin: &'a str,
    trail: Trail,
    payload: &'a [u8],
}

/// An entry's parts; none if no host wrote it.
fn parse(m: &[u8]) -> Option<Parsed<'_>> {
    let mut parts = m.splitn(5, |b| *b == b'\n');
    let (_id, stream, origin, trail) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let payload = parts.next()?;
    let text = |b| std::str::from_utf8(b).ok();
    let trail = Trail::from_line(text(trail)?);
    let (stream, route) = match text(stream)?.split_once('@') {
        Some((stream, route)) => (stream, Some(route.parse().ok()?)),
        None => (text(stream)?, None),
    };
    Some(Parsed { stream, route, origin: text(origin)?, trail, payload })
}

/// What a write-and-publish script did with its event (the tag it answers with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    /// Not written, so no event: 0.
    Nothing,
    /// Written, and its event appended or in the outbox as asked: 1.
    Written,
    /// Written, but the stream refused the event, which waits in the outbox: 2.
    Queued,
}

impl Done {
    fn of(tag: i64) -> Done {
        match tag {
            0 => Done::Nothing,
            2 => Done::Queued,
            _ => Done::Written,
        }
    }
}

/// Runs `script`, one of the write-and-publish scripts, on `key` (KEYS[1]),
/// the namespace's index, its outbox and the outbox's counter (all in the
/// namespace's hash slot), with the write's own `args` and then the event's
/// delay and entry; `tag` reads the script's tag (`Done`) from its answer.
///
/// On a single Redis server an event due now goes straight to its stream
/// in the same script (KEYS[5] and the entry's fields): every key is on the
/// one server, so the write and the append can be one step, and the
/// outbox's publisher has nothing to do. On a cluster the stream is in
/// another slot, so the event waits in the outbox for the publisher; so it
/// does on a server that turns out to enforce slots anyway (`CROSSSLOT`),
/// for the write and every later one.
async fn write_and_publish<T: redis::FromRedisValue>(
    ctx: &OutboxCtx,
    script: &Script,
    key: &str,
    args: impl Fn(&mut redis::ScriptInvocation<'_>, &str),
    event: outbox::OutboxEvent,
    tag: impl FnOnce(&T) -> i64,
) -> Result<T, CapError> {
    let (kv, events) = (&ctx.grant.kv, &ctx.grant.events);
    let k = kv.key(key)?;
    events.check_publish(&event.stream, &event.payload)?;
    kv.note_partition(key).await?;
    let backend = kv.backend();
    let outbox = &ctx.grant.outbox;
    let direct =
        event.delay_ms == 0 && !backend.redis.target.is_cluster() && !outbox.slots_enforced.load(Ordering::Relaxed);
    let part = if direct {
        let parts = backend.bounded(backend.redis.stream_parts(&event.stream)).await?;
        Some(for_route(&parts, route(key)).key())
    } else {
        None
    };
    let _drop_from_cache = kv.cache().invalidate_on_drop(vec![k.clone()]);
    // The key's own tag: its shard's outbox, when it names a partition.
    let tag_of_key = partition::tag(kv.ns(), key);
    let member = entry(&event.stream, route(key), events.origin(), &ctx.trail, &event.payload);
    let invocation = |part: Option<&str>| {
        let mut inv = script.key(&k);
        inv.key(kv_index(&tag_of_key)).key(outbox_key(&tag_of_key)).key(outbox_seq_key(&tag_of_key));
        args(&mut inv, key);
        inv.arg(event.delay_ms).arg(&member);
        if let Some(part) = part {
            inv.key(part);
            entry_fields(events.origin(), &ctx.trail, &event.payload, Some(route(key)), |a| {
                inv.arg(a);
            });
        }
        inv
    };
    let cross_slot = |e: &redis::RedisError| e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::CrossSlot);
    let first = invocation(part.as_deref());
    let (answer, direct) = match backend
        .bounded_unless(first.invoke_async::<T>(&mut backend.conn()), cross_slot)
        .await?
    {
        Ok(answer) => (answer, direct),
        Err(e) => {
            // Refused before it ran: nothing was written. Again, with the outbox.
            if !outbox.slots_enforced.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "Redis enforces hash slots: events due now wait in the outbox from now on");
            }
            let again = invocation(None);
            (backend.bounded(again.invoke_async::<T>(&mut backend.conn())).await?, false)
        }
    };
    match Done::of(tag(&answer)) {
        Done::Written if direct => {
            backend.metrics.outbox_published.inc();
        }
        Done::Written if event.delay_ms == 0 => outbox.kick(&tag_of_key),
        Done::Queued => outbox.kick(&tag_of_key),
        _ => {}
    }
    Ok(answer)
}

/// The host side of `outbox.set-if-absent-and-publish`.
async fn set_if_absent_and_schedule(
    ctx: &OutboxCtx,
    key: &str,
    value: Vec<u8>,
    ttl_ms: Option<u64>,
    event: outbox::OutboxEvent,
) -> Result<bool, CapError> {
    ctx.grant.kv.check_value(&value)?;
    check_ttl(ttl_ms)?;
    let args = |inv: &mut redis::ScriptInvocation<'_>, key: &str| {
        inv.arg(&value).arg(key).arg(ttl_ms.unwrap_or(0));
    };
    let n: i64 = write_and_publish(ctx, &SET_IF_ABSENT_AND_PUBLISH, key, args, event, |n| *n).await?;
    Ok(n != 0)
}

/// The host side of `outbox.compare-and-swap-and-publish`.
async fn compare_and_swap_and_schedule(
    ctx: &OutboxCtx,
    key: &str,
    expected: Option<u64>,
    value: Vec<u8>,
    event: outbox::OutboxEvent,
) -> Result<atomics::CasOutcome, CapError> {
    ctx.grant.kv.check_value(&value)?;
    let args = |inv: &mut redis::ScriptInvocation<'_>, key: &str| {
        inv.arg(&value).arg(expected.map(|v| v.to_string()).unwrap_or_default()).arg(key);
    };
    let (ok, ver): (i64, i64) =
        write_and_publish(ctx, &COMPARE_AND_SWAP_AND_PUBLISH, key, args, event, |(ok, _)| *ok).await?;
    Ok(cas_outcome((ok.min(1), ver)))
}

/// The host side of `outbox.delete-and-publish`.
async fn delete_and_schedule(ctx: &OutboxCtx, key: &str, event: outbox::OutboxEvent) -> Result<bool, CapError> {
    let args = |inv: &mut redis::ScriptInvocation<'_>, key: &str| {
        inv.arg(key);
    };
    let n: i64 = write_and_publish(ctx, &DELETE_AND_PUBLISH, key, args, event, |n| *n).await?;
    Ok(n != 0)
}

/// Publishes due outbox entries until shutdown: at once for an outbox
/// this host just wrote an undelayed entry to, and every `poll` for every
/// outbox of every namespace in `publishers()` (the loaded components that publish: delayed
/// entries, entries put back, and those other hosts left behind). One batch
/// per namespace per pass, so a backlog in one does not hold up the others.
pub async fn run_publisher(
    outbox: Arc<Outbox>,
    publishers: impl Fn() -> Vec<String>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Outboxes are per tag: a namespace's own, and each of its shards'
        // once it has partitioned keys (which the registry learns here from
        // Redis, whichever host wrote them).
        let mut namespaces: Vec<String> = tokio::select! {
            _ = tick.tick() => {
                let registry = &outbox.backend.redis.partitions;
                let _ = outbox.backend.bounded(registry.refresh(&mut outbox.backend.conn())).await;
                let tags = publishers().iter().flat_map(|ns| registry.tags(ns)).collect();
                outbox.holding(tags).await
            }
            _ = outbox.wake.notified() => outbox.take_kicked(),
            _ = shutdown.cancelled() => return,
        };
        // Namespaces whose last batch was full go round again; one whose
        // Redis call failed waits for the next tick.
        while !namespaces.is_empty() && !shutdown.is_cancelled() {
            let mut full = Vec::new();
            for ns in namespaces {
                if let Ok(BATCH) = outbox.publish_due(&ns).await {
                    full.push(ns);
                }
            }
            namespaces = full;
        }
    }
}

impl Outbox {
    /// Of the outboxes of `tags`, those that hold any entry. Most are empty
    /// most of the time (seventeen per publishing component, looked at every
    /// poll), and a lease script on an empty one costs Redis more than a
    /// `ZCARD`: on a single server one pipeline of `ZCARD`s picks the ones
    /// worth a lease. On a cluster a pipeline must keep to one slot, and
    /// every outbox is looked at, as before; so it is when the look fails.
    async fn holding(&self, tags: Vec<String>) -> Vec<String> {
        let backend = &self.backend;
        if backend.redis.target.is_cluster() || tags.is_empty() {
            return tags;
        }
        let mut pipe = redis::pipe();
        for tag in &tags {
            pipe.zcard(outbox_key(tag));
        }
        match backend.bounded(pipe.query_async::<Vec<u64>>(&mut backend.conn())).await {
            Ok(counts) => tags.into_iter().zip(counts).filter(|(_, n)| *n > 0).map(|(tag, _)| tag).collect(),
            Err(_) => tags,
        }
    }

    /// Leases, publishes and removes up to `BATCH` due entries of the
    /// outbox of `namespace` (a namespace or one of its shards' tags);
    /// returns how many were leased.
    async fn publish_due(&self, namespace: &str) -> Result<usize, CapError> {
        let (backend, metrics) = (&self.backend, &self.backend.metrics);
        let outbox = outbox_key(namespace);
        let mut inv = OUTBOX_LEASE_DUE.key(&outbox);
        inv.arg(BATCH).arg(self.lease().as_millis() as u64);
        let mut conn = backend.conn();
        let leased = backend.bounded(inv.invoke_async::<Vec<Vec<u8>>>(&mut conn)).await.inspect_err(|e| {
            tracing::warn!(namespace, error = %e, "reading the outbox failed; will retry");
        })?;
        if leased.is_empty() {
            return Ok(0);
        }
        // One pipeline per stream partition, entries in outbox order: each
        // partition is its own hash slot, so on a cluster each pipeline
        // goes to one node.
        let mut per_part: Vec<(String, redis::Pipeline, Vec<&Vec<u8>>)> = Vec::new();
        let mut done = Vec::with_capacity(leased.len());
        let mut failed = Vec::new();
        for m in &leased {
            let Some(e) = parse(m) else {
                // Not written by a host: it must not come back every lease.
                tracing::warn!(namespace, "dropping a malformed outbox entry");
                done.push(m);
                continue;
            };
            let Ok(parts) = backend.bounded(backend.redis.stream_parts(e.stream)).await else {
                failed.push(m);
                continue;
            };
            // An entry without a route (a host from before partitions): partition 0.
            let part = e.route.map_or(&parts[0], |r| for_route(&parts, r));
            let key = part.key();
            let mut xadd = redis::cmd("XADD");
            append_args(&mut xadd, &key, e.origin, &e.trail, e.payload, e.route);
            let at = match per_part.iter().position(|(k, _, _)| *k == key) {
                Some(at) => at,
                None => {
                    per_part.push((key, redis::pipe(), Vec::new()));
                    per_part.len() - 1
                }
            };
            per_part[at].1.add_command(xadd);
            per_part[at].2.push(m);
        }
        for (_, mut pipe, sent) in per_part {
            let replies = backend
                .bounded(pipe.ignore_errors().query_async::<Vec<redis::RedisResult<String>>>(&mut conn))
                .await
                .inspect_err(|e| {
                    // Unknown which were appended: the lease brings them all back.
                    tracing::warn!(namespace, error = %e, "publishing outbox entries failed; will retry");
                })?;
            for (m, reply) in sent.into_iter().zip(replies) {
                match reply {
                    Ok(_) => {
                        metrics.outbox_published.inc();
                        done.push(m);
                    }
                    Err(e) => {
                        tracing::warn!(namespace, error = %e, "publishing an outbox entry failed; will retry");
                        failed.push(m);
                    }
                }
            }
        }
        if !failed.is_empty() {
            metrics.outbox_failures.inc_by(failed.len() as u64);
        }
        let mut inv = OUTBOX_SETTLE_BATCH.key(&outbox);
        inv.arg(RETRY.as_millis() as u64).arg(done.len()).arg(&done).arg(&failed);
        backend.bounded(inv.invoke_async::<i64>(&mut conn)).await?;
        Ok(leased.len())
    }
}

impl outbox::Host for OutboxCtx {
    async fn set_if_absent_and_publish(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        event: outbox::OutboxEvent,
    ) -> Result<bool, CapFailure> {
        Ok(set_if_absent_and_schedule(self, &key, value, ttl_ms, event).await?)
    }

    async fn compare_and_swap_and_publish(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: Vec<u8>,
        event: outbox::OutboxEvent,
    ) -> Result<atomics::CasOutcome, CapFailure> {
        Ok(compare_and_swap_and_schedule(self, &key, expected, value, event).await?)
    }

    async fn delete_and_publish(&mut self, key: String, event: outbox::OutboxEvent) -> Result<bool, CapFailure> {
        Ok(delete_and_schedule(self, &key, event).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_parses_back_to_what_was_written() {
        // As the script stores it: its number in front.
        let numbered = |m: Vec<u8>| [b"00000000000000000042".as_slice(), &m].concat();
        let none = Trail::default();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let traced = Trail::new(Some("req-1"), Some(tp));
        let m = numbered(entry("payment_settle", 9_000, "payment", &traced, b"{\"id\":\"a\nb\"}"));
        let want = |stream, route, origin, trail: &Trail, payload| {
            Some(Parsed { stream, route, origin, trail: trail.clone(), payload })
        };
        assert_eq!(parse(&m), want("payment_settle", Some(9_000), "payment", &traced, &b"{\"id\":\"a\nb\"}"[..]));
        let m = numbered(entry("s", 0, "c", &none, b""));
        assert_eq!(parse(&m), want("s", Some(0), "c", &none, &b""[..]));
        // An entry of a host from before traces: a request id alone.
        let m = numbered(b"\ns@3\nc\nreq-2\nx".to_vec());
        assert_eq!(parse(&m), want("s", Some(3), "c", &Trail::new(Some("req-2"), None), &b"x"[..]));
        // An entry of a host from before partitions: no route (partition 0).
        let m = numbered(b"\ns\nc\n\nx".to_vec());
        assert_eq!(parse(&m), want("s", None, "c", &none, &b"x"[..]));
        // An entry of a host from before the numbers: a random id in front.
        let m = [b"0f3c9a1e5b7d4c2a8e6f1b3d5c7a9e0f".as_slice(), &entry("s", 7, "c", &none, b"x")].concat();
        assert_eq!(parse(&m), want("s", Some(7), "c", &none, &b"x"[..]));
    }

    #[test]
    fn a_foreign_entry_is_refused() {
        assert_eq!(parse(b"no newlines"), None);
        assert_eq!(parse(b"id\nstream\norigin"), None);
        assert_eq!(parse(b"id\nstream@x\norigin\n\npayload"), None, "a route is a number");
    }
}
