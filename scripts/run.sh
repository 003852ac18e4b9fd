#!/usr/bin/env bash
# Runs Wharf with the inventory and payment components on http://127.0.0.1:8080.
# With no REDIS_URL, wharf starts its own redis-server (data in ./data).
# Overrides: WHARF_LISTEN, REDIS_URL, WHARF_PAYMENT_SETTLE_DELAY_MS, ... (see README).
source "$(dirname "$0")/lib.sh"
ensure_wasm_target
[ -n "${REDIS_URL:-}" ] || ensure_redis_server
build_components
say "building the host"
cargo build --release -p wharf
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/wharf" serve --config "$ROOT/wharf.toml" "$@"
