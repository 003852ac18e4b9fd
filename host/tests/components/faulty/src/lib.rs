//! Test fixture: fails on purpose so tests can show a failing component
//! costs only its own request or event.
//!
//! Events on `faulty_events` say how to fail: `{"key", "mode", "until", "spin_ms", "sleep_ms"}`;
//! mode `sleep` waits `sleep_ms` without using the CPU (a handler waiting
//! on I/O); mode `call` calls `GET {path}` of component `target` instead.
//! Each delivery is counted under `key`; `GET /faulty/deliveries/{key}` reads
//! the count. `POST /faulty/work/{key}?ms=` publishes a slow one (a writer
//! that feeds the event pipeline).

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::time::{Duration, Instant};

use wharf_sdk::kv::{self, IncrementOutcome};
use wharf_sdk::{ApiError, App, Component, Event, EventError, Reply, Req};
use wharf_sdk::{calls, events};

struct Faulty;

impl Component for Faulty {
    fn app() -> App {
        App::new("faulty")
            .get("/faulty/ok", ok)
            .get("/faulty/trap", trap)
            .get("/faulty/loop", endless)
            .get("/faulty/memory", memory_bomb)
            .get("/faulty/slow", slow)
            .get("/faulty/deliveries/{key}", deliveries)
            .post("/faulty/work/{key}", work)
            .subscribe("faulty_events", "faulty", on_event)
            .publishes("faulty_events")
    }
}

wharf_sdk::export_component!(Faulty);

fn ok(_: &Req) -> Result<Reply, ApiError> {
    Reply::json(200, &serde_json::json!({"ok": true}))
}

fn trap(_: &Req) -> Result<Reply, ApiError> {
    panic!("this component traps on purpose")
}

fn endless(_: &Req) -> Result<Reply, ApiError> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn memory_bomb(_: &Req) -> Result<Reply, ApiError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

/// Busy for `ms` milliseconds (query `ms=`, default 500): a request in flight
/// for shutdown tests, counted under `slow-requests` when it starts.
fn slow(req: &Req) -> Result<Reply, ApiError> {
    count("deliveries:slow-requests", 1)?;
    let ms = req.query().split('&').find_map(|kv| kv.strip_prefix("ms=")).and_then(|v| v.parse().ok()).unwrap_or(500);
    spin(ms);
    Reply::json(200, &serde_json::json!({"slept_ms": ms}))
}

/// Publishes a `slow` event of `ms` milliseconds (query `ms=`, default 200)
/// under `key`: work the events pipeline will take that long to do.
fn work(req: &Req) -> Result<Reply, ApiError> {
    let ms: u64 =
        req.query().split('&').find_map(|kv| kv.strip_prefix("ms=")).and_then(|v| v.parse().ok()).unwrap_or(200);
    let key = req.param("key");
    events::publish("faulty_events", &serde_json::json!({"key": key, "mode": "slow", "spin_ms": ms}))?;
    Reply::json(202, &serde_json::json!({"key": key}))
}

fn deliveries(req: &Req) -> Result<Reply, ApiError> {
    let n = count(&format!("deliveries:{}", req.param("key")), 0)?;
    Reply::json(200, &serde_json::json!({"deliveries": n}))
}

#[derive(serde::Deserialize)]
struct Order {
    key: String,
    /// `ok`, `retry` or `trap` (until delivery `until`), `slow` (busy for
    /// `spin_ms`) or `sleep` (idle for `sleep_ms`).
    mode: String,
    #[serde(default)]
    until: u32,
    #[serde(default)]
    spin_ms: u64,
    #[serde(default)]
    sleep_ms: u64,
    /// For `call`: the component and the path to `GET`.
    #[serde(default)]
    target: String,
    #[serde(default)]
    path: String,
}

fn on_event(ev: &Event) -> Result<(), EventError> {
    let order: Order = ev.json()?;
    // Counted across replays too: `until` is the delivery that first succeeds.
    let n = count(&format!("deliveries:{}", order.key), 1).map_err(|e| EventError::Retry(e.message))?;
    match order.mode.as_str() {
        "retry" if n < order.until as i64 => Err(EventError::Retry(format!("attempt {}", ev.attempt))),
        "trap" if n < order.until as i64 => panic!("event handler traps on purpose"),
        "slow" => {
            spin(order.spin_ms);
            Ok(())
        }
        "sleep" => {
            // A WASI pollable: the host's async sleep, so the guest yields.
            std::thread::sleep(Duration::from_millis(order.sleep_ms));
            Ok(())
        }
        "call" => match calls::call(&order.target, "GET", &order.path, b"", None) {
            Ok(r) if r.status < 500 => Ok(()),
            Ok(r) => Err(EventError::Retry(format!("{} answered {}", order.target, r.status))),
            Err(e) => Err(e.into()),
        },
        _ => Ok(()),
    }
}

fn count(key: &str, delta: i64) -> Result<i64, ApiError> {
    match kv::increment(key, delta, None, None, None)? {
        IncrementOutcome::Applied(n) | IncrementOutcome::OutOfRange(n) => Ok(n),
        IncrementOutcome::AlreadyApplied(_) => Ok(0),
    }
}

fn spin(ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        std::hint::black_box(0u64);
    }
}
