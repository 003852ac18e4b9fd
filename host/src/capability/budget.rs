//! A component's budget for a capability it could flood the host with (log
//! lines, published events): a token bucket per loaded version, in memory.
//!
//! Per host: each host protects its own log and its own Redis connection,
//! and a bucket in Redis would cost a round trip per log line.

use std::sync::Mutex;
use std::time::Instant;

/// `rate` per second, up to `rate` at once (one second's worth). A rate of
/// 0 means no limit.
pub struct Budget {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

/// The pure step: `tokens` after `elapsed_s` seconds at `rate`, capped at
/// `burst`, and whether one could be taken.
pub fn take(tokens: f64, elapsed_s: f64, rate: f64, burst: f64) -> (f64, bool) {
    let tokens = (tokens + elapsed_s * rate).min(burst);
    if tokens >= 1.0 { (tokens - 1.0, true) } else { (tokens, false) }
}

impl Budget {
    pub fn new(rate: u32) -> Budget {
        Budget { rate: rate as f64, burst: rate as f64, state: Mutex::new((rate as f64, Instant::now())) }
    }

    /// One per `period`, none saved up: for a warning logged at most that often.
    pub fn once_per(period: std::time::Duration) -> Budget {
        Budget { rate: 1.0 / period.as_secs_f64(), burst: 1.0, state: Mutex::new((1.0, Instant::now())) }
    }

    /// Takes one; false when the budget is spent.
    pub fn try_take(&self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, ok) = take(state.0, now.duration_since(state.1).as_secs_f64(), self.rate, self.burst);
        *state = (tokens, now);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        assert_eq!(take(0.0, 0.0, 10.0, 10.0), (0.0, false));
        assert_eq!(take(0.0, 0.1, 10.0, 10.0), (0.0, true));
        assert_eq!(take(10.0, 60.0, 10.0, 10.0), (9.0, true), "capped at the burst");
        let b = Budget::new(3);
        assert!((0..3).all(|_| b.try_take()));
        assert!(!b.try_take());
        assert!((0..100).all(|_| Budget::new(0).try_take()), "0: no limit");
        let b = Budget::once_per(std::time::Duration::from_secs(60));
        assert!(b.try_take());
        assert!(!b.try_take());
    }
}
