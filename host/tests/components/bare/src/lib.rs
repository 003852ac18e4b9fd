//! Test fixture: the SDK's `no_std` runtime (`wharf_sdk::rt`) under test. A
//! panic must reach the host's log; the heap must grow past the initial
//! memory, keep intact what it gave out (around freed and resized blocks),
//! and stop at the instance's memory limit.

#![cfg_attr(target_arch = "wasm32", no_std)]
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

extern crate alloc;

wharf_sdk::no_std_runtime!();

use wharf_sdk::prelude::*;
use wharf_sdk::{ApiError, App, Component, Reply, Req};

struct Bare;

impl Component for Bare {
    fn app() -> App {
        App::new("bare").get("/bare/panic/{word}", panics).get("/bare/heap/{kib}", heap)
    }
}

wharf_sdk::export_component!(Bare);

fn panics(req: &Req) -> Result<Reply, ApiError> {
    panic!("bare panics on purpose: {}", req.param("word"))
}

/// Fills about `kib` KiB in 64 KiB blocks, each byte a function of its block
/// and offset, with a freed block, a growing `Vec` of blocks and a growing
/// `String` between them; then grows one last `Vec` in place, and reads
/// everything back.
fn heap(req: &Req) -> Result<Reply, ApiError> {
    let kib: usize =
        req.param("kib").parse().map_err(|_| ApiError::unprocessable("invalid_kib", "kib must be a number"))?;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    for b in 0..kib.div_ceil(64) {
        let block: Vec<u8> = (0..65536).map(|i| pattern(b, i)).collect();
        // Freed at once: the most recent block, so its space is reused.
        drop(core::hint::black_box(vec![0xAAu8; 4096]));
        blocks.push(block);
        text.push('x');
    }
    // The most recent block grows where it is, memory.grow included.
    let mut tail: Vec<u8> = Vec::new();
    for i in 0..300_000 {
        tail.push(pattern(7, i));
    }
    let intact = blocks.iter().enumerate().all(|(b, block)| block.iter().enumerate().all(|(i, &v)| v == pattern(b, i)));
    let tail_intact = tail.iter().enumerate().all(|(i, &v)| v == pattern(7, i));
    Reply::json(
        200,
        &serde_json::json!({"blocks": blocks.len(), "intact": intact, "text": text.len(), "tail": tail_intact}),
    )
}

fn pattern(block: usize, i: usize) -> u8 {
    (block.wrapping_mul(31) ^ i.wrapping_mul(7)) as u8
}
