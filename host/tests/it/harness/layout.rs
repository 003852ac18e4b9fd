//! Where the host stores a component's key, for tests that read or seed
//! Redis directly: the rule of `storage::partition`, written again here
//! (the host's `tags_are_pinned` test pins it, and every test that reads a
//! key the host wrote checks the two agree).

/// Redis Cluster's slot of `tag`.
fn slot(tag: &str) -> u16 {
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
