//! The capabilities a component imports, one unit each, after Spin's
//! factors. Every unit has the same lifecycle:
//!
//! - **link**: `add_to_linker(linker, get)` puts its WIT interfaces in the
//!   linker; `get` finds its context inside the engine's per-call state,
//!   which the unit never names (no capability imports the engine).
//! - **grant**: when a version loads, the unit checks what the manifest asks
//!   for (`events::check_grants`) and builds the version's grant (`KvGrant`,
//!   `EventsGrant`, ...), once.
//! - **call**: per call, a context (`KvCtx`, `EventsCtx`, ...) from that
//!   grant and what the call adds (its request id, its caller).
//! - **run**: its background work (the outbox publisher, the delayed-event
//!   mover, the read cache's listener), started and stopped by the
//!   supervisor (`background::Supervisor`).
//!
//! # Layout
//! - `kv/`: `kv`, `atomics`, `batch`; `kv_cache` is `batch`'s read cache.
//! - `outbox`: writes that publish an event in the same step, and its publisher.
//! - `events`: publishing now or later, and the delayed-event mover.
//! - `calls`, `log`, `config`: the other interfaces, one file each.
//! - `backend`: Redis under a deadline, shared by the Redis-backed units;
//!   `refusals`: refused uses, logged and counted; `budget`: rate limits.

pub mod backend;
pub mod budget;
pub mod calls;
pub mod config;
pub mod events;
pub mod kv;
pub mod kv_cache;
pub mod log;
pub mod outbox;
pub mod refusals;

/// bindgen hands a trappable `CapFailure` to the interface's own context to
/// turn into the guest's `error` (or a trap): each context does it the same way.
/// A Redis-backed one (`notes_redis_outages`) also notes an `unavailable`
/// in its `redis_unavailable`: a handler that fails after one failed for
/// Redis, not for its event (`HostState::met_redis_outage`).
macro_rules! converts_errors {
    ($ctx:ty, notes_redis_outages) => {
        impl crate::engine::bindings::wharf::plugin::types::Host for $ctx {
            fn convert_error(
                &mut self,
                err: crate::engine::bindings::CapFailure,
            ) -> wasmtime::Result<crate::engine::bindings::CapError> {
                let err = err.downcast()?;
                self.redis_unavailable |= matches!(err, crate::engine::bindings::CapError::Unavailable(_));
                Ok(err)
            }
        }
    };
    ($ctx:ty) => {
        impl crate::engine::bindings::wharf::plugin::types::Host for $ctx {
            fn convert_error(
                &mut self,
                err: crate::engine::bindings::CapFailure,
            ) -> wasmtime::Result<crate::engine::bindings::CapError> {
                err.downcast()
            }
        }
    };
}
pub(crate) use converts_errors;
