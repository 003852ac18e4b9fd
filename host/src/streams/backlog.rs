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
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::engine::runtime::Runtime;
use crate::streams::groups_read;

/// The events waiting, as last measured, against the bound.
pub struct Backlog {
    waiting: AtomicU64,
    /// 0: no bound.
    limit: u64,
    /// Writes that may still go in before the next measure: the room under
    /// the bound at the last one. Writers waiting when the backlog falls go
    /// in a room's worth at a time, not all at once.
    allowance: AtomicI64,
    /// Woken by each measure under the bound: the writers waiting try again.
    room: Notify,
    /// A writer found no room since the last measure: measure again soon.
    held: AtomicBool,
}

impl Backlog {
    pub fn new(limit: u64) -> Arc<Backlog> {
        let allowance = AtomicI64::new(limit.min(i64::MAX as u64) as i64);
        Arc::new(Backlog {
            waiting: AtomicU64::new(0),
            limit,
            allowance,
            room: Notify::new(),
            held: AtomicBool::new(false),
        })
    }

    /// Lets a write in once there is room under the bound, waiting for at
    /// most `wait`; `Err(waiting)` if there is none by then.
    pub async fn admit(&self, wait: Duration) -> Result<(), u64> {
        if self.limit == 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the try, so a measure in between still wakes us.
            let room = self.room.notified();
            if self.take_room() {
                return Ok(());
            }
            self.held.store(true, Ordering::Relaxed);
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return if self.take_room() { Ok(()) } else { Err(self.waiting()) };
            }
        }
    }

    fn take_room(&self) -> bool {
        self.allowance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 0).then_some(n - 1)).is_ok()
    }

    fn record(&self, waiting: u64) {
        self.waiting.store(waiting, Ordering::Relaxed);
        let room = self.limit.saturating_sub(waiting).min(i64::MAX as u64) as i64;
        self.allowance.store(room, Ordering::Release);
        if room > 0 {
            self.room.notify_waiters();
        }
    }

    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// How often the backlog is measured while it leaves room.
const POLL: Duration = Duration::from_millis(25);
/// ...and while it is past half its bound, or a writer found no room:
/// writers then go in only at a measure, and a measure every 25 ms let the
/// pipeline run dry between two (a bound of 100 settled 0.84x the orders of
/// 200; measured every 5 ms, 1.09x that: `docs/PERFORMANCE.md`, session 27).
const POLL_NEAR_BOUND: Duration = Duration::from_millis(5);

/// When to measure again after finding `waiting` events against `limit`;
/// `held`: a writer found no room since the last measure.
fn next_poll(waiting: u64, limit: u64, held: bool) -> Duration {
    if held || waiting.saturating_mul(2) >= limit { POLL_NEAR_BOUND } else { POLL }
}

/// Measures the backlog until `stop`, every `POLL` or, near the bound,
/// every `POLL_NEAR_BOUND`: `XINFO GROUPS` of each stream partition a
/// loaded component reads (sent at once, so they share round trips), its
/// own groups' lag plus pending. Each group counts: an event three groups
/// read is three events of work. A stream Redis cannot tell the lag of
/// (after a deletion) counts its pending entries only. On the gateway's
/// runtime: the measure must stay current while the background runtime is
/// busiest.
pub async fn run(rt: Arc<Runtime>, backlog: Arc<Backlog>, stop: CancellationToken) {
    if backlog.limit == 0 {
        return;
    }
    // Each stream's last figure.
    let mut last: HashMap<String, u64> = HashMap::new();
    loop {
        let started = tokio::time::Instant::now();
        let read = rt.registry.snapshot().read();
        for (stream, found) in groups_read(&rt.redis, &read).await {
            // A stream Redis does not answer for, on any partition, keeps its
            // last figure: neither an empty pipeline nor a frozen total.
            let measured = found.and_then(|parts| {
                let per_part = parts.into_iter().map(|(_, groups)| -> redis::RedisResult<u64> {
                    Ok(groups?.iter().map(|g| g.lag.unwrap_or(0) + g.pending).sum())
                });
                per_part.sum::<redis::RedisResult<u64>>()
            });
            if let Ok(n) = measured {
                last.insert(stream.to_string(), n);
            }
        }
        last.retain(|s, _| read.iter().any(|(stream, _)| stream == s));
        let waiting = last.values().sum();
        backlog.record(waiting);
        rt.metrics.event_backlog.set(waiting as i64);
        let poll = next_poll(waiting, backlog.limit, backlog.held.swap(false, Ordering::Relaxed));
        tokio::select! {
            _ = tokio::time::sleep_until(started + poll) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::ZERO;

    #[tokio::test(start_paused = true)]
    async fn writes_go_in_a_room_at_a_time_and_wait_for_the_next_measure() {
        let b = Backlog::new(3);
        for _ in 0..3 {
            assert_eq!(b.admit(NOW).await, Ok(()));
        }
        assert_eq!(b.admit(NOW).await, Err(0), "the room of the start is used up");
        assert!(b.held.swap(false, Ordering::Relaxed), "a writer found no room: the next measure comes soon");
        b.record(5);
        assert_eq!(b.admit(Duration::from_millis(50)).await, Err(5), "over the bound: no room");
        let started = tokio::time::Instant::now();
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.admit(Duration::from_secs(1)).await })
        };
        tokio::task::yield_now().await;
        b.record(2);
        assert_eq!(waiting.await.unwrap(), Ok(()), "a measure under the bound lets the waiting writer in");
        assert!(started.elapsed() < Duration::from_secs(1), "woken by the measure, not by its deadline");
        assert_eq!(b.admit(NOW).await, Err(2), "one write of room, taken");
    }

    #[test]
    fn the_backlog_is_measured_more_often_past_half_its_bound_or_with_a_writer_waiting() {
        assert_eq!(next_poll(0, 100, false), POLL);
        assert_eq!(next_poll(49, 100, false), POLL);
        assert_eq!(next_poll(50, 100, false), POLL_NEAR_BOUND);
        assert_eq!(next_poll(5_000, 100, false), POLL_NEAR_BOUND);
        assert_eq!(next_poll(u64::MAX, 100, false), POLL_NEAR_BOUND, "no overflow");
        assert_eq!(next_poll(0, 100, true), POLL_NEAR_BOUND, "a writer is waiting for room");
    }

    #[tokio::test(start_paused = true)]
    async fn no_bound_lets_every_write_in() {
        let b = Backlog::new(0);
        b.record(1_000_000);
        assert_eq!(b.admit(NOW).await, Ok(()));
    }
}
