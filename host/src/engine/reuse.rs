//! Instances kept between calls, for components whose start-up is most of
//! a call: an interpreter (CPython from componentize-py, StarlingMonkey from
//! componentize-js) sets up megabytes of heap in every fresh instance.
//!
//! Opt-in per component (`instance_reuse` in `wharf.toml`), because it
//! trades isolation for speed: a reused instance serves its calls one at a
//! time, but what one call leaves in the guest's globals the next call of
//! the same version sees. `instance_reuse_for` narrows it to requests or to
//! events (`Reuse::serves`): the other kind gets a fresh instance per call
//! and never meets a kept one. An instance that trapped or ran out of time is
//! never reused, one serves at most `instance_reuse` calls (a slow leak is
//! bounded), one whose memory passed three quarters of its limit is retired
//! before a call can run out, and a swap drops the old version's idle
//! instances with it. The Wharf SDK's heap empties between calls
//! (`wharf_sdk::rt`), so a Rust component's kept instance does not grow.
//!
//! How many run at once depends on what a fresh instance costs. An
//! interpreter's (linear memory starting past `SMALL_MEMORY`: megabytes of
//! pre-initialised heap) runs at most `MAX_INSTANCES` at once, like a worker
//! pool: a call that finds them all busy waits for one (within its
//! deadline) rather than paying a fresh instance, which would cost more than
//! the wait (an instance mostly waits on Redis). A small one (a Rust
//! component's memory starts at 128 KiB; a fresh instance costs tens of
//! microseconds) never waits: a call with no idle instance makes one, and up
//! to `MAX_SMALL_IDLE` are kept (never more than `1 / POOL_SHARE` of the
//! pool). Bounding those made writes wait at the front door while the
//! machine had CPU to spare (docs/PERFORMANCE.md).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Store;

use crate::config::{Entry, ReuseFor};
use crate::engine::instance::Instance;
use crate::engine::state::HostState;

/// Instances one reusing interpreter version runs at once, at most: each
/// holds its linear memory (tens of MiB) and a slot of the instance pool.
pub const MAX_INSTANCES: usize = 16;

/// Linear memory at instantiation below which a component's instances are
/// small (cheap to make, cheap to keep).
pub const SMALL_MEMORY: u64 = 4 << 20;

/// Idle instances a small version keeps: each holds a pool slot and the
/// few pages its calls touch.
pub const MAX_SMALL_IDLE: usize = 64;

/// At most this share of the instance pool (`limits.max_instances`) sits
/// idle in one version: an idle instance keeps its slot, and slots taken by
/// idle instances would make other components' calls answer busy.
const POOL_SHARE: usize = 8;

/// An instance between two calls.
pub struct Idle {
    pub store: Store<HostState>,
    pub instance: Instance,
    /// Calls it has served.
    pub calls: u32,
}

