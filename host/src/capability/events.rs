//! The events capability (`wharf:plugin/events`): publishing to streams now
//! or later.
//!
//! An event goes to one partition of its stream (`storage::stream_partition`):
//! the one its key picks, or, without a key, the next in turn.
//! A delayed event waits in a sorted set beside its partition (same hash slot),
//! scored by its due time. `DelayedMover` moves due entries into the stream
//! with one Lua script, so each moves exactly once even with several hosts,
//! and because the data is in Redis it survives a host restart. Due times
//! are on Redis's clock (see `storage::scripts`), so a host whose clock is off
//! neither hurries nor holds back another's events.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{HasSelf, Linker};

use crate::capability::backend::Backend;
use crate::capability::budget::Budget;
use crate::capability::refusals::Refusals;
use crate::config::Grants;
use crate::engine::bindings::wharf::plugin::events;
use crate::engine::bindings::{CapError, CapFailure, Manifest};
use crate::storage::scripts::{MOVE_DUE, PUBLISH_AFTER};
use crate::storage::stream_partition::{Part, for_route, route};
use crate::telemetry::trail::Trail;

/// Entries moved per script run: bounds the time one run blocks Redis.
const MOVE_BATCH: usize = 200;

/// The events unit of one host.
pub struct Events {
    backend: Backend,
    /// Largest payload, `limits.event_bytes`.
    event_bytes: usize,
    /// `limits.publishes_per_second`, per version.
    publishes_per_second: u32,
    /// The partition the next keyless event goes to (modulo the count).
    turn: AtomicUsize,
}

/// What one component version may publish: the streams its manifest
/// declares (which its grants, if any, cover), from its own budget.
pub struct EventsGrant {
    events: Arc<Events>,
    origin: String,
    publishes: Vec<String>,
    budget: Budget,
    refusals: Arc<Refusals>,
}

/// One call's events context: the grant, and the request (and span) the
/// events belong to.
pub struct EventsCtx {
    grant: Arc<EventsGrant>,
    trail: Trail,
    /// Redis answered `unavailable` during this call (`converts_errors`).
    pub(crate) redis_unavailable: bool,
}

impl Events {
    pub fn new(backend: Backend, event_bytes: usize, publishes_per_second: u32) -> Arc<Events> {
        Arc::new(Events { backend, event_bytes, publishes_per_second, turn: AtomicUsize::new(0) })
    }

    /// A loaded version's grant, from its checked manifest.
    pub fn grant(self: &Arc<Self>, manifest: &Manifest, refusals: Arc<Refusals>) -> Arc<EventsGrant> {
        Arc::new(EventsGrant {
            events: self.clone(),
            origin: manifest.name.clone(),
            publishes: manifest.publishes.clone(),
            budget: Budget::new(self.publishes_per_second),
            refusals,
        })
    }
}

/// Puts `events` in `linker`; `get` finds the call's context.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut EventsCtx,
) -> wasmtime::Result<()> {
    events::add_to_linker::<T, HasSelf<EventsCtx>>(linker, get)
}

/// The manifest must ask for no stream its grants leave out: better a
/// refused load (or swap) than a component that silently half works.
/// Under grants a consumer group is named after its component (`<name>` or
/// `<name>-...`): a component granted a stream cannot join another's group
/// and take its events.
pub fn check_grants(m: &Manifest, g: &Grants) -> Result<()> {
    let name = &m.name;
    for s in &m.subscriptions {
        if !g.consume.contains(&s.stream) {
            bail!("{name} consumes stream {}, which [components.{name}.grants] consume does not grant", s.stream);
        }
        let own = s.group == *name || s.group.strip_prefix(name.as_str()).is_some_and(|rest| rest.starts_with('-'));
        if !own {
            bail!(
                "{name} reads {} in group {}: under grants its groups are named {name} or {name}-...",
                s.stream,
                s.group
            );
        }
    }
    for s in &m.publishes {
        if !g.publish.contains(s) {
            bail!("{name} publishes to stream {s}, which [components.{name}.grants] publish does not grant");
        }
    }
    Ok(())
}

impl EventsGrant {
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// One publish from the component's budget (`events.publish` and
    /// `publish-after`; an outbox write is a kv write and is not counted).
    fn take_publish(&self) -> Result<(), CapError> {
        if self.budget.try_take() {
            return Ok(());
        }
        let why = format!("{} publishes faster than limits.publishes_per_second", self.origin);
        Err(self.refusals.refuse("publish", why))
    }

    /// A stream of the manifest's `publishes`, and a payload within
    /// `limits.event_bytes`.
    pub(crate) fn check_publish(&self, stream: &str, payload: &[u8]) -> Result<(), CapError> {
        let limit = self.events.event_bytes;
        if payload.len() > limit {
            return Err(CapError::Invalid(format!(
                "the payload has {} bytes; at most {limit} are allowed",
                payload.len()
            )));
        }
        if self.publishes.iter().any(|s| s == stream) {
            Ok(())
        } else {
            let why = format!("{} may not publish to {stream}: not in its manifest's publishes", self.origin);
            Err(self.refusals.refuse("publish", why))
        }
    }
}

impl EventsCtx {
    pub fn new(grant: &Arc<EventsGrant>, trail: Trail) -> EventsCtx {
        EventsCtx { grant: grant.clone(), trail, redis_unavailable: false }
    }

