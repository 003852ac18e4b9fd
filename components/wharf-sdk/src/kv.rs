//! Key-value storage in the component's own namespace, with JSON helpers:
//! one module over the WIT's `kv`, `atomics`, `batch` and `outbox`
//! interfaces (see `wit/wharf.wit`).
//!
//! A key may name its partition, as a Redis Cluster hash tag does:
//! `stock:{p1}` and `taken:{p1}:o9` are both in partition `p1`
//! ([`partitioned`] builds such a key). Partitions spread a component's
//! data over a cluster's nodes; one atomic step (an increment with its
//! marker, a [`Writes`] batch) takes keys of one partition only. A key
//! without a partition is in the component's single default partition.

use crate::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::HostError;
pub use crate::bindings::wharf::plugin::atomics::{CasOutcome, IncrementOutcome};
pub use crate::bindings::wharf::plugin::batch::Written;
use crate::bindings::wharf::plugin::kv as wit;
pub use crate::bindings::wharf::plugin::kv::Versioned;
use crate::bindings::wharf::plugin::{atomics, batch, outbox};
use crate::page::Page;

/// `prefix` then `{partition}`: a key in that partition. Keys of one
/// partition that must change together can go on after it
/// (`format!("{}:{order}", partitioned("taken:", product))`).
pub fn partitioned(prefix: &str, partition: &str) -> String {
    format!("{prefix}{{{partition}}}")
}

/// The partition of a key built by [`partitioned`] with `prefix`, if it is one.
pub fn partition_of<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    key.strip_prefix(prefix)?.strip_prefix('{')?.strip_suffix('}')
}

/// Like [`list_keys_for`], over keys `prefix{id}` (one per partition):
/// the ids of one page, and the id the next page starts after.
pub fn list_partitions_for(prefix: &str, page: &Page) -> Result<(Vec<String>, Option<String>), HostError> {
    let after = page.after.as_ref().map(|id| partitioned(prefix, id));
    let size = page.size();
    let keys = list_keys_page(prefix, after.as_deref(), size)?;
    let ids: Vec<String> = keys.iter().filter_map(|k| partition_of(k, prefix)).map(str::to_string).collect();
    let next = match (keys.len() as u32 == size, keys.last()) {
        (true, Some(last)) => partition_of(last, prefix).map(str::to_string),
        _ => None,
    };
    Ok((ids, next))
}

pub fn get(key: &str) -> Result<Option<Vec<u8>>, HostError> {
    Ok(wit::get(key)?)
}

