//! The HTTP contract of the inventory and payment components, served by a
//! real `wharf` process on a real Redis.

use crate::harness::{Options, Wharf};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn host_endpoints_and_unknown_routes() {
    let w = Wharf::start().await;
    let (s, body) = w.call("GET", "/healthz", None).await;
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));
    let (s, body) = w.call("GET", "/readyz", None).await;
    assert_eq!(s, 200);
    assert_eq!(body["redis"], "ok");
    assert!(body["components"]["inventory"].as_str().unwrap().len() == 64);

    let (s, body) = w.call("GET", "/nowhere", None).await;
    assert_eq!(s, 404);
    assert_eq!(body["error"]["code"], "not_found");
    let (s, body) = w.call("PUT", "/products", None).await;
    assert_eq!(s, 405);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn products_crud() {
    let w = Wharf::start().await;
    let (s, p) = w.call("POST", "/products", Some(json!({"name": "Tea ☕", "price": 19.99, "quantity": 7}))).await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p, json!({"id": id, "name": "Tea ☕", "price": 19.99, "quantity": 7}));

    let (s, got) = w.call("GET", &format!("/products/{id}"), None).await;
    assert_eq!((s, &got), (200, &p));

    // Ids order by their millisecond: two made in the same one (by two
    // instances) have no order between them.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let other = w.create_product("Coffee", 3.0, 1).await;
    let (s, list) = w.call("GET", "/products", None).await;
    assert_eq!(s, 200);
    let ids: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![id.as_str(), other.as_str()], "listed in creation order");

    let (s, patched) = w.call("PATCH", &format!("/products/{id}"), Some(json!({"price": 5, "quantity": 2}))).await;
    assert_eq!(s, 200, "{patched}");
    assert_eq!(patched, json!({"id": id, "name": "Tea ☕", "price": 5, "quantity": 2}));
    let (s, patched) = w.call("PATCH", &format!("/products/{id}"), Some(json!({"name": "Green tea"}))).await;
    assert_eq!((s, patched["name"].as_str(), patched["quantity"].as_i64()), (200, Some("Green tea"), Some(2)));

    let (s, _) = w.call("DELETE", &format!("/products/{id}"), None).await;
    assert_eq!(s, 204);
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"quantity": 1}))), ("DELETE", None)] {
        let (s, e) = w.call(method, &format!("/products/{id}"), body).await;
        assert_eq!(s, 404, "{method}: {e}");
        assert_eq!(e["error"]["code"], "not_found");
    }
    let (_, list) = w.call("GET", "/products", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// Polls `GET /products/{id}` on `w` until `field` equals `want`; returns how long that took.
async fn until_shown(w: &Wharf, id: &str, field: &str, want: &Value) -> Duration {
    let start = Instant::now();
    loop {
        // A read may meet a connection being re-made (503): it only has to converge.
        let (s, p) = w.call("GET", &format!("/products/{id}"), None).await;
        if s == 200 && &p[field] == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(3), "{field} still {s} {p} instead of {want}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET /products/{id}` reads through the host's cache (`kv.get-many-cached`):
/// it must really answer from it, show this host's writes at once, and show
/// another host's writes and writes made straight to Redis as soon as
/// Redis's invalidation arrives, including after every connection to Redis
/// was cut.
#[tokio::test(flavor = "multi_thread")]
async fn cached_product_reads_follow_every_write() {
    let a = Wharf::start().await;
    let b = Wharf::start_with(Options { redis: Some(a.redis.borrow()), ..Options::default() }).await;
    let id = a.create_product("cached", 1.0, 10).await;
    for w in [&a, &b] {
        for _ in 0..3 {
            assert_eq!(w.stock(&id).await, 10);
        }
    }
    // B's cache serves once its listener tracks the namespace (on a
    // cluster, on every primary): wait for the first hit, then count.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let before = b.counter("wharf_kv_cache_hits_total").await;
        assert_eq!(b.stock(&id).await, 10);
        if b.counter("wharf_kv_cache_hits_total").await > before {
            break;
        }
        assert!(Instant::now() < deadline, "b's reads never came from its cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hits = b.counter("wharf_kv_cache_hits_total").await;
    for _ in 0..5 {
        assert_eq!(b.stock(&id).await, 10);
    }
    assert!(b.counter("wharf_kv_cache_hits_total").await >= hits + 5, "the reads did not come from the cache");
    // `Cache-Control: no-cache` (payment's price lookup) reads Redis itself.
    let seen = (b.counter("wharf_kv_cache_hits_total").await, b.counter("wharf_kv_cache_misses_total").await);
    let r = b.send("GET", &format!("/products/{id}"), &[("cache-control", "no-cache")], Vec::new()).await.unwrap();
    assert_eq!(r.json()["quantity"], 10);
    let now = (b.counter("wharf_kv_cache_hits_total").await, b.counter("wharf_kv_cache_misses_total").await);
    assert_eq!(now, seen, "a no-cache read went through the cache");

    // This host's writes: visible to its very next read.
    for i in 0..20 {
        let name = format!("name {i}");
        let (s, p) = a.call("PATCH", &format!("/products/{id}"), Some(json!({"name": name, "quantity": i}))).await;
        assert_eq!(s, 200, "{p}");
        let (_, p) = a.call("GET", &format!("/products/{id}"), None).await;
        assert_eq!((p["name"].as_str(), p["quantity"].as_i64()), (Some(name.as_str()), Some(i)));
    }
    // Another host's write, and a write straight to Redis.
    let (s, _) = a.call("PATCH", &format!("/products/{id}"), Some(json!({"name": "from a"}))).await;
    assert_eq!(s, 200);
    let took = until_shown(&b, &id, "name", &json!("from a")).await;
    eprintln!("host b showed host a's write after {took:?}");
    let stock_key = crate::harness::layout::kv_key("inventory", &format!("stock:{{{id}}}"));
    let mut redis = a.redis.conn();
    let _: () = redis::cmd("HSET").arg(&stock_key).arg("v").arg("77").query(&mut redis).unwrap();
    for w in [&a, &b] {
        until_shown(w, &id, "quantity", &json!(77)).await;
    }
    // Cut every connection (the hosts reconnect): a write made meanwhile must still show.
    let _: () = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut redis).unwrap();
    let _: () = redis::cmd("HSET").arg(&stock_key).arg("v").arg("78").query(&mut redis).unwrap();
    for w in [&a, &b] {
        let took = until_shown(w, &id, "quantity", &json!(78)).await;
        eprintln!("shown after the connections were cut: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn product_validation() {
    let w = Wharf::start().await;
    for body in [
        json!({"name": "", "price": 1, "quantity": 1}),
        json!({"name": "x".repeat(201), "price": 1, "quantity": 1}),
        json!({"name": "a", "price": -0.01, "quantity": 1}),
        json!({"name": "a", "price": "1", "quantity": 1}),
        json!({"name": "a", "price": 1, "quantity": -1}),
        json!({"name": "a", "price": 1, "quantity": 2.5}),
        json!({"name": "a", "price": 1}),
        json!([1, 2, 3]),
    ] {
        let (s, e) = w.call("POST", "/products", Some(body.clone())).await;
        assert_eq!(s, 422, "{body} -> {e}");
        assert!(e["error"]["code"].is_string() && e["error"]["message"].is_string(), "{e}");
    }
    let r = w.send("POST", "/products", &[], b"{\"name\": ".to_vec()).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "malformed_json");
    let r = w.send("POST", "/products", &[], vec![0xff, 0xfe]).await.unwrap();
    assert_eq!(r.status, 400);

    // Its own client: the server closes this connection (body left unread),
    // and a pooled client may race that close on its next request.
    let big = vec![b' '; 1024 * 1024 + 1];
    let r = crate::harness::Client::new(w.port).send("POST", "/products", &[], big).await.unwrap();
    assert_eq!(r.headers["connection"], "close");
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "body_too_large");

    // Ids with key syntax cannot reach any key.
    for id in ["a:b", "*", "%7Bpayment%7D", "..", "x".repeat(300).as_str()] {
        let (s, _) = w.call("GET", &format!("/products/{id}"), None).await;
        assert_eq!(s, 404, "{id}");
    }
    let id = w.create_product("a", 1.0, 1).await;
    let (s, _) = w.call("PATCH", &format!("/products/{id}"), Some(json!({}))).await;
    assert_eq!(s, 422);
    let (s, _) = w.call("PATCH", &format!("/products/{id}"), Some(json!({"price": 0.001}))).await;
    assert_eq!(s, 422);
    assert_eq!(w.stock(&id).await, 1, "rejected input changed nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn order_money_is_exact_and_errors_are_clear() {
    let w = Wharf::start().await;
    let id = w.create_product("Penny sweets", 0.1, 100).await;
    let (s, o) = w.order(&id, 3).await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(o["price"], json!(0.1));
    assert_eq!(o["fee"], json!(0.06));
    assert_eq!(o["total"], json!(0.36));
    assert_eq!(o["quantity"], json!(3));
    assert_eq!(o["status"], "pending");
    assert_eq!(o["product_id"], json!(id));

    // The original demo's body shape.
    let (s, o2) = w.call("POST", "/orders", Some(json!({"id": id, "quantity": 1}))).await;
    assert_eq!((s, o2["total"].clone()), (201, json!(0.12)));

    let (s, e) = w.order("01NOSUCHPRODUCT0000000000", 1).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    for q in [json!(0), json!(-2), json!("1"), json!(1.5), Value::Null] {
        let (s, e) = w.call("POST", "/orders", Some(json!({"product_id": id, "quantity": q}))).await;
        assert_eq!(s, 422, "quantity {q}: {e}");
    }
    let (s, _) = w.call("GET", "/orders/nope", None).await;
    assert_eq!(s, 404);
    let (s, _) = w.call("POST", "/orders/nope/refund", None).await;
    assert_eq!(s, 404);

    let (s, list) = w.call("GET", "/orders", None).await;
    assert_eq!((s, list.as_array().unwrap().len()), (200, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_returns_the_same_order() {
    let w = Wharf::start().await;
    let id = w.create_product("Widget", 2.5, 10).await;
    let body = json!({"product_id": id, "quantity": 2}).to_string().into_bytes();
    let headers = [("content-type", "application/json"), ("idempotency-key", "abc-123")];
    let first = w.send("POST", "/orders", &headers, body.clone()).await.unwrap();
    let second = w.send("POST", "/orders", &headers, body.clone()).await.unwrap();
    assert_eq!(first.status, 201);
    assert_eq!(second.status, 201);
    assert_eq!(first.json()["id"], second.json()["id"]);
    w.wait_events_handled(std::time::Duration::from_secs(20)).await;
    assert_eq!(w.stock(&id).await, 8, "stock taken once");
    let (_, list) = w.call("GET", "/orders", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn trapping_component_answers_500_and_the_host_keeps_serving() {
    let w = Wharf::start_with(crate::harness::Options {
        toml: "[limits]\ncall_timeout_ms = 1000\nmemory_bytes = 16777216\n[streams]\nclaim_idle_ms = 5000\n".into(),
        ..Default::default()
    })
    .await;
    let (s, e) = w.call("GET", "/faulty/trap", None).await;
    assert_eq!(s, 500);
    assert_eq!(e["error"]["code"], "component_failed");
    let (s, _) = w.call("GET", "/faulty/ok", None).await;
    assert_eq!(s, 200);

    let (s, e) = w.call("GET", "/faulty/loop", None).await;
    assert_eq!(s, 504, "{e}");
    assert_eq!(e["error"]["code"], "timeout");
    let (s, e) = w.call("GET", "/faulty/memory", None).await;
    assert_eq!(s, 500, "{e}");

    // Other components were never disturbed.
    let id = w.create_product("Still here", 1.0, 1).await;
    assert_eq!(w.stock(&id).await, 1);
    let (s, _) = w.call("GET", "/faulty/ok", None).await;
    assert_eq!(s, 200);
    assert!(w.logs().contains("component failed"));
}

/// The SDK's runtime for `no_std` components (`wharf_sdk::rt`): a panic's
/// message reaches the host's log, and the bump heap grows past the initial
/// memory without corrupting what it gave out, up to the memory limit.
#[tokio::test(flavor = "multi_thread")]
async fn a_no_std_component_logs_its_panics_and_its_heap_grows_within_the_limit() {
    let w = Wharf::start_with(crate::harness::Options {
        components: vec!["bare"],
        toml: "[limits]\ncall_timeout_ms = 2000\nmemory_bytes = 16777216\n[streams]\nclaim_idle_ms = 5000\n".into(),
        ..Default::default()
    })
    .await;
    let (s, e) = w.call("GET", "/bare/panic/kaboom", None).await;
    assert_eq!(s, 500, "{e}");
    assert_eq!(e["error"]["code"], "component_failed");
    // Log lines reach the file through a batching thread: give it a moment.
    let panicked = |logs: String| logs.lines().find(|l| l.contains("component panicked")).map(str::to_string);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        match panicked(w.logs()) {
            Some(line) => break line,
            None if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(25)).await
            }
            None => panic!("the panic is not in the log:\n{}", w.logs()),
        }
    };
    assert!(line.contains("bare panics on purpose: kaboom") && line.contains("components/bare/src/lib.rs"), "{line}");

    // 8 MiB: far past the initial memory (128 KiB), so the heap grows.
    let (s, b) = w.call("GET", "/bare/heap/8192", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"blocks": 128, "intact": true, "text": 128, "tail": true}));
    // 32 MiB is past the 16 MiB limit: that instance traps, the next is fine.
    let (s, e) = w.call("GET", "/bare/heap/32768", None).await;
    assert_eq!(s, 500, "{e}");
    let (s, b) = w.call("GET", "/bare/heap/64", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"blocks": 1, "intact": true, "text": 1, "tail": true}));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_cleanly() {
    let mut w = Wharf::start().await;
    let _ = w.create_product("x", 1.0, 1).await;
    let status = w.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(w.logs().contains("stopped"));
}

/// With no REDIS_URL, wharf runs its own redis-server, keeps data in its
/// data directory across restarts, and stops the server on exit.
#[tokio::test(flavor = "multi_thread")]
async fn embedded_redis_is_started_persisted_and_stopped() {
    let data = std::env::temp_dir().join(format!("wharf-embedded-{}", crate::harness::free_port()));
    let port = crate::harness::free_port();
    let wasm = crate::harness::wasm_dir();
    let config = data.with_extension("toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n[components.inventory]\nwasm = {:?}\n", data, wasm.join("inventory.wasm")),
    )
    .unwrap();
    let start = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("REDIS_URL")
            .env("WHARF_LISTEN", format!("127.0.0.1:{port}"))
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let client = crate::harness::Client::new(port);
    let mut host = start();
    client.wait_ready().await;
    let (s, p) = client.call("POST", "/products", Some(json!({"name": "kept", "price": 1, "quantity": 9}))).await;
    assert_eq!(s, 201, "{p}");
    // No TCP port: a unix socket in the private data directory, which no other user may enter.
    use std::os::unix::fs::PermissionsExt;
    let socket = data.join("redis.sock");
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok(), "redis-server listens on {}", socket.display());
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(!data.join("redis.port").exists());
    unsafe { libc::kill(host.id() as i32, libc::SIGTERM) };
    assert!(host.wait().unwrap().success());
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_err(), "redis-server stopped with the host");

    // A server at the port an older version recorded, keeping other data,
    // is not ours: starting must leave it running.
    let other = crate::harness::TestRedis::start();
    std::fs::write(data.join("redis.port"), other.port.to_string()).unwrap();

    let mut host = start();
    client.wait_ready().await;
    let (s, got) = client.call("GET", &format!("/products/{}", p["id"].as_str().unwrap()), None).await;
    assert_eq!((s, got["quantity"].as_i64()), (200, Some(9)), "data survived the restart");
    let pong: String = redis::cmd("PING").query(&mut other.conn()).unwrap();
    assert_eq!(pong, "PONG", "another server was not shut down");
    unsafe { libc::kill(host.id() as i32, libc::SIGTERM) };
    assert!(host.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&config);
}

