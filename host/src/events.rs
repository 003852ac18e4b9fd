//! The events capability (`wharf:plugin/events`): publishing to streams now
//! or later.
//!
//! A delayed event waits in a sorted set beside its stream (same hash slot),
//! scored by its due time. `DelayedMover` moves due entries into the stream
//! with one Lua script, so each moves exactly once even with several hosts,
//! and because the data is in Redis it survives a host restart. Due times
//! are on Redis's clock (`store::NOW_MS_LUA`), so a host whose clock is off
//! neither hurries nor holds back another's events.

use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;
use tokio::sync::watch;

use crate::kv::bounded;
use crate::runtime::{CapError, HostState, Runtime, wharf::plugin::events};
use crate::store::{NOW_MS_LUA, delayed_key, stream_key};

/// Entries moved per script run: bounds the time one run blocks Redis.
const MOVE_BATCH: usize = 200;

// Members are `<unique id>\n<origin>\n<payload>`; the id keeps equal payloads
// distinct. A member whose id starts with `r:` carries a request id line too:
// `r:<unique id>\n<origin>\n<request id>\n<payload>`.
static MOVE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{NOW_MS_LUA}
          local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
          for _, m in ipairs(due) do
            local a = string.find(m, '\n', 1, true)
            local b = a and string.find(m, '\n', a + 1, true)
            local c = b and string.sub(m, 1, 2) == 'r:' and string.find(m, '\n', b + 1, true)
            if c then
              redis.call('XADD', KEYS[2], '*', 'payload', string.sub(m, c + 1), 'origin', string.sub(m, a + 1, b - 1),
                'request_id', string.sub(m, b + 1, c - 1))
            elseif b and string.sub(m, 1, 2) ~= 'r:' then
              redis.call('XADD', KEYS[2], '*', 'payload', string.sub(m, b + 1), 'origin', string.sub(m, a + 1, b - 1))
            end
            -- Moved, or malformed (not written by a host): either way it must
            -- not block the entries behind it.
            redis.call('ZREM', KEYS[1], m)
          end
          return #due",
    ))
});

/// Adds ARGV[2] to the delayed set KEYS[1], due ARGV[1] ms from now.
static SCHEDULE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!("{NOW_MS_LUA} return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])"))
});

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
    async fn publish(&mut self, stream: String, payload: Vec<u8>) -> wasmtime::Result<Result<String, CapError>> {
        if let Err(e) = self.check_publish(&stream, &payload).and_then(|()| self.take_publish()) {
            return Ok(Err(e));
        }
        Ok(publish(&self.rt, &self.component.name, self.request_id.as_deref(), &stream, &payload).await)
    }

    async fn publish_after(
        &mut self,
        stream: String,
        payload: Vec<u8>,
        delay_ms: u64,
    ) -> wasmtime::Result<Result<(), CapError>> {
        if let Err(e) = self.check_publish(&stream, &payload).and_then(|()| self.take_publish()) {
            return Ok(Err(e));
        }
        if delay_ms == 0 {
            let request_id = self.request_id.as_deref();
            return Ok(publish(&self.rt, &self.component.name, request_id, &stream, &payload).await.map(|_| ()));
        }
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut member = Vec::with_capacity(payload.len() + 100);
        match &self.request_id {
            Some(id) => member.extend_from_slice(format!("r:{unique}\n{}\n{id}\n", self.component.name).as_bytes()),
            None => member.extend_from_slice(format!("{unique}\n{}\n", self.component.name).as_bytes()),
        }
        member.extend_from_slice(&payload);
        let mut conn = self.rt.redis.conn();
        let mut inv = SCHEDULE.key(delayed_key(&stream));
        inv.arg(delay_ms).arg(member);
        Ok(bounded(&self.rt, inv.invoke_async::<i64>(&mut conn)).await.map(|_| ()))
    }
}

/// Moves due delayed events into their streams, for every stream a loaded
/// component publishes to, until shutdown.
pub async fn run_delayed_mover(rt: Arc<Runtime>, poll: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
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
