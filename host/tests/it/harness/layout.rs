//! Where the host stores a component's key, for tests that read or seed
//! Redis directly: the rule of `storage::partition`, written again here
//! (the host's `tags_are_pinned` test pins it, and every test that reads a
//! key the host wrote checks the two agree).

/// Redis Cluster's slot of `tag`.
pub fn slot(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % 16384
}

/// The hash tag of component key `key` of namespace `ns`.
pub fn tag(ns: &str, key: &str) -> String {
    let partition = key.find('{').and_then(|open| {
        let len = key[open + 1..].find('}')?;
        (len > 0).then(|| &key[open + 1..open + 1 + len])
    });
    let Some(partition) = partition else { return ns.to_string() };
    let shard = slot(partition) / 1024;
    (0..).map(|i| format!("{ns}:{i}")).find(|t| slot(t) / 1024 == shard).unwrap()
}

/// The full Redis key of component key `key` of namespace `ns`.
pub fn kv_key(ns: &str, key: &str) -> String {
    format!("wharf:{{{}}}:kv:{key}", tag(ns, key))
}

/// The index `key` is listed in.
pub fn kv_index(ns: &str, key: &str) -> String {
    format!("wharf:{{{}}}:index", tag(ns, key))
}

/// The outbox the events of writes to `key` wait in.
pub fn outbox(ns: &str, key: &str) -> String {
    format!("wharf:{{{}}}:outbox", tag(ns, key))
}

/// The keys of the `n` partitions of `stream`, partition 0 first: the rule
/// of `storage::stream_partition`, written again here. Partition `p > 0`
/// is tagged by the first `<stream>:<i>` whose slot lies `p/n` of the way
/// round from partition 0's.
pub fn stream_keys(stream: &str, n: u16) -> Vec<String> {
    let first = slot(stream) as u32;
    (0..n as u32)
        .map(|p| {
            if p == 0 {
                return format!("wharf:stream:{{{stream}}}");
            }
            let target = ((first + p * 16384 / n as u32) % 16384) as u16;
            let tag = (0..).map(|i| format!("{stream}:{i}")).find(|t| slot(t) == target).unwrap();
            format!("wharf:stream:{{{tag}}}")
        })
        .collect()
}
