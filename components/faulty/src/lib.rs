//! Test fixture: fails on purpose so tests can show a failing component
//! costs only its own request.

use wharf_sdk::{ApiError, App, Component, Reply, Req};

struct Faulty;

impl Component for Faulty {
    fn app() -> App {
        App::new("faulty")
            .get("/faulty/ok", ok)
            .get("/faulty/trap", trap)
            .get("/faulty/loop", endless)
            .get("/faulty/memory", memory_bomb)
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
