//! Components written in other languages than Rust, served like ours:
//! loyalty (Python, components/loyalty) and reviews (JavaScript,
//! components/reviews) beside the Rust shop, a Python and a JavaScript
//! component swapped under load, and instances kept between calls
//! (`instance_reuse`) only while they behave.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Options, Wharf, wasm_dir};

const ADMIN: &str = "k-admin-languages-000000";
const ALICE: &str = "k-alice-languages-000000";
const TOKEN: &str = "languages-admin-token-0123456789abcd";

async fn as_(w: &Wharf, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    w.http.call_with(method, path, &[("authorization", &auth)], body).await
}

/// Alice's points once they equal `want`, or the test fails after 10 s.
async fn points_become(w: &Wharf, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = as_(w, ALICE, "GET", "/loyalty/customers/alice", None).await;
        assert_eq!(s, 200, "{v}");
        if v["points"] == want {
            return;
        }
        if Instant::now() > deadline {
            let events: Vec<_> = w.logs().lines().filter(|l| !l.contains("method=GET")).map(String::from).collect();
            panic!(
                "points {v}, not {want}; log without the GETs:\n{}",
                events[events.len().saturating_sub(20)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_loyalty_component_earns_and_takes_back_points() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "payment", "loyalty"],
        env: vec![("WHARF_API_KEYS".into(), format!("{ADMIN}:admin:ops,{ALICE}:customer:alice"))],
        ..Default::default()
    })
    .await;
    let (s, p) = as_(&w, ADMIN, "POST", "/products", Some(json!({"name": "Tea", "price": 12.5, "quantity": 10}))).await;
    assert_eq!(s, 201, "{p}");
    let (s, order) = as_(&w, ALICE, "POST", "/orders", Some(json!({"product_id": p["id"], "quantity": 2}))).await;
    assert_eq!(s, 201, "{order}");
    // 2 x 12.5 plus the 20% fee: a total of 30, one point per whole unit.
    assert_eq!(order["total"], 30);
    points_become(&w, 30).await;

    // Routes: a customer sees only its own points; anonymous callers none.
    let (s, v) = as_(&w, ALICE, "GET", "/loyalty/customers/bob", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, _) = w.call("GET", "/loyalty/customers/alice", None).await;
    assert_eq!(s, 401);
    let (s, v) = as_(&w, ADMIN, "GET", "/loyalty/customers/alice", None).await;
    assert_eq!((s, &v), (200, &json!({"customer": "alice", "points": 30})));
    let long = format!("/loyalty/customers/{}", "x".repeat(129));
    let (s, v) = as_(&w, ADMIN, "GET", &long, None).await;
    assert_eq!(s, 404, "a name no subject can have is no customer: {v}");
    // The route is in the API document, as the manifest declared it.
    let (_, api) = w.call("GET", "/openapi.json", None).await;
    assert!(api["paths"]["/loyalty/customers/{customer}"]["get"].is_object(), "{}", api["paths"]);

    // The same event delivered again earns nothing more.
    let again = json!({"id": order["id"], "total": 30, "customer": "alice", "product_id": p["id"], "quantity": 2});
    w.publish_raw("order_completed", again.to_string(), "payment");
    // ...and one not from payment is refused (dead-lettered), not counted.
    let forged = json!({"id": "forged", "total": 1000, "customer": "alice"});
    w.publish_raw("order_completed", forged.to_string(), "mallory");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.dead_letters("order_completed") < 1 {
        assert!(Instant::now() < deadline, "the forged event was not dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    points_become(&w, 30).await;

    // A refund takes the points back.
    let (s, v) = as_(&w, ALICE, "POST", &format!("/orders/{}/refund", order["id"].as_str().unwrap()), None).await;
    assert_eq!(s, 202, "{v}");
    points_become(&w, 0).await;

    // A refund seen before its sale: the sale, when it comes, earns nothing.
    w.publish_raw("refund_order", json!({"id": "early", "reason": "out of stock"}).to_string(), "inventory");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (A real product: inventory takes the stock, else it would refund the order itself.)
    let early = json!({"id": "early", "total": 99.99, "customer": "alice", "product_id": p["id"], "quantity": 1});
    w.publish_raw("order_completed", early.to_string(), "payment");
    let late = json!({"id": "late", "total": 7.5, "customer": "alice", "product_id": p["id"], "quantity": 1});
    w.publish_raw("order_completed", late.to_string(), "payment");
    points_become(&w, 7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    points_become(&w, 7).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_reviews_component_follows_inventorys_products() {
    let w = Wharf::start_with(Options {
        components: vec!["inventory", "reviews"],
        env: vec![("WHARF_API_KEYS".into(), format!("{ADMIN}:admin:ops,{ALICE}:customer:alice"))],
        ..Default::default()
    })
    .await;
    let (s, p) = as_(&w, ADMIN, "POST", "/products", Some(json!({"name": "Tea", "price": 2, "quantity": 1}))).await;
    assert_eq!(s, 201, "{p}");
    let path = format!("/reviews/{}", p["id"].as_str().unwrap());
    // Reviewable once reviews has consumed inventory's product_changed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let review = json!({"rating": 5, "text": "lovely 🍵"});
    let (s, v) = loop {
        let (s, v) = as_(&w, ALICE, "POST", &path, Some(review.clone())).await;
        if s != 404 || Instant::now() > deadline {
            break (s, v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((s, &v["customer"], &v["text"]), (201, &json!("alice"), &json!("lovely 🍵")), "{v}");
    let (s, v) = as_(&w, ALICE, "POST", &path, Some(json!({"rating": 1}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("reviewed")), "once per customer: {v}");
    let (s, v) = as_(&w, ADMIN, "POST", &path, Some(json!({"rating": 6}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("invalid_rating")), "{v}");
    let (s, _) = w.call("POST", &path, Some(json!({"rating": 3}))).await;
    assert_eq!(s, 401, "anonymous callers do not review");
    let (s, v) = as_(&w, ADMIN, "POST", "/reviews/no-such-product", Some(json!({"rating": 3}))).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = as_(&w, ADMIN, "POST", &path, Some(json!({"rating": 2, "text": "meh"}))).await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = w.call("GET", &path, None).await;
    assert_eq!((s, &v["count"], &v["average"]), (200, &json!(2), &json!(3.5)), "{v}");
    assert_eq!(v["reviews"].as_array().unwrap().len(), 2, "{v}");

    // Deleted in inventory: reviews hears of it and refuses the product.
    let (s, _) = as_(&w, ADMIN, "DELETE", &format!("/products/{}", p["id"].as_str().unwrap()), None).await;
    assert_eq!(s, 204);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = w.call("GET", &path, None).await;
        if s == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "still {s} {v} after the deletion");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_component_swaps_under_load_without_an_error() {
    let wasm = wasm_dir().join("jsversioned-v1.wasm");
    let w = Arc::new(
        Wharf::start_with(Options {
            components: vec![],
            toml: format!("[components.jsversioned]\nwasm = {wasm:?}\ninstance_reuse = 1000\n"),
            env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())],
            ..Default::default()
        })
        .await,
    );
    swap_under_load(&w, "jsversioned", "/jsversioned").await;
}

/// Swaps `name` between its v1 and v2 builds while 8 clients load `path`:
/// every answer is v1's or v2's, never an error.
async fn swap_under_load(w: &Arc<Wharf>, name: &str, path: &'static str) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8).map(|_| crate::harness::load(w.port, path, stop.clone())).collect();
    for v in ["v2", "v1", "v2"] {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = w.deploy(name, &format!("{name}-{v}"), TOKEN).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total: HashMap<String, usize> = HashMap::new();
    for c in clients {
        for (k, n) in c.await.unwrap() {
            *total.entry(k).or_default() += n;
        }
    }
    let (v1, v2) = (json!({"version": "v1"}).to_string(), json!({"version": "v2"}).to_string());
    let unexpected: Vec<_> = total.iter().filter(|(k, _)| **k != v1 && **k != v2).collect();
    assert!(unexpected.is_empty(), "answers other than v1/v2: {unexpected:?}");
    assert!(total.get(&v1).copied().unwrap_or(0) > 0 && total.get(&v2).copied().unwrap_or(0) > 0, "{total:?}");
    let (_, v) = w.call("GET", path, None).await;
    assert_eq!(v, json!({"version": "v2"}));
}

fn reusing(file: &str, reuse: u32) -> Options {
    let wasm = wasm_dir().join(format!("{file}.wasm"));
    Options {
        components: vec![],
        toml: format!("[components.pyversioned]\nwasm = {wasm:?}\ninstance_reuse = {reuse}\n"),
        env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())],
        ..Default::default()
    }
}

async fn instance_calls(w: &Wharf) -> i64 {
    let (s, v) = w.call("GET", "/pyversioned/instance", None).await;
    assert_eq!(s, 200, "{v}");
    v["served"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_component_swaps_under_load_without_an_error() {
    let w = Arc::new(Wharf::start_with(reusing("pyversioned-v1", 1000)).await);
    swap_under_load(&w, "pyversioned", "/pyversioned").await;
}

/// A Rust component may be kept between calls too (`instance_reuse`; the
/// shop ships inventory and payment with fresh instances), and the Wharf SDK's heap empties
/// between calls: a bump heap that kept each call's garbage would pass
/// three quarters of a tight memory limit within a few hundred calls, and
/// the host would retire the instance for a fresh one again and again.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_rust_instance_starts_each_call_on_an_empty_heap() {
    let wasm = wasm_dir().join("inventory.wasm");
    let w = Wharf::start_with(Options {
        components: vec![],
        toml: format!(
            "[components.inventory]\nwasm = {wasm:?}\ninstance_reuse = 1000\n\
             [limits]\nmemory_bytes = 2097152\ncall_timeout_ms = 2000\n"
        ),
        env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())],
        ..Default::default()
    })
    .await;
    // A page of products: a few kilobytes of garbage per call.
    for i in 0..30 {
        w.create_product(&format!("Kept product number {i}, with a long enough name"), 1.0, 5).await;
    }
    let before = instances_made(&w, "inventory").await;
    for _ in 0..600 {
        let (s, v) = w.call("GET", "/products?limit=30", None).await;
        assert_eq!(s, 200, "{v}");
    }
    let after = instances_made(&w, "inventory").await;
    assert!(after - before <= 1, "600 calls one after another made {} instances", after - before);
}

/// The shipped inventory keeps its instances for requests only
/// (`instance_reuse_for = "requests"`): the catalog's requests share them,
/// while each event, which carries a customer's order, gets a fresh one.
/// `"events"` is the other way round.
#[tokio::test(flavor = "multi_thread")]
async fn instances_are_kept_only_for_the_kind_of_call_asked() {
    let w = Wharf::start().await;
    let product = w.create_product("Kept for requests", 2.0, 1000).await;
    let before = instances_made(&w, "inventory").await;
    for _ in 0..40 {
        let (s, v) = w.call("GET", &format!("/products/{product}"), None).await;
        assert_eq!(s, 200, "{v}");
    }
    let after_requests = instances_made(&w, "inventory").await;
    assert!(after_requests - before <= 1, "40 requests one after another made {} instances", after_requests - before);
    for _ in 0..10 {
        let (s, o) = w.order(&product, 1).await;
        assert_eq!(s, 201, "{o}");
    }
    w.wait_events_handled(Duration::from_secs(20)).await;
    // Read from Redis, not from the read cache.
    let fresh = [("cache-control", "no-cache")];
    let r = w.send("GET", &format!("/products/{product}"), &fresh, Vec::new()).await.unwrap();
    assert_eq!(r.json()["quantity"], 990, "every order's stock taken");
    let after_events = instances_made(&w, "inventory").await;
    // One per order_completed event; the GETs above reused a kept one.
    assert!(after_events - after_requests >= 10, "10 events made only {} instances", after_events - after_requests);
    drop(w);

    let wasm = wasm_dir().join("inventory.wasm");
    let w = Wharf::start_with(Options {
        components: vec![],
        toml: format!(
            "[components.inventory]\nwasm = {wasm:?}\ninstance_reuse = 1000\ninstance_reuse_for = \"events\"\n"
        ),
        env: vec![("WHARF_ADMIN_TOKEN".into(), TOKEN.into())],
        ..Default::default()
    })
    .await;
    let product = w.create_product("Kept for events", 2.0, 5).await;
    let before = instances_made(&w, "inventory").await;
    for _ in 0..20 {
        let (s, v) = w.call("GET", &format!("/products/{product}"), None).await;
        assert_eq!(s, 200, "{v}");
    }
    assert_eq!(instances_made(&w, "inventory").await - before, 20, "a fresh instance per request");
}

/// A call another component makes while handling an event serves that
/// event: it never lands in an instance kept for requests, which a later
/// request would then run in.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_made_for_an_event_gets_a_fresh_instance_of_a_component_kept_for_requests() {
    let w = Wharf::start().await;
    let product = w.create_product("Asked about by events", 2.0, 5).await;
    let path = format!("/products/{product}");
    w.call("GET", &path, None).await;
    let before = instances_made(&w, "inventory").await;
    for i in 0..8 {
        let ev = json!({"key": format!("asks{i}"), "mode": "call", "target": "inventory", "path": path});
        w.publish_raw("faulty_events", ev.to_string(), "test");
    }
    w.wait_events_handled(Duration::from_secs(20)).await;
    for i in 0..8 {
        let (_, v) = w.call("GET", &format!("/faulty/deliveries/asks{i}"), None).await;
        assert_eq!(v["deliveries"], 1, "event {i} handled once, its call answered: {v}");
    }
    let made = instances_made(&w, "inventory").await - before;
    assert!(made >= 8, "8 calls made for events took {made} fresh inventory instances");
    // Requests still share the kept one.
    let before = instances_made(&w, "inventory").await;
    for _ in 0..10 {
        w.call("GET", &path, None).await;
    }
    assert!(instances_made(&w, "inventory").await - before <= 1);
}

/// Instances of `component` made so far (`/metrics`).
async fn instances_made(w: &Wharf, component: &str) -> u64 {
    w.counter(&format!("wharf_instantiate_duration_seconds_count{{component=\"{component}\"}}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_reused_only_when_asked_and_never_after_a_trap() {
    // A fresh instance per call: every call is its instance's first.
    let w = Wharf::start_with(reusing("pyversioned-v1", 0)).await;
    for _ in 0..3 {
        assert_eq!(instance_calls(&w).await, 1);
    }
    drop(w);
    // Reused: one after another, the calls land on kept instances.
    let w = Wharf::start_with(reusing("pyversioned-v1", 5)).await;
    let served: Vec<i64> = futures_seq(&w, 12).await;
    assert!(served.iter().any(|&n| n > 1), "no call reused an instance: {served:?}");
    assert!(served.iter().all(|&n| n <= 5), "an instance served past instance_reuse: {served:?}");
    // The trap sets the instance's count sky-high first: reused, it would show.
    let r = w.send("GET", "/pyversioned/boom", &[], Vec::new()).await.unwrap();
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    let after: Vec<i64> = futures_seq(&w, 6).await;
    assert!(after.iter().all(|&n| n <= 5), "a trapped instance was reused: {after:?}");
    // Each call reached Redis through the kept instance's fresh capabilities.
    let (_, v) = w.call("GET", "/pyversioned/instance", None).await;
    assert_eq!(v["count"], 12 + 6 + 1, "{v}");
}

/// `n` calls, one after another: what each instance said it had served.
async fn futures_seq(w: &Wharf, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(instance_calls(w).await);
    }
    out
}

/// A standard `wasi:http` component (host/tests/components/hello-http: the
/// `wasip2` crate's `export!`, no Wharf SDK), mounted at `/hello`: it
/// answers through the gateway with the host's authentication, rate limit,
/// request ids, body limit and metrics, gets no network, environment or
/// files, and is hot-swapped like any component.
#[tokio::test(flavor = "multi_thread")]
async fn a_standard_wasi_http_component_answers_through_the_gateway() {
    let v1 = wasm_dir().join("hello-http.wasm");
    // A server it is granted, and one it is not.
    let (granted, other) = (http_server("pong").await, http_server("secret").await);
    let w = Wharf::start_with(Options {
        components: vec!["inventory"],
        toml: format!(
            "[components.hello]\nwasm = {v1:?}\nmount = \"/hello\"\n\
             [components.hello.grants]\noutbound_http = [\"127.0.0.1:{granted}\"]\n\
             [auth]\nrate_limit_per_second = 1\nrate_limit_burst = 40\n\
             [limits]\nbody_bytes = 1024\ncall_timeout_ms = 2000\n"
        ),
        env: vec![
            ("WHARF_API_KEYS".into(), format!("{ALICE}:customer:alice")),
            ("WHARF_ADMIN_TOKEN".into(), TOKEN.into()),
        ],
        ..Default::default()
    })
    .await;
    let alice = format!("Bearer {ALICE}");
    let get = |path: &'static str| {
        let (client, auth) = (w.http.clone(), alice.clone());
        async move { client.send("GET", path, &[("authorization", &auth)], Vec::new()).await.unwrap() }
    };
    // The host's caller and request id reach it; the path under the mount too.
    let r = get("/hello/a/b?x=1").await;
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    assert_eq!((v["hello"].as_str(), v["path"].as_str()), (Some("from a wasi:http component"), Some("/hello/a/b?x=1")));
    assert_eq!(v["subject"], "alice", "{v}");
    assert_eq!(v["request_id"].as_str(), r.headers.get("x-request-id").and_then(|h| h.to_str().ok()), "{v}");
    let (s, _) = w.call("GET", "/hellox", None).await;
    assert_eq!(s, 404, "a mount is a whole segment");
    // Bad credentials never reach it.
    let r = w.send("GET", "/hello", &[("authorization", "Bearer nope-nope-nope-nope")], Vec::new()).await.unwrap();
    assert_eq!(r.status, 401);
    // Bodies within the host's limit go through; past it, 413 from the host.
    let r =
        w.send("POST", "/hello/echo", &[("authorization", &alice)], b"ping \xF0\x9F\x8D\xB5".to_vec()).await.unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, "ping 🍵".as_bytes()));
    let r = w.send("POST", "/hello/echo", &[("authorization", &alice)], vec![b'x'; 2048]).await.unwrap();
    assert_eq!(r.status, 413);
    // Outgoing HTTP only to the granted host; no environment, no files.
    let to = |port: u16| format!("/hello/outbound?to=127.0.0.1:{port}");
    let v = w.send("GET", &to(granted), &[("authorization", &alice)], vec![]).await.unwrap().json();
    assert_eq!(v["outbound"], "reached: 200 pong", "{v}");
    let v = w.send("GET", &to(other), &[("authorization", &alice)], vec![]).await.unwrap().json();
    assert!(v["outbound"].as_str().unwrap().contains("HttpRequestDenied"), "{v}");
    let v = get("/hello/env").await.json();
    assert_eq!(v["env"], 0, "{v}");
    assert!(v["files"].as_str().unwrap().starts_with("refused"), "{v}");
    let scrape = w.send("GET", "/metrics", &[], Vec::new()).await.unwrap();
    let metrics = String::from_utf8_lossy(&scrape.body).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wharf_sandbox_refusals_total") && l.contains("hello") && l.contains("network")),
        "the refusal is counted"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("wharf_http_requests_total") && l.contains("component=\"hello\"")),
        "its requests are in the metrics"
    );
    // Not in the API document: it declares no routes.
    let (_, api) = w.call("GET", "/openapi.json", None).await;
    assert!(!api["paths"].as_object().unwrap().keys().any(|k| k.starts_with("/hello")), "{}", api["paths"]);
    // Hot-swapped like any component.
    let r = w.deploy("hello", "hello-http-v2", TOKEN).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v = get("/hello").await.json();
    assert_eq!(v["hello"], "from a wasi:http component, v2", "{v}");
    // The rate limit is the host's, for every route: 40 at once, then 429.
    let mut statuses = Vec::new();
    for _ in 0..45 {
        statuses.push(get("/hello").await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// A one-route HTTP server on a free loopback port answering `body` to
/// every request; returns the port.
async fn http_server(body: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let answer =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}