/// One version's idle instances.
pub struct Reuse {
    max_calls: u32,
    /// Which calls run in kept instances.
    kinds: ReuseFor,
    /// One per instance that may run at once; none for a small component.
    turns: Option<Arc<Semaphore>>,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

/// Leave to run a call in a kept instance: a turn for a bounded version.
pub type Turn = Option<OwnedSemaphorePermit>;

impl Reuse {
    /// None when `max_calls` is 0: a fresh instance per call.
    /// `initial_memory`: the component's linear memory at instantiation,
    /// if known (unknown counts as large); `pool`: the instance pool's size.
    pub fn new(max_calls: u32, initial_memory: Option<u64>, pool: usize) -> Option<Reuse> {
        let small = initial_memory.is_some_and(|m| m < SMALL_MEMORY);
        let max_idle = if small { MAX_SMALL_IDLE } else { MAX_INSTANCES };
        (max_calls > 0).then(|| Reuse {
            max_calls,
            kinds: ReuseFor::All,
            turns: (!small).then(|| Arc::new(Semaphore::new(MAX_INSTANCES))),
            max_idle: max_idle.min((pool / POOL_SHARE).max(1)),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Kept instances for `calls` only (`instance_reuse_for`).
    pub fn only_for(self, calls: ReuseFor) -> Reuse {
        Reuse { kinds: calls, ..self }
    }

    /// Whether a call of this kind runs in a kept instance.
    pub fn serves(&self, entry: Entry) -> bool {
        self.kinds.serves(entry)
    }

    /// Whether calls wait for a turn (an interpreter's version).
    pub fn bounded(&self) -> bool {
        self.turns.is_some()
    }

    /// Leave to use a kept instance, waiting until fewer than
    /// `MAX_INSTANCES` calls run if the version is bounded; the call holds
    /// the turn until it ends.
    pub async fn turn(&self) -> Turn {
        match &self.turns {
            Some(turns) => Some(turns.clone().acquire_owned().await.expect("the semaphore is never closed")),
            None => None,
        }
    }

    /// For a nested call, which must not wait: leave if it is free now.
    pub fn try_turn(&self) -> Option<Turn> {
        match &self.turns {
            Some(turns) => turns.clone().try_acquire_owned().ok().map(Some),
            None => Some(None),
        }
    }

    /// An idle instance, the most recently used first (its pages are the
    /// likeliest to be resident).
    pub fn take(&self) -> Option<Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps `idle` for the next call, unless it has served its calls or
    /// its memory is near its limit.
    pub fn give_back(&self, idle: Idle) {
        let state = idle.store.data();
        let room = Room { size: state.memory_size, limit: state.memory_bytes, refused: state.memory_refused };
        let mut waiting = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if keep(idle.calls, self.max_calls, waiting.len(), self.max_idle, room) {
            waiting.push(idle);
        }
    }
}

/// An instance's linear memory after a call.
#[derive(Clone, Copy)]
struct Room {
    size: usize,
    limit: usize,
    /// A growth was refused: the heap may be full.
    refused: bool,
}

/// Whether an instance that has served `calls` of `max_calls` goes back
/// among `idle` others, of at most `max_idle`. One refused memory, or past
/// three quarters of its limit, is retired: a heap that grows call by call
/// (a leak, or an allocator that never frees) would otherwise fail a call.
fn keep(calls: u32, max_calls: u32, idle: usize, max_idle: usize, room: Room) -> bool {
    calls < max_calls && idle < max_idle && !room.refused && room.size <= room.limit / 4 * 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_kept_until_it_has_served_its_calls() {
        let room = Room { size: 1 << 20, limit: 32 << 20, refused: false };
        assert!(keep(1, 1000, 0, 16, room));
        assert!(keep(999, 1000, 0, 16, room));
        assert!(!keep(1000, 1000, 0, 16, room));
        assert!(!keep(1, 1, 0, 16, room));
    }

    #[test]
    fn no_more_than_max_instances_wait() {
        let room = Room { size: 1 << 20, limit: 32 << 20, refused: false };
        assert!(keep(1, 1000, MAX_INSTANCES - 1, MAX_INSTANCES, room));
        assert!(!keep(1, 1000, MAX_INSTANCES, MAX_INSTANCES, room));
    }

    #[test]
    fn an_instance_near_its_memory_limit_or_refused_memory_is_retired() {
        let room = |size: usize, refused| Room { size, limit: 32 << 20, refused };
        assert!(keep(1, 1000, 0, 16, room(24 << 20, false)), "three quarters still leaves a quarter");
        assert!(!keep(1, 1000, 0, 16, room((24 << 20) + 65536, false)));
        assert!(!keep(1, 1000, 0, 16, room(1 << 20, true)), "a refused growth may have left the heap full");
    }

    const INTERPRETER: Option<u64> = Some(20 << 20);
    const RUST: Option<u64> = Some(17 * 65536);

    #[tokio::test]
    async fn a_call_past_max_instances_of_an_interpreter_waits_for_a_turn() {
        let reuse = Reuse::new(10, INTERPRETER, 1000).unwrap();
        assert!(reuse.bounded());
        let mut held = Vec::new();
        for _ in 0..MAX_INSTANCES {
            held.push(reuse.turn().await);
        }
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), reuse.turn()).await;
        assert!(waiting.is_err(), "a turn past the limit must wait");
        held.pop();
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), reuse.turn()).await;
        assert!(next.is_ok(), "an ended call gives its turn to the next");
        held.clear();
        assert!(reuse.try_turn().is_some_and(|t| t.is_some()), "a nested call takes a free turn");
    }

    #[tokio::test]
    async fn a_small_component_never_waits_and_keeps_more_idle() {
        let reuse = Reuse::new(10, RUST, 1000).unwrap();
        assert!(!reuse.bounded());
        for _ in 0..MAX_INSTANCES * 4 {
            let turn = tokio::time::timeout(std::time::Duration::from_millis(20), reuse.turn()).await;
            assert!(turn.is_ok_and(|t| t.is_none()), "no turn to wait for");
        }
        assert!(reuse.try_turn().is_some(), "a nested call always may");
        assert_eq!(reuse.max_idle, MAX_SMALL_IDLE);
        // A size wasmtime cannot tell counts as large.
        assert!(Reuse::new(10, None, 1000).unwrap().bounded());
    }

    #[test]
    fn idle_instances_never_hold_more_than_an_eighth_of_the_pool() {
        // The smallest pool (`limits.max_instances` is at least 64).
        assert_eq!(Reuse::new(10, RUST, 64).unwrap().max_idle, 8);
        assert_eq!(Reuse::new(10, INTERPRETER, 64).unwrap().max_idle, 8);
        assert_eq!(Reuse::new(10, RUST, 384).unwrap().max_idle, 48);
        assert_eq!(Reuse::new(10, INTERPRETER, 384).unwrap().max_idle, MAX_INSTANCES);
        assert_eq!(Reuse::new(10, RUST, 3).unwrap().max_idle, 1);
    }

    #[test]
    fn reuse_for_one_kind_of_call_leaves_the_other_to_fresh_instances() {
        let all = Reuse::new(10, RUST, 1000).unwrap();
        assert!(all.serves(Entry::Request) && all.serves(Entry::Event), "both by default");
        let requests = Reuse::new(10, RUST, 1000).unwrap().only_for(ReuseFor::Requests);
        assert!(requests.serves(Entry::Request) && !requests.serves(Entry::Event));
        let events = Reuse::new(10, RUST, 1000).unwrap().only_for(ReuseFor::Events);
        assert!(!events.serves(Entry::Request) && events.serves(Entry::Event));
    }

    #[test]
    fn zero_calls_means_a_fresh_instance_each_time() {
        assert!(Reuse::new(0, RUST, 1000).is_none());
        assert!(Reuse::new(1, RUST, 1000).is_some());
    }
}
