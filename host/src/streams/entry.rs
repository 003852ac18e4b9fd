//! A stream entry as the host's readers take it (events, dead letters, the
//! fleet's announcements): its id and its fields, moved out of Redis's
//! reply.
//!
//! The redis crate's `StreamReadReply` clones the whole reply, then builds a
//! hash map per stream and per entry before anything reads them; `perf` put
//! that at about 13 us of host CPU per order (three events) on top of the
//! parse itself (docs/PERFORMANCE.md, session 26). An entry carries two to
//! five fields, found by a look along them.

use redis::{FromRedisValue, ParsingError, Value};

/// One entry: its id and its fields in the order they were written.
#[derive(Debug)]
pub struct Entry {
    pub id: String,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// A field's value, empty if the entry has none by that name.
    pub fn field(&self, name: &str) -> &[u8] {
        self.fields.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice()).unwrap_or_default()
    }

    /// `[id, [field, value, ...]]`; a deleted entry's fields (nil) are none.
    fn from_value(v: Value) -> Result<Entry, ParsingError> {
        let Value::Array(parts) = v else { return Err(shape("an entry is not an array")) };
        let [id, fields]: [Value; 2] = parts.try_into().map_err(|_| shape("an entry is not [id, fields]"))?;
        let id = String::from_utf8(bytes(id)?)?;
        let fields = match fields {
            Value::Nil => Vec::new(),
            Value::Array(flat) if flat.len() % 2 == 0 => {
                let mut flat = flat.into_iter();
                let mut fields = Vec::with_capacity(flat.len() / 2);
                while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                    fields.push((bytes(k)?, bytes(v)?));
                }
                fields
            }
            Value::Map(pairs) => {
                pairs.into_iter().map(|(k, v)| Ok((bytes(k)?, bytes(v)?))).collect::<Result<_, ParsingError>>()?
            }
            _ => return Err(shape("an entry's fields are not a list")),
        };
        Ok(Entry { id, fields })
    }
}

/// An `XREADGROUP` (or `XREAD`) reply: every entry of every stream read, in order
/// (nil, when the read timed out, is `None` through `Option`).
pub struct ReadReply(pub Vec<Entry>);

impl FromRedisValue for ReadReply {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        // RESP2: [[stream, entries], ...]; RESP3: {stream: entries, ...}.
        let streams: Vec<Value> = match v {
            Value::Array(rows) => rows
                .into_iter()
                .map(|row| match row {
                    Value::Array(pair) if pair.len() == 2 => Ok(pair.into_iter().nth(1).unwrap_or_default()),
                    _ => Err(shape("a stream's row is not [stream, entries]")),
                })
                .collect::<Result<_, _>>()?,
            Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
            _ => return Err(shape("not a list of streams")),
        };
        let mut entries = Vec::new();
        for list in streams {
            entries.extend(EntryList::from_redis_value(list)?.0);
        }
        Ok(ReadReply(entries))
    }
}

/// A list of entries: an `XCLAIM` reply (and `RECLAIM_OWN`'s), an `XRANGE`
/// one. Redis before 7.0 answers nil in place of a claimed entry since
/// deleted; it is left out, as Redis 7 leaves it out.
pub struct EntryList(pub Vec<Entry>);

impl FromRedisValue for EntryList {
    fn from_redis_value(v: Value) -> Result<Self, ParsingError> {
        match v {
            Value::Array(list) => Ok(EntryList(
                list.into_iter().filter(|e| *e != Value::Nil).map(Entry::from_value).collect::<Result<_, _>>()?,
            )),
            Value::Nil => Ok(EntryList(Vec::new())),
            _ => Err(shape("not a list of entries")),
        }
    }
}

fn bytes(v: Value) -> Result<Vec<u8>, ParsingError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        _ => Err(shape("a stream id or field is not a string")),
    }
}

fn shape(why: &str) -> ParsingError {
    format!("unexpected stream reply: {why}").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![bulk(id), Value::Array(fields.iter().map(|f| bulk(f)).collect())])
    }

    #[test]
    fn a_read_reply_gives_every_entry_of_every_stream_in_order() {
        let reply = Value::Array(vec![
            Value::Array(vec![bulk("s1"), Value::Array(vec![entry("1-0", &["payload", "a", "origin", "p"])])]),
            Value::Array(vec![bulk("s2"), Value::Array(vec![entry("2-0", &["payload", "b"]), entry("3-0", &[])])]),
        ]);
        let ReadReply(entries) = ReadReply::from_redis_value(reply).unwrap();
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["1-0", "2-0", "3-0"]);
        assert_eq!(entries[0].field("payload"), b"a");
        assert_eq!(entries[0].field("origin"), b"p");
        assert_eq!(entries[1].field("origin"), b"", "a missing field reads as empty");
    }

    #[test]
    fn a_resp3_map_of_streams_reads_the_same() {
        let reply = Value::Map(vec![(bulk("s1"), Value::Array(vec![entry("1-0", &["payload", "a"])]))]);
        let ReadReply(entries) = ReadReply::from_redis_value(reply).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].field("payload"), b"a");
    }

    #[test]
    fn a_deleted_entry_has_no_fields_and_a_claim_of_nothing_is_empty() {
        let reply = Value::Array(vec![Value::Array(vec![bulk("5-0"), Value::Nil])]);
        let EntryList(entries) = EntryList::from_redis_value(reply).unwrap();
        assert_eq!(entries[0].id, "5-0");
        assert_eq!(entries[0].field("payload"), b"");
        assert!(EntryList::from_redis_value(Value::Array(vec![])).unwrap().0.is_empty());
        // Redis 6.2's answer for a pending entry deleted since: no entry.
        let reply = Value::Array(vec![Value::Nil, entry("6-0", &["payload", "x"])]);
        let EntryList(entries) = EntryList::from_redis_value(reply).unwrap();
        assert_eq!(entries.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["6-0"]);
    }

    #[test]
    fn a_reply_of_another_shape_is_an_error() {
        assert!(ReadReply::from_redis_value(Value::Int(1)).is_err());
        assert!(EntryList::from_redis_value(Value::Array(vec![bulk("1-0")])).is_err());
        // A field without its value.
        assert!(EntryList::from_redis_value(Value::Array(vec![entry("1-0", &["payload"])])).is_err());
        assert!(
            EntryList::from_redis_value(Value::Array(vec![Value::Array(vec![Value::Int(1), Value::Nil])])).is_err()
        );
    }
}
