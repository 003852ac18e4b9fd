#!/usr/bin/env bash
# Runs every test: the components' business rules natively, the host's unit
# tests, and the integration tests against a real wharf and redis-server
# (each test starts its own on free loopback ports), the API fuzzer among
# them. Non-zero on any failure.
source "$(dirname "$0")/lib.sh"
ensure_wasm_target
ensure_redis_server
ensure_openssl
ensure_schemathesis
say "running the tests"
# The integration tests build the components they load (harness::wasm_dir).
# Release: the integration tests compile components with Cranelift at start-up.
cargo test --release --workspace --no-fail-fast "$@"
