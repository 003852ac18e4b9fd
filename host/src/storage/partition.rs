//! Partitions: how one component's keys spread over a Redis Cluster.
//!
//! A component's key may name its partition the way Redis Cluster users
//! already write it, with a hash tag: `stock:{p1}` and `taken:{p1}:o9`
//! belong to partition `p1`. A key without one belongs to the namespace's
//! single default partition, stored exactly as before partitions existed.
//!
//! The host never uses the component's tag as the slot itself: that would
//! let a component pick a slot shared with another namespace. It hashes the
//! partition to one of [`SHARDS`] shards of the namespace, and each shard
//! has a tag of its own, `<ns>:<n>`, chosen so that the shards' slots are
//! evenly spaced over the 16,384 (a cluster's primaries own contiguous slot
//! ranges, so every primary of a cluster of up to 16 gets a fair share). A
//! shard holds its keys, its index for listing, and its outbox, so a write,
//! its index entry and its event stay one script. Atomic steps take keys of
//! one partition only (`check_one_partition`): two partitions may share a
//! shard today, but a component must not count on it.
//!
//! The layout is data: changing `SHARDS` or the choice of tags moves keys.
//! `tags_are_pinned` below keeps it from changing by accident.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use super::Conn;

/// Shards per namespace for partitioned keys.
pub const SHARDS: u16 = 16;
const SLOTS: u16 = 16384;

