//! Keeps the cluster client's slot map current after a failover.
//!
//! The redis crate reads a cluster's slot map again only when a node
//! answers `MOVED` or `READONLY`. After a primary dies, a command for its
//! slots falls back to a connected node of the same shard: its replica,
//! once promoted, answers it without a redirection, so the map can name
//! the dead primary for good. Keyed commands work on, but every command
//! sent to all nodes or all primaries (`SCRIPT LOAD` after a `NOSCRIPT`,
//! the readiness `PING`, a `WAIT` per primary) includes the dead one and
//! fails until the host restarts. So the host asks the cluster for its
//! primaries itself, every second, and when they changed opens its shared
//! connections again (`Store::reopen`): each new one reads the map afresh.
//! Blocking readers follow through `Store::generation`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Store, connection};

/// How often the primaries are read: a failover is followed within about this.
pub const EVERY: Duration = Duration::from_secs(1);

/// Until `stop`: reads the primaries every `every`; once they differ from
/// the last read, opens the connections again at each read until every
/// primary answers through them (a node asked for the map just after a
/// failover may not know of it yet). Returns at once on a single server.
pub async fn watch(redis: Store, every: Duration, stop: CancellationToken) {
    if !redis.target.is_cluster() {
        return;
    }
    let mut known: Option<Vec<(String, u16)>> = None;
    let mut following = false;
    loop {
        let mut conn = redis.conn();
        // Unanswered (the cluster is failing over, say): ask again next time.
        if let Ok(Ok(now)) = tokio::time::timeout(redis.timeout, connection::primaries(&mut conn)).await
            && !now.is_empty()
        {
            if changed(known.as_deref(), &now) {
                tracing::info!(primaries = ?now, "the cluster's primaries changed; reading its slot map again");
                following = true;
            }
            known = Some(now);
        }
        if following {
            if redis.ping().await {
                tracing::info!("every primary answers through the host's connections");
                following = false;
            } else if let Err(e) = redis.reopen() {
                tracing::warn!(error = %e, "cannot open the Redis connections again; will retry");
            }
        }
        // Sooner while following: the connections just opened are checked.
        let pause = if following { every / 4 } else { every };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Whether the primaries read now differ from those read before (the first
/// read, at start, changes nothing: the connections were just opened).
fn changed(before: Option<&[(String, u16)]>, now: &[(String, u16)]) -> bool {
    before.is_some_and(|before| before != now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_set_of_primaries_reopens() {
        let at = |ports: &[u16]| ports.iter().map(|p| ("127.0.0.1".to_string(), *p)).collect::<Vec<_>>();
        assert!(!changed(None, &at(&[1, 2, 3])), "the first read");
        assert!(!changed(Some(&at(&[1, 2, 3])), &at(&[1, 2, 3])));
        assert!(changed(Some(&at(&[1, 2, 3])), &at(&[2, 3, 4])), "a replica took over");
        assert!(changed(Some(&at(&[1, 2, 3])), &at(&[1, 2, 3, 4])), "a primary joined");
    }
}
