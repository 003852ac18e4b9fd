//! The component runtime: one wasmtime `Engine`, components compiled and
//! pre-linked once (`ComponentPre`), and a fresh instance per request and per
//! event (unless the operator keeps a component's instances for one kind of
//! call or both: `reuse`), with a deadline and a memory limit.
//!
//! Why an instance per call: a call can never see another call's state, a trap
//! poisons nothing, and a swapped-in version needs no migration. The pooling
//! allocator with resident memory keeps that cheap (tens of microseconds).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component as WasmComponent, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline};

use crate::background::Supervisor;
use crate::capability::backend::Backend;
use crate::capability::calls::{Callee, CallsGrant, Chain};
use crate::capability::events::{self, Events};
use crate::capability::kv::Kv;
use crate::capability::kv_cache::{self, ReadCache};
use crate::capability::log::LogGrant;
use crate::capability::outbox::{self, Outbox};
use crate::capability::refusals::Refusals;
use crate::capability::{calls, config as config_cap, kv, log};
use crate::config::{Entry, Grants, Limits, ReuseFor};
use crate::deploy::artifacts::Artifacts;
use crate::engine::outbound::OutboundGrant;
use crate::engine::registry::{Found, Registry, route_in};
use crate::engine::reuse::{Idle, Reuse};
use crate::engine::state::{CallFacts, Granted, HostState};
use crate::engine::tally::Tally;
use crate::engine::{proxy, sandbox};
use crate::http::auth::is_identity_header;
use crate::storage::{self as keys, Store as Redis};
use crate::telemetry::trail::Trail;
use crate::telemetry::{ComponentLabels, Metrics, REQUEST_ID_HEADER, TRACEPARENT_HEADER, traces};

pub use crate::engine::bindings::{CapError, Event, EventOutcome, Manifest, Request, Response, Route};
use crate::engine::bindings::{ComponentPre, wharf};
use crate::engine::instance::{Exports, Instance};
pub use crate::engine::version::ComponentVersion;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// Epochs tick this often; a running guest yields to tokio at every tick.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Depth of nested `calls.call` (A calls B calls C ...): stops call cycles.
const MAX_CALL_DEPTH: u32 = 4;

/// Why a call into a component produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("component {0} exceeded its deadline")]
    Timeout(String),
    #[error("component {component} trapped: {message}")]
    Trap { component: String, message: String },
    /// Every instance slot is taken: nothing ran, so an event handled now
    /// has not had an attempt (it waits; see `streams`).
    #[error("no instance slot free (limits.max_instances)")]
    Busy,
    /// The call wrote, and no replica confirmed it in time
    /// (`redis_durability = "replicated"`): not done, as far as anyone is told.
    #[error("component {component}: {why}")]
    NotReplicated { component: String, why: String },
}

/// What an event's handler answered, and whether Redis answered it
/// `unavailable` on the way (its failure is then Redis's: `streams::decide`).
#[derive(Debug)]
pub struct Handled {
    pub outcome: EventOutcome,
    pub met_redis_outage: bool,
}

/// What the operator set for a component (`[components.<name>]`), for `load`.
#[derive(Default)]
pub struct Settings {
    pub config: BTreeMap<String, String>,
    pub grants: Option<Grants>,
    /// Calls one instance may serve (`reuse`); 0, a fresh instance per call.
    pub instance_reuse: u32,
    /// Which calls those are.
    pub instance_reuse_for: ReuseFor,
    /// Where a `wasi:http` component is mounted; None: `/<name>`.
    pub mount: Option<String>,
}

/// The engine and everything shared by all calls.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    /// What `describe` runs against: logging and config only, every other
    /// capability a trap (`Runtime::load`).
    describe_linker: Linker<HostState>,
    /// What a mounted `wasi:http` component runs against (`proxy`).
    proxy_linker: Linker<HostState>,
    pub redis: Redis,
    pub limits: Limits,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    /// The capability units with per-host state.
    pub units: Units,
    served: std::sync::Mutex<std::collections::HashMap<String, Arc<AtomicU64>>>,
    /// Itself, as the calls capability's `Callee`.
    me: Weak<Runtime>,
}

/// The capabilities that keep something per host (the rest keep only
/// per-version grants).
pub struct Units {
    pub kv: Arc<Kv>,
    pub events: Arc<Events>,
    pub outbox: Arc<Outbox>,
}

