//! Seeing what happens: request ids through every hop, JSON logs, the
//! Prometheus metrics and the admin view of the streams.

use std::time::Duration;

use crate::harness::otlp::{Collector, SpanSeen};
use crate::harness::{Options, Wharf};
use serde_json::{Value, json};

const TOKEN: &str = "observability-admin-token-0123456789";
const SETTLE: Duration = Duration::from_secs(20);

fn host(env: &[(&str, &str)]) -> Options {
    let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("WHARF_ADMIN_TOKEN".into(), TOKEN.into()));
    Options { components: vec!["inventory", "payment", "analytics"], env, ..Default::default() }
}

/// One order, followed by its request id from the POST through the settle
/// delay (an outbox entry), payment's settle handler, and inventory's and
/// analytics' handlers of `order_completed`.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_id_follows_an_order_through_every_stream_hop() {
    let w = Wharf::start_with(host(&[("WHARF_PAYMENT_SETTLE_DELAY_MS", "50")])).await;
    // A malformed delayed member (no host writes one) is dropped, not a blocker.
    let _: i64 = redis::cmd("ZADD")
        .arg("wharf:stream:{payment_settle}:delayed")
        .arg(0)
        .arg("r:garbage-without-newlines")
        .query(&mut w.redis.conn())
        .unwrap();
    let product = w.create_product("Traced", 2.0, 5).await;
    let body = json!({"product_id": product, "quantity": 2}).to_string().into_bytes();
    let headers = [("content-type", "application/json"), ("x-request-id", "trace-me-123")];
    let r = w.send("POST", "/orders", &headers, body).await.unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.headers["x-request-id"], "trace-me-123");
    let order = r.json()["id"].as_str().unwrap().to_string();
    w.wait_order_status(&order, "completed", SETTLE).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&product).await, 3);

    let logs = w.logs();
    let traced: Vec<&str> = logs.lines().filter(|l| l.contains("trace-me-123")).collect();
    let has = |what: &[&str]| traced.iter().any(|l| what.iter().all(|w| l.contains(w)));
    assert!(has(&["path=/orders", "status=201"]), "the request line:\n{}", traced.join("\n"));
    assert!(has(&["order created"]), "payment's own log line");
    assert!(has(&["stream=payment_settle", "event acked"]), "the settle handler:\n{}", traced.join("\n"));
    assert!(has(&["order completed"]), "payment's log inside the settle handler");
    assert!(has(&["component=inventory", "stream=order_completed", "event acked"]), "inventory's handler");
    assert!(has(&["component=analytics", "stream=order_completed", "event acked"]), "analytics' handler");

    // No id, or an unusable one: the host makes one up and says which.
    let r = w.send("GET", &format!("/products/{product}"), &[], Vec::new()).await.unwrap();
    let made_up = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(made_up.len() >= 16, "{made_up}");
    let r = w.send("GET", "/healthz", &[("x-request-id", "has space")], Vec::new()).await.unwrap();
    assert_ne!(r.headers["x-request-id"], "has space");

    // A W3C `traceparent` and no id: its trace id is the request id, so
    // the caller's trace follows the order through every hop too.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = json!({"product_id": product, "quantity": 1}).to_string().into_bytes();
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let headers = [("content-type", "application/json"), ("traceparent", parent.as_str())];
    let r = w.send("POST", "/orders", &headers, body).await.unwrap();
    assert_eq!((r.status, r.headers["x-request-id"].to_str().unwrap()), (201, trace));
    w.wait_order_status(r.json()["id"].as_str().unwrap(), "completed", SETTLE).await;
    w.wait_events_handled(SETTLE).await;
    let logs = w.logs();
    let hop = |what: &str| logs.lines().any(|l| l.contains(trace) && l.contains(what) && l.contains("event acked"));
    assert!(hop("stream=payment_settle") && hop("component=inventory"), "the trace id on every hop");
    // An explicit request id wins over the trace.
    let headers = [("x-request-id", "mine-1"), ("traceparent", parent.as_str())];
    let r = w.send("GET", "/healthz", &headers, Vec::new()).await.unwrap();
    assert_eq!(r.headers["x-request-id"], "mine-1");
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the host exports spans, and one
/// order's spans form one trace in the collector: the caller's span, then
/// `POST /orders`, the settle event (through the outbox) and each handler
/// of `order_completed` (inventory taking the stock, analytics), each the
/// child of the span that caused it.
#[tokio::test(flavor = "multi_thread")]
async fn one_orders_spans_form_one_trace_in_an_otlp_collector() {
    let collector = Collector::start().await;
    let w = Wharf::start_with(host(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_SERVICE_NAME", "wharf-under-test"),
        ("WHARF_PAYMENT_SETTLE_DELAY_MS", "50"),
    ]))
    .await;
    let product = w.create_product("Traced", 2.0, 5).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let parent = format!("00-{trace}-{caller}-01");
    let body = json!({"product_id": product, "quantity": 2}).to_string().into_bytes();
    let headers = [("content-type", "application/json"), ("traceparent", parent.as_str()), ("x-request-id", "otel-1")];
    let r = w.send("POST", "/orders", &headers, body).await.unwrap();
    assert_eq!(r.status, 201);
    let order = r.json()["id"].as_str().unwrap().to_string();
    w.wait_order_status(&order, "completed", SETTLE).await;
    w.wait_events_handled(SETTLE).await;
    assert_eq!(w.stock(&product).await, 3);

    let in_trace = |spans: &[SpanSeen]| spans.iter().filter(|s| s.trace_id == trace).cloned().collect::<Vec<_>>();
    let consumer_of = |spans: &[SpanSeen], stream: &str, component: &str| {
        spans
            .iter()
            .find(|s| {
                s.kind == 5
                    && s.attr("messaging.destination.name") == Some(stream)
                    && s.attr("wharf.component") == Some(component)
            })
            .cloned()
    };
    let spans = collector
        .wait_for(SETTLE, |all| {
            let t = in_trace(all);
            consumer_of(&t, "order_completed", "inventory").is_some()
                && consumer_of(&t, "order_completed", "analytics").is_some()
        })
        .await;
    let spans = in_trace(&spans);
    let request = spans.iter().find(|s| s.kind == 2).expect("the request's server span");
    assert_eq!(request.name, "POST /orders");
    assert_eq!(request.parent_span_id, caller, "the request is the child of the caller's span");
    assert_eq!(request.attr("wharf.component"), Some("payment"));
    assert_eq!(request.attr("wharf.request_id"), Some("otel-1"));
    assert_eq!(request.attributes["http.response.status_code"]["intValue"].to_string().trim_matches('"'), "201");
    let settle = consumer_of(&spans, "payment_settle", "payment").expect("the settle event's span");
    assert_eq!(settle.parent_span_id, request.span_id, "the settle event came from the request (through the outbox)");
    assert_eq!(settle.attr("wharf.outcome"), Some("acked"));
    for component in ["inventory", "analytics"] {
        let hop = consumer_of(&spans, "order_completed", component).unwrap();
        assert_eq!(hop.parent_span_id, settle.span_id, "{component}'s handler came from the settle event");
        assert_eq!(hop.attr("wharf.request_id"), Some("otel-1"));
    }

    // No traceparent: the request is the root of a trace of its own.
    let r = w.send("GET", &format!("/products/{product}"), &[], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    let spans = collector.wait_for(SETTLE, |all| all.iter().any(|s| s.name == "GET /products/{id}")).await;
    let read = spans.iter().find(|s| s.name == "GET /products/{id}").unwrap();
    assert!(read.parent_span_id.is_empty() && read.trace_id != trace, "{read:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_json_lines_when_asked() {
    let w = Wharf::start_with(host(&[("WHARF_LOG_FORMAT", "json")])).await;
    let r = w.send("GET", "/products", &[("x-request-id", "json-42")], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = w.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["span"]["request_id"] == "json-42" && l["status"] == 200 && l["path"] == "/products"),
        "no JSON request line for json-42:\n{logs}"
    );
}

