//! Stream consumers: each subscription in a component's manifest becomes a
//! consumer-group reader per partition of its stream
//! (`storage::stream_partition`), handing events to the component. The
//! readers of one subscription share its handler slots.
//!
//! Delivery is at least once; components make effects idempotent. The rules
//! that keep that honest (each one a bug Dapr's users reported):
//! - an event is acknowledged only after the handler says `ack`;
//! - entries pending longer than `claim_idle_ms` are claimed again; a handler
//!   is stopped before its event has been pending that long (its deadline
//!   counts from the delivery, not from when it started), so a running
//!   handler is never duplicated;
//! - a failed attempt (`retry`, a trap, a timeout) is tried again by the same
//!   reader after a backoff that doubles; if the host dies meanwhile, the
//!   event is still pending and the claim above picks it up;
//! - past `max_attempts` deliveries, or on `reject`, the event moves to the
//!   dead-letter stream with its error and is acknowledged, in one script;
//! - a replayed dead letter (`for_group`) runs only in the group that gave
//!   up on it; the other groups acknowledge it unhandled;
//! - a lost group (`NOGROUP`, e.g. Redis restarted empty) is created again;
//! - nothing is buffered in memory beyond the handlers running now: on
//!   shutdown unhandled entries simply stay pending for the next reader.

pub mod acks;
pub mod backlog;
pub mod dead_letters;
pub mod decide;
pub mod entry;
pub mod follow;
pub mod report;
pub mod trim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Value;
use redis::streams::StreamPendingCountReply;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Streams as StreamsConfig;
use crate::engine::runtime::{CallError, Event, EventOutcome, Handled, Runtime};
use crate::storage::scripts::{DEAD_LETTER, RECLAIM_OWN};
use crate::storage::stream_partition::Part;
use crate::storage::{Conn, Store, text};
use crate::streams::acks::Acks;
use crate::streams::decide::{Decision, Ran, decide};
use crate::streams::entry::{Entry, EntryList, ReadReply};
use crate::telemetry::traces;
use crate::telemetry::trail::Trail;

/// What the tasks of one reader share: its handler slots and its stop signal.
#[derive(Clone)]
struct Lane {
    permits: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// One subscription: a reader per partition of its stream.
pub struct Subscription {
    rt: Arc<Runtime>,
    component: String,
    stream: String,
    group: String,
    /// Unique per host process, so several hosts can share a group.
    consumer: String,
    cfg: StreamsConfig,
}

impl Subscription {
    pub fn new(
        rt: Arc<Runtime>,
        component: &str,
        stream: &str,
        group: &str,
        consumer: &str,
        cfg: StreamsConfig,
    ) -> Subscription {
        Subscription {
            rt,
            component: component.to_string(),
            stream: stream.to_string(),
            group: group.to_string(),
            consumer: consumer.to_string(),
            cfg,
        }
    }

    /// Creates the group on every partition (once the count is known).
    pub async fn ensure_groups(&self) -> redis::RedisResult<()> {
        let parts = self.rt.redis.stream_parts(&self.stream).await?;
        let mut conn = self.rt.redis.conn();
        for part in parts.iter() {
            ensure_group(&mut conn, &part.key(), &self.group).await?;
        }
        Ok(())
    }

