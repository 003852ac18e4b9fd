//! Dead letters: the events a handler rejected or failed `max_attempts` times,
//! kept beside their stream (`wharf:stream:{s}:dead`, and beside each
//! partition of a partitioned one) for an operator to read, replay or
//! discard through the admin API. A dead letter of partition `p > 0` is
//! named `<id>@<p>`, as its event was (`storage::stream_partition`).
//!
//! A replay appends the original payload to its partition again and removes the
//! dead letter in one script (both keys share the partition's hash tag), so an
//! event is never both replayed and still dead, nor lost between the two.
//! The replayed event is a new entry (a new id, so a handler that
//! de-duplicates by entry id sees it as new) addressed to the group that gave
//! up on it (`for_group`): the stream's other groups handled the original
//! and acknowledge the replay without running their handlers. It keeps its
//! payload, origin and request id. If that group no longer reads the stream
//! (its component was removed, or renamed the group), nothing is replayed:
//! every remaining group would acknowledge it unhandled.

use serde_json::{Value as Json, json};

use crate::storage::Store;
use crate::storage::scripts::REPLAY;
use crate::storage::stream_partition::{Part, split_id};
use crate::streams::entry::{Entry, EntryList};
use crate::streams::trim::EntryId;

/// Up to `limit` dead letters of `stream` over its partitions, oldest
/// first (by entry id: each partition's ids are on Redis's clock), and how
/// many there are in all.
async fn oldest(redis: &Store, stream: &str, limit: usize) -> redis::RedisResult<(u64, Vec<(Part, Entry)>)> {
    let mut conn = redis.conn();
    let (mut total, mut found) = (0u64, Vec::new());
    for part in redis.stream_parts(stream).await?.iter() {
        let (key, mut pipe) = (part.dead(), redis::pipe());
        pipe.cmd("XLEN").arg(&key).cmd("XRANGE").arg(&key).arg("-").arg("+").arg("COUNT").arg(limit);
        let (n, range): (u64, EntryList) = pipe.query_async(&mut conn).await?;
        total += n;
        found.extend(range.0.into_iter().map(|e| (part.clone(), e)));
    }
    found.sort_by_key(|(p, e)| (EntryId::parse(&e.id), p.index));
    found.truncate(limit);
    Ok((total, found))
}

/// Dead letters of `stream`, oldest first, as JSON for the admin API.
pub async fn list(redis: &Store, stream: &str, limit: usize) -> redis::RedisResult<Json> {
    let (total, found) = oldest(redis, stream, limit).await?;
    let entries: Vec<Json> = found
        .iter()
        .map(|(part, e)| {
            let field = |name: &str| String::from_utf8_lossy(e.field(name)).into_owned();
            let payload = field("payload");
            json!({
                "id": part.qualify(&e.id),
                "partition": part.index,
                "event_id": part.qualify(&field("id")),
                "group": field("group"),
                "origin": field("origin"),
                "error": field("error"),
                "attempts": field("attempts").parse::<u64>().unwrap_or(0),
                // JSON payloads are shown as JSON, anything else as text.
                "payload": serde_json::from_str::<Json>(&payload).unwrap_or(Json::String(payload)),
            })
        })
        .collect();
    Ok(json!({"stream": stream, "total": total, "entries": entries}))
}

/// What replaying one dead letter did.
#[derive(Debug, PartialEq)]
pub enum Replay {
    /// Back on its stream, under this new id.
    Replayed(String),
    NoSuchDeadLetter,
    /// The group that gave up on it no longer reads the stream: left dead.
    GroupGone(String),
}

/// The partition a dead letter's id names, if the stream has it.
async fn part_of(redis: &Store, stream: &str, shown: &str) -> redis::RedisResult<Option<(Part, String)>> {
    let Some((id, index)) = split_id(shown) else { return Ok(None) };
    let parts = redis.stream_parts(stream).await?;
    Ok(parts.get(index as usize).map(|p| (p.clone(), id.to_string())))
}

/// Replays one dead letter.
pub async fn replay(redis: &Store, stream: &str, shown: &str) -> redis::RedisResult<Replay> {
    let Some((part, id)) = part_of(redis, stream, shown).await? else { return Ok(Replay::NoSuchDeadLetter) };
    let mut inv = REPLAY.key(part.key());
    inv.key(part.dead()).arg(id);
    Ok(match inv.invoke_async::<(i64, String)>(&mut redis.conn()).await? {
        (1, new_id) => Replay::Replayed(part.qualify(&new_id)),
        (2, group) => Replay::GroupGone(group),
        _ => Replay::NoSuchDeadLetter,
    })
}

/// Replays up to `limit` dead letters, oldest first; returns the new ids
/// (dead letters whose group is gone stay, and are not counted).
pub async fn replay_all(redis: &Store, stream: &str, limit: usize) -> redis::RedisResult<Vec<String>> {
    let (_, found) = oldest(redis, stream, limit).await?;
    let mut replayed = Vec::with_capacity(found.len());
    for (part, e) in &found {
        if let Replay::Replayed(new_id) = replay(redis, stream, &part.qualify(&e.id)).await? {
            replayed.push(new_id);
        }
    }
    Ok(replayed)
}

/// Discards one dead letter; false if there was none.
pub async fn discard(redis: &Store, stream: &str, shown: &str) -> redis::RedisResult<bool> {
    let Some((part, id)) = part_of(redis, stream, shown).await? else { return Ok(false) };
    let n: u64 = redis::cmd("XDEL").arg(part.dead()).arg(id).query_async(&mut redis.conn()).await?;
    Ok(n > 0)
}

/// A dead-letter id as XADD makes them (`<ms>-<seq>`), with its partition
/// (`@<p>`) past the first: anything else is refused before it reaches
/// Redis, where `-`/`+` would mean whole ranges.
pub fn is_entry_id(shown: &str) -> bool {
    let Some((id, _)) = split_id(shown) else { return false };
    let mut parts = id.splitn(2, '-');
    let (Some(ms), Some(seq)) = (parts.next(), parts.next()) else { return false };
    let number = |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok();
    number(ms) && number(seq)
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_ids() {
        assert!(super::is_entry_id("1700000000000-0"));
        assert!(super::is_entry_id("1700000000000-0@3"));
        for bad in
            ["-", "+", "1-", "-1", "1", "1-2-3", "a-1", "", "99999999999999999999-0", "replay", "1-0@0", "1-0@", "-@1"]
        {
            assert!(!super::is_entry_id(bad), "{bad}");
        }
    }
}
