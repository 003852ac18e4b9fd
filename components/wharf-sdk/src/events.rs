//! Publishing events to streams (see `wit/wharf.wit`, interface `events`).

use crate::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::wharf::plugin::events as wit;
use crate::{Event, EventError, HostError};

/// Publishes `payload` as JSON to `stream` now; returns the entry id.
pub fn publish<T: Serialize>(stream: &str, payload: &T) -> Result<String, HostError> {
    Ok(wit::publish(stream, &crate::kv::encode(payload)?)?)
}

/// Publishes `payload` as JSON to `stream` after `delay_ms` (durable: kept in Redis).
pub fn publish_after<T: Serialize>(stream: &str, payload: &T, delay_ms: u64) -> Result<(), HostError> {
    Ok(wit::publish_after(stream, &crate::kv::encode(payload)?, delay_ms)?)
}

/// Publishes `payload` as JSON to `stream` now, about `key` (an order id):
/// on a stream of several partitions the key picks one, so the events of
/// one key stay in order. Returns the entry id.
pub fn publish_keyed<T: Serialize>(stream: &str, key: &str, payload: &T) -> Result<String, HostError> {
    Ok(wit::publish_keyed(stream, key, &crate::kv::encode(payload)?)?)
}

/// `publish_after` about `key`, as `publish_keyed`.
pub fn publish_after_keyed<T: Serialize>(stream: &str, key: &str, payload: &T, delay_ms: u64) -> Result<(), HostError> {
    Ok(wit::publish_after_keyed(stream, key, &crate::kv::encode(payload)?, delay_ms)?)
}

impl Event {
    /// Accepts the event only if `publisher` sent it. The host stamps the
    /// origin, so this is how a consumer refuses business events forged by
    /// another component that may publish to the same stream. Anything else
    /// is rejected (dead-lettered, with the origin in the reason).
    pub fn require_origin(&self, publisher: &str) -> Result<(), EventError> {
        if self.origin == publisher {
            return Ok(());
        }
        let from = if self.origin.is_empty() { "outside wharf" } else { self.origin.as_str() };
        Err(EventError::Reject(format!("event on {} came from {from}; only {publisher} publishes it", self.stream)))
    }

    /// The payload parsed as JSON; a payload that does not parse is rejected
    /// (dead-lettered): retrying cannot fix it.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| EventError::Reject(format!("payload on {} is not the expected JSON: {e}", self.stream)))
    }
}
