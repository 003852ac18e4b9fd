#!/usr/bin/env bash
# The long fault runs, too slow for every test run: the kill -9 crash test at
# scale and the soak. Each starts its own redis-server and wharf (through the
# test harness) and prints its figures; docs/RELIABILITY.md records them.
#   CHAOS_ORDERS (default 5000), CHAOS_KILLS (10), SOAK_SECS (300)
source "$(dirname "$0")/lib.sh"
ensure_wasm_target
ensure_redis_server
build_test_fixtures
build_components

say "crash test: ${CHAOS_ORDERS:-5000} orders, ${CHAOS_KILLS:-10} kill -9s"
WHARF_CHAOS_ORDERS="${CHAOS_ORDERS:-5000}" WHARF_CHAOS_KILLS="${CHAOS_KILLS:-10}" \
  cargo test --release -p wharf --test it reliability::kill_9_while_orders_flow_loses_nothing -- --exact --nocapture

say "soak: ${SOAK_SECS:-300} s of mixed reads, orders and refunds"
WHARF_SOAK_SECS="${SOAK_SECS:-300}" \
  cargo test --release -p wharf --test it reliability::soak_keeps_memory_flat_and_every_answer_right -- --exact --ignored --nocapture
