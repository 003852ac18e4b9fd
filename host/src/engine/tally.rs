//! Answers counted without locks: how many, how many failed, and how long
//! they took in coarse buckets. A canary's sides keep one each (taken and
//! sent to Redis every second: `deploy::canary`); every version keeps one
//! of the requests it served (read by the console).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets: upper bounds in milliseconds, the last open-ended.
pub const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, u64::MAX];

/// Answers counted without locks (a canary's side, or a version's requests).
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

    /// What was counted so far, left as it is.
    pub fn read(&self) -> Counts {
        Counts {
            answers: self.answers.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
        }
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
