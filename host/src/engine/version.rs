//! One loaded version of a component: its code, pre-linked, and what each
//! capability granted it, built once when it loaded.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::histogram::Histogram;

use crate::config::Grants;
use crate::engine::bindings::Manifest;
use crate::engine::instance::Exports;
use crate::engine::reuse::Reuse;
use crate::engine::state::Granted;
use crate::engine::tally::Tally;

/// Immutable, shared by every call that started on it.
pub struct ComponentVersion {
    pub name: String,
    /// sha256 of the wasm, hex: the version's identity.
    pub sha256: String,
    pub manifest: Manifest,
    pub loaded_at: SystemTime,
    /// Requests served by this version (shared by every load of the same
    /// wasm, so swapping back and forth keeps counting).
    pub requests: Arc<AtomicU64>,
    /// The requests this load answered: errors and latency (the console).
    pub served: Tally,
    /// Instances made for this load, and the time it took in all (ns).
    pub instantiations: AtomicU64,
    pub instantiate_ns: AtomicU64,
    /// What the operator granted it; None: what its manifest declares.
    pub grants: Option<Arc<Grants>>,
    pub(crate) pre: Exports,
    /// Where a mounted `wasi:http` component serves (`proxy`); None for a
    /// Wharf component.
    pub mount: Option<String>,
    /// Its series of `instantiate_duration_seconds`, looked up once: a call
    /// then records without building labels (None while loading).
    pub(crate) instantiate_seconds: Option<Histogram>,
    pub(crate) granted: Arc<Granted>,
    /// Its idle instances, when it reuses them (`instance_reuse`).
    pub(crate) reuse: Option<Reuse>,
}

impl ComponentVersion {
    /// The deadline of one call into this component.
    pub fn timeout(&self, host_default: Duration) -> Duration {
        match self.grants.as_ref().and_then(|g| g.timeout_ms) {
            Some(ms) => host_default.min(Duration::from_millis(ms)),
            None => host_default,
        }
    }

    /// The linear memory one of its instances may grow to.
    pub fn memory_limit(&self, host_limit: usize) -> usize {
        self.grants.as_ref().and_then(|g| g.memory_bytes).map_or(host_limit, |m| m.min(host_limit))
    }
}
