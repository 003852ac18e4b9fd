//! The wall clock, in ms since the Unix epoch: WASI's in a component (no
//! std needed), std's natively, in unit tests.

#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> u64 {
    let now = wasip2::clocks::wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
}

#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
