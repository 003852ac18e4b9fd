//! How far the event pipeline is behind, and when the front door makes
//! writers wait.
//!
//! Events run behind requests (`background`): under a load the pipeline
//! cannot settle, events pile up in the streams and the time from an
//! order's `201` to its completion grows without bound. Past
//! `limits.max_backlog` events waiting (delivered and not yet acknowledged,
//! or not yet delivered, over the groups this host's components read), a
//! write (any method but GET, HEAD and OPTIONS) to a component that
//! publishes waits at the door (`Backlog::admit`) until the backlog is back
//! under the bound, for at most `limits.backlog_wait_ms`. Waiting costs a
//! parked future, not CPU, so the pipeline gets the machine and a client
//! that sends again at once (most do) is slowed to the rate orders settle.
//! A write still waiting at the end is answered `503` with `Retry-After`:
//! nothing it sent was accepted, and the backlog, with the completion time,
//! stays bounded. Reads are never held back for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::runtime::Runtime;
use crate::streams::groups;

/// The events waiting, as last measured, against the bound.
pub struct Backlog {
    waiting: AtomicU64,
    /// 0: no bound.
    limit: u64,
    /// Woken by each measure under the bound: the writers waiting go in.
    room: Notify,
}

impl Backlog {
    pub fn new(limit: u64) -> Arc<Backlog> {
        Arc::new(Backlog { waiting: AtomicU64::new(0), limit, room: Notify::new() })
    }

    /// Lets a write in once the backlog is under the bound, waiting for at
    /// most `wait`; `Err(waiting)` if it is still over by then. Everyone
    /// waiting goes in at the same measure: with the measure every 25 ms,
    /// the bound is passed by at most what arrives in that time.
    pub async fn admit(&self, wait: Duration) -> Result<(), u64> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a measure in between still wakes us.
            let room = self.room.notified();
            if self.over().is_none() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return self.over().map_or(Ok(()), Err);
            }
        }
    }

    fn record(&self, waiting: u64) {
        self.waiting.store(waiting, Ordering::Relaxed);
        if self.over().is_none() {
            self.room.notify_waiters();
        }
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The events waiting when they are past the bound; writers wait then.
    pub fn over(&self) -> Option<u64> {
        let waiting = self.waiting();
        (self.limit > 0 && waiting > self.limit).then_some(waiting)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Measures the backlog every `poll` until `stop`: `XINFO GROUPS` of each
/// stream a loaded component reads (one round trip per stream), its own
/// groups' lag plus pending. Each group counts: an event three groups read
/// is three events of work. A stream Redis cannot tell the lag of (after a
/// deletion) counts its pending entries only. On the gateway's runtime:
/// the measure must stay current while the background runtime is busiest.
pub async fn run(rt: Arc<Runtime>, backlog: Arc<Backlog>, poll: Duration, stop: CancellationToken) {
    if backlog.limit == 0 {
        return;
    }
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Each stream's last figure.
    let mut last: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let read = rt.registry.snapshot().read();
        let mut conn = rt.redis.conn();
        let mut streams: Vec<&str> = read.iter().map(|(s, _)| s.as_str()).collect();
        streams.dedup();
        for stream in &streams {
            // A stream Redis does not answer for keeps its last figure:
            // neither an empty pipeline nor a frozen total.
            if let Ok(Ok(found)) = tokio::time::timeout(rt.redis.timeout, groups(&mut conn, stream)).await {
                let n: u64 = found
                    .iter()
                    .filter(|g| read.iter().any(|(s, group)| s == stream && *group == g.name))
                    .map(|g| g.lag.unwrap_or(0) + g.pending)
                    .sum();
                last.insert(stream.to_string(), n);
            }
        }
        last.retain(|s, _| streams.contains(&s.as_str()));
        let waiting = last.values().sum();
        backlog.record(waiting);
        rt.metrics.event_backlog.set(waiting as i64);
    }
}
