//! What `GET /admin/streams` and the console show of the streams: each
//! stream's length, consumer groups, delayed events and dead letters, in
//! all and per partition, and each component's outbox.

use serde_json::json;

use crate::engine::runtime::Runtime;
use crate::storage::outbox_key;
use crate::streams;

/// Each known stream: length, consumer groups and dead letters, in all and
/// per partition.
pub async fn collect(rt: &Runtime) -> redis::RedisResult<serde_json::Value> {
    let mut conn = rt.redis.conn();
    let mut out = serde_json::Map::new();
    for s in rt.registry.snapshot().streams() {
        let parts = rt.redis.stream_parts(&s).await?;
        let (mut length, mut dead, mut delayed) = (0u64, 0u64, 0u64);
        // Per group over the partitions: consumers, pending, lag (None once
        // any partition cannot tell).
        let mut totals: Vec<(String, u64, u64, Option<u64>)> = Vec::new();
        let mut per_part = Vec::with_capacity(parts.len());
        for part in parts.iter() {
            let (key, mut pipe) = (part.key(), redis::pipe());
            pipe.cmd("XLEN").arg(&key).cmd("XLEN").arg(part.dead()).cmd("ZCARD").arg(part.delayed());
            let (len, dead_letters, waiting): (u64, u64, u64) = pipe.query_async(&mut conn).await?;
            let groups = streams::groups(&mut conn, &key).await?;
            for g in &groups {
                match totals.iter_mut().find(|t| t.0 == g.name) {
                    Some(t) => {
                        t.1 = t.1.max(g.consumers);
                        t.2 += g.pending;
                        t.3 = t.3.zip(g.lag).map(|(a, b)| a + b);
                    }
                    None => totals.push((g.name.clone(), g.consumers, g.pending, g.lag)),
                }
            }
            (length, dead, delayed) = (length + len, dead + dead_letters, delayed + waiting);
            let groups: Vec<_> = groups
                .into_iter()
                .map(|g| json!({"name": g.name, "consumers": g.consumers, "pending": g.pending, "lag": g.lag, "last_delivered_id": part.qualify(&g.last_delivered)}))
                .collect();
            per_part.push(json!({"partition": part.index, "length": len, "delayed": waiting, "dead_letters": dead_letters, "groups": groups}));
        }
        let groups: Vec<serde_json::Value> = totals
            .into_iter()
            .zip(0..)
            .map(|((name, consumers, pending, lag), i)| {
                let mut g = json!({"name": name, "consumers": consumers, "pending": pending, "lag": lag});
                // One partition: where the group is, as before partitions.
                if let [only] = &per_part[..] {
                    g["last_delivered_id"] = only["groups"][i]["last_delivered_id"].clone();
                }
                g
            })
            .collect();
        out.insert(
            s,
            json!({"length": length, "delayed": delayed, "dead_letters": dead, "groups": groups, "partitions": per_part}),
        );
    }
    // Events scheduled by writes (`outbox.set-if-absent-and-publish`), not
    // yet published: a component's own outbox and its shards'.
    let mut outboxes = serde_json::Map::new();
    let partitions = rt.redis.partitions.clone();
    for name in rt.registry.snapshot().components.keys() {
        partitions.has(&mut conn, name).await?;
        let mut n = 0u64;
        for tag in partitions.tags(name) {
            n += redis::cmd("ZCARD").arg(outbox_key(&tag)).query_async::<u64>(&mut conn).await?;
        }
        outboxes.insert(name.clone(), json!(n));
    }
    Ok(json!({"streams": out, "outboxes": outboxes}))
}
