//! Throttling failed admin logins: a client that keeps sending wrong admin
//! tokens is refused (429) for a while, whatever it sends next, so the token
//! cannot be guessed at the speed of the network.
//!
//! Per host and in memory: the admin API is a handful of operators, not a
//! fleet of clients, and a brute force against one host gains nothing from
//! another's count. IPv6 clients are counted by /64 (`auth::client_network`).
//! The table is bounded: past `MAX_CLIENTS` the expired entries go first,
//! then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::http::auth::client_network;

/// Failures a client may have in one window before it is refused.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered, and how long a refused client waits.
pub const WINDOW: Duration = Duration::from_secs(60);
const MAX_CLIENTS: usize = 10_000;

#[derive(Default)]
pub struct Throttle {
    clients: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    /// When the first failure of this window was seen.
    since: Instant,
}

/// The pure decision: may a client with `failures` try now? `Err(wait)`: no.
fn decide(failures: Option<Failures>, now: Instant) -> Result<(), Duration> {
    match failures {
        Some(f) if now.duration_since(f.since) < WINDOW && f.count >= MAX_FAILURES => {
            Err(WINDOW - now.duration_since(f.since))
        }
        _ => Ok(()),
    }
}

impl Throttle {
    /// `Err(wait)` when `peer` has failed too often lately.
    pub fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        decide(clients.get(&client_network(peer)).copied(), Instant::now())
    }

    /// Counts one failed attempt by `peer`.
    pub fn failed(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS {
            clients.retain(|_, f| now.duration_since(f.since) < WINDOW);
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients.iter().min_by_key(|(_, f)| f.since).map(|(ip, _)| *ip)
            {
                clients.remove(&oldest);
            }
        }
        let f = clients.entry(client_network(peer)).or_insert(Failures { count: 0, since: now });
        if now.duration_since(f.since) >= WINDOW {
            *f = Failures { count: 0, since: now };
        }
        f.count += 1;
    }

    /// A right token clears the client's failures.
    pub fn succeeded(&self, peer: IpAddr) {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).remove(&client_network(peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_after_the_allowed_failures_until_the_window_ends() {
        let start = Instant::now();
        let f = |count| Some(Failures { count, since: start });
        assert!(decide(None, start).is_ok());
        assert!(decide(f(MAX_FAILURES - 1), start).is_ok());
        let wait = decide(f(MAX_FAILURES), start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(10));
        assert!(decide(f(MAX_FAILURES), start + WINDOW).is_ok(), "the window is over");
    }

    #[test]
    fn counts_per_client_and_clears_on_success() {
        let t = Throttle::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..MAX_FAILURES {
            assert!(t.check(a).is_ok());
            t.failed(a);
        }
        assert!(t.check(a).is_err());
        assert!(t.check(b).is_ok(), "another client is not refused");
        // Another address of the same IPv6 /64 is the same client.
        let (c, d): (IpAddr, IpAddr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        for _ in 0..MAX_FAILURES {
            t.failed(c);
        }
        assert!(t.check(d).is_err());
        t.succeeded(b);
        t.succeeded(a);
        assert!(t.check(a).is_ok());
    }
}
