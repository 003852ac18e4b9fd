//! One request followed through the streams: every recent entry that
//! carries its request id, and whether each consumer group is done with it
//! (`GET /admin/requests/{id}`, the console's order timeline).
//!
//! It reads the newest `RECENT` entries of each partition, not the whole
//! stream: a timeline is looked at while the order is fresh, and the logs
//! and the OTLP trace keep the older ones.

use redis::streams::{StreamPendingCountReply, StreamRangeReply};
use serde_json::{Value, json};

use crate::engine::runtime::Runtime;
use crate::storage::text;
use crate::streams;

/// Entries read back from the end of each partition.
const RECENT: usize = 2000;

pub async fn request(rt: &Runtime, request_id: &str) -> redis::RedisResult<Value> {
    let mut conn = rt.redis.conn();
    let mut hops = Vec::new();
    for stream in rt.registry.snapshot().streams() {
        for part in rt.redis.stream_parts(&stream).await?.iter() {
            let key = part.key();
            let recent: StreamRangeReply = redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(RECENT)
                .query_async(&mut conn)
                .await?;
            let mine: Vec<_> = recent.ids.into_iter().filter(|e| text(e.map.get("request_id")) == request_id).collect();
            if mine.is_empty() {
                continue;
            }
            let groups = streams::groups(&mut conn, &key).await?;
            for e in mine {
                let mut done = Vec::new();
                for g in &groups {
                    // Handled: delivered to the group and no longer pending.
                    let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                        .arg(&key)
                        .arg(&g.name)
                        .arg(&e.id)
                        .arg(&e.id)
                        .arg(1)
                        .query_async(&mut conn)
                        .await?;
                    let delivered = later_or_same(&g.last_delivered, &e.id);
                    done.push(json!({"group": g.name, "done": delivered && pending.ids.is_empty()}));
                }
                let at_ms: u64 = e.id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0);
                hops.push(json!({
                    "stream": stream,
                    "id": part.qualify(&e.id),
                    "at_ms": at_ms,
                    "origin": text(e.map.get("origin")),
                    "groups": done,
                }));
            }
        }
    }
    hops.sort_by_key(|h| h["at_ms"].as_u64());
    Ok(json!({"request_id": request_id, "hops": hops}))
}

/// Whether stream id `a` is at or after `b` (`<ms>-<seq>`).
fn later_or_same(a: &str, b: &str) -> bool {
    let parse = |id: &str| {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        (ms.parse::<u64>().unwrap_or(0), seq.parse::<u64>().unwrap_or(0))
    };
    parse(a) >= parse(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ids_compare_by_time_then_sequence() {
        use super::later_or_same;
        assert!(later_or_same("1700-0", "1700-0"));
        assert!(later_or_same("1700-10", "1700-9"), "not as text");
        assert!(later_or_same("1800-0", "1700-5"));
        assert!(!later_or_same("0-0", "1700-0"), "a group that has read nothing");
    }
}
