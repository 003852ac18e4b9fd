//! Stream trimming: streams must not grow forever (a Dapr complaint), but an
//! entry some group has not acknowledged must never be trimmed.
//!
//! Every `trim_interval_ms`, for each stream a loaded component publishes or
//! consumes, partition by partition (each with its share of `trim_max_len`):
//! if it is longer than that, or holds entries older than
//! `trim_max_age_ms`, trim with `XTRIM MINID` up to the *safe* id. That is the
//! smallest, over all groups, of the group's oldest pending entry and the
//! entry after the last one it was delivered.
//!
//! A stream no group reads (published, consumed by no one) and every
//! dead-letter stream are bounded too, by [`cut_unread`]: to its newest
//! `trim_max_len` entries (`MAXLEN`), and past `trim_max_age_ms` by age. A
//! group created later then starts from what is left: unbounded growth
//! would end in Redis's `maxmemory`, which fails every write.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::streams::StreamPendingReply;
use tokio_util::sync::CancellationToken;

use crate::config::Streams;
use crate::engine::runtime::Runtime;
use crate::storage::{redis_now_ms, text};

/// A stream entry id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId(pub u64, pub u64);

impl EntryId {
    pub fn parse(s: &str) -> Option<EntryId> {
        let (ms, seq) = s.split_once('-')?;
        Some(EntryId(ms.parse().ok()?, seq.parse().ok()?))
    }
    pub fn next(self) -> EntryId {
        if self.1 == u64::MAX { EntryId(self.0 + 1, 0) } else { EntryId(self.0, self.1 + 1) }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// The policy's cut: entries below the returned id may go. `None`: keep all.
pub fn cut(len: u64, oldest: Option<EntryId>, safe: Option<EntryId>, cfg: &Streams, now: u64) -> Option<EntryId> {
    let safe = safe?;
    let too_long = cfg.trim_max_len > 0 && len > cfg.trim_max_len;
    let too_old = cfg.trim_max_age_ms > 0 && oldest.is_some_and(|o| o.0 + cfg.trim_max_age_ms < now);
    if too_long {
        return Some(safe);
    }
    if too_old {
        // Age policy: cut at the age limit, but never past the safe id.
        return Some(safe.min(EntryId(now - cfg.trim_max_age_ms, 0)));
    }
    None
}

/// How to bound a stream no group reads (see the module docs).
#[derive(Debug, PartialEq)]
pub enum UnreadCut {
    /// Keep the newest this many.
    MaxLen(u64),
    /// Drop entries below this id (older than `trim_max_age_ms`).
    MinId(EntryId),
}

/// The policy for a stream no group reads: `None`, keep all.
pub fn cut_unread(len: u64, oldest: Option<EntryId>, cfg: &Streams, now: u64) -> Option<UnreadCut> {
    if cfg.trim_max_len > 0 && len > cfg.trim_max_len {
        return Some(UnreadCut::MaxLen(cfg.trim_max_len));
    }
    let age = cfg.trim_max_age_ms;
    (age > 0 && oldest.is_some_and(|o| o.0 + age < now)).then(|| UnreadCut::MinId(EntryId(now - age, 0)))
}

pub async fn run(rt: Arc<Runtime>, cfg: Streams, shutdown: CancellationToken) {
    if cfg.trim_max_len == 0 && cfg.trim_max_age_ms == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.trim_interval_ms.max(100)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        for stream in rt.registry.snapshot().streams() {
            let Ok(parts) = rt.redis.stream_parts(&stream).await else { continue };
            // Each partition keeps its share of the stream's bound.
            let share = Streams { trim_max_len: cfg.trim_max_len.div_ceil(parts.len() as u64), ..cfg.clone() };
            for part in parts.iter() {
                if let Err(e) = trim_one(&rt, &part.key(), &share).await {
                    tracing::debug!(stream, partition = part.index, error = %e, "trimming skipped");
                }
                if let Err(e) = trim_unread(&rt, &part.dead(), &share).await {
                    tracing::debug!(stream, partition = part.index, error = %e, "trimming dead letters skipped");
                }
            }
        }
    }
}

/// Trims the stream (or partition) at `key`.
async fn trim_one(rt: &Runtime, key: &str, cfg: &Streams) -> redis::RedisResult<()> {
    let mut conn = rt.redis.conn();
    let len: u64 = redis::cmd("XLEN").arg(key).query_async(&mut conn).await?;
    if len == 0 {
        return Ok(());
    }
    let first: Vec<(String, Value)> =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").arg("COUNT").arg(1).query_async(&mut conn).await?;
    let oldest = first.first().and_then(|(id, _)| EntryId::parse(id));
    let groups: Vec<std::collections::HashMap<String, Value>> =
        redis::cmd("XINFO").arg("GROUPS").arg(key).query_async(&mut conn).await?;
    if groups.is_empty() {
        return trim_unread(rt, key, cfg).await;
    }
    let mut safe: Option<EntryId> = None;
    for g in &groups {
        let name = text(g.get("name"));
        let delivered = EntryId::parse(&text(g.get("last-delivered-id"))).unwrap_or(EntryId(0, 0));
        let mut group_safe = delivered.next();
        let pending: StreamPendingReply = redis::cmd("XPENDING").arg(key).arg(&name).query_async(&mut conn).await?;
        if let StreamPendingReply::Data(d) = pending
            && let Some(p) = EntryId::parse(&d.start_id)
        {
            group_safe = group_safe.min(p);
        }
        safe = Some(safe.map_or(group_safe, |s| s.min(group_safe)));
    }
    // Entry ids carry Redis's clock: measure their age on it too.
    let now = redis_now_ms(&mut conn).await?;
    let Some(minid) = cut(len, oldest, safe, cfg, now) else { return Ok(()) };
    let removed: u64 = redis::cmd("XTRIM").arg(key).arg("MINID").arg(minid.to_string()).query_async(&mut conn).await?;
    if removed > 0 {
        tracing::debug!(key, removed, %minid, "stream trimmed");
    }
    Ok(())
}

/// Bounds the stream at `key` that no group reads (a dead-letter stream,
/// or one nobody consumes).
async fn trim_unread(rt: &Runtime, key: &str, cfg: &Streams) -> redis::RedisResult<()> {
    let mut conn = rt.redis.conn();
    let len: u64 = redis::cmd("XLEN").arg(key).query_async(&mut conn).await?;
    if len == 0 {
        return Ok(());
    }
    let first: Vec<(String, Value)> =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").arg("COUNT").arg(1).query_async(&mut conn).await?;
    let oldest = first.first().and_then(|(id, _)| EntryId::parse(id));
    let now = redis_now_ms(&mut conn).await?;
    let mut trim = redis::cmd("XTRIM");
    trim.arg(key);
    match cut_unread(len, oldest, cfg, now) {
        None => return Ok(()),
        Some(UnreadCut::MaxLen(n)) => trim.arg("MAXLEN").arg(n),
        Some(UnreadCut::MinId(id)) => trim.arg("MINID").arg(id.to_string()),
    };
    let removed: u64 = trim.query_async(&mut conn).await?;
    if removed > 0 {
        tracing::info!(key, removed, "unread stream trimmed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_len: u64, max_age: u64) -> Streams {
        Streams { trim_max_len: max_len, trim_max_age_ms: max_age, ..Streams::default() }
    }

    #[test]
    fn never_cuts_past_the_safe_id() {
        let safe = Some(EntryId(100, 0));
        assert_eq!(cut(50, Some(EntryId(1, 0)), safe, &cfg(10, 0), 1_000), Some(EntryId(100, 0)));
        assert_eq!(cut(5, Some(EntryId(1, 0)), safe, &cfg(10, 0), 1_000), None, "short enough");
        assert_eq!(cut(50, Some(EntryId(1, 0)), None, &cfg(10, 0), 1_000), None, "no group: keep all");
        // Age: cut at now - age, unless the safe id is older.
        assert_eq!(cut(5, Some(EntryId(1, 0)), safe, &cfg(0, 500), 1_000), Some(EntryId(100, 0)));
        assert_eq!(cut(5, Some(EntryId(1, 0)), Some(EntryId(900, 0)), &cfg(0, 500), 1_000), Some(EntryId(500, 0)));
    }

    #[test]
    fn an_unread_stream_keeps_its_newest_entries_and_drops_old_ones() {
        assert_eq!(cut_unread(50, Some(EntryId(1, 0)), &cfg(10, 0), 1_000), Some(UnreadCut::MaxLen(10)));
        assert_eq!(cut_unread(5, Some(EntryId(1, 0)), &cfg(10, 0), 1_000), None);
        assert_eq!(cut_unread(5, Some(EntryId(1, 0)), &cfg(10, 500), 1_000), Some(UnreadCut::MinId(EntryId(500, 0))));
        assert_eq!(cut_unread(5, Some(EntryId(900, 0)), &cfg(10, 500), 1_000), None, "young enough");
        assert_eq!(cut_unread(50, Some(EntryId(1, 0)), &cfg(0, 0), 1_000), None, "trimming off");
    }

    #[test]
    fn ids_order_like_redis() {
        assert!(EntryId::parse("10-2").unwrap() < EntryId::parse("11-0").unwrap());
        assert_eq!(EntryId::parse("10-2").unwrap().next().to_string(), "10-3");
        assert_eq!(EntryId::parse("x"), None);
    }
}
