#!/usr/bin/env bash
# Dev mode: serves like scripts/run.sh, and rebuilds and hot-swaps a component
# whenever a file under components/<name>/ (or the SDK) changes. Build errors
# are printed; the running version keeps serving.
source "$(dirname "$0")/lib.sh"
ensure_wasm_target
[ -n "${REDIS_URL:-}" ] || ensure_redis_server
build_components
cargo build --release -p wharf
exec "${CARGO_TARGET_DIR:-$ROOT/target}/release/wharf" serve --config "$ROOT/wharf.toml" --watch "$@"
