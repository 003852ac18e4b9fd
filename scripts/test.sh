#!/usr/bin/env bash
# Runs every test: the components' business rules natively (Rust and Python), the host's unit
# tests, and the integration tests against a real wharf and redis-server
# (each test starts its own on free loopback ports), the API fuzzer among
# them, and the console's in headless Chromium. Non-zero on any failure.
source "$(dirname "$0")/lib.sh"
ensure_wasm_target
ensure_redis_server
ensure_openssl
ensure_chromium
ensure_schemathesis
status=0
# The Python and JavaScript SDKs' and components' own tests, natively
# (pytest, node --test).
test_py_components || status=1
test_js_components || status=1
say "running the tests"
# The integration tests build the components they load (harness::wasm_dir).
# Release: the integration tests compile components with Cranelift at start-up.
cargo test --release --workspace --no-fail-fast "$@" || status=1
# The flow and reliability tests (and the read cache's, and the Python loyalty component's) again, each on a Redis Cluster of its own
# (3 primaries), unless arguments picked other tests. Skipped: the tests that
# stop, freeze or replicate one server (they start a single server of their
# own, or mean one), which the first run covered.
if [ $# = 0 ]; then
  say "the flow and reliability tests again, on a 3-primary Redis Cluster"
  WHARF_TEST_REDIS=cluster cargo test --release --workspace --test it --no-fail-fast -- flow:: reliability:: api::cached_product_reads_follow_every_write languages::the_python_loyalty \
    --skip the_host_recovers_when_redis_comes_back_empty \
    --skip with_replicated_durability \
    --skip redis_outages_under_load || status=1
fi
exit $status