impl Runtime {
    pub fn new(redis: Redis, limits: Limits) -> Result<Arc<Runtime>> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(limits.max_instances)
            .total_core_instances(limits.max_instances * 8)
            .total_memories(limits.max_instances * 2)
            .total_tables(limits.max_instances * 4)
            .total_stacks(limits.max_instances)
            .max_memory_size(limits.memory_bytes)
            // Keep recycled slots resident: re-faulting pages on every call is
            // what makes a naive per-call instance slow.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10)
            // Reset only the pages a call dirtied (Linux 6.7+; ignored elsewhere).
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_reservation(limits.memory_bytes as u64);
        // `WHARF_PERF_MAP=1` names guest code in `perf` profiles (/tmp/perf-PID.map).
        if std::env::var_os("WHARF_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(wt)?;
        let linker = link(&engine, Link::Everything).map_err(wt)?;
        let describe_linker = link(&engine, Link::Describe).map_err(wt)?;
        let proxy_linker = link(&engine, Link::Proxy).map_err(wt)?;

        let metrics = Arc::new(Metrics::default());
        let backend = Backend { redis: redis.clone(), metrics: metrics.clone() };
        let units = Units {
            kv: Kv::new(backend.clone(), ReadCache::new(limits.read_cache_entries), limits.value_bytes),
            events: Events::new(backend.clone(), limits.event_bytes, limits.publishes_per_second),
            outbox: Outbox::new(backend),
        };
        let rt = Arc::new_cyclic(|me| Runtime {
            engine,
            linker,
            describe_linker,
            proxy_linker,
            redis,
            limits,
            registry: Registry::default(),
            metrics,
            units,
            served: Default::default(),
            me: me.clone(),
        });
        // The epoch clock runs on its own thread: a tokio task can be starved
        // by the very guest it is meant to interrupt.
        let weak = Arc::downgrade(&rt);
        std::thread::Builder::new().name("wharf-epoch".into()).spawn(move || {
            while let Some(rt) = weak.upgrade() {
                rt.engine.increment_epoch();
                drop(rt);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        Ok(rt)
    }

    /// Compiles (or takes from `cache`), links and instantiates `wasm` once,
    /// and reads its manifest. Any failure leaves nothing behind: the caller
    /// keeps what it had. A `wasi:http` component (`proxy`) is mounted
    /// instead, as `name` at `settings.mount` (default `/<name>`).
    pub async fn load(
        self: &Arc<Self>,
        name: &str,
        wasm: &[u8],
        settings: Settings,
        cache: Option<Arc<Artifacts>>,
    ) -> Result<Arc<ComponentVersion>> {
        let Settings { config, grants, instance_reuse, instance_reuse_for, mount } = settings;
        let grants = grants.map(Arc::new);
        let sha256 = hex::encode(Sha256::digest(wasm));
        let engine = self.engine.clone();
        let bytes = wasm.to_vec();
        let sha = sha256.clone();
        let component =
            tokio::task::spawn_blocking(move || compile_cached(&engine, &bytes, &sha, cache.as_deref())).await??;
        check_wit_version(&self.engine, &component)?;
        let config = Arc::new(config);
        if proxy::is_proxy(&self.engine, &component) {
            let mount = mount.unwrap_or_else(|| format!("/{name}"));
            proxy::check_mount(&mount)?;
            let linked = self
                .proxy_linker
                .instantiate_pre(&component)
                .map_err(|e| anyhow::anyhow!("the wasi:http component imports what a mount does not give: {e:#}"))?;
            let pre = ProxyPre::new(linked).map_err(wt)?;
            let manifest = proxy::manifest(name, &mount);
            return Ok(self.version(manifest, sha256, &config, grants, Exports::Proxy(pre), Some(mount), None));
        }
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("the component does not fit the wharf:plugin world: {e:#}"))?;
        let pre = ComponentPre::new(instance_pre)
            .map_err(|e| anyhow::anyhow!("the component does not export the wharf:plugin world: {e:#}"))?;
        // `describe` runs before the grants are checked and the name is
        // known: its instance may log and read config, nothing else (a kv
        // write or a call would act under no namespace and no grants).
        let mut describe_linker = self.describe_linker.clone();
        trap_capabilities(&mut describe_linker, &self.engine, &component).map_err(wt)?;
        let describe_pre = ComponentPre::new(describe_linker.instantiate_pre(&component).map_err(wt)?)
            .map_err(|e| anyhow::anyhow!("the component does not export the wharf:plugin world: {e:#}"))?;

        // A provisional version, only to run `describe` under the usual limits.
        let unnamed = Manifest {
            name: format!("(loading {})", &sha256[..12]),
            routes: vec![],
            subscriptions: vec![],
            publishes: vec![],
        };
        let provisional = Arc::new(ComponentVersion {
            name: unnamed.name.clone(),
            sha256: sha256.clone(),
            granted: self.grant(&unnamed, &config, grants.as_deref()),
            manifest: unnamed,
            loaded_at: SystemTime::now(),
            requests: Arc::default(),
            grants: grants.clone(),
            pre: Exports::Plugin(describe_pre),
            mount: None,
            instantiate_seconds: None,
            served: Tally::default(),
            instantiations: AtomicU64::new(0),
            instantiate_ns: AtomicU64::new(0),
            reuse: None,
        });
        let manifest = self
            .run_call(
                &provisional,
                CallFacts { trail: Trail::default(), identity: Vec::new(), chain: Chain::start(Entry::Request) },
                self.limits.call_timeout(),
                async |store, inst| match inst {
                    Instance::Plugin(c) => c.wharf_plugin_manifest().call_describe(store).await,
                    Instance::Proxy(_) => wasmtime::bail!("a wasi:http component has no manifest"),
                },
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("calling the component's manifest (describe may only log and read config): {e}")
            })?;
        check_manifest(&manifest)?;
        match &grants {
            Some(g) => events::check_grants(&manifest, g)?,
            None => tracing::warn!(
                component = %manifest.name,
                "no [components.{}.grants] in the configuration: it gets what its manifest declares",
                manifest.name
            ),
        }
        // Whether its instances are small enough never to wait for a kept one.
        let initial_memory =
            component.resources_required().and_then(|r| r.max_initial_memory_size).map(|pages| pages * 65536);
        let reuse = Reuse::new(instance_reuse, initial_memory, self.limits.max_instances as usize)
            .map(|r| r.only_for(instance_reuse_for));
        if let Some(r) = &reuse {
            tracing::debug!(component = %manifest.name, ?initial_memory, bounded = r.bounded(), calls = ?instance_reuse_for, "instances kept between calls");
        }
        Ok(self.version(manifest, sha256, &config, grants, Exports::Plugin(pre), None, reuse))
    }

    /// A loaded version, its capabilities granted.
    #[allow(clippy::too_many_arguments)]
    fn version(
        &self,
        manifest: Manifest,
        sha256: String,
        config: &Arc<BTreeMap<String, String>>,
        grants: Option<Arc<Grants>>,
        pre: Exports,
        mount: Option<String>,
        reuse: Option<Reuse>,
    ) -> Arc<ComponentVersion> {
        let labels = ComponentLabels { component: manifest.name.clone() };
        let instantiate_seconds = Some(self.metrics.instantiate.get_or_create(&labels).clone());
        Arc::new(ComponentVersion {
            name: manifest.name.clone(),
            requests: self.requests_of(&sha256),
            sha256,
            granted: self.grant(&manifest, config, grants.as_deref()),
            manifest,
            loaded_at: SystemTime::now(),
            grants,
            pre,
            mount,
            instantiate_seconds,
            served: Tally::default(),
            instantiations: AtomicU64::new(0),
            instantiate_ns: AtomicU64::new(0),
            reuse,
        })
    }

    /// Each capability's grant to the version `manifest` describes.
    fn grant(
        &self,
        manifest: &Manifest,
        config: &Arc<BTreeMap<String, String>>,
        grants: Option<&Grants>,
    ) -> Arc<Granted> {
        let name = manifest.name.as_str();
        let refusals = Refusals::new(name, self.metrics.clone());
        let kv = self.units.kv.grant(name, refusals.clone());
        let events = self.units.events.grant(manifest, refusals.clone());
        let callee: Weak<dyn Callee> = self.me.clone();
        Arc::new(Granted {
            outbox: self.units.outbox.grant(&kv, &events),
            calls: CallsGrant::new(callee, name, grants, self.limits.call_timeout(), refusals.clone()),
            log: LogGrant::new(self.limits.log_lines_per_second, refusals.clone()),
            config: config.clone(),
            outbound: OutboundGrant::new(grants.map(|g| g.outbound_http.clone()).unwrap_or_default(), refusals.clone()),
            kv,
            events,
            refusals,
        })
    }

    /// Starts the capabilities' background work under `supervisor`: the
    /// read cache's listener on the gateway's runtime (under load,
    /// invalidations must not wait behind event handlers), the outbox
    /// publisher and the delayed-event mover on the background one.
    pub fn start_workers(self: &Arc<Self>, supervisor: &Supervisor, poll: Duration) {
        let cache = self.units.kv.cache().clone();
        let redis = self.redis.clone();
        supervisor
            .worker("read cache listener", move |stop| kv_cache::run_listener(cache.clone(), redis.clone(), stop));
        let rt = self.clone();
        supervisor.background_worker("delayed-event mover", move |stop| {
            let rt = rt.clone();
            events::run_delayed_mover(rt.units.events.clone(), move || rt.registry.snapshot().published(), poll, stop)
        });
        let rt = self.clone();
        supervisor.background_worker("outbox publisher", move |stop| {
            let rt = rt.clone();
            outbox::run_publisher(rt.units.outbox.clone(), move || rt.registry.snapshot().publishers(), poll, stop)
        });
    }

    /// The instance pool's figures into the metrics: instances alive, the
    /// warm slots, and what those keep resident (per slot: what one instance
    /// costs in resident memory between calls).
    pub fn record_pool(&self) {
        let Some(pool) = self.engine.pooling_allocator_metrics() else { return };
        let m = &self.metrics;
        m.instances_live.set(pool.component_instances() as i64);
        m.pool_warm_slots.set(pool.unused_warm_memories() as i64);
        let resident = pool.unused_memory_bytes_resident()
            + pool.unused_table_bytes_resident()
            + pool.unused_stack_bytes_resident().unwrap_or(0);
        m.pool_resident_bytes.set(resident as i64);
    }

    /// The request counter of the version with this sha256.
    pub fn requests_of(&self, sha256: &str) -> Arc<AtomicU64> {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        served.entry(sha256.to_string()).or_default().clone()
    }

    /// Runs one HTTP request from outside in an instance of `version`
    /// (fresh, unless it keeps instances for requests).
    pub async fn handle_request(&self, version: &Arc<ComponentVersion>, req: &Request) -> Result<Response, CallError> {
        self.run_request(version, req, Chain::start(Entry::Request)).await
    }

    /// Runs a request at its place in a chain of calls: a call another
    /// component makes while handling an event serves that event.
    async fn run_request(
        &self,
        version: &Arc<ComponentVersion>,
        req: &Request,
        chain: Chain,
    ) -> Result<Response, CallError> {
        version.requests.fetch_add(1, Ordering::Relaxed);
        let header = |name: &str| req.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let facts = CallFacts {
            trail: Trail::new(header(REQUEST_ID_HEADER), header(TRACEPARENT_HEADER).filter(|_| traces::enabled())),
            identity: req.headers.iter().filter(|(k, _)| is_identity_header(k)).cloned().collect(),
            chain,
        };
        let deadline = version.timeout(self.limits.call_timeout());
        self.run_call(version, facts, deadline, async move |store, inst| match inst {
            Instance::Plugin(c) => c.wharf_plugin_http().call_handle(store, req).await,
            Instance::Proxy(p) => proxy::handle(store, p, req).await,
        })
        .await
    }

    /// Runs one event in an instance of `version` (fresh, unless it keeps
    /// instances for events), stopped after
    /// `deadline` (the streams layer may allow less than the call timeout).
    pub async fn handle_event(
        &self,
        version: &Arc<ComponentVersion>,
        ev: &Event,
        trail: Trail,
        deadline: Duration,
    ) -> Result<Handled, CallError> {
        let deadline = version.timeout(deadline);
        let facts = CallFacts { trail, identity: Vec::new(), chain: Chain::start(Entry::Event) };
        self.run_call(version, facts, deadline, async move |store, inst| {
            let Instance::Plugin(inst) = inst else { wasmtime::bail!("a mounted wasi:http component takes no events") };
            let outcome = inst.wharf_plugin_events_handler().call_handle(&mut *store, ev).await?;
            Ok(Handled { outcome, met_redis_outage: store.data().met_redis_outage() })
        })
        .await
    }

    /// Instantiates `version` in a new store (or takes a kept instance, if
    /// it keeps them for what the call serves, `facts.chain.entry`) and runs `f`
    /// under `deadline`, for the caller and request `facts` name.
    async fn run_call<R>(
        &self,
        version: &Arc<ComponentVersion>,
        facts: CallFacts,
        deadline: Duration,
        f: impl AsyncFnOnce(&mut Store<HostState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        // A reusing version's turn, waited for within the deadline. A nested
        // call (A calls A, or A calls B calls A) never waits: its caller may
        // hold the turn it would wait for. Without a turn it runs in a fresh
        // instance that is not kept.
        let started = Instant::now();
        let nested = facts.chain.is_nested();
        let kept = version.reuse.as_ref().filter(|r| r.serves(facts.chain.entry));
        let turn = match kept {
            Some(reuse) if nested => reuse.try_turn(),
            // An unbounded (small) version's turn is ready at once.
            Some(reuse) => Some(
                tokio::time::timeout(deadline, reuse.turn())
                    .await
                    .map_err(|_| CallError::Timeout(version.name.clone()))?,
            ),
            None => None,
        };
        let reuse = kept.filter(|_| turn.is_some());
        let deadline = deadline.saturating_sub(started.elapsed());
        let (mut store, reused, calls) = match reuse.and_then(Reuse::take) {
            Some(Idle { mut store, instance, calls }) => {
                store.data_mut().begin_call(facts);
                (store, Some(instance), calls)
            }
            None => {
                let state = HostState::new(&version.granted, facts, version.memory_limit(self.limits.memory_bytes));
                let mut store = Store::new(&self.engine, state);
                store.limiter(|s| s);
                // Yield to tokio at every tick so a busy guest never starves other tasks;
                // the deadline itself is the timeout below, which also covers host calls.
                store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
                (store, None, 0)
            }
        };
        store.set_epoch_deadline(1);
        let run = async {
            let instance = match reused {
                Some(instance) => instance,
                None => {
                    let started = Instant::now();
                    let instance = match &version.pre {
                        Exports::Plugin(pre) => pre.instantiate_async(&mut store).await.map(Instance::Plugin),
                        Exports::Proxy(pre) => pre.instantiate_async(&mut store).await.map(Instance::Proxy),
                    };
                    let instance = match instance {
                        Ok(i) => i,
                        Err(e) if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
                            return Ok(Err(CallError::Busy));
                        }
                        Err(e) => return Err(e),
                    };
                    let took = started.elapsed();
                    if let Some(h) = &version.instantiate_seconds {
                        h.observe(took.as_secs_f64());
                    }
                    version.instantiations.fetch_add(1, Ordering::Relaxed);
                    version.instantiate_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
                    instance
                }
            };
            let out = f(&mut store, &instance).await?;
            Ok(Ok((out, instance)))
        };
        let out = match tokio::time::timeout(deadline, run).await {
            Err(_) => return Err(CallError::Timeout(version.name.clone())),
            Ok(Err(e)) => return Err(CallError::Trap { component: version.name.clone(), message: format!("{e:#}") }),
            Ok(Ok(r)) => r?,
        };
        // The host's own step, after the component's deadline: with
        // `redis_durability = "replicated"`, nothing it wrote or read is
        // reported done before a replica has it (`redis_replica_wait_ms`).
        if store.data().used_storage()
            && let Err(why) = self.redis.confirm_replicated().await
        {
            return Err(CallError::NotReplicated { component: version.name.clone(), why });
        }
        let (out, instance) = out;
        if let Some(reuse) = reuse {
            reuse.give_back(Idle { store, instance, calls: calls + 1 });
        }
        drop(turn);
        Ok(out)
    }

    /// Calls another component's HTTP handler on behalf of a guest, whose
    /// own call is `caller`.
    pub async fn call_component(
        &self,
        target: &str,
        req: Request,
        caller: Chain,
        timeout: Duration,
    ) -> Result<Response, CapError> {
        if caller.depth >= MAX_CALL_DEPTH {
            return Err(CapError::Invalid(format!("call depth {MAX_CALL_DEPTH} exceeded")));
        }
        let Some(version) = self.registry.get(target) else {
            return Err(CapError::Unavailable(format!("no component named {target}")));
        };
        // The host routes a call as it routes a request from outside.
        let mut req = req;
        match route_in(&version.manifest, &req.method, &req.path) {
            Found::Route(route, params) => (req.route, req.params) = (route, params),
            Found::OtherMethods(allowed) => {
                let why = format!("{} is not allowed on {}", req.method, req.path);
                return Ok(error_answer(405, "method_not_allowed", &why, Some(allowed.join(", "))));
            }
            Found::Nothing => {
                let why = format!("no route for {} {} in {target}", req.method, req.path);
                return Ok(error_answer(404, "not_found", &why, None));
            }
        }
        let started = Instant::now();
        let result = tokio::time::timeout(timeout, self.run_request(&version, &req, caller.next())).await;
        tracing::debug!(target: "wharf::calls", to = target, elapsed_ms = started.elapsed().as_millis() as u64, "component call");
        match result {
            Err(_) | Ok(Err(CallError::Timeout(_))) => {
                Err(CapError::Unavailable(format!("{target} did not answer in time")))
            }
            Ok(Err(CallError::Busy)) => Err(CapError::Unavailable(format!("{target}: no instance slot free"))),
            // The trap's text (backtraces, host details) is for the log, not
            // for the caller, which might hand it to its own client.
            Ok(Err(e)) => {
                tracing::error!(error = %e, "called component failed");
                Err(CapError::Unavailable(format!("{target} failed while handling the call")))
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

impl Callee for Runtime {
    fn call<'a>(
        self: Arc<Self>,
        target: &'a str,
        req: Request,
        caller: Chain,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Response, CapError>> + Send + 'a>> {
        Box::pin(async move { self.call_component(target, req, caller, timeout).await })
    }
}

/// Which of the host's interfaces a linker serves.
enum Link {
    /// Every capability: a call.
    Everything,
    /// Logging and config only: `describe`, before the grants are known.
    Describe,
    /// wasi:http's types and incoming handler, for a mounted component.
    Proxy,
}

/// A linker with WASI (its files, network and environment refused, see
/// `sandbox`) and each capability's interfaces, reached through its
/// context in `HostState`.
fn link(engine: &Engine, what: Link) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    sandbox::add_wasi_refusals(&mut linker)?;
    if let Link::Proxy = what {
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        return Ok(linker);
    }
    wharf::plugin::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    log::add_to_linker(&mut linker, HostState::log)?;
    config_cap::add_to_linker(&mut linker, HostState::config)?;
    if let Link::Everything = what {
        kv::add_to_linker(&mut linker, HostState::kv)?;
        outbox::add_to_linker(&mut linker, HostState::outbox)?;
        events::add_to_linker(&mut linker, HostState::events)?;
        calls::add_to_linker(&mut linker, HostState::calls)?;
    }
    Ok(linker)
}

/// The JSON error answer a component would give, for a call the host could
/// not route.
fn error_answer(status: u16, code: &str, message: &str, allow: Option<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string().into_bytes();
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(allow.map(|a| ("allow".to_string(), a)));
    Response { status, headers, body }
}

/// Defines every function of the Wharf interfaces `component` imports and
/// `linker` lacks (kv, events, calls) as a trap that names it. Only Wharf's
/// own: wasmtime's `define_unknown_imports_as_traps` would also shadow WASI
/// interfaces the linker serves under another semver-compatible version.
fn trap_capabilities(
    linker: &mut Linker<HostState>,
    engine: &Engine,
    component: &WasmComponent,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    for (name, item) in component.component_type().imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
        if !name.starts_with("wharf:plugin/")
            || ["/log", "/config", "/types"].iter().any(|i| name.contains(&format!("{i}@")) || name.ends_with(i))
        {
            continue;
        }
        let mut inst = linker.instance(name)?;
        for (func, f) in instance.exports(engine) {
            if let ComponentItem::ComponentFunc(_) = f.ty {
                let what = format!("{name}#{func}");
                inst.func_new(func, move |_, _, _, _| {
                    wasmtime::bail!("{what} is not available while the manifest is read")
                })?;
            }
        }
    }
    Ok(())
}

/// Compiles `wasm`, or loads its precompiled artifact from the cache: a
/// restart or a rollback then skips Cranelift entirely.
fn compile_cached(engine: &Engine, wasm: &[u8], sha: &str, cache: Option<&Artifacts>) -> Result<WasmComponent> {
    if let Some(compiled) = cache.and_then(|c| c.read_compiled(sha)) {
        // SAFETY: the artifact's HMAC tag verified under this host's key, so
        // this host serialised it itself; wasmtime refuses artifacts of
        // another engine configuration.
        match unsafe { WasmComponent::deserialize(engine, &compiled) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(sha256 = %&sha[..12], error = %e, "ignoring unusable precompiled artifact"),
        }
    }
    let component =
        WasmComponent::new(engine, wasm).map_err(|e| anyhow::anyhow!("not a valid WebAssembly component: {e:#}"))?;
    if let Some(cache) = cache {
        match component.serialize() {
            Ok(bytes) => {
                if let Err(e) = cache.keep_compiled(sha, &bytes) {
                    tracing::warn!(sha256 = %&sha[..12], error = %format!("{e:#}"), "cannot cache the compiled component");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialise the compiled component"),
        }
    }
    Ok(component)
}

/// wasmtime 48 has its own error type; carry its full chain into anyhow.
fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// The version of `wit/wharf.wit` this host serves.
const WIT_VERSION: &str = "0.2.2";

/// Whether a component built for `wharf:plugin@version` runs here: this
/// version, or an earlier patch of it (a patch only adds functions, and
/// wasmtime's linker gives a `0.2.0` import the `0.2.1` definition).
fn wit_compatible(version: &str) -> bool {
    let split = |v: &str| v.rsplit_once('.').map(|(minor, patch)| (minor.to_string(), patch.parse::<u32>().ok()));
    match (split(version), split(WIT_VERSION)) {
        (Some((minor, Some(patch))), Some((ours, Some(our_patch)))) => minor == ours && patch <= our_patch,
        _ => false,
    }
}

/// A component built against another `wharf:plugin` version would fail to
/// link with a message about one missing interface; say what to do instead.
fn check_wit_version(engine: &Engine, component: &WasmComponent) -> Result<()> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine).chain(ty.exports(engine)) {
        if let Some((_, version)) = name.strip_prefix("wharf:plugin/").and_then(|rest| rest.split_once('@'))
            && !wit_compatible(version)
        {
            bail!(
                "the component was built for wharf:plugin@{version}, and this host serves wharf:plugin@{WIT_VERSION} (and its earlier patches): rebuild it with the current wharf-sdk (or wit/wharf.wit)"
            );
        }
    }
    Ok(())
}

/// The methods a component's route may declare.
const ROUTE_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn check_manifest(m: &Manifest) -> Result<()> {
    if !keys::is_valid_name(&m.name) {
        bail!("manifest name {:?} must be 1-64 characters of a-z, 0-9, - and _", m.name);
    }
    for r in &m.routes {
        // The method reaches the API document and the `/docs` page: only the
        // HTTP methods a route can have.
        if !ROUTE_METHODS.iter().any(|known| r.method.eq_ignore_ascii_case(known)) {
            bail!("route {:?} {:?}: the method must be one of {ROUTE_METHODS:?}", r.method, r.path);
        }
        if !r.path.starts_with('/') || r.path.chars().any(|c| c.is_control() || c.is_whitespace()) {
            bail!("route {} {:?} must start with / and hold no spaces or control characters", r.method, r.path);
        }
        // `{*rest}` is the host's, for a mounted wasi:http component only.
        if r.path.contains("{*") {
            bail!("route {} {:?}: a {{*...}} segment is not for components; use {{name}}", r.method, r.path);
        }
        if let Some(a) = r.answers.iter().find(|a| !(100..=599).contains(&a.status)) {
            bail!("route {} {}: {} is not an HTTP status", r.method, r.path, a.status);
        }
        if let Some(q) = r.query.iter().find(|q| !keys::is_valid_name(&q.name.to_ascii_lowercase())) {
            bail!("route {} {}: query parameter {:?} must be 1-64 letters, digits, - and _", r.method, r.path, q.name);
        }
    }
    for s in &m.subscriptions {
        if !keys::is_valid_name(&s.stream) || !keys::is_valid_name(&s.group) {
            bail!("subscription {}/{} has an invalid stream or group name", s.stream, s.group);
        }
    }
    for s in &m.publishes {
        if !keys::is_valid_name(s) {
            bail!("published stream {s:?} has an invalid name");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wit_compatible;

    #[test]
    fn a_component_of_this_contract_or_an_earlier_patch_runs_and_no_other() {
        assert!(wit_compatible("0.2.2"));
        assert!(wit_compatible("0.2.1"));
        assert!(wit_compatible("0.2.0"));
        assert!(!wit_compatible("0.2.3"), "a later patch may import what this host lacks");
        assert!(!wit_compatible("0.1.0"));
        assert!(!wit_compatible("0.3.0"));
        assert!(!wit_compatible("1.2.1"));
        assert!(!wit_compatible("0.2.x"));
    }
}