#[tokio::test(flavor = "multi_thread")]
async fn api_docs_merge_every_component() {
    let w = Wharf::start().await;
    let (s, doc) = w.call("GET", "/openapi.json", None).await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let get = &doc["paths"]["/products/{id}"]["get"];
    assert_eq!(get["tags"], json!(["inventory"]));
    assert_eq!(get["parameters"][0]["name"], "id");
    assert_eq!(
        get["responses"]["200"]["content"]["application/json"]["schema"]["required"],
        json!(["id", "name", "price", "quantity"])
    );
    // Each answer the component gives, and the host's own, with the error shape.
    assert_eq!(get["responses"]["404"]["content"]["application/json"]["schema"]["required"], json!(["error"]));
    assert!(get["responses"]["503"].is_object() && get["responses"]["429"].is_object());
    assert!(get["responses"]["default"].is_null(), "every status is named");
    // A list says how it pages: limit and after, and the Link to the next.
    let list = &doc["paths"]["/orders"]["get"];
    let params: Vec<&str> =
        list["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(params, ["limit", "after"]);
    assert_eq!(list["parameters"][0]["schema"], json!({"type": "integer", "minimum": 1, "maximum": 1000}));
    assert!(list["responses"]["200"]["headers"]["link"].is_object());
    // Bounds are stated exactly.
    let price = &doc["paths"]["/products"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
        ["price"];
    assert_eq!((&price["multipleOf"], &price["maximum"]), (&json!(0.01), &json!(100_000_000_000i64)));
    let post = &doc["paths"]["/orders"]["post"];
    assert_eq!(post["tags"], json!(["payment"]));
    assert!(post["requestBody"]["content"]["application/json"]["schema"]["properties"]["quantity"].is_object());
    assert!(doc["paths"]["/analytics/sales"]["get"].is_object());
    assert!(doc["paths"]["/healthz"]["get"].is_object());
    let r = w.send("GET", "/docs", &[], Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&r.body).contains("/openapi.json"));
}

/// No REDIS_URL and no redis-server installed: one line that says what to do.
#[test]
fn missing_redis_server_is_one_clear_line() {
    let dir = std::env::temp_dir().join(format!("wharf-noredis-{}", crate::harness::free_port()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config", "/dev/null"])
        .env_remove("REDIS_URL")
        .env("PATH", "/nonexistent")
        .env("WHARF_DATA_DIR", &dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("wharf:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("redis-server is not installed") && lines[0].contains("REDIS_URL"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "nothing but that line: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