    /// The partition of `stream` an event with `key` (or none) goes to.
    async fn part(&self, stream: &str, key: Option<&str>) -> Result<Part, CapError> {
        let events = &self.grant.events;
        let backend = &events.backend;
        let parts = backend.bounded(backend.redis.stream_parts(stream)).await?;
        let n = parts.len();
        let part = match key {
            Some(key) => for_route(&parts, route(key)),
            None if n == 1 => &parts[0],
            None => &parts[events.turn.fetch_add(1, Ordering::Relaxed) % n],
        };
        Ok(part.clone())
    }

    async fn publish_now(&self, stream: &str, key: Option<&str>, payload: &[u8]) -> Result<String, CapError> {
        let g = &self.grant;
        let part = self.part(stream, key).await?;
        let mut cmd = redis::cmd("XADD");
        let split = key.map(route);
        append_args(&mut cmd, &part.key(), &g.origin, &self.trail, payload, split);
        let backend = &g.events.backend;
        let id = backend.bounded(cmd.query_async::<String>(&mut backend.conn())).await?;
        Ok(part.qualify(&id))
    }

    async fn publish_later(
        &self,
        stream: &str,
        key: Option<&str>,
        payload: &[u8],
        delay_ms: u64,
    ) -> Result<(), CapError> {
        self.grant.check_publish(stream, payload).and_then(|()| self.grant.take_publish())?;
        if delay_ms == 0 {
            self.publish_now(stream, key, payload).await?;
            return Ok(());
        }
        let part = self.part(stream, key).await?;
        let origin = &self.grant.origin;
        let mut unique = uuid::Uuid::new_v4().simple().to_string();
        if let Some(key) = key {
            unique.push_str(&format!("@{}", route(key)));
        }
        let mut member = Vec::with_capacity(payload.len() + 100);
        if self.trail.is_empty() {
            member.extend_from_slice(format!("{unique}\n{origin}\n").as_bytes());
        } else {
            member.extend_from_slice(format!("r:{unique}\n{origin}\n{}\n", self.trail.line()).as_bytes());
        }
        member.extend_from_slice(payload);
        let backend = &self.grant.events.backend;
        let mut inv = PUBLISH_AFTER.key(part.delayed());
        inv.arg(delay_ms).arg(member);
        backend.bounded(inv.invoke_async::<i64>(&mut backend.conn())).await?;
        Ok(())
    }
}

crate::capability::converts_errors!(EventsCtx, notes_redis_outages);

/// The arguments of the `XADD` that appends one event to the stream (a
/// partition's) at `key`.
pub(crate) fn append_args(
    cmd: &mut redis::Cmd,
    key: &str,
    origin: &str,
    trail: &Trail,
    payload: &[u8],
    split: Option<u16>,
) {
    cmd.arg(key).arg("*");
    entry_fields(origin, trail, payload, split, |a| {
        cmd.arg(a);
    });
}

/// The fields and values of one event's stream entry, in order, each
/// handed to `push`: what every consumer reads (`MOVE_DUE` writes the same
/// ones in Lua). `split`: the route of the key it was published with, by
/// which a canary takes its share of events.
pub(crate) fn entry_fields(
    origin: &str,
    trail: &Trail,
    payload: &[u8],
    split: Option<u16>,
    mut push: impl FnMut(&[u8]),
) {
    push(b"payload");
    push(payload);
    push(b"origin");
    push(origin.as_bytes());
    trail.fields(&mut push);
    if let Some(split) = split {
        push(b"split");
        push(split.to_string().as_bytes());
    }
}

impl events::Host for EventsCtx {
    async fn publish(&mut self, stream: String, payload: Vec<u8>) -> Result<String, CapFailure> {
        self.grant.check_publish(&stream, &payload).and_then(|()| self.grant.take_publish())?;
        Ok(self.publish_now(&stream, None, &payload).await?)
    }

    async fn publish_after(&mut self, stream: String, payload: Vec<u8>, delay_ms: u64) -> Result<(), CapFailure> {
        Ok(self.publish_later(&stream, None, &payload, delay_ms).await?)
    }

    async fn publish_keyed(&mut self, stream: String, key: String, payload: Vec<u8>) -> Result<String, CapFailure> {
        self.grant.check_publish(&stream, &payload).and_then(|()| self.grant.take_publish())?;
        Ok(self.publish_now(&stream, Some(&key), &payload).await?)
    }

    async fn publish_after_keyed(
        &mut self,
        stream: String,
        key: String,
        payload: Vec<u8>,
        delay_ms: u64,
    ) -> Result<(), CapFailure> {
        Ok(self.publish_later(&stream, Some(&key), &payload, delay_ms).await?)
    }
}

/// Moves due delayed events into their streams, for every stream in
/// `streams()` (what the loaded components publish to), until shutdown.
pub async fn run_delayed_mover(
    events: Arc<Events>,
    streams: impl Fn() -> Vec<String>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let redis = &events.backend.redis;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        for stream in streams() {
            // A stream whose partition count Redis did not give: next poll.
            let Ok(parts) = redis.stream_parts(&stream).await else { continue };
            for part in parts.iter() {
                loop {
                    let mut conn = redis.conn();
                    let mut inv = MOVE_DUE.key(part.delayed());
                    inv.key(part.key()).arg(MOVE_BATCH);
                    match tokio::time::timeout(redis.timeout, inv.invoke_async::<usize>(&mut conn)).await {
                        Ok(Ok(n)) if n == MOVE_BATCH => continue,
                        Ok(Ok(_)) => break,
                        Ok(Err(e)) => {
                            tracing::warn!(%stream, partition = part.index, error = %e, "moving delayed events failed; will retry");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!(%stream, partition = part.index, "moving delayed events timed out; will retry");
                            break;
                        }
                    }
                }
            }
        }
    }
}
