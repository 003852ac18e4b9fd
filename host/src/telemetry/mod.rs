//! Seeing what happens: the log format, request ids that follow a request
//! through every component call and stream hop, and the Prometheus metrics
//! served on `GET /metrics`.
//!
//! A request id comes from the client's `X-Request-Id` (when it is a sane
//! token) or is made up at the gateway. It goes to the component as that
//! header, into every event the request publishes (a `request_id` field
//! beside the payload), and from there into the handlers of those events and
//! whatever they publish: one order can be followed through every hop by
//! grepping the logs for one id.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub mod traces;
pub mod trail;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::io::IsTerminal;

use crate::log_writer;
use tracing_subscriber::EnvFilter;

/// The header a request id travels in, to the client and to components.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The W3C header a span's context travels in: from the caller to the
/// gateway, and from the host's span to the component it runs.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// Logs as text, or as JSON lines when `WHARF_LOG_FORMAT=json`; the level
/// filter comes from `WHARF_LOG` (default `info`).
///
/// Lines go to stdout through a writer thread that writes them in batches
/// (`log_writer`): a request formats its line but never waits on the write
/// (a syscall per line cost about 4% of a request's CPU), nor wakes a
/// thread for it. Nothing is dropped. Keep the returned guard until exit;
/// dropping it flushes.
pub fn init_logs() -> log_writer::Flush {
    let filter = EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("WHARF_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let (writer, guard) = log_writer::to(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    if json {
        builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
    } else {
        builder.init();
    }
    guard
}

/// The client's request id if it is a sane token (1-128 visible ASCII
/// characters, no spaces), else a new one: 32 hex digits, a random prefix
/// per process and a counter. Unique across hosts like a UUID, without
/// asking the OS for randomness on every request.
pub fn request_id(given: Option<&str>) -> String {
    static PREFIX: LazyLock<u64> = LazyLock::new(|| uuid::Uuid::new_v4().as_u64_pair().0);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    match given {
        Some(id) if is_valid_request_id(id) => id.to_string(),
        _ => format!("{:016x}{:016x}", *PREFIX, NEXT.fetch_add(1, Ordering::Relaxed)),
    }
}

/// The trace id of a W3C `traceparent` header
/// (`<version>-<trace id>-<parent id>-<flags>`), if it is one: 32 lowercase
/// hex digits, not all zero. A request that has one and no `X-Request-Id`
/// takes it as its request id, so the caller's trace id is what every hop
/// of the request (its events included) logs and carries.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(trace)
}

pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub component: String,
    pub route: String,
    /// One of the standard methods, or `OTHER`.
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub component: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub stream: String,
    pub group: String,
    /// `acked`, `retried` or `dead_lettered`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    pub stream: String,
    pub group: String,
    /// The stream's partition (`0` for a stream of one).
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub component: String,
    /// `key`, `publish`, `call`, `memory`, `files` or `network`.
    pub capability: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 us to about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

fn latency_family<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
    HistogramFamily::new_with_constructor(latency_histogram as fn() -> _)
}