/// The value of the sample `name{labels}` in a Prometheus text page.
fn sample(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_and_the_admin_api_shows_the_streams() {
    let w = Wharf::start_with(host(&[])).await;
    let product = w.create_product("Measured", 1.0, 5).await;
    let route = r#"wharf_http_requests_total{component="inventory",route="/products/{id}",method="GET",status="200"}"#;
    w.call("GET", &format!("/products/{product}"), None).await;
    let page = w.send("GET", "/metrics", &[], Vec::new()).await.unwrap();
    assert_eq!(page.status, 200);
    let before = sample(&String::from_utf8_lossy(&page.body), route).expect("the request counter");
    w.call("GET", &format!("/products/{product}"), None).await;
    let page = String::from_utf8(w.send("GET", "/metrics", &[], Vec::new()).await.unwrap().body).unwrap();
    assert_eq!(sample(&page, route), Some(before + 1.0), "a request moves its counter");
    // A client cannot mint label values: unknown methods are counted as OTHER.
    let _ = w.send("BREW", "/coffee-pot-1", &[], Vec::new()).await;
    let page = String::from_utf8(w.send("GET", "/metrics", &[], Vec::new()).await.unwrap().body).unwrap();
    assert!(!page.contains("BREW") && page.contains(r#"method="OTHER""#), "{page}");
    assert!(page.contains("wharf_instantiate_duration_seconds_count{component=\"inventory\"}"), "{page}");
    assert!(
        page.contains("wharf_http_request_duration_seconds_count{component=\"inventory\",route=\"/products/{id}\"}")
    );
    // The instance pool: the requests' calls are over, so their slots are
    // warm and hold resident memory (an event handler may be running now:
    // the live count is only read).
    assert!(sample(&page, "wharf_instances_live").is_some(), "{page}");
    let warm = sample(&page, "wharf_pool_warm_slots").expect("warm slots");
    let resident = sample(&page, "wharf_pool_resident_bytes").expect("resident bytes");
    assert!(warm >= 1.0 && resident / warm >= 4096.0, "{warm} warm slots, {resident} bytes");

    // A poison event: dead-lettered, and it shows in the metrics and the admin view.
    w.publish_raw("order_completed", "not json", "payment");
    w.wait_events_handled(SETTLE).await;
    let page = String::from_utf8(w.send("GET", "/metrics", &[], Vec::new()).await.unwrap().body).unwrap();
    let dead = r#"wharf_events_total{stream="order_completed",group="inventory-group",outcome="dead_lettered"}"#;
    assert_eq!(sample(&page, dead), Some(1.0), "{page}");
    let pending = r#"wharf_consumer_pending{stream="order_completed",group="inventory-group",partition="0"}"#;
    assert_eq!(sample(&page, pending), Some(0.0), "{page}");

    let auth = format!("Bearer {TOKEN}");
    let r = w.send("GET", "/admin/streams", &[("authorization", &auth)], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    let view = r.json();
    let completed = &view["streams"]["order_completed"];
    assert_eq!(completed["length"], 1);
    assert_eq!(completed["dead_letters"], 2, "{view}");
    let groups: Vec<&str> =
        completed["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(groups.contains(&"inventory-group") && groups.contains(&"analytics-group"), "{view}");
    assert!(completed["groups"].as_array().unwrap().iter().all(|g| g["pending"] == 0 && g["lag"] == 0), "{view}");
    let r = w.send("GET", "/admin/streams", &[], Vec::new()).await.unwrap();
    assert_eq!(r.status, 401);

    // A swap is counted.
    let r = w.deploy("inventory", "inventory-variant", TOKEN).await;
    assert_eq!(r.status, 200);
    let page = String::from_utf8(w.send("GET", "/metrics", &[], Vec::new()).await.unwrap().body).unwrap();
    assert_eq!(sample(&page, r#"wharf_swaps_total{component="inventory"}"#), Some(1.0), "{page}");
}