/// Reads several keys in one round trip; absent keys are `None`.
pub fn get_many(keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, HostError> {
    Ok(batch::get_many(keys)?)
}

/// Like [`get_many`], but may answer from the host's read cache. Redis tells
/// the host when a cached key changes; a write through another host shows
/// once that message arrives. For reads that are shown, never for reads
/// that decide a write (use [`get_versioned`] and [`compare_and_swap`]).
pub fn get_many_cached(keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, HostError> {
    Ok(batch::get_many_cached(keys)?)
}

pub fn get_versioned(key: &str) -> Result<Option<Versioned>, HostError> {
    Ok(wit::get_versioned(key)?)
}

pub fn set(key: &str, value: &[u8]) -> Result<u64, HostError> {
    Ok(wit::set(key, value)?)
}

pub fn set_if_absent(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<bool, HostError> {
    Ok(wit::set_if_absent(key, value, ttl_ms)?)
}

/// Writes `value` if `key` is absent and, in the same atomic step, schedules
/// `payload` (as JSON) on `stream` `delay_ms` later: both or neither, even if
/// the host dies (a transactional outbox; see `set-if-absent-and-publish` in
/// `wit/wharf.wit`). True if written; nothing is published otherwise.
pub fn set_if_absent_and_publish<T: Serialize>(
    key: &str,
    value: &[u8],
    ttl_ms: Option<u64>,
    stream: &str,
    payload: &T,
    delay_ms: u64,
) -> Result<bool, HostError> {
    let event = outbox::OutboxEvent { stream: stream.to_string(), payload: encode(payload)?, delay_ms };
    Ok(outbox::set_if_absent_and_publish(key, value, ttl_ms, &event)?)
}

pub fn compare_and_swap(key: &str, expected: Option<u64>, value: &[u8]) -> Result<CasOutcome, HostError> {
    Ok(atomics::compare_and_swap(key, expected, value)?)
}

/// [`compare_and_swap`] that also publishes `payload` (as JSON) on `stream`
/// at once, in the same atomic step: the event goes out if and only if the
/// value was swapped (see [`set_if_absent_and_publish`]). The new version is
/// `expected + 1`.
pub fn compare_and_swap_and_publish<T: Serialize>(
    key: &str,
    expected: Option<u64>,
    value: &[u8],
    stream: &str,
    payload: &T,
) -> Result<CasOutcome, HostError> {
    let event = outbox::OutboxEvent { stream: stream.to_string(), payload: encode(payload)?, delay_ms: 0 };
    Ok(outbox::compare_and_swap_and_publish(key, expected, value, &event)?)
}

pub fn delete(key: &str) -> Result<bool, HostError> {
    Ok(wit::delete(key)?)
}

/// [`delete`] that also publishes `payload` (as JSON) on `stream` at once,
/// in the same atomic step, if the key existed: true then.
pub fn delete_and_publish<T: Serialize>(key: &str, stream: &str, payload: &T) -> Result<bool, HostError> {
    let event = outbox::OutboxEvent { stream: stream.to_string(), payload: encode(payload)?, delay_ms: 0 };
    Ok(outbox::delete_and_publish(key, &event)?)
}

pub fn increment(
    key: &str,
    delta: i64,
    min: Option<i64>,
    max: Option<i64>,
    once: Option<&str>,
) -> Result<IncrementOutcome, HostError> {
    Ok(atomics::increment(key, delta, min, max, once)?)
}

/// Several writes sent as one: one round trip and one atomic step, applied
/// in order, each as its own function would (see `write-many` in
/// `wit/wharf.wit`). An increment with a `once` marker and a set-if-absent
/// make the whole batch safe to run again for a redelivered event.
///
/// ```ignore
/// let mut w = kv::Writes::new();
/// w.set_if_absent("sale:1", &bytes, None).increment("units:p", 2, None, None, Some("counted:1"));
/// let results = w.apply()?; // one result per write, in order
/// ```
#[derive(Default)]
pub struct Writes(Vec<batch::Write>);

impl Writes {
    pub fn new() -> Writes {
        Writes::default()
    }

    pub fn set(&mut self, key: &str, value: &[u8]) -> &mut Writes {
        self.0.push(batch::Write::Set((key.to_string(), value.to_vec())));
        self
    }

    pub fn set_json<T: Serialize>(&mut self, key: &str, value: &T) -> Result<&mut Writes, HostError> {
        Ok(self.set(key, &encode(value)?))
    }

    pub fn set_if_absent(&mut self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> &mut Writes {
        self.0.push(batch::Write::SetIfAbsent((key.to_string(), value.to_vec(), ttl_ms)));
        self
    }

    pub fn increment(
        &mut self,
        key: &str,
        delta: i64,
        min: Option<i64>,
        max: Option<i64>,
        once: Option<&str>,
    ) -> &mut Writes {
        let once = once.map(str::to_string);
        self.0.push(batch::Write::Increment(batch::Increment { key: key.to_string(), delta, min, max, once }));
        self
    }

    pub fn delete(&mut self, key: &str) -> &mut Writes {
        self.0.push(batch::Write::Delete(key.to_string()));
        self
    }

    /// Sends them; one result per write, in order. Nothing is written if
    /// any write is refused (a bad key, values over the host's value limit
    /// together, more than 100 writes, one key both set and incremented).
    pub fn apply(&self) -> Result<Vec<Written>, HostError> {
        Ok(batch::write_many(&self.0)?)
    }
}

/// Every key with `prefix`, paging through the index.
pub fn list_keys(prefix: &str) -> Result<Vec<String>, HostError> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = wit::list_keys(prefix, after.as_deref(), 500)?;
        let done = page.len() < 500;
        after = page.last().cloned();
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

pub use crate::page::MAX_LIST;

/// Up to `limit` keys with `prefix` after `after` (exclusive): one page.
/// `limit` is at most [`MAX_LIST`].
pub fn list_keys_page(prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, HostError> {
    Ok(wit::list_keys(prefix, after, limit)?)
}

/// The keys one list answer covers, [`Page::size`]
/// of them after the page's `after`, and where the next page starts (the
/// last key read, when the page was full). For lists every caller may see
/// whole; a list filtered per caller must page over an index of what that
/// caller may see (payment's per-customer index), or its cursor would name
/// items the caller may not see.
pub fn list_keys_for(prefix: &str, page: &Page) -> Result<(Vec<String>, Option<String>), HostError> {
    let after = page.after.as_ref().map(|id| format!("{prefix}{id}"));
    let size = page.size();
    let keys = list_keys_page(prefix, after.as_deref(), size)?;
    let next = match keys.last() {
        Some(last) if keys.len() as u32 == size => Some(last[prefix.len()..].to_string()),
        _ => None,
    };
    Ok((keys, next))
}

/// Reads a JSON value; a stored value that does not parse is an internal error.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, HostError> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => decode(key, &bytes).map(Some),
    }
}

/// Reads a JSON value with its version.
pub fn get_json_versioned<T: DeserializeOwned>(key: &str) -> Result<Option<(T, u64)>, HostError> {
    match get_versioned(key)? {
        None => Ok(None),
        Some(v) => Ok(Some((decode(key, &v.value)?, v.version))),
    }
}

pub fn set_json<T: Serialize>(key: &str, value: &T) -> Result<u64, HostError> {
    set(key, &encode(value)?)
}

pub fn compare_and_swap_json<T: Serialize>(
    key: &str,
    expected: Option<u64>,
    value: &T,
) -> Result<CasOutcome, HostError> {
    compare_and_swap(key, expected, &encode(value)?)
}

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, HostError> {
    serde_json::from_slice(bytes).map_err(|e| HostError::Internal(format!("stored value {key} is corrupt: {e}")))
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, HostError> {
    serde_json::to_vec(value).map_err(|e| HostError::Internal(e.to_string()))
}
