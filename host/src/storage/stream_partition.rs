//! Stream partitions: how one stream spreads over a Redis Cluster.
//!
//! A stream, its delayed set and its dead letters share a hash tag (a
//! dead letter's replay and an event's move are one script each), so one
//! stream is one slot, on one node. A stream of `n` partitions is `n` such
//! streams: partition 0 is the stream as it always was
//! (`wharf:stream:{<name>}`), so a stream of one partition is stored
//! exactly as before partitions existed, and partition `p` is
//! `wharf:stream:{<name>:<i>}` with `<i>` chosen so that the partitions'
//! slots are evenly spaced from partition 0's: the primaries of an evenly
//! split cluster each get a share.
//!
//! A publisher names a key (the order id); the key picks the partition, so
//! one key's events stay in order. An event without a key goes to the
//! partitions in turn. Each consumer group reads every partition.
//!
//! Entry ids are per partition: two partitions can both hold `17-0`. The
//! host names an entry of partition `p > 0` as `<id>@<p>` (handlers,
//! dead letters, the admin API); an id without `@` is in partition 0.
//!
//! A stream's partition count is data too: the first host that uses the
//! stream records it in Redis (`wharf:stream-partitions`), and every host
//! then uses the recorded count, whatever its own configuration says (with
//! a warning): hosts that disagreed would route one key to two partitions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Conn;
use super::partition::{partition_of, slot};

const SLOTS: u32 = 16384;
/// The Redis hash of the recorded partition counts, stream -> count.
const COUNTS: &str = "wharf:stream-partitions";
/// The most partitions a stream may have: each costs every group a reader.
pub const MAX: u16 = 64;

/// One partition of a stream, and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub stream: String,
    pub index: u16,
    tag: String,
}

impl Part {
    /// The partition's stream.
    pub fn key(&self) -> String {
        format!("wharf:stream:{{{}}}", self.tag)
    }

    /// Its dead letters.
    pub fn dead(&self) -> String {
        format!("wharf:stream:{{{}}}:dead", self.tag)
    }

    /// Its events not yet due.
    pub fn delayed(&self) -> String {
        format!("wharf:stream:{{{}}}:delayed", self.tag)
    }

    /// An entry id of this partition as the host shows it (see the module docs).
    pub fn qualify(&self, id: &str) -> String {
        if self.index == 0 { id.to_string() } else { format!("{id}@{}", self.index) }
    }
}

/// An id as the host shows it, split into the entry id and its partition.
pub fn split_id(shown: &str) -> Option<(&str, u16)> {
    match shown.split_once('@') {
        None => Some((shown, 0)),
        Some((id, p)) => Some((id, p.parse().ok().filter(|p| *p > 0)?)),
    }
}

/// The `n` partitions of `stream`, in order. `Counts` keeps them, so each
/// host works them out once per stream.
pub fn parts(stream: &str, n: u16) -> Arc<[Part]> {
    let n = n.clamp(1, MAX);
    let first = slot(stream) as u32;
    (0..n)
        .map(|index| {
            let tag = if index == 0 {
                stream.to_string()
            } else {
                let target = ((first + index as u32 * SLOTS / n as u32) % SLOTS) as u16;
                tag_at(stream, target)
            };
            Part { stream: stream.to_string(), index, tag }
        })
        .collect()
}

/// The first `<stream>:<i>` whose slot is `target` (about 16,384 tries on
/// average, once per stream); past a million tries, the nearest one seen.
fn tag_at(stream: &str, target: u16) -> String {
    let distance = |s: u16| {
        let d = (s as i32 - target as i32).unsigned_abs();
        d.min(SLOTS - d)
    };
    let mut best = (u32::MAX, 0u32);
    for i in 0..1_000_000u32 {
        let d = distance(slot(&format!("{stream}:{i}")));
        if d < best.0 {
            best = (d, i);
        }
        if d == 0 {
            break;
        }
    }
    format!("{stream}:{}", best.1)
}

/// Where a key's events go, before the count is known: the slot of its
/// partition (`{...}`) or of the whole key. Keys of one kv partition route
/// alike, so a product's events all follow one path.
pub fn route(key: &str) -> u16 {
    slot(partition_of(key).unwrap_or(key))
}

/// The partition of `parts` (a stream's, in order) a route falls in.
pub fn for_route(parts: &[Part], route: u16) -> &Part {
    &parts[index_of(route, parts.len() as u16) as usize]
}

/// The partition a route falls in, of `n`.
fn index_of(route: u16, n: u16) -> u16 {
    (route as u32 * n.max(1) as u32 / SLOTS) as u16
}

