//! One call's state: a context per capability, built from its version's
//! grants and what the call adds, plus WASI's (empty) context and the
//! sandbox's limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capability::calls::{CallsCtx, CallsGrant, Chain};
use crate::capability::config::ConfigCtx;
use crate::capability::events::{EventsCtx, EventsGrant};
use crate::capability::kv::{KvCtx, KvGrant};
use crate::capability::log::{LogCtx, LogGrant};
use crate::capability::outbox::{OutboxCtx, OutboxGrant};
use crate::capability::refusals::Refusals;
use crate::engine::outbound::{Outbound, OutboundGrant};
use crate::telemetry::trail::Trail;

/// Resources (WASI streams, pollables...) one instance may hold at once.
/// Host memory, outside the instance's own limit: wasmtime allows a million.
const RESOURCE_TABLE_ENTRIES: usize = 4096;

/// Each capability's grant to one version: a call's contexts are built
/// from these (`HostState::new`).
pub struct Granted {
    pub kv: Arc<KvGrant>,
    pub events: Arc<EventsGrant>,
    pub outbox: Arc<OutboxGrant>,
    pub calls: Arc<CallsGrant>,
    pub log: Arc<LogGrant>,
    pub config: Arc<BTreeMap<String, String>>,
    pub refusals: Arc<Refusals>,
    /// The hosts a mounted wasi:http component may send requests to.
    pub outbound: Arc<OutboundGrant>,
}

/// What a call adds to its version's grants.
pub struct CallFacts {
    /// The request this call serves (or that caused the event it handles),
    /// and the span it runs in: carried into the events it publishes and
    /// the components it calls.
    pub trail: Trail,
    /// Who the caller is (the `x-wharf-*` headers the gateway set): a call
    /// to another component acts for the same caller.
    pub identity: Vec<(String, String)>,
    /// How many `calls.call` led here, and what the outermost call serves.
    pub chain: Chain,
}

/// A capability's context is built when the call first uses it: most calls
/// use one or two, and a call that uses none pays one `Arc` clone.
pub struct HostState {
    granted: Arc<Granted>,
    facts: CallFacts,
    kv: Option<KvCtx>,
    outbox: Option<OutboxCtx>,
    events: Option<EventsCtx>,
    calls: Option<CallsCtx>,
    log: Option<LogCtx>,
    config: Option<ConfigCtx>,
    /// Linear memory one instance may grow to (`sandbox`).
    pub(crate) memory_bytes: usize,
    /// The instance was refused memory: it is not kept for reuse.
    pub(crate) memory_refused: bool,
    /// The instance's largest linear memory (`sandbox`): a reused one near
    /// its limit is retired (`reuse::keep`).
    pub(crate) memory_size: usize,
    /// Built on the first WASI call: a no_std component makes none on most
    /// calls (only the clock and randomness, for new ids). No files, no
    /// network, no environment: components get capabilities only through
    /// Wharf's own interfaces.
    wasi: Option<WasiCtx>,
    /// wasi:http's, for a mounted component (`proxy`): it serves the
    /// incoming request; its outgoing ones go only where granted.
    http: WasiHttpCtx,
    /// Built on first use: only a mounted component reaches it.
    outbound: Option<Outbound>,
    pub(crate) table: ResourceTable,
}

impl HostState {
    pub fn new(granted: &Arc<Granted>, facts: CallFacts, memory_bytes: usize) -> HostState {
        HostState {
            granted: granted.clone(),
            facts,
            kv: None,
            outbox: None,
            events: None,
            calls: None,
            log: None,
            config: None,
            memory_bytes,
            memory_refused: false,
            memory_size: 0,
            wasi: None,
            http: WasiHttpCtx::new(),
            outbound: None,
            table: bounded_table(),
        }
    }

    /// Readies a reused instance's state for its next call: that call's
    /// facts, and each capability's context built afresh on first use. WASI's
    /// context and the resource table stay: the guest may hold handles
    /// (its stdout) from an earlier call.
    pub fn begin_call(&mut self, facts: CallFacts) {
        self.facts = facts;
        (self.kv, self.outbox, self.events, self.calls, self.log, self.config) = (None, None, None, None, None, None);
    }

    /// Whether what the call answers may rest on a write Redis has not
    /// replicated yet: it wrote (a kv write, or any use of the outbox or of
    /// events, which only write), or it read (what it read may be an
    /// earlier call's write, answered 503 for want of a replica and now
    /// retried: an idempotent replay must not confirm it either; the fenced
    /// wait of `Store::confirm_replicated` covers writes of any connection).
    pub fn used_storage(&self) -> bool {
        self.kv.is_some() || self.outbox.is_some() || self.events.is_some()
    }

    /// Whether Redis answered `unavailable` to any of this call's storage,
    /// outbox or events calls: a handler failing after that failed for
    /// Redis (`streams::decide`).
    pub fn met_redis_outage(&self) -> bool {
        self.kv.as_ref().is_some_and(|c| c.redis_unavailable)
            || self.outbox.as_ref().is_some_and(|c| c.redis_unavailable)
            || self.events.as_ref().is_some_and(|c| c.redis_unavailable)
    }

    /// Where this version's refusals go (`sandbox`).
    pub(crate) fn refusals(&self) -> &Refusals {
        &self.granted.refusals
    }

    pub fn kv(&mut self) -> &mut KvCtx {
        let g = &self.granted;
        self.kv.get_or_insert_with(|| KvCtx::new(&g.kv))
    }

    pub fn outbox(&mut self) -> &mut OutboxCtx {
        let (g, facts) = (&self.granted, &self.facts);
        self.outbox.get_or_insert_with(|| OutboxCtx::new(&g.outbox, facts.trail.clone()))
    }

    pub fn events(&mut self) -> &mut EventsCtx {
        let (g, facts) = (&self.granted, &self.facts);
        self.events.get_or_insert_with(|| EventsCtx::new(&g.events, facts.trail.clone()))
    }

    pub fn calls(&mut self) -> &mut CallsCtx {
        let (g, facts) = (&self.granted, &mut self.facts);
        self.calls.get_or_insert_with(|| {
            let identity = std::mem::take(&mut facts.identity);
            CallsCtx::new(&g.calls, facts.trail.clone(), identity, facts.chain)
        })
    }

    pub fn log(&mut self) -> &mut LogCtx {
        let g = &self.granted;
        self.log.get_or_insert_with(|| LogCtx::new(&g.log))
    }

    pub fn config(&mut self) -> &mut ConfigCtx {
        let g = &self.granted;
        self.config.get_or_insert_with(|| ConfigCtx::new(&g.config))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| WasiCtx::builder().build());
        WasiCtxView { ctx, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let granted = &self.granted.outbound;
        let hooks = self.outbound.get_or_insert_with(|| Outbound(granted.clone()));
        WasiHttpCtxView { hooks, table: &mut self.table, ctx: &mut self.http }
    }
}

crate::capability::converts_errors!(HostState);

/// A resource table no instance can grow past `RESOURCE_TABLE_ENTRIES`.
fn bounded_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(RESOURCE_TABLE_ENTRIES);
    table
}
