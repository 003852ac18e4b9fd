//! Spans over OTLP, for the tracing tools operators already run (Jaeger,
//! Tempo, an OpenTelemetry Collector). Off unless `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; then the standard
//! `OTEL_*` variables configure the rest: the protocol (`http/protobuf`, the
//! default, or `http/json`), headers, timeouts, the batch processor
//! (`OTEL_BSP_*`), the sampler and `OTEL_SERVICE_NAME` (default `wharf`).
//!
//! One span per unit of work the host runs:
//! - `request`: a server span per HTTP request, the child of the caller's
//!   `traceparent` when it sends one;
//! - `event`: a consumer span per delivery of an event, the child of the
//!   span that published it (its `traceparent` travels in the entry: see
//!   `trail`).
//!
//! So one order's spans, from `POST /orders` through the settle event to the
//! stock taken, form one trace. Off, a span is `None` and costs one load.

use std::sync::OnceLock;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Keep it while the host runs: dropping it exports the spans still queued.
/// Drop it outside the async runtime: the exporter's HTTP client blocks.
pub struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!(error = %e, "the last spans were not all exported");
        }
    }
}

/// Starts exporting when the environment names an OTLP endpoint. Call it
/// before any async runtime exists (see `Exporting`).
pub fn init() -> anyhow::Result<Option<Exporting>> {
    let set = |name| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let mut resource = Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name("wharf");
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    let _ = TRACER.set(provider.tracer("wharf"));
    tracing::info!("exporting spans over OTLP");
    Ok(Some(Exporting(provider)))
}

/// Whether spans are exported (and so worth carrying a `traceparent` for).
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// One span, ended when dropped; `None` when traces are off.
pub struct Span(Option<opentelemetry_sdk::trace::Span>);

impl Span {
    /// A server span for one HTTP request (`traceparent`: the caller's).
    pub fn request(method: &str, traceparent: Option<&str>) -> Span {
        if !enabled() {
            return Span(None);
        }
        Span::start(method.to_string(), SpanKind::Server, traceparent)
    }

    /// A consumer span for one delivery of an event of `stream`
    /// (`traceparent`: the publisher's, from the entry).
    pub fn event(stream: &str, traceparent: Option<&str>) -> Span {
        if !enabled() {
            return Span(None);
        }
        Span::start(format!("{stream} process"), SpanKind::Consumer, traceparent)
    }

    fn start(name: String, kind: SpanKind, traceparent: Option<&str>) -> Span {
        let Some(tracer) = TRACER.get() else { return Span(None) };
        let parent =
            traceparent.and_then(parse).map_or_else(Context::new, |sc| Context::new().with_remote_span_context(sc));
        Span(Some(tracer.span_builder(name).with_kind(kind).start_with_context(tracer, &parent)))
    }

    /// The span as a W3C `traceparent`, for what it causes to carry.
    pub fn traceparent(&self) -> Option<String> {
        let sc = self.0.as_ref()?.span_context();
        sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
    }

    /// Whether it is exported: build its attributes only then.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Names the span once what it did is known (`POST /orders`).
    pub fn rename(&mut self, name: String) {
        if let Some(span) = &mut self.0 {
            span.update_name(name);
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, why: impl Into<String>) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(why.into()));
        }
    }
}

/// A W3C `traceparent`'s span context (`telemetry::trace_id` checks the form).
fn parse(traceparent: &str) -> Option<SpanContext> {
    super::trace_id(traceparent)?;
    let mut parts = traceparent.trim().split('-').skip(1);
    let trace = TraceId::from_hex(parts.next()?).ok()?;
    let span = SpanId::from_hex(parts.next()?).ok()?;
    let flags = u8::from_str_radix(parts.next()?, 16).ok()?;
    Some(SpanContext::new(trace, span, TraceFlags::new(flags), true, TraceState::NONE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_becomes_a_remote_parent() {
        let sc = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
        assert!(parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse("garbage").is_none());
    }

    #[test]
    fn off_a_span_is_nothing() {
        // No exporter in unit tests: spans are inert and carry nothing.
        let mut span = Span::request("GET", Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        span.set("http.response.status_code", 200);
        assert!(span.traceparent().is_none());
    }
}
