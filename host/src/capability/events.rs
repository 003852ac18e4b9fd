//! The events capability (`wharf:plugin/events`): publishing to streams now
//! or later.
//!
//! A delayed event waits in a sorted set beside its stream (same hash slot),
//! scored by its due time. `DelayedMover` moves due entries into the stream
//! with one Lua script, so each moves exactly once even with several hosts,
//! and because the data is in Redis it survives a host restart. Due times
//! are on Redis's clock (see `storage::scripts`), so a host whose clock is off
//! neither hurries nor holds back another's events.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::capability::kv::bounded;
use crate::engine::bindings::wharf::plugin::events;
use crate::engine::bindings::{CapError, CapFailure};
use crate::engine::runtime::{HostState, Runtime};
use crate::storage::scripts::{MOVE_DUE, PUBLISH_AFTER};
use crate::storage::{delayed_key, stream_key};

/// Entries moved per script run: bounds the time one run blocks Redis.
const MOVE_BATCH: usize = 200;

impl HostState {
    /// One publish from the component's budget (`events.publish` and
    /// `publish-after`; an outbox write is a kv write and is not counted).
    fn take_publish(&self) -> Result<(), CapError> {
        if self.component.publish_budget.try_take() {
            return Ok(());
        }
        let why = format!("{} publishes faster than limits.publishes_per_second", self.component.name);
        Err(self.refuse("publish", why))
    }

    /// The manifest's `publishes`, which its grants (if any) already cover,
    /// and a payload within `limits.event_bytes`.
    pub(crate) fn check_publish(&self, stream: &str, payload: &[u8]) -> Result<(), CapError> {
        let limit = self.rt.limits.event_bytes;
        if payload.len() > limit {
            return Err(CapError::Invalid(format!(
                "the payload has {} bytes; at most {limit} are allowed",
                payload.len()
            )));
        }
        if self.component.manifest.publishes.iter().any(|s| s == stream) {
            Ok(())
        } else {
            let why = format!("{} may not publish to {stream}: not in its manifest's publishes", self.component.name);
            Err(self.refuse("publish", why))
        }
    }
}

/// Appends one event to `stream`, tagged with the component that sent it and
/// the request it belongs to.
pub async fn publish(
    rt: &Runtime,
    origin: &str,
    request_id: Option<&str>,
    stream: &str,
    payload: &[u8],
) -> Result<String, CapError> {
    let mut conn = rt.redis.conn();
    let mut cmd = redis::cmd("XADD");
    append_args(&mut cmd, stream, origin, request_id, payload);
    bounded(rt, cmd.query_async::<String>(&mut conn)).await
}

/// The arguments of the `XADD` that appends one event: the entry's fields
/// are what every consumer reads (`MOVE_DUE` writes the same ones in Lua).
pub(crate) fn append_args(cmd: &mut redis::Cmd, stream: &str, origin: &str, request_id: Option<&str>, payload: &[u8]) {
    cmd.arg(stream_key(stream)).arg("*").arg("payload").arg(payload).arg("origin").arg(origin);
    if let Some(id) = request_id {
        cmd.arg("request_id").arg(id);
    }
}

impl events::Host for HostState {
    async fn publish(&mut self, stream: String, payload: Vec<u8>) -> Result<String, CapFailure> {
        self.check_publish(&stream, &payload).and_then(|()| self.take_publish())?;
        Ok(publish(&self.rt, &self.component.name, self.request_id.as_deref(), &stream, &payload).await?)
    }

    async fn publish_after(&mut self, stream: String, payload: Vec<u8>, delay_ms: u64) -> Result<(), CapFailure> {
        self.check_publish(&stream, &payload).and_then(|()| self.take_publish())?;
        if delay_ms == 0 {
            let request_id = self.request_id.as_deref();
            publish(&self.rt, &self.component.name, request_id, &stream, &payload).await?;
            return Ok(());
        }
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut member = Vec::with_capacity(payload.len() + 100);
        match &self.request_id {
            Some(id) => member.extend_from_slice(format!("r:{unique}\n{}\n{id}\n", self.component.name).as_bytes()),
            None => member.extend_from_slice(format!("{unique}\n{}\n", self.component.name).as_bytes()),
        }
        member.extend_from_slice(&payload);
        let mut conn = self.rt.redis.conn();
        let mut inv = PUBLISH_AFTER.key(delayed_key(&stream));
        inv.arg(delay_ms).arg(member);
        bounded(&self.rt, inv.invoke_async::<i64>(&mut conn)).await?;
        Ok(())
    }
}

/// Moves due delayed events into their streams, for every stream a loaded
/// component publishes to, until shutdown.
pub async fn run_delayed_mover(rt: Arc<Runtime>, poll: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let table = rt.registry.snapshot();
        let mut streams: Vec<&str> =
            table.components.values().flat_map(|c| c.manifest.publishes.iter().map(String::as_str)).collect();
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            loop {
                let mut conn = rt.redis.conn();
                let mut inv = MOVE_DUE.key(delayed_key(stream));
                inv.key(stream_key(stream)).arg(MOVE_BATCH);
                match tokio::time::timeout(rt.redis.timeout, inv.invoke_async::<usize>(&mut conn)).await {
                    Ok(Ok(n)) if n == MOVE_BATCH => continue,
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(stream, error = %e, "moving delayed events failed; will retry");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(stream, "moving delayed events timed out; will retry");
                        break;
                    }
                }
            }
        }
    }
}