/// Registers `metric` under `name` and hands back the handle the host updates.
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Every metric the host exports. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    pub instantiate: HistogramFamily<ComponentLabels>,
    pub events: Family<EventLabels, Counter>,
    pub consumer_lag: Family<GroupLabels, Gauge>,
    pub consumer_pending: Family<GroupLabels, Gauge>,
    pub event_backlog: Gauge,
    pub instances_live: Gauge,
    pub pool_warm_slots: Gauge,
    pub pool_resident_bytes: Gauge,
    pub swaps: Family<ComponentLabels, Counter>,
    pub swap_duration: HistogramFamily<ComponentLabels>,
    pub redis_errors: Counter,
    pub kv_cache_hits: Counter,
    pub kv_cache_misses: Counter,
    pub outbox_published: Counter,
    pub outbox_failures: Counter,
    pub sandbox_refusals: Family<RefusalLabels, Counter>,
    pub connections_refused: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("wharf");
        let http_requests = register(
            &mut registry,
            "http_requests",
            "HTTP requests by component, route and status",
            Family::<HttpLabels, Counter>::default(),
        );
        let http_duration = register(
            &mut registry,
            "http_request_duration_seconds",
            "Time from a request's headers to its answer, by component and route",
            latency_family::<RouteLabels>(),
        );
        let instantiate = register(
            &mut registry,
            "instantiate_duration_seconds",
            "Time to create a fresh component instance for one call",
            latency_family::<ComponentLabels>(),
        );
        let events = register(
            &mut registry,
            "events",
            "Stream events handled, by outcome (acked, retried, dead_lettered)",
            Family::<EventLabels, Counter>::default(),
        );
        let consumer_lag = register(
            &mut registry,
            "consumer_lag",
            "Entries not yet delivered to the group (XINFO GROUPS lag)",
            Family::<GroupLabels, Gauge>::default(),
        );
        let consumer_pending = register(
            &mut registry,
            "consumer_pending",
            "Entries delivered to the group and not yet acknowledged",
            Family::<GroupLabels, Gauge>::default(),
        );
        let event_backlog = register(
            &mut registry,
            "event_backlog",
            "Events waiting in the streams this host reads, as the front door's backpressure sees them",
            Gauge::default(),
        );
        let instances_live = register(
            &mut registry,
            "instances_live",
            "Component instances alive now (pooling allocator)",
            Gauge::default(),
        );
        let pool_warm_slots = register(
            &mut registry,
            "pool_warm_slots",
            "Instance memory slots not in use but kept warm for the next instance",
            Gauge::default(),
        );
        let pool_resident_bytes = register(
            &mut registry,
            "pool_resident_bytes",
            "Memory, table and stack bytes the warm slots keep resident (divided by pool_warm_slots: one instance's resident memory)",
            Gauge::default(),
        );
        let swaps = register(
            &mut registry,
            "swaps",
            "Component versions swapped in",
            Family::<ComponentLabels, Counter>::default(),
        );
        let swap_duration = register(
            &mut registry,
            "swap_duration_seconds",
            "Time from a deployment's start to the new version serving",
            latency_family::<ComponentLabels>(),
        );
        let redis_errors =
            register(&mut registry, "redis_errors", "Redis commands that failed or timed out", Counter::default());
        let kv_cache_hits = register(
            &mut registry,
            "kv_cache_hits",
            "batch.get-many-cached calls answered from the host's read cache",
            Counter::default(),
        );
        let kv_cache_misses = register(
            &mut registry,
            "kv_cache_misses",
            "batch.get-many-cached calls that read Redis",
            Counter::default(),
        );
        let outbox_published = register(
            &mut registry,
            "outbox_published",
            "Events of outbox writes appended to their streams, by the write itself or by the publisher",
            Counter::default(),
        );
        let outbox_failures = register(
            &mut registry,
            "outbox_failures",
            "Outbox entries that could not be appended and wait to be tried again",
            Counter::default(),
        );
        let sandbox_refusals = register(
            &mut registry,
            "sandbox_refusals",
            "Capability uses refused to a component (ungranted stream or component, bad key, memory, files, network)",
            Family::<RefusalLabels, Counter>::default(),
        );
        let connections_refused = register(
            &mut registry,
            "connections_refused",
            "Connections answered 503 and closed at once: max_connections were open",
            Counter::default(),
        );
        Metrics {
            connections_refused,
            registry,
            http_requests,
            http_duration,
            instantiate,
            events,
            consumer_lag,
            consumer_pending,
            event_backlog,
            instances_live,
            pool_warm_slots,
            pool_resident_bytes,
            swaps,
            swap_duration,
            redis_errors,
            kv_cache_hits,
            kv_cache_misses,
            outbox_published,
            outbox_failures,
            sandbox_refusals,
        }
    }
}

impl Metrics {
    pub fn event(&self, stream: &str, group: &str, outcome: &'static str) {
        self.events.get_or_create(&EventLabels { stream: stream.into(), group: group.into(), outcome }).inc();
    }

    pub fn swapped(&self, component: &str, took: Duration) {
        let labels = ComponentLabels { component: component.into() };
        self.swaps.get_or_create(&labels).inc();
        self.swap_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_a_malformed_one_nothing() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(&format!("00-{trace}-00f067aa0ba902b7-01")), Some(trace));
        assert_eq!(trace_id(&format!("01-{trace}-00f067aa0ba902b7-01-later")), Some(trace), "a later version");
        for bad in [
            format!("00-{trace}-00f067aa0ba902b7-01-extra"),
            format!("ff-{trace}-00f067aa0ba902b7-01"),
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string(),
            format!("00-{trace}-0000000000000000-01"),
            format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
            format!("00-{trace}-00f067aa0ba902b7"),
            String::new(),
        ] {
            assert_eq!(trace_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn request_ids_are_kept_when_sane() {
        assert_eq!(request_id(Some("abc-123")), "abc-123");
        for bad in ["", "has space", "new\nline", &"x".repeat(129)] {
            let id = request_id(Some(bad));
            assert_ne!(id, bad);
            assert!(is_valid_request_id(&id));
        }
        assert_ne!(request_id(None), request_id(None), "new ids never repeat");
    }

    #[test]
    fn metrics_encode_with_the_wharf_prefix() {
        let m = Metrics::default();
        m.event("order_completed", "inventory-group", "acked");
        m.redis_errors.inc();
        let text = m.encode();
        assert!(
            text.contains(r#"wharf_events_total{stream="order_completed",group="inventory-group",outcome="acked"} 1"#),
            "{text}"
        );
        assert!(text.contains("wharf_redis_errors_total 1"), "{text}");
    }
}
