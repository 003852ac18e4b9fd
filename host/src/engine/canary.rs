//! A second version of a component beside the live one (a canary): which
//! traffic it takes, and what each side answered. The deployer decides
//! what becomes of it (`deploy::canary`); the engine only serves and counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::engine::version::ComponentVersion;

/// Latency buckets: upper bounds in milliseconds, the last open-ended.
pub const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, u64::MAX];

/// A canary running on this host: its version, its share (percent), and
/// what each side answered since the last flush.
pub struct Canary {
    pub version: Arc<ComponentVersion>,
    pub share: u32,
    pub stable: Tally,
    pub canary: Tally,
}

impl Canary {
    pub fn new(version: Arc<ComponentVersion>, share: u32) -> Canary {
        Canary { version, share, stable: Tally::default(), canary: Tally::default() }
    }

    /// Whether the traffic whose split text is `key` goes to the canary.
    pub fn takes(&self, key: &[u8]) -> bool {
        takes(self.share, key)
    }
}

/// The split: the same key always lands on the same side.
pub fn takes(share: u32, key: &[u8]) -> bool {
    // FNV-1a: stable across hosts and builds, which `DefaultHasher` is not.
    let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
    (hash % 100) < share as u64
}

/// One side's answers since the last flush, counted without locks.
#[derive(Default)]
pub struct Tally {
    answers: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS_MS.len()],
}

impl Tally {
    pub fn observe(&self, ok: bool, took: Duration) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = took.as_millis() as u64;
        let at = BUCKETS_MS.iter().position(|b| ms < *b).unwrap_or(BUCKETS_MS.len() - 1);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted, reset to zero: each count goes to Redis once.
    pub fn take(&self) -> Counts {
        Counts {
            answers: self.answers.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].swap(0, Ordering::Relaxed)),
        }
    }
}

/// One side's answers, summed over hosts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counts {
    pub answers: u64,
    pub errors: u64,
    pub buckets: [u64; BUCKETS_MS.len()],
}

impl Counts {
    pub fn is_empty(&self) -> bool {
        self.answers == 0
    }

    pub fn error_rate(&self) -> f64 {
        if self.answers == 0 { 0.0 } else { self.errors as f64 / self.answers as f64 }
    }

    /// The bucket bound under which 99% of answers fell (ms; 0 with none).
    pub fn p99_ms(&self) -> u64 {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = total - total / 100;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return BUCKETS_MS[i].min(BUCKETS_MS[BUCKETS_MS.len() - 2] * 2);
            }
        }
        0
    }

    /// As `HINCRBY` fields, each prefixed (`s:` the current side, `c:` the canary).
    pub fn fields(&self, side: &str) -> Vec<(String, u64)> {
        let mut out = vec![(format!("{side}:answers"), self.answers), (format!("{side}:errors"), self.errors)];
        out.extend(self.buckets.iter().enumerate().map(|(i, n)| (format!("{side}:b{i}"), *n)));
        out.retain(|(_, n)| *n > 0);
        out
    }

    /// Read back from a hash written by `fields`.
    pub fn from_fields(side: &str, get: impl Fn(&str) -> u64) -> Counts {
        Counts {
            answers: get(&format!("{side}:answers")),
            errors: get(&format!("{side}:errors")),
            buckets: std::array::from_fn(|i| get(&format!("{side}:b{i}"))),
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "{} errors in {} answers ({:.1}%), p99 under {} ms",
            self.errors,
            self.answers,
            self.error_rate() * 100.0,
            self.p99_ms()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stable_and_near_its_share() {
        assert_eq!(takes(10, b"order-1"), takes(10, b"order-1"));
        let taken = (0..10_000).filter(|i| takes(10, format!("order-{i}").as_bytes())).count();
        assert!((800..1200).contains(&taken), "{taken} of 10000 at 10%");
        assert!(!(0..1000).any(|i| takes(0, format!("{i}").as_bytes())));
    }

    #[test]
    fn counts_survive_the_trip_through_redis_fields() {
        let t = Tally::default();
        for i in 0..50 {
            t.observe(i >= 5, Duration::from_millis(12));
        }
        let c = t.take();
        let fields: std::collections::HashMap<String, u64> = c.fields("c").into_iter().collect();
        assert_eq!(Counts::from_fields("c", |k| fields.get(k).copied().unwrap_or(0)), c);
        assert_eq!((c.p99_ms(), c.errors, t.take().answers), (20, 5, 0));
    }
}
