//! Bad input, as a table: each row is a request a careless or hostile client
//! might send, with the status and error code it must get. After the table,
//! the data that was there before is exactly as it was. Then the transport
//! level: slow clients and thousands of idle connections.

use std::time::{Duration, Instant};

use crate::harness::{Options, Wharf};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Row {
    what: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The error code; `None` for a success.
    code: Option<&'static str>,
}

fn row(what: &'static str, method: &'static str, path: &str, body: &[u8], status: u16, code: &'static str) -> Row {
    Row {
        what,
        method,
        path: path.to_string(),
        content_type: Some("application/json"),
        body: body.to_vec(),
        status,
        code: (!code.is_empty()).then_some(code),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_gets_a_clear_error_and_changes_nothing() {
    let w = Wharf::start_with(Options { components: vec!["inventory", "payment"], ..Default::default() }).await;
    let keep = w.create_product("Kept", 4.5, 9).await;
    // The dearest price there is: two of it make a total no order can hold.
    let dear = w.create_product("Dear", 100_000_000_000.0, 9).await;
    let long_id = "a".repeat(5000);
    let long_name = "n".repeat(201);
    let products = |s: &str| format!("/products/{s}");

    let mut table = vec![
        row("truncated JSON", "POST", "/products", br#"{"name":"#, 400, "malformed_json"),
        row("not JSON at all", "POST", "/products", b"name=tea", 400, "malformed_json"),
        row("empty body", "POST", "/products", b"", 400, "malformed_json"),
        row(
            "invalid UTF-8",
            "POST",
            "/products",
            b"{\"name\":\"\xff\xfe\",\"price\":1,\"quantity\":1}",
            400,
            "malformed_json",
        ),
        row("an array", "POST", "/products", b"[1,2]", 422, "invalid_body"),
        row(
            "name of the wrong type",
            "POST",
            "/products",
            br#"{"name":5,"price":1,"quantity":1}"#,
            422,
            "invalid_field",
        ),
        row(
            "price as a string",
            "POST",
            "/products",
            br#"{"name":"x","price":"1","quantity":1}"#,
            422,
            "invalid_field",
        ),
        row("missing quantity", "POST", "/products", br#"{"name":"x","price":1}"#, 422, "invalid_field"),
        row("negative price", "POST", "/products", br#"{"name":"x","price":-1,"quantity":1}"#, 422, "invalid_field"),
        row("huge price", "POST", "/products", br#"{"name":"x","price":1e300,"quantity":1}"#, 422, "invalid_field"),
        row(
            "a third decimal",
            "POST",
            "/products",
            br#"{"name":"x","price":0.001,"quantity":1}"#,
            422,
            "invalid_field",
        ),
        row("negative quantity", "POST", "/products", br#"{"name":"x","price":1,"quantity":-5}"#, 422, "invalid_field"),
        row("huge quantity", "POST", "/products", br#"{"name":"x","price":1,"quantity":1e20}"#, 422, "invalid_field"),
        row(
            "fractional quantity",
            "POST",
            "/products",
            br#"{"name":"x","price":1,"quantity":1.5}"#,
            422,
            "invalid_field",
        ),
        row("blank name", "POST", "/products", br#"{"name":"   ","price":1,"quantity":1}"#, 422, "invalid_field"),
        row(
            "name over 200 characters",
            "POST",
            "/products",
            format!(r#"{{"name":"{long_name}","price":1,"quantity":1}}"#).as_bytes(),
            422,
            "invalid_field",
        ),
        row("empty patch", "PATCH", &products(&keep), b"{}", 422, "invalid_body"),
        row("patch of a glob id", "PATCH", &products("*"), br#"{"price":1}"#, 404, "not_found"),
        row("glob id", "GET", &products("*"), b"", 404, "not_found"),
        row("glob class id", "GET", &products("%5Ba-z%5D%2A"), b"", 404, "not_found"),
        row("id with a colon", "GET", &products("stock:1"), b"", 404, "not_found"),
        row("id with braces", "GET", &products("%7Bpayment%7D"), b"", 404, "not_found"),
        row("id with an encoded slash", "GET", &products("..%2Fx"), b"", 404, "not_found"),
        row("invalid UTF-8 in the path", "GET", &products("%FF%FE"), b"", 404, "not_found"),
        row("a 5,000 character id", "GET", &products(&long_id), b"", 404, "not_found"),
        row("one segment too many", "GET", &products(&format!("{keep}/x")), b"", 404, "not_found"),
        row("delete of a glob id", "DELETE", &products("*"), b"", 404, "not_found"),
        row("method not served", "PUT", &products(&keep), b"{}", 405, "method_not_allowed"),
        row("order of nothing", "POST", "/orders", br#"{"product_id":"x","quantity":0}"#, 422, "invalid_field"),
        row("order quantity as text", "POST", "/orders", br#"{"product_id":"x","quantity":"1"}"#, 422, "invalid_field"),
        row("order of a numeric id", "POST", "/orders", br#"{"product_id":123,"quantity":1}"#, 422, "invalid_field"),
        row(
            "order of an unknown product",
            "POST",
            "/orders",
            br#"{"product_id":"nope","quantity":1}"#,
            404,
            "not_found",
        ),
        row("order of a glob id", "POST", "/orders", br#"{"product_id":"*","quantity":1}"#, 404, "not_found"),
        row("order of a key name", "POST", "/orders", br#"{"product_id":"stock:x","quantity":1}"#, 404, "not_found"),
        row("refund of a glob id", "POST", "/orders/*/refund", b"", 404, "not_found"),
        row("order id with a colon", "GET", "/orders/order:1", b"", 404, "not_found"),
        row("unknown path", "GET", "/products-and-more", b"", 404, "not_found"),
        // One rule for every amount: a multiple of 0.01, never rounded into one.
        row(
            "a price a hair above 0",
            "POST",
            "/products",
            br#"{"name":"x","price":2.5e-42,"quantity":1}"#,
            422,
            "invalid_field",
        ),
        row(
            "an order total past the largest amount",
            "POST",
            "/orders",
            format!(r#"{{"product_id":"{dear}","quantity":2}}"#).as_bytes(),
            422,
            "invalid_field",
        ),
    ];
    let mut plain = row(
        "a text/plain body",
        "POST",
        "/products",
        br#"{"name":"x","price":1,"quantity":1}"#,
        415,
        "unsupported_media_type",
    );
    plain.content_type = Some("text/plain");
    table.push(plain);
    let mut form =
        row("a form body", "POST", "/orders", br#"{"product_id":"x","quantity":1}"#, 415, "unsupported_media_type");
    form.content_type = Some("application/x-www-form-urlencoded");
    table.push(form);
    table.push(row("a body over the limit", "POST", "/products", &vec![b' '; 2 << 20], 413, "body_too_large"));
    // Accepted, documented: unknown fields are ignored (and not stored).
    table.push(row(
        "an unknown field",
        "POST",
        "/products",
        br#"{"name":"Extra","price":1,"quantity":1,"colour":"red"}"#,
        201,
        "",
    ));
    table.push(row(
        "a unicode name",
        "POST",
        "/products",
        r#"{"name":"茶 🍵 ß","price":0.1,"quantity":2}"#.as_bytes(),
        201,
        "",
    ));
    let mut no_type =
        row("no content type", "POST", "/products", br#"{"name":"Untyped","price":1,"quantity":1}"#, 201, "");
    no_type.content_type = None;
    table.push(no_type);

    let mut failures = Vec::new();
    let mut created = Vec::new();
    for r in &table {
        let headers: Vec<(&str, &str)> = r.content_type.iter().map(|ct| ("content-type", *ct)).collect();
        let resp = match w.send(r.method, &r.path, &headers, r.body.clone()).await {
            Ok(resp) => resp,
            Err(e) => {
                failures.push(format!("{}: transport error {e}", r.what));
                continue;
            }
        };
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let code = body["error"]["code"].as_str();
        let message = body["error"]["message"].as_str().unwrap_or("");
        if resp.status != r.status || code != r.code || (r.code.is_some() && message.is_empty()) {
            failures.push(format!("{}: expected {} {:?}, got {} {body}", r.what, r.status, r.code, resp.status));
        }
        if resp.status == 201 {
            assert!(body.get("colour").is_none(), "an unknown field was stored: {body}");
            created.push(body);
        }
    }
    assert!(failures.is_empty(), "{} of {} rows wrong:\n{}", failures.len(), table.len(), failures.join("\n"));
    assert_eq!(created[1]["name"], "茶 🍵 ß");

    // Nothing else changed: the kept product, and no product or order appeared.
    let (_, kept) = w.call("GET", &products(&keep), None).await;
    assert_eq!(kept, json!({"id": keep, "name": "Kept", "price": 4.5, "quantity": 9}));
    let (_, list) = w.call("GET", "/products", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2 + created.len());
    let (_, orders) = w.call("GET", "/orders", None).await;
    assert_eq!(orders, json!([]));
    let (s, _) = w.call("GET", "/healthz", None).await;
    assert_eq!(s, 200);
}

/// A client that never finishes its headers is cut off after the header
/// timeout; thousands of idle connections do not stop others being served.
#[tokio::test(flavor = "multi_thread")]
async fn slow_and_idle_clients_do_not_hold_the_host() {
    let limit = crate::harness::raise_fd_limit();
    let idle_count = 3000.min(limit.saturating_sub(200) as usize);
    let w = Wharf::start_with(Options {
        components: vec!["inventory"],
        toml: "[limits]\nheader_read_timeout_ms = 500\ncall_timeout_ms = 2000\n".into(),
        ..Default::default()
    })
    .await;
    let addr = format!("127.0.0.1:{}", w.port);

    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /products HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a client stuck in its headers kept its connection");
    assert!(started.elapsed() < Duration::from_secs(3), "cut off after {:?}", started.elapsed());

    let mut idle = Vec::new();
    for _ in 0..idle_count {
        match tokio::net::TcpStream::connect(&addr).await {
            Ok(c) => idle.push(c),
            Err(e) => panic!("connection {} refused: {e}", idle.len()),
        }
    }
    let started = Instant::now();
    let (s, _) = w.call("GET", "/products", None).await;
    assert_eq!(s, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "served in {:?} behind idle connections", started.elapsed());
    drop(idle);
    let (s, _) = w.call("GET", "/healthz", None).await;
    assert_eq!(s, 200);
}
