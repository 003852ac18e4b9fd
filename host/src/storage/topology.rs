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
//! primaries itself, every second, over a connection of its own to one
//! node (the client's state plays no part in it). When they changed, or
//! when they answer but not through the host's connections for a few
//! seconds running, it opens its shared connections again
//! (`Store::reopen`): each new one reads the map afresh. Blocking readers
//! follow (`storage::Blocking`).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Store, connection};

/// How often the primaries are read: a failover is followed within about this.
pub const EVERY: Duration = Duration::from_secs(1);
/// Reads running in which every primary answers the cluster but not the
/// host's connections before those are opened again.
const STALE_READS: u32 = 3;
/// The connections are opened again at most this often.
const REOPEN_AT_MOST_EVERY: Duration = Duration::from_secs(2);

/// Until `stop`: reads the primaries every `every`; once they differ from
/// the last read (or the host's connections stop reaching them), opens the
/// connections again until every primary answers through them. Returns at
/// once on a single server.
pub async fn watch(redis: Store, every: Duration, stop: CancellationToken) {
    if !redis.target.is_cluster() {
        return;
    }
    let mut known: Option<Vec<(String, u16)>> = None;
    let (mut following, mut unreached, mut reopened) = (false, 0u32, None::<Instant>);
    loop {
        if let Some(now) = read_primaries(&redis, known.as_deref().unwrap_or_default()).await {
            if changed(known.as_deref(), &now) {
                tracing::info!(primaries = ?now, "the cluster's primaries changed; reading its slot map again");
                following = true;
            } else if !following {
                // The same primaries, all answering the cluster: the host's
                // connections must reach them too, or their map is stale.
                unreached = if redis.ping().await { 0 } else { unreached + 1 };
                if unreached >= STALE_READS {
                    tracing::warn!("the host's Redis connections do not reach every primary; opening them again");
                    (following, unreached) = (true, 0);
                }
            }
            known = Some(now);
        }
        if following {
            if redis.ping().await {
                tracing::info!("every primary answers through the host's connections");
                following = false;
            } else if reopened.is_none_or(|at| at.elapsed() >= REOPEN_AT_MOST_EVERY) {
                match redis.reopen() {
                    Ok(()) => reopened = Some(Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "cannot open the Redis connections again; will retry"),
                }
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

/// The cluster's primaries as one node says, asked over a connection of
/// its own: the last known primaries first, then the seeds; None if none
/// answers in time.
async fn read_primaries(redis: &Store, known: &[(String, u16)]) -> Option<Vec<(String, u16)>> {
    let seeds = redis.seeds();
    let template = seeds.first()?.clone();
    let candidates = known.iter().map(|(host, port)| connection::at_node(&template, host, *port)).chain(seeds);
    for info in candidates {
        let ask = async {
            let mut conn = redis::Client::open(info)?.get_multiplexed_async_connection().await?;
            connection::primaries(&mut conn).await
        };
        if let Ok(Ok(now)) = tokio::time::timeout(redis.timeout, ask).await
            && !now.is_empty()
        {
            return Some(now);
        }
    }
    None
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
