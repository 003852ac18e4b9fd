//! A small OTLP/HTTP collector: what Jaeger or an OpenTelemetry Collector
//! would receive from a host. It takes `POST /v1/traces` in OTLP's JSON
//! encoding (the host started with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`)
//! and keeps every span.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One span as the collector got it.
#[derive(Clone, Debug)]
pub struct SpanSeen {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// OTLP's `SpanKind`: 2 server, 5 consumer.
    pub kind: i64,
    pub attributes: HashMap<String, Value>,
}

impl SpanSeen {
    /// A string attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key)?.get("stringValue")?.as_str()
    }
}

pub struct Collector {
    /// For `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter adds `/v1/traces`).
    pub endpoint: String,
    spans: Arc<Mutex<Vec<SpanSeen>>>,
}

impl Collector {
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let serve = service_fn(move |req: hyper::Request<Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await?.to_bytes();
                            let status = match serde_json::from_slice::<Value>(&body) {
                                Ok(export) if path == "/v1/traces" => {
                                    kept.lock().unwrap().extend(spans_of(&export));
                                    200
                                }
                                _ => 400,
                            };
                            let resp = hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(b"{}")))
                                .unwrap();
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), serve).await;
                });
            }
        });
        Collector { endpoint, spans }
    }

    pub fn spans(&self) -> Vec<SpanSeen> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans once `done` holds for them; panics with what came after `timeout`.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&[SpanSeen]) -> bool) -> Vec<SpanSeen> {
        let until = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < until, "the collector did not get the spans awaited; it got:\n{spans:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every span of an `ExportTraceServiceRequest` in JSON.
fn spans_of(export: &Value) -> Vec<SpanSeen> {
    let list = |v: &Value, key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut out = Vec::new();
    for resource in list(export, "resourceSpans") {
        for scope in list(&resource, "scopeSpans") {
            for span in list(&scope, "spans") {
                let attributes = list(&span, "attributes")
                    .iter()
                    .map(|a| (text(a, "key"), a.get("value").cloned().unwrap_or_default()))
                    .collect();
                out.push(SpanSeen {
                    name: text(&span, "name"),
                    trace_id: text(&span, "traceId").to_lowercase(),
                    span_id: text(&span, "spanId").to_lowercase(),
                    parent_span_id: text(&span, "parentSpanId").to_lowercase(),
                    kind: span.get("kind").and_then(Value::as_i64).unwrap_or_default(),
                    attributes,
                });
            }
        }
    }
    out
}