/// The partition a component's key names: the text inside its first
/// `{...}`, when that is not empty (Redis's own rule).
pub fn partition_of(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let len = key[open + 1..].find('}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// Redis Cluster's slot of `tag` (CRC16/XMODEM mod 16384).
pub fn slot(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % SLOTS
}

/// The shard a partition belongs to: its slot's sixteenth.
pub fn shard_of(partition: &str) -> u16 {
    slot(partition) / (SLOTS / SHARDS)
}

/// The hash tags of a namespace's shards, in shard order: for shard `n`,
/// the first `<ns>:<i>` (i = 0, 1, ...) whose slot lies in the `n`th
/// sixteenth of the slots. Computed once per namespace.
pub fn shard_tags(ns: &str) -> Arc<[String]> {
    static TAGS: OnceLock<Mutex<HashMap<String, Arc<[String]>>>> = OnceLock::new();
    let mut known = TAGS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(tags) = known.get(ns) {
        return tags.clone();
    }
    let width = SLOTS / SHARDS;
    let mut tags: Vec<Option<String>> = vec![None; SHARDS as usize];
    let mut left = SHARDS;
    let mut i = 0u32;
    while left > 0 {
        let tag = format!("{ns}:{i}");
        let at = &mut tags[(slot(&tag) / width) as usize];
        if at.is_none() {
            *at = Some(tag);
            left -= 1;
        }
        i += 1;
    }
    let tags: Arc<[String]> = tags.into_iter().map(|t| t.expect("every shard found")).collect();
    known.insert(ns.to_string(), tags.clone());
    tags
}

/// The hash tag a component's key is stored under: the namespace itself
/// for a key without a partition, else its partition's shard's tag.
pub fn tag(ns: &str, key: &str) -> String {
    match partition_of(key) {
        None => ns.to_string(),
        Some(p) => shard_tags(ns)[shard_of(p) as usize].clone(),
    }
}

/// Every tag a namespace's keys may be under: its own, then its shards'.
pub fn all_tags(ns: &str) -> Vec<String> {
    std::iter::once(ns.to_string()).chain(shard_tags(ns).iter().cloned()).collect()
}

/// Ok if every key names the same partition (or none names one): what an
/// atomic step over several keys needs.
pub fn check_one_partition<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut keys = keys.into_iter();
    let Some(first) = keys.next() else { return Ok(()) };
    let partition = partition_of(first);
    match keys.find(|k| partition_of(k) != partition) {
        None => Ok(()),
        Some(other) => Err(format!(
            "keys {first:?} and {other:?} are in different partitions ({} and {}); an atomic step takes keys of one",
            partition.map_or("none".to_string(), |p| format!("{{{p}}}")),
            partition_of(other).map_or("none".to_string(), |p| format!("{{{p}}}")),
        )),
    }
}

/// The Redis set of the namespaces that have written a partitioned key:
/// listing and the outbox publisher look at a namespace's shards only once
/// it is in it, so a component that names no partition costs what it did.
const PARTITIONED: &str = "wharf:partitioned";

/// This host's view of [`PARTITIONED`]. A namespace, once in, stays in.
#[derive(Default)]
pub struct Registry {
    known: Mutex<HashSet<String>>,
}

impl Registry {
    fn knows(&self, ns: &str) -> bool {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).contains(ns)
    }

    fn learn(&self, ns: impl Into<String>) {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).insert(ns.into());
    }

    /// Before a namespace's first partitioned write (from this host): puts
    /// it in the set, so a lister that does not find it there can be sure
    /// no partitioned write had begun.
    pub async fn note(&self, conn: &mut Conn, ns: &str) -> redis::RedisResult<()> {
        if !self.knows(ns) {
            redis::cmd("SADD").arg(PARTITIONED).arg(ns).query_async::<()>(conn).await?;
            self.learn(ns);
        }
        Ok(())
    }

    /// Whether `ns` has partitioned keys (asks Redis until it has).
    pub async fn has(&self, conn: &mut Conn, ns: &str) -> redis::RedisResult<bool> {
        if self.knows(ns) {
            return Ok(true);
        }
        let member: bool = redis::cmd("SISMEMBER").arg(PARTITIONED).arg(ns).query_async(conn).await?;
        if member {
            self.learn(ns);
        }
        Ok(member)
    }

    /// Reads the whole set again (the outbox publisher, every poll).
    pub async fn refresh(&self, conn: &mut Conn) -> redis::RedisResult<()> {
        let all: Vec<String> = redis::cmd("SMEMBERS").arg(PARTITIONED).query_async(conn).await?;
        all.into_iter().for_each(|ns| self.learn(ns));
        Ok(())
    }

    /// The tags to look under for `ns`, as far as this host knows now.
    pub fn tags(&self, ns: &str) -> Vec<String> {
        if self.knows(ns) { all_tags(ns) } else { vec![ns.to_string()] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_is_the_first_non_empty_tag() {
        assert_eq!(partition_of("stock:{p1}"), Some("p1"));
        assert_eq!(partition_of("taken:{p1}:o9"), Some("p1"));
        assert_eq!(partition_of("plain"), None);
        assert_eq!(partition_of("empty:{}"), None);
        assert_eq!(partition_of("open:{p1"), None);
    }

    #[test]
    fn shards_are_evenly_spaced_over_the_slots() {
        let tags = shard_tags("inventory");
        assert_eq!(tags.len(), SHARDS as usize);
        for (n, t) in tags.iter().enumerate() {
            assert!(t.starts_with("inventory:"), "{t}");
            assert_eq!(slot(t) / (SLOTS / SHARDS), n as u16, "{t}");
        }
    }

    /// The layout is stored data: these must never change.
    #[test]
    fn tags_are_pinned() {
        assert_eq!(slot("123456789"), 0x31C3 % SLOTS, "CRC16/XMODEM's check value");
        assert_eq!(slot("foo"), 12182, "Redis's own example: CLUSTER KEYSLOT foo");
        // Computed apart from this code (a few lines of Python doing CRC16/XMODEM).
        let expected = [40, 0, 22, 13, 41, 1, 23, 12, 42, 2, 20, 11, 43, 3, 21, 10].map(|i| format!("payment:{i}"));
        assert_eq!(&*shard_tags("payment"), &expected[..]);
        assert_eq!(tag("payment", "order:{o1}"), expected[shard_of("o1") as usize]);
        assert_eq!(tag("payment", "order:o1"), "payment");
    }

    #[test]
    fn an_atomic_step_takes_one_partition() {
        assert!(check_one_partition(["a:{p}", "b:{p}:x"]).is_ok());
        assert!(check_one_partition(["a", "b"]).is_ok());
        let err = check_one_partition(["a:{p}", "b:{q}"]).unwrap_err();
        assert!(err.contains("different partitions"), "{err}");
        assert!(check_one_partition(["a:{p}", "b"]).is_err());
    }

    #[test]
    fn partitions_spread_over_the_shards() {
        let mut per = [0u32; SHARDS as usize];
        for i in 0..16_000 {
            per[shard_of(&format!("01M9{i:08}")) as usize] += 1;
        }
        assert!(per.iter().all(|n| (700..1300).contains(n)), "{per:?}");
    }
}
