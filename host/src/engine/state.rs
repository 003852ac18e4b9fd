//! One call's state: a context per capability, built from its version's
//! grants and what the call adds, plus WASI's (empty) context and the
//! sandbox's limits.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capability::calls::{CallsCtx, CallsGrant};
use crate::capability::config::ConfigCtx;
use crate::capability::events::{EventsCtx, EventsGrant};
use crate::capability::kv::{KvCtx, KvGrant};
use crate::capability::log::{LogCtx, LogGrant};
use crate::capability::outbox::{OutboxCtx, OutboxGrant};
use crate::capability::refusals::Refusals;

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
}

/// What a call adds to its version's grants.
pub struct CallFacts {
    /// The request this call serves (or that caused the event it handles):
    /// carried into the events it publishes and the components it calls.
    pub request_id: Option<String>,
    /// Who the caller is (the `x-wharf-*` headers the gateway set): a call
    /// to another component acts for the same caller.
    pub identity: Vec<(String, String)>,
    /// How many `calls.call` led here.
    pub depth: u32,
}

pub struct HostState {
    pub kv: KvCtx,
    pub outbox: OutboxCtx,
    pub events: EventsCtx,
    pub calls: CallsCtx,
    pub log: LogCtx,
    pub config: ConfigCtx,
    /// Linear memory one instance may grow to (`sandbox`).
    pub(crate) memory_bytes: usize,
    pub(crate) refusals: Arc<Refusals>,
    /// Built on the first WASI call: a no_std component makes none on most
    /// calls (only the clock and randomness, for new ids). No files, no
    /// network, no environment: components get capabilities only through
    /// Wharf's own interfaces.
    wasi: Option<WasiCtx>,
    pub(crate) table: ResourceTable,
}

impl HostState {
    pub fn new(g: &Granted, call: CallFacts, memory_bytes: usize) -> HostState {
        let request_id: Option<Arc<str>> = call.request_id.map(Into::into);
        HostState {
            kv: KvCtx::new(&g.kv),
            outbox: OutboxCtx::new(&g.outbox, request_id.clone()),
            events: EventsCtx::new(&g.events, request_id.clone()),
            calls: CallsCtx::new(&g.calls, request_id, call.identity, call.depth),
            log: LogCtx::new(&g.log),
            config: ConfigCtx::new(&g.config),
            memory_bytes,
            refusals: g.refusals.clone(),
            wasi: None,
            table: bounded_table(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let ctx = self.wasi.get_or_insert_with(|| WasiCtx::builder().build());
        WasiCtxView { ctx, table: &mut self.table }
    }
}

crate::capability::converts_errors!(HostState);

/// A resource table no instance can grow past `RESOURCE_TABLE_ENTRIES`.
fn bounded_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(RESOURCE_TABLE_ENTRIES);
    table
}