/// This host's view of the recorded partition counts.
pub struct Counts {
    /// The configured count per stream; streams not named use `default`.
    configured: HashMap<String, u16>,
    /// 0: one per primary of a cluster, 1 on a single Redis.
    default: u16,
    /// Each settled stream's partitions (their count is the length).
    known: Mutex<HashMap<String, Arc<[Part]>>>,
}

impl Counts {
    pub fn new(default: u16, configured: HashMap<String, u16>) -> Counts {
        Counts { configured, default, known: Mutex::default() }
    }

    /// The stream's partitions, if this host has read their count.
    pub fn known(&self, stream: &str) -> Option<Arc<[Part]>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).get(stream).cloned()
    }

    /// The stream's partitions, by its count: recorded by the first host
    /// to ask (this one's configured count), read by every later one. Asks
    /// Redis once.
    pub async fn settle(&self, conn: &mut Conn, cluster: bool, stream: &str) -> redis::RedisResult<Arc<[Part]>> {
        if let Some(known) = self.known(stream) {
            return Ok(known);
        }
        let wanted = match self.configured.get(stream).copied().unwrap_or(self.default) {
            0 if cluster => super::connection::primaries(conn).await?.len().max(1) as u16,
            0 => 1,
            n => n,
        }
        .clamp(1, MAX);
        let mut pipe = redis::pipe();
        pipe.cmd("HSETNX").arg(COUNTS).arg(stream).arg(wanted).ignore().cmd("HGET").arg(COUNTS).arg(stream);
        let (recorded,): (Option<u16>,) = pipe.query_async(conn).await?;
        let n = recorded.unwrap_or(wanted).clamp(1, MAX);
        if self.configured.contains_key(stream) && n != wanted {
            tracing::warn!(
                stream,
                configured = wanted,
                recorded = n,
                "the stream's partition count was recorded earlier and is kept (docs/SCALING.md says how to change it)"
            );
        }
        let settled = parts(stream, n);
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(stream.to_string(), settled.clone());
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_is_the_stream_as_it_was() {
        let p = &parts("order_completed", 1)[0];
        assert_eq!(p.key(), "wharf:stream:{order_completed}");
        assert_eq!(p.dead(), "wharf:stream:{order_completed}:dead");
        assert_eq!(p.delayed(), "wharf:stream:{order_completed}:delayed");
        assert_eq!(p.qualify("17-0"), "17-0");
    }

    #[test]
    fn partitions_are_evenly_spaced_from_the_first() {
        for n in [2u16, 3, 4, 6, 16] {
            let parts = parts("order_completed", n);
            assert_eq!(parts.len(), n as usize);
            let first = slot("order_completed") as u32;
            for p in parts.iter() {
                let tag = p.key().trim_start_matches("wharf:stream:{").trim_end_matches('}').to_string();
                let want = (first + p.index as u32 * SLOTS / n as u32) % SLOTS;
                assert_eq!(slot(&tag) as u32, want, "{n} partitions: {tag}");
            }
        }
    }

    /// The layout is stored data: it must never change.
    #[test]
    fn tags_are_pinned() {
        let keys: Vec<String> = parts("order_completed", 3).iter().map(|p| p.key()).collect();
        assert_eq!(keys[0], "wharf:stream:{order_completed}");
        // Computed apart from this code (a few lines of Python doing CRC16/XMODEM).
        assert_eq!(keys[1..], PINNED_3.map(|t| format!("wharf:stream:{{{t}}}")));
    }
    const PINNED_3: [&str; 2] = ["order_completed:12409", "order_completed:13775"];

    #[test]
    fn ids_name_their_partition() {
        let parts = parts("s", 4);
        assert_eq!(parts[2].qualify("17-0"), "17-0@2");
        assert_eq!(split_id("17-0@2"), Some(("17-0", 2)));
        assert_eq!(split_id("17-0"), Some(("17-0", 0)));
        assert_eq!(split_id("17-0@0"), None, "partition 0 has no suffix");
        assert_eq!(split_id("17-0@x"), None);
    }

    #[test]
    fn one_key_one_partition_and_keys_spread() {
        assert_eq!(route("order:{o1}"), route("o1"));
        assert_eq!(index_of(route("stock:{p1}"), 4), index_of(route("product:{p1}"), 4));
        let mut per = [0u32; 4];
        for i in 0..4000 {
            per[index_of(route(&format!("01M9{i:08}")), 4) as usize] += 1;
        }
        assert!(per.iter().all(|n| (800..1200).contains(n)), "{per:?}");
        assert_eq!(index_of(16383, 4), 3);
        assert_eq!(index_of(12345, 1), 0);
    }
}