    /// Reads every partition until `shutdown`, then waits for the handlers
    /// in flight.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let parts = loop {
            match self.rt.redis.stream_parts(&self.stream).await {
                Ok(parts) => break parts,
                Err(e) => {
                    tracing::warn!(stream = %self.stream, error = %e, "cannot read the stream's partition count; retrying");
                    if sleep_or_shutdown(backoff, &shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        let permits = Arc::new(Semaphore::new(self.cfg.concurrency));
        let lane = Lane { permits: permits.clone(), shutdown: shutdown.clone() };
        let readers = parts.iter().map(|part| Consumer::new(&self, part.clone()).run(lane.clone()));
        futures::future::join_all(readers).await;
        // Wait for the handlers in flight: each one acks or leaves its event
        // pending. Then close the slots: a retry whose backoff ends now (or
        // that was already waiting for a slot) finds none and leaves its
        // event pending for the next reader.
        let _drained = permits.acquire_many(self.cfg.concurrency as u32).await;
        permits.close();
        tracing::debug!(stream = %self.stream, group = %self.group, "consumer stopped");
    }
}

async fn ensure_group(conn: &mut impl redis::aio::ConnectionLike, key: &str, group: &str) -> redis::RedisResult<()> {
    // From the beginning ("0"): events published before the group existed are not lost.
    let created =
        redis::cmd("XGROUP").arg("CREATE").arg(key).arg(group).arg("0").arg("MKSTREAM").query_async::<()>(conn).await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// One partition's reader.
struct Consumer {
    rt: Arc<Runtime>,
    component: String,
    stream: String,
    part: Part,
    /// The partition's stream key.
    key: String,
    group: String,
    consumer: String,
    cfg: StreamsConfig,
    acks: Arc<Acks>,
}

impl Consumer {
    fn new(sub: &Subscription, part: Part) -> Arc<Consumer> {
        let (redis, key, group_name) = (sub.rt.redis.clone(), part.key(), sub.group.clone());
        let acks = Acks::new(Arc::new(move |ids: Vec<String>| {
            let (redis, key, group) = (redis.clone(), key.clone(), group_name.clone());
            Box::pin(async move {
                let cmd = redis::cmd("XACK").arg(&key).arg(&group).arg(&ids).to_owned();
                let mut conn = redis.conn();
                matches!(tokio::time::timeout(redis.timeout, cmd.query_async::<i64>(&mut conn)).await, Ok(Ok(_)))
            })
        }));
        Arc::new(Consumer {
            rt: sub.rt.clone(),
            component: sub.component.clone(),
            stream: sub.stream.clone(),
            key: part.key(),
            part,
            group: sub.group.clone(),
            consumer: sub.consumer.clone(),
            cfg: sub.cfg.clone(),
            acks,
        })
    }

    /// Reads and dispatches until the lane's shutdown; the subscription
    /// waits for the handlers in flight.
    async fn run(self: Arc<Self>, lane: Lane) {
        let (key, shutdown, permits) = (self.key.clone(), lane.shutdown.clone(), lane.permits.clone());
        let block = Duration::from_millis(self.cfg.block_ms);
        let mut blocking = match self.rt.redis.blocking_connection(block) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(stream = %self.stream, error = %e, "cannot open the stream connection");
                return;
            }
        };
        let claim_every = Duration::from_millis(self.cfg.claim_idle_ms / 2).max(Duration::from_millis(100));
        let mut last_claim = Instant::now();
        let mut group_ready = false;
        let mut backoff = Duration::from_millis(100);

        while !shutdown.is_cancelled() {
            let conn = blocking.current();
            if !group_ready {
                match ensure_group(conn, &key, &self.group).await {
                    Ok(()) => group_ready = true,
                    Err(e) => {
                        tracing::warn!(stream = %self.stream, partition = self.part.index, group = %self.group, error = %e, "cannot create consumer group; retrying");
                        if sleep_or_shutdown(backoff, &shutdown).await {
                            break;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            if last_claim.elapsed() >= claim_every {
                last_claim = Instant::now();
                if let Err(e) = self.reclaim(conn, &lane).await {
                    group_ready &= !is_nogroup(&e);
                    tracing::warn!(stream = %self.stream, partition = self.part.index, error = %e, "claiming idle events failed");
                }
            }
            // Read only as many as we can start now: nothing waits in memory.
            let free = match permits.clone().acquire_owned().await {
                Ok(p) => {
                    let n = 1 + permits.available_permits();
                    drop(p);
                    n.min(self.cfg.batch)
                }
                Err(_) => break,
            };
            let read = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&self.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(free)
                .arg("BLOCK")
                .arg(self.cfg.block_ms)
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .to_owned();
            let reply = tokio::select! {
                r = read.query_async::<Option<ReadReply>>(conn) => r,
                _ = shutdown.cancelled() => break,
            };
            match reply {
                Ok(reply) => {
                    backoff = Duration::from_millis(100);
                    let delivered = Instant::now();
                    for entry in reply.into_iter().flat_map(|r| r.0) {
                        self.clone().dispatch(entry, 1, delivered, &lane).await;
                    }
                }
                Err(e) => {
                    if is_nogroup(&e) {
                        tracing::warn!(stream = %self.stream, partition = self.part.index, group = %self.group, "consumer group lost; creating it again");
                        group_ready = false;
                    } else {
                        tracing::warn!(stream = %self.stream, partition = self.part.index, error = %e, "reading the stream failed; retrying");
                        if sleep_or_shutdown(backoff, &shutdown).await {
                            break;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Claims entries idle past `claim_idle_ms` (their consumer died or their
    /// handler asked to retry) and dispatches them with their delivery count.
    async fn reclaim(self: &Arc<Self>, conn: &mut Conn, lane: &Lane) -> redis::RedisResult<()> {
        let key = &self.key;
        let pending: StreamPendingCountReply = redis::cmd("XPENDING")
            .arg(key)
            .arg(&self.group)
            .arg("IDLE")
            .arg(self.cfg.claim_idle_ms)
            .arg("-")
            .arg("+")
            .arg(self.cfg.batch)
            .query_async(conn)
            .await?;
        for p in pending.ids {
            let delivered = Instant::now();
            let claimed: EntryList = redis::cmd("XCLAIM")
                .arg(key)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(self.cfg.claim_idle_ms)
                .arg(&p.id)
                .query_async(conn)
                .await?;
            // Another host claimed it first, or the entry was trimmed (Redis drops it from the PEL).
            let Some(entry) = claimed.0.into_iter().next() else { continue };
            self.clone().dispatch(entry, p.times_delivered as u32 + 1, delivered, lane).await;
        }
        Ok(())
    }

    /// Waits for a free handler slot, then handles `entry` in its own task.
    /// `delivered` is when Redis's reply handing the entry over arrived: the
    /// handler's deadline counts from it (the margin in `deadline` covers
    /// the time the reply took).
    async fn dispatch(self: Arc<Self>, entry: Entry, attempt: u32, delivered: Instant, lane: &Lane) {
        let Ok(permit) = lane.permits.clone().acquire_owned().await else { return };
        let lane = lane.clone();
        // The request that caused the event, so its logs can be followed here.
        let request_id =
            std::str::from_utf8(entry.field("request_id")).ok().filter(|id| !id.is_empty()).map(str::to_owned);
        let span = tracing::info_span!("event", request_id = request_id.as_deref().unwrap_or("-"));
        tokio::spawn(
            async move {
                let failed = self.handle(&entry, attempt, delivered, request_id.as_deref()).await;
                drop(permit);
                if failed {
                    self.retry_later(entry.id, attempt, lane);
                }
            }
            .instrument(span),
        );
    }

    /// After the backoff, takes the event back (only if nobody delivered it
    /// meanwhile: see `RECLAIM_OWN`) and handles it again. No slot is held
    /// while waiting, and nothing starts once shutdown has begun.
    fn retry_later(self: Arc<Self>, id: String, attempt: u32, lane: Lane) {
        let delay = self.cfg.retry_delay(attempt);
        tokio::spawn(async move {
            if sleep_or_shutdown(delay, &lane.shutdown).await {
                return; // stays pending: the next reader claims it
            }
            let mut claim = RECLAIM_OWN.key(&self.key);
            claim.arg(&self.group).arg(&self.consumer).arg(&id).arg(attempt);
            let mut conn = self.rt.redis.conn();
            let delivered = Instant::now();
            match tokio::time::timeout(self.rt.redis.timeout, claim.invoke_async::<EntryList>(&mut conn)).await {
                Ok(Ok(reply)) => {
                    if let Some(entry) = reply.0.into_iter().next() {
                        if lane.shutdown.is_cancelled() {
                            return; // claimed but not started: redelivered after claim_idle_ms
                        }
                        self.clone().dispatch(entry, attempt + 1, delivered, &lane).await;
                    }
                }
                // Redis unreachable: the event stays pending and is claimed later.
                _ => {
                    tracing::warn!(stream = %self.stream, %id, "cannot take the event back for a retry; it stays pending")
                }
            }
        });
    }

    /// How long a handler may still run: the call timeout, but never so long
    /// that its event has been pending `claim_idle_ms` (less a safety margin
    /// for the clocks of Redis and this host): by then another reader may
    /// claim it. `None`: too late to start at all.
    fn deadline(&self, delivered: Instant) -> Option<Duration> {
        let idle = Duration::from_millis(self.cfg.claim_idle_ms);
        let margin = (idle / 10).max(Duration::from_millis(100));
        let left = idle.checked_sub(margin)?.checked_sub(delivered.elapsed())?;
        Some(left.min(self.rt.limits.call_timeout())).filter(|d| !d.is_zero())
    }

    /// Handles one delivery; true if it failed and should be tried again.
    async fn handle(&self, entry: &Entry, attempt: u32, delivered: Instant, request_id: Option<&str>) -> bool {
        let for_group = entry.field("for_group");
        if !for_group.is_empty() && for_group != self.group.as_bytes() {
            // Another group's replayed dead letter: this group handled the original.
            if self.ack(&entry.id).await {
                tracing::debug!(stream = %self.stream, group = %self.group, id = %entry.id, "another group's replay; acked unhandled");
            }
            return false;
        }
        let started = Instant::now();
        let current = self.rt.registry.get(&self.component);
        let subscribed = current
            .as_ref()
            .is_some_and(|v| v.manifest.subscriptions.iter().any(|s| s.stream == self.stream && s.group == self.group));
        if !subscribed {
            // The live version no longer consumes this (a swap removed the
            // subscription): leave the event pending for the group rather than
            // dead-letter it as the new version's refusal.
            tracing::warn!(component = %self.component, stream = %self.stream, group = %self.group, id = %entry.id, "no live version consumes this subscription; event left pending");
            return false;
        }
        let Some(deadline) = self.deadline(delivered) else {
            // Waited too long for a slot: it may be claimed by another reader
            // any moment now. Leave it to whoever claims it.
            tracing::warn!(component = %self.component, stream = %self.stream, id = %entry.id, "event waited past its claim time; left pending");
            return false;
        };
        // A child of the publisher's span (its `traceparent` rides in the entry).
        let traceparent = Some(entry.field("traceparent")).filter(|tp| !tp.is_empty() && traces::enabled());
        let mut span = traces::Span::event(&self.stream, traceparent.and_then(|tp| std::str::from_utf8(tp).ok()));
        let trail = Trail::new(request_id, span.traceparent().as_deref());
        let ran = match current {
            None => Ran::Failed(format!("component {} is not loaded", self.component)),
            Some(live) => {
                // A canary takes its share of events by partition key (the
                // publisher's `split`), so one order's events meet one version.
                let split = entry.field("split");
                let pick = self.rt.registry.pick(live, if split.is_empty() { entry.id.as_bytes() } else { split });
                let version = pick.version.clone();
                let origin = String::from_utf8_lossy(entry.field("origin")).into_owned();
                if span.is_on() {
                    span.set("messaging.system", "redis");
                    span.set("messaging.destination.name", self.stream.clone());
                    span.set("messaging.consumer.group.name", self.group.clone());
                    span.set("messaging.message.id", entry.id.clone());
                    span.set("wharf.component", self.component.clone());
                    span.set("wharf.version", version.sha256.clone());
                    span.set("wharf.attempt", attempt as i64);
                    if let Some(id) = request_id {
                        span.set("wharf.request_id", id.to_string());
                    }
                }
                let ev = Event {
                    stream: self.stream.clone(),
                    id: self.part.qualify(&entry.id),
                    payload: entry.field("payload").to_vec(),
                    attempt,
                    origin,
                    group: self.group.clone(),
                };
                let result = self.run_when_a_slot_is_free(&version, ev, trail, delivered, deadline).await;
                let handled = matches!(&result, Ok(Handled { outcome: EventOutcome::Ack, .. }));
                if !matches!(result, Err(CallError::Busy)) {
                    pick.observe(handled, started.elapsed());
                }
                match result {
                    Ok(Handled { outcome: EventOutcome::Retry(why), met_redis_outage: true }) => {
                        Ran::RedisUnavailable(why)
                    }
                    Ok(handled) => Ran::Answered(handled.outcome),
                    Err(CallError::Busy) => Ran::NoSlot,
                    Err(e @ CallError::NotReplicated { .. }) => Ran::Unconfirmed(e.to_string()),
                    Err(e @ CallError::Timeout(_)) | Err(e @ CallError::Trap { .. }) => Ran::Failed(e.to_string()),
                }
            }
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let decision = decide(ran, attempt, self.cfg.max_attempts);
        span.set("wharf.outcome", decision.name());
        if let Decision::DeadLetter(why) | Decision::Retry(why) = &decision {
            span.fail(why.clone());
        }
        match decision {
            Decision::Ack => {
                if self.ack(&entry.id).await {
                    self.rt.metrics.event(&self.stream, &self.group, "acked");
                    tracing::info!(component = %self.component, stream = %self.stream, id = %entry.id, attempt, ms, "event acked")
                }
            }
            Decision::DeadLetter(why) => self.dead_letter(entry, &why, attempt).await,
            Decision::LeavePending => {
                tracing::warn!(component = %self.component, stream = %self.stream, id = %entry.id, "no instance slot free until the event's claim time; left pending");
            }
            Decision::Retry(error) => {
                let retry_ms = self.cfg.retry_delay(attempt).as_millis() as u64;
                self.rt.metrics.event(&self.stream, &self.group, "retried");
                tracing::warn!(component = %self.component, stream = %self.stream, id = %entry.id, attempt, ms, retry_ms, %error, "event not handled; will retry");
                return true;
            }
        }
        false
    }

    /// Runs the event, waiting while every instance slot is taken (by an
    /// HTTP flood, say): a full pool is not a failed attempt, so it must not
    /// move the event towards the dead-letter stream. Gives up with `Busy`
    /// only when the event's claim time comes.
    async fn run_when_a_slot_is_free(
        &self,
        version: &Arc<crate::engine::runtime::ComponentVersion>,
        ev: Event,
        trail: Trail,
        delivered: Instant,
        mut deadline: Duration,
    ) -> Result<Handled, CallError> {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.rt.handle_event(version, &ev, trail.clone(), deadline).await {
                Err(CallError::Busy) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                    deadline = self.deadline(delivered).ok_or(CallError::Busy)?;
                }
                other => return other,
            }
        }
    }

    /// Acknowledges `id` for this group; false (and a warning) if Redis did
    /// not answer: the event is then delivered again, and handlers are idempotent.
    /// Goes with the acks of the reader's other events finished meanwhile
    /// (`acks`): one round trip for many under load.
    async fn ack(&self, id: &str) -> bool {
        if self.acks.ack(id).await {
            return true;
        }
        tracing::warn!(stream = %self.stream, id, "ack failed; the event will be redelivered");
        false
    }

    async fn dead_letter(&self, entry: &Entry, error: &str, attempt: u32) {
        let (id, payload, origin) = (entry.id.as_str(), entry.field("payload"), entry.field("origin"));
        let mut conn = self.rt.redis.conn();
        let mut inv = DEAD_LETTER.key(&self.key);
        inv.key(self.part.dead())
            .arg(&self.group)
            .arg(id)
            .arg(payload)
            .arg(origin)
            .arg(error)
            .arg(attempt)
            .arg(entry.field("request_id"));
        match tokio::time::timeout(self.rt.redis.timeout, inv.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => {
                self.rt.metrics.event(&self.stream, &self.group, "dead_lettered");
                tracing::error!(component = %self.component, stream = %self.stream, id, attempt, error, "event dead-lettered")
            }
            _ => tracing::warn!(stream = %self.stream, id, "dead-lettering failed; the event will be redelivered"),
        }
    }
}

/// One consumer group of a stream, as `XINFO GROUPS` reports it.
pub struct GroupInfo {
    pub name: String,
    pub consumers: u64,
    pub pending: u64,
    /// Entries not yet delivered to the group; `None` when Redis cannot tell.
    pub lag: Option<u64>,
    pub last_delivered: String,
}

/// The consumer groups of the stream (or partition) at `key` (none if it
/// does not exist).
pub async fn groups(conn: &mut impl redis::aio::ConnectionLike, key: &str) -> redis::RedisResult<Vec<GroupInfo>> {
    let reply: redis::RedisResult<Vec<std::collections::HashMap<String, Value>>> =
        redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(conn).await;
    let rows = match reply {
        Ok(rows) => rows,
        // Redis answers a plain `ERR` for a stream that does not exist: ask
        // whether it exists rather than read the message's words.
        Err(e) => {
            let exists: i64 = redis::cmd("EXISTS").arg(key).query_async(conn).await?;
            if exists == 0 {
                return Ok(Vec::new());
            }
            return Err(e);
        }
    };
    let number = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => Some(*n as u64),
        _ => None,
    };
    Ok(rows
        .iter()
        .map(|g| GroupInfo {
            name: text(g.get("name")),
            consumers: number(g.get("consumers")).unwrap_or(0),
            pending: number(g.get("pending")).unwrap_or(0),
            lag: number(g.get("lag")),
            last_delivered: text(g.get("last-delivered-id")),
        })
        .collect())
}

/// One stream's groups, partition by partition, as `groups_read` finds them.
pub type PartGroups = Vec<(Part, redis::RedisResult<Vec<GroupInfo>>)>;

/// The consumer groups this host reads (`read`, as `Registry::read` lists
/// them, sorted by stream), per stream and partition. Every stream and
/// partition is asked at once (they share round trips), each stream within
/// the Redis timeout, so a slow node holds the answer one timeout; a
/// stream's or a partition's failure is its own. What the backlog bound and
/// `/metrics` both read.
pub async fn groups_read<'a>(
    redis: &Store,
    read: &'a [(String, String)],
) -> Vec<(&'a str, redis::RedisResult<PartGroups>)> {
    let mut streams: Vec<&str> = read.iter().map(|(s, _)| s.as_str()).collect();
    streams.dedup();
    let ours = |stream: &str, g: &GroupInfo| read.iter().any(|(s, group)| s == stream && *group == g.name);
    let asked = streams.into_iter().map(|stream| async move {
        let found = async {
            let parts = redis.stream_parts(stream).await?;
            let asked = parts.iter().map(|part| {
                let (mut conn, part) = (redis.conn(), part.clone());
                async move {
                    let found = groups(&mut conn, &part.key()).await;
                    (part, found.map(|all| all.into_iter().filter(|g| ours(stream, g)).collect()))
                }
            });
            Ok(futures::future::join_all(asked).await)
        };
        let found = tokio::time::timeout(redis.timeout, found)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()));
        (stream, found)
    });
    futures::future::join_all(asked).await
}

fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// Sleeps; true if shutdown began meanwhile.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => shutdown.is_cancelled(),
        _ = shutdown.cancelled() => true,
    }
}
