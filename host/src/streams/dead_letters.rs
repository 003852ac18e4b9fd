//! Dead letters: the events a handler rejected or failed `max_attempts` times,
//! kept beside their stream (`wharf:stream:{s}:dead`) for an operator to read,
//! replay or discard through the admin API.
//!
//! A replay appends the original payload to the stream again and removes the
//! dead letter in one script (both keys share the stream's hash tag), so an
//! event is never both replayed and still dead, nor lost between the two.
//! The replayed event is a new entry (a new id, so a handler that
//! de-duplicates by entry id sees it as new) addressed to the group that gave
//! up on it (`for_group`): the stream's other groups handled the original
//! and acknowledge the replay without running their handlers. It keeps its
//! payload, origin and request id. If that group no longer reads the stream
//! (its component was removed, or renamed the group), nothing is replayed:
//! every remaining group would acknowledge it unhandled.

use redis::streams::StreamRangeReply;
use serde_json::{Value as Json, json};

use crate::storage::scripts::REPLAY;
use crate::storage::{Store, dead_letter_key, stream_key, text};

/// Dead letters of `stream`, oldest first, as JSON for the admin API.
pub async fn list(redis: &Store, stream: &str, limit: usize) -> redis::RedisResult<Json> {
    let mut conn = redis.conn();
    let key = dead_letter_key(stream);
    let total: u64 = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
    let range: StreamRangeReply =
        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").arg("COUNT").arg(limit).query_async(&mut conn).await?;
    let entries: Vec<Json> = range
        .ids
        .iter()
        .map(|e| {
            let field = |name: &str| text(e.map.get(name));
            let payload = field("payload");
            json!({
                "id": e.id,
                "event_id": field("id"),
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

/// Replays one dead letter.
pub async fn replay(redis: &Store, stream: &str, id: &str) -> redis::RedisResult<Replay> {
    let mut conn = redis.conn();
    let mut inv = REPLAY.key(stream_key(stream));
    inv.key(dead_letter_key(stream)).arg(id);
    Ok(match inv.invoke_async::<(i64, String)>(&mut conn).await? {
        (1, new_id) => Replay::Replayed(new_id),
        (2, group) => Replay::GroupGone(group),
        _ => Replay::NoSuchDeadLetter,
    })
}

/// Replays up to `limit` dead letters, oldest first; returns the new ids
/// (dead letters whose group is gone stay, and are not counted).
pub async fn replay_all(redis: &Store, stream: &str, limit: usize) -> redis::RedisResult<Vec<String>> {
    let mut conn = redis.conn();
    let range: StreamRangeReply = redis::cmd("XRANGE")
        .arg(dead_letter_key(stream))
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(limit)
        .query_async(&mut conn)
        .await?;
    let mut replayed = Vec::with_capacity(range.ids.len());
    for e in &range.ids {
        if let Replay::Replayed(new_id) = replay(redis, stream, &e.id).await? {
            replayed.push(new_id);
        }
    }
    Ok(replayed)
}

/// Discards one dead letter; false if there was none.
pub async fn discard(redis: &Store, stream: &str, id: &str) -> redis::RedisResult<bool> {
    let mut conn = redis.conn();
    let n: u64 = redis::cmd("XDEL").arg(dead_letter_key(stream)).arg(id).query_async(&mut conn).await?;
    Ok(n > 0)
}

/// A dead-letter id as XADD makes them (`<ms>-<seq>`): anything else is refused
/// before it reaches Redis, where `-`/`+` would mean whole ranges.
pub fn is_entry_id(id: &str) -> bool {
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
        for bad in ["-", "+", "1-", "-1", "1", "1-2-3", "a-1", "", "99999999999999999999-0", "replay"] {
            assert!(!super::is_entry_id(bad), "{bad}");
        }
    }
}
