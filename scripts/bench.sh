#!/usr/bin/env bash
# Benchmark: release build, its own redis-server, wrk on loopback, bounded in
# time. Prints requests/s, p50 and p99 per endpoint, the end-to-end order
# rate through the streams, and the products/healthz ratio, then the product
# read once more with the host's read cache off.
#   BENCH_SECONDS (default 10), BENCH_CONNECTIONS (50), BENCH_THREADS (2)
#
#   scripts/bench.sh fleet: deploy -> last host serving, 1 and 3 hosts
#   scripts/bench.sh languages: one route written in Rust, Python and
#     JavaScript (`wharf new` in each), fresh instances and reused ones
#   scripts/bench.sh --cluster [durability]: one Redis against a cluster (docs/SCALING.md)
#   scripts/bench.sh cost OLD_WHARF NEW_WHARF: CPU and Redis commands per order
#     at a fixed rate, both binaries in turn (see the cost block below)
#   scripts/bench.sh latency OLD_WHARF NEW_WHARF: orders accepted and 201 ->
#     completed with backpressure, both binaries in turn (see its block below)
#   scripts/bench.sh compare OLD_WHARF NEW_WHARF
# compares two host binaries instead: BENCH_ROUNDS rounds (default 3), each
# running both in turn on a fresh Redis, and prints per binary the median
# req/s of GET /healthz, GET /products/{id} and POST /orders, the host's CPU
# per request, and the median products/healthz ratio. BENCH_ENV_A and
# BENCH_ENV_B (VAR=VALUE ...) add environment to either side, so one binary
# can be compared with itself under two settings, and BENCH_CONFIG_A and
# BENCH_CONFIG_B give either side its own wharf.toml (an old host serves the
# components built with it). BENCH_REPLICA=1 starts a replica beside each
# redis-server (for WHARF_REDIS_DURABILITY=replicated). E.g.
#   BENCH_ENV_A=WHARF_READ_CACHE_ENTRIES=0 scripts/bench.sh compare target/release/wharf target/release/wharf
# On a shared, noisy machine only such interleaved runs can tell a change
# from the neighbours.
source "$(dirname "$0")/lib.sh"
SECONDS_PER_RUN="${BENCH_SECONDS:-10}"
CONNS="${BENCH_CONNECTIONS:-50}"
THREADS="${BENCH_THREADS:-2}"

ensure_wasm_target
ensure_redis_server
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing wrk (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is missing: install it (apt-get install wrk / brew install wrk)" >&2; exit 1
  fi
fi
build_test_fixtures   # inventory-variant.wasm: a second version to swap to
build_components

WORK="$(mktemp -d)"
# The shop as issue 24 measures it: inventory, payment and analytics. The
# Python loyalty component would be a fourth consumer of order_completed, and
# the JavaScript reviews one a second of product_changed (each language is
# measured on its own: `scripts/bench.sh languages`). Wasm paths made
# absolute, as they were relative to wharf.toml.
SHOP_CONFIG="$WORK/shop.toml"
awk -v root="$ROOT/" '/^\[/ { skip = ($0 ~ /^\[components\.(loyalty|reviews)/) } !skip { sub(/^wasm = "/, "wasm = \"" root); print }' \
  "$ROOT/wharf.toml" >"$SHOP_CONFIG"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HOST_PID=""; RPORT=""; REPLICA_PORT=""; NODES=""; EXTRA_HOSTS=""
# rc: redis-cli on the stack's Redis (following a cluster's redirections);
# NODES: every node's port (one for a single server), for what must look at
# each (KEYS, INFO).
rc() { if [ -n "${CLUSTER:-}" ]; then redis-cli -c -p "$RPORT" "$@"; else redis-cli -p "$RPORT" "$@"; fi; }
stop_stack() {
  for pid in $EXTRA_HOSTS; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; EXTRA_HOSTS=""
  if [ -n "$HOST_PID" ]; then kill "$HOST_PID" 2>/dev/null || true; wait "$HOST_PID" 2>/dev/null || true; HOST_PID=""; fi
  if [ -n "$REPLICA_PORT" ]; then redis-cli -p "$REPLICA_PORT" shutdown nosave >/dev/null 2>&1 || true; REPLICA_PORT=""; fi
  for p in $NODES; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done; NODES=""
  if [ -n "$RPORT" ]; then redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true; RPORT=""; fi
  STREAM_KEYS=()
}
trap 'stop_stack; rm -rf "$WORK"' EXIT

# start_stack BIN [ENV=VALUE...]: a fresh redis-server and wharf (settle
# delay 0), one product. STACK_CONFIG names its wharf.toml.
start_stack() {
  local bin=$1; shift
  local config="${STACK_CONFIG:-$SHOP_CONFIG}"
  RPORT=$(free_port); HPORT=$(free_port)
  rm -rf "$WORK/data" "$WORK/results" "$WORK/redis"; mkdir -p "$WORK/redis"
  local redis_url="redis://127.0.0.1:$RPORT"
  if [ -n "${CLUSTER:-}" ]; then
    # CLUSTER=1: three primaries on loopback, slots split evenly;
    # CLUSTER_REPLICAS=1 adds a replica to each.
    NODES="$RPORT $(free_port) $(free_port)"
    [ -z "${CLUSTER_REPLICAS:-}" ] || NODES="$NODES $(free_port) $(free_port) $(free_port)"
    for p in $NODES; do
      mkdir -p "$WORK/redis/$p"
      # The bus port of its own: port + 10000, the default, may be taken or past 65535.
      redis-server --bind 127.0.0.1 --port "$p" --save "" --appendonly no --dir "$WORK/redis/$p" --cluster-enabled yes \
        --cluster-port "$(free_port)" --cluster-config-file nodes.conf --daemonize yes --logfile "$WORK/redis/$p.log" >/dev/null
    done
    for p in $NODES; do until redis-cli -p "$p" ping >/dev/null 2>&1; do sleep 0.05; done; done
    # shellcheck disable=SC2046 # one argument per node
    redis-cli --cluster create $(for p in $NODES; do echo "127.0.0.1:$p"; done) --cluster-replicas "${CLUSTER_REPLICAS:-0}" \
      --cluster-yes >/dev/null
    local deadline=$((SECONDS + 30))
    for p in $NODES; do until redis-cli -p "$p" cluster info | grep -q cluster_state:ok; do
      [ $SECONDS -lt $deadline ] || { echo "the cluster did not come up" >&2; exit 1; }; sleep 0.1; done; done
    # Each replica in sync with its primary before the hosts start.
    if [ -n "${CLUSTER_REPLICAS:-}" ]; then for p in $NODES; do
      until redis-cli -p "$p" info replication | grep -Eq "role:master|master_link_status:up"; do
        [ $SECONDS -lt $deadline ] || { echo "a replica did not sync" >&2; exit 1; }; sleep 0.1; done; done; fi
    redis_url="redis+cluster://$(for p in $NODES; do printf '127.0.0.1:%s,' "$p"; done)"; redis_url=${redis_url%,}
    # PRIMARIES: what to look at (a replica would answer MOVED, or count twice).
    PRIMARIES=$(for p in $NODES; do if redis-cli -p "$p" info replication | grep -q role:master; then echo "$p"; fi; done)
  else
    NODES="$RPORT"; PRIMARIES="$RPORT"
    redis-server --bind 127.0.0.1 --port "$RPORT" --save "" --appendonly no --dir "$WORK/redis" --daemonize yes --logfile "$WORK/redis.log" >/dev/null
    until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.05; done
  fi
  # BENCH_REPLICA=1: a replica beside it, for redis_durability = "replicated".
  if [ -n "${BENCH_REPLICA:-}" ]; then
    REPLICA_PORT=$(free_port); mkdir -p "$WORK/replica"
    redis-server --bind 127.0.0.1 --port "$REPLICA_PORT" --save "" --appendonly no --dir "$WORK/replica" \
      --replicaof 127.0.0.1 "$RPORT" --daemonize yes --logfile "$WORK/replica.log" >/dev/null
    until redis-cli -p "$RPORT" info replication | grep -q "state=online"; do sleep 0.05; done
  fi
  TOKEN="bench-$(od -An -N24 -tx1 /dev/urandom | tr -d " \n")"
  # HOSTS=N: N hosts on the same Redis (URLS lists them all; URL is the first).
  URLS=""
  local i
  for i in $(seq 1 "${HOSTS:-1}"); do
    [ "$i" = 1 ] || HPORT=$(free_port)
    WHARF_ADMIN_TOKEN="$TOKEN" WHARF_DATA_DIR="$WORK/data/$i" REDIS_URL="$redis_url" WHARF_LISTEN="127.0.0.1:$HPORT" WHARF_PAYMENT_SETTLE_DELAY_MS=0 \
      NO_COLOR=1 env "$@" "$bin" serve --config "$config" >"$WORK/wharf$i.log" 2>&1 &
    if [ "$i" = 1 ]; then HOST_PID=$!; ln -sf "$WORK/wharf1.log" "$WORK/wharf.log"; else EXTRA_HOSTS="$EXTRA_HOSTS $!"; fi
    URLS="$URLS http://127.0.0.1:$HPORT"
    until curl -sf "http://127.0.0.1:$HPORT/readyz" >/dev/null; do
      kill -0 "$!" 2>/dev/null || { tail -3 "$WORK/wharf$i.log" >&2; exit 1; }
      sleep 0.1
    done
  done
  URL=${URLS# }; URL=${URL%% *}
  PID_PRODUCT=$(curl -sf -XPOST "$URL/products" -H 'content-type: application/json' -d '{"name":"bench","price":9.99,"quantity":1000000000}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])')
  cat >"$WORK/order.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"product_id":"$PID_PRODUCT","quantity":1}'
wrk.headers["Content-Type"] = "application/json"
LUA
}

# The host's CPU time so far, in clock ticks (user + system).
host_ticks() { awk '{print $14 + $15}' "/proc/$HOST_PID/stat"; }

# run NAME PATH [wrk args...] -> prints one line, appends "name rps p50 p99" to $WORK/results
# and leaves RPS and CPU_US (host CPU per request, us) for the caller
run() {
  local name=$1 path=$2; shift 2
  local t0; t0=$(host_ticks)
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_PER_RUN}s" --latency "$@" "$URL$path")
  local ticks=$(( $(host_ticks) - t0 ))
  local rps p50 p99 non2xx errors n
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out"); non2xx=${non2xx:-0}
  errors=$(awk '/Socket errors/ {print $0}' <<<"$out")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  # Host CPU per request in microseconds (clock ticks are 10 ms).
  CPU_US=$(( ticks * 10000000 / (n > 0 ? n : 1) / 1000 ))
  RPS=$rps
  printf '%-22s %10s req/s   p50 %-9s p99 %-9s host CPU %4s us/req   non-2xx %s %s\n' "$name" "$rps" "$p50" "$p99" "$CPU_US" "$non2xx" "$errors"
  echo "$name $rps $p50 $p99" >>"$WORK/results"
}

# side A|B OLD_WHARF NEW_WHARF: bin, extra (BENCH_ENV_A/B) and STACK_CONFIG
# (BENCH_CONFIG_A/B) of one side of `compare`, `cost` or `latency`.
side() {
  if [ "$1" = A ]; then bin=$2; extra=${BENCH_ENV_A:-}; STACK_CONFIG=${BENCH_CONFIG_A:-}
  else bin=$3; extra=${BENCH_ENV_B:-}; STACK_CONFIG=${BENCH_CONFIG_B:-}; fi
}
if [ "${1:-}" = compare ]; then
  [ $# = 3 ] && [ -x "$2" ] && [ -x "$3" ] || { echo "usage: scripts/bench.sh compare OLD_WHARF NEW_WHARF" >&2; exit 2; }
  ROUNDS="${BENCH_ROUNDS:-3}"
  : >"$WORK/compare"
  for round in $(seq 1 "$ROUNDS"); do
    for which in A B; do
      side "$which" "$2" "$3"
      say "round $round of $ROUNDS: $which ($bin${extra:+ with $extra})"
      # shellcheck disable=SC2086 # VAR=VALUE words, split on purpose
      start_stack "$bin" $extra
      run "GET /healthz" /healthz; echo "$which healthz $RPS $CPU_US" >>"$WORK/compare"
      run "GET /products/{id}" "/products/$PID_PRODUCT"; echo "$which products $RPS $CPU_US" >>"$WORK/compare"
      run "POST /orders" /orders -s "$WORK/order.lua"; echo "$which orders $RPS $CPU_US" >>"$WORK/compare"
      stop_stack
    done
  done
  python3 - "$WORK/compare" "$2" "$3" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\nmedians over the rounds (host CPU per request includes events handled meanwhile):")
for w in "AB":
    h = [float(x[2]) for x in rows if x[0] == w and x[1] == "healthz"]
    p = [float(x[2]) for x in rows if x[0] == w and x[1] == "products"]
    ratios = [a / b for a, b in zip(p, h)]
    print(f"  ratio     {w}: {statistics.median(ratios):.2f} products/healthz   (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
for what in ("healthz", "products", "orders"):
    med = {}
    for w in "AB":
        r = [(float(x[2]), int(x[3])) for x in rows if x[0] == w and x[1] == what]
        med[w] = (statistics.median(a for a, _ in r), statistics.median(c for _, c in r))
        print(f"  {what:<9} {w}: {med[w][0]:9.0f} req/s  {med[w][1]:4.0f} us CPU/request   (runs: {', '.join(f'{a:.0f}' for a, _ in r)})")
    print(f"  {what:<9} B/A: {med['B'][0] / med['A'][0]:.2f}x req/s")
PY
  exit 0
fi

# stream_keys STREAM: the keys of the stream's partitions, as
# storage::stream_partition lays them out (worked out once per stack: the
# count is recorded in Redis by the first host that uses the stream).
declare -A STREAM_KEYS=()
stream_keys() {
  [ -n "${STREAM_KEYS[$1]:-}" ] || cache_stream_keys "$1"
  echo "${STREAM_KEYS[$1]}"
}
# cache_stream_keys STREAM...: works the keys out (once per stack, in the
# main shell: a $(...) caller's cache would die with its subshell).
cache_stream_keys() {
  local s n
  for s in "$@"; do
    n=$(rc --raw hget wharf:stream-partitions "$s")
    STREAM_KEYS[$s]=$(python3 - "$s" "${n:-1}" <<'PY'
import sys
def slot(s):
    crc = 0
    for b in s.encode():
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc % 16384
stream, n = sys.argv[1], int(sys.argv[2])
print(f"wharf:stream:{{{stream}}}")
for p in range(1, n):
    target, i = (slot(stream) + p * 16384 // n) % 16384, 0
    while slot(f"{stream}:{i}") != target:
        i += 1
    print(f"wharf:stream:{{{stream}:{i}}}")
PY
)
  done
}

# Orders: the POST rate, then the time until every order is completed or refunded.
handled() {
  local p o
  for p in $PRIMARIES; do
    for o in $(redis-cli -p "$p" --raw keys 'wharf:{*}:outbox'); do
      [ "$(redis-cli -p "$p" zcard "$o")" = 0 ] || return 1
    done
  done
  local s key
  for s in payment_settle order_completed refund_order order_stream product_changed; do
    for key in $(stream_keys $s); do
      # The last id ever added, not the last entry left: the trimmer may
      # have emptied a stream whose every entry was handled.
      local info; info=$(rc --raw xinfo groups "$key" 2>/dev/null) || continue
      local last; last=$(rc --raw xinfo stream "$key" | awk 'prev=="last-generated-id" {print; exit} {prev=$0}')
      awk -v last="$last" 'prev=="pending" && $0!="0" {bad=1} prev=="last-delivered-id" && $0!=last {bad=1} {prev=$0} END {exit bad}' <<<"$info" || return 1
    done
  done
}
# Orders whose stock inventory has taken: the last hop of the flow.
finished() {
  local key
  for key in $(stream_keys order_completed); do rc --raw xinfo groups "$key"; done |
    awk 'prev=="name" {g=$0} g=="inventory-group" && prev=="entries-read" {n+=$0} g=="inventory-group" && prev=="pending" {n-=$0} {prev=$0} END {print n+0}'
}
# drain: waits until every event is handled; DRAINED_AT is when. Drained
# when two looks 0.5 s apart find nothing left. One look reads the keys one
# by one, so it can miss an event that a handler of a stream it looked at
# later published to one it looked at earlier. (The second look adds 0.5 s
# to the drain time: about 1% of it.)
drain() {
  local deadline=$((SECONDS + 300))
  until handled && sleep 0.5 && handled; do
    [ $SECONDS -lt $deadline ] || { echo "events not drained within 300 s" >&2; exit 1; }
    # Each look starts a dozen redis-cli processes, which outrank the host's
    # niced event threads: look often and the looking slows the drain.
    sleep 0.5
  done
  DRAINED_AT=$(date +%s.%N)
}
# Every order completes (and may then be refunded): count what was ever
# added to order_completed, since the trimmer shortens the stream itself.
orders_added() {
  local key
  for key in $(stream_keys order_completed); do rc --raw xinfo stream "$key"; done |
    awk 'prev=="entries-added" {n+=$0} {prev=$0} END {print n+0}'
}
# The orders payment has stored: every order accepted, in the indexes of
# payment's partitions (each order is one), on whichever node each is.
orders_stored() {
  local p i n=0
  for p in $PRIMARIES; do
    for i in $(redis-cli -p "$p" --raw keys 'wharf:{payment*:index'); do
      n=$((n + $(redis-cli -p "$p" zlexcount "$i" "[order:" "(order;")))
    done
  done
  echo "$n"
}
# last_hop_done: waits until inventory has taken the stock of every order
# accepted (one redis-cli look per 50 ms); LAST_HOP_AT is when.
last_hop_done() {
  local deadline=$((SECONDS + 300)) n
  n=$(orders_stored)
  until [ "$(finished)" -ge "$n" ]; do
    [ $SECONDS -lt $deadline ] || { echo "orders not settled within 300 s" >&2; exit 1; }
    sleep 0.05
  done
  LAST_HOP_AT=$(date +%s.%N)
}
# orders_flow LABEL: POST /orders at saturation (wrk), then the drain; prints
# the POST line, the orders accepted per second (a 503 is not an order), the
# end-to-end rate (to the last order's stock taken) and how long after the
# load that came, then how long until every group of every stream had
# nothing left (that look is coarser: it adds up to a second).
orders_flow() {
  local label=$1 t0 t_posted at_posted
  t0=$(date +%s.%N)
  ${RUN:-run} "POST /orders$label" /orders -s "${ORDER_SCRIPT:-$WORK/order.lua}"
  t_posted=$(date +%s.%N)
  cache_stream_keys payment_settle order_completed refund_order order_stream product_changed
  at_posted=$(finished)
  last_hop_done
  drain
  [ "$(orders_added)" = "$(orders_stored)" ] || echo "warning: $(orders_stored) orders stored, $(orders_added) completed" >&2
  python3 - "$t0" "$t_posted" "$LAST_HOP_AT" "$(orders_stored)" "$at_posted" "$label" "$DRAINED_AT" <<'PY'
import sys
t0, tp, t1, n = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
done_at_tp, label, drained = int(sys.argv[5] or 0), sys.argv[6], float(sys.argv[7])
accepted = n / (tp - t0)
print(f"{'  orders accepted':<22} {accepted:10.0f} orders/s  (201s only)")
print(f"{'orders end to end' + label:<22} {n / (t1 - t0):10.0f} orders/s  ({n / (t1 - t0) / accepted:.0%} of accepted; {n} orders; the last settled {t1 - tp:.2f} s after the load stopped)")
# Events yield the CPU to requests (background.rs): with no request waiting,
# this is the rate the flow runs at.
print(f"{'  after the load':<22} {(n - done_at_tp) / max(t1 - tp, 0.001):10.0f} orders/s  ({done_at_tp} finished while it ran)")
print(f"{'  all drained':<22} {drained - tp:10.2f} s after the load (every group of every stream, looked at twice 0.5 s apart)")
PY
}
# run_all NAME PATH [wrk args...]: like `run`, with the connections split
# over every host of the stack (one wrk per host, run at once); req/s and
# host CPU are summed over the hosts.
run_all() {
  local name=$1 path=$2; shift 2
  local n; n=$(wc -w <<<"$URLS")
  local pids="$HOST_PID $EXTRA_HOSTS" t0=0 t1=0 pid i=0 u loads=""
  for pid in $pids; do t0=$((t0 + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  for u in $URLS; do
    i=$((i + 1))
    wrk -t"$(( THREADS > n ? THREADS / n : 1 ))" -c"$((CONNS / n))" -d"${SECONDS_PER_RUN}s" --latency "$@" "$u$path" >"$WORK/wrk$i.txt" &
    loads="$loads $!"
  done
  # shellcheck disable=SC2086 # one pid per word
  wait $loads
  for pid in $pids; do t1=$((t1 + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  python3 - "$name" "$((t1 - t0))" "$WORK"/wrk[0-9]*.txt <<'PY'
import re, sys
name, ticks, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rps = n = non2xx = 0.0
for f in files:
    t = open(f).read()
    rps += float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    n += float(re.search(r"(\d+) requests in", t).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t); non2xx += float(m.group(1)) if m else 0
cpu = ticks * 10000 / max(n, 1)
print(f"{name:<22} {rps:10.0f} req/s   host CPU {cpu:4.0f} us/req   non-2xx {non2xx:.0f}   ({len(files)} hosts)")
open(sys.argv[3].rsplit("/", 1)[0] + "/results", "a").write(f"{name} {rps:.0f} - -\n")
PY
  rm -f "$WORK"/wrk[0-9]*.txt
}

# Calls per node so far, summed over every command (INFO commandstats).
node_calls() {
  local p
  for p in $PRIMARIES; do
    redis-cli -p "$p" info commandstats | awk -F'[=,:]' -v p="$p" '/^cmdstat_/ {n += $3} END {print p, n + 0}'
  done
}

# cluster_round LABEL [ENV=VALUE...]: on the stack start_stack brings up
# (CLUSTER, CLUSTER_REPLICAS, HOSTS), GET /products/{id}, POST /orders and
# the orders settled end to end over 100 products, and on a cluster each
# primary's share of the commands.
cluster_round() {
  local label=$1; shift
  say "$label: wrk -c$CONNS split over the hosts, ${SECONDS_PER_RUN}s per figure"
  start_stack "$BIN" WHARF_MAX_BACKLOG=0 "$@"
  # 100 products, each order for one at random: one product would be
  # one partition, on one node, however many the cluster has.
  ids=$(for i in $(seq 1 100); do
    curl -sf -XPOST "$URL/products" -H 'content-type: application/json' -d '{"name":"p","price":1.5,"quantity":1000000000}' |
      python3 -c 'import sys,json; print(json.load(sys.stdin)["id"])'
  done | sed 's/.*/"&",/' | tr -d '\n')
  cat >"$WORK/many.lua" <<LUA
local ids = {${ids%,}}
request = function()
  return wrk.format("POST", "/orders", {["Content-Type"] = "application/json"},
    '{"product_id":"' .. ids[math.random(#ids)] .. '","quantity":1}')
end
LUA
  sed 's|request = function()|&\n  if true then return wrk.format("GET", "/products/" .. ids[math.random(#ids)]) end|' "$WORK/many.lua" >"$WORK/many-get.lua"
  run_all "GET /products/{id}" "/products/$PID_PRODUCT" -s "$WORK/many-get.lua"
  ORDER_SCRIPT="$WORK/many.lua"
  node_calls >"$WORK/calls0"
  orders_flow ""
  node_calls >"$WORK/calls1"
  python3 - "$WORK/calls0" "$WORK/calls1" <<'PY'
import sys
a = dict(l.split() for l in open(sys.argv[1])); b = dict(l.split() for l in open(sys.argv[2]))
d = {p: int(b[p]) - int(a[p]) for p in b}; t = sum(d.values()) or 1
if len(d) > 1:
    print(f"{'  commands per node':<22} " + ", ".join(f"{n / t:.0%}" for n in sorted(d.values(), reverse=True)) + f" of {t} (the orders run)")
PY
  stop_stack
}

# `scripts/bench.sh fleet`: the time from a deploy sent to one host until
# the last host serves the new version (each host's /readyz names the
# versions it serves), with 1 and 3 hosts on one Redis: 20 deploys each,
# alternating two builds of inventory, no other load.
if [ "${1:-}" = fleet ]; then
  cargo build --release -p wharf
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wharf"
  for hosts in 1 3; do
    say "fleet: $hosts host(s), 20 deploys through the first"
    HOSTS=$hosts start_stack "$BIN"
    python3 - "$WASM_DIR" "$TOKEN" $URLS <<'PY'
import hashlib, json, statistics, sys, time, urllib.request
wasm_dir, token, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
files = [open(f"{wasm_dir}/inventory-variant.wasm", "rb").read(), open(f"{wasm_dir}/inventory.wasm", "rb").read()]
def serving(url):
    with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
        return json.load(r)["components"].get("inventory")
put_ms, last_ms = [], []
for i in range(20):
    wasm = files[i % 2]
    sha = hashlib.sha256(wasm).hexdigest()
    req = urllib.request.Request(f"{urls[0]}/admin/components/inventory", data=wasm, method="PUT",
                                 headers={"Authorization": f"Bearer {token}"})
    t0 = time.monotonic()
    urllib.request.urlopen(req, timeout=30).read()
    put_ms.append((time.monotonic() - t0) * 1000)
    waiting = set(urls)
    while waiting:
        waiting = {u for u in waiting if serving(u) != sha}
        if time.monotonic() - t0 > 30:
            sys.exit(f"deploy {i}: {waiting} not on {sha[:12]} after 30 s")
    last_ms.append((time.monotonic() - t0) * 1000)
    time.sleep(0.3)
# The first deploy of each build compiles it on every host: shown apart.
warm = last_ms[2:]
print(f"{'deploy answered':<22} median {statistics.median(put_ms[2:]):7.1f} ms (first two, compiling: {put_ms[0]:.0f}, {put_ms[1]:.0f} ms)")
print(f"{'last host serving':<22} median {statistics.median(warm):7.1f} ms, max {max(warm):.1f} ms (first two: {last_ms[0]:.0f}, {last_ms[1]:.0f} ms) over {len(urls)} host(s)")
PY
    stop_stack
  done
  exit 0
fi

# completion_report MODE [SUMMARY]: from the host's JSON log, p50 and p99
# of 201 -> completed and 201 -> stock taken, with a histogram; with
# SUMMARY, appends "MODE orders p50 p99" (completed) to that file instead of the
# histogram. Each order's request id follows it through its events, so the
# log alone says when each 201 was answered, when its settle event was
# acked (the order is completed) and when inventory acked its
# order_completed event (the stock is taken).
completion_report() {
  python3 - "$WORK/wharf.log" "$WORK/hey.txt" "$1" "${2:-}" <<'PY'
import json, sys
from datetime import datetime
created, completed, stocked = {}, {}, {}
def at(line):
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
for raw in open(sys.argv[1]):
    try:
        line = json.loads(raw)
    except ValueError:
        continue
    rid = (line.get("span") or {}).get("request_id")
    if not rid:
        continue
    msg = line.get("message") or line.get("fields", {}).get("message")
    if msg == "request" and line.get("path") == "/orders" and line.get("status") == 201:
        created[rid] = at(line)
    elif msg == "event acked" and line.get("stream") == "payment_settle":
        completed.setdefault(rid, at(line))
    elif msg == "event acked" and line.get("stream") == "order_completed" and line.get("component") == "inventory":
        stocked.setdefault(rid, at(line))
codes = [l.strip() for l in open(sys.argv[2]) if l.strip().startswith("[")]
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")
mode, summary = sys.argv[3], sys.argv[4]
for name, done in (("completed", completed), ("stock taken", stocked)):
    ms = [(done[r] - t) * 1000 for r, t in created.items() if r in done]
    missing = len(created) - len(ms)
    print(f"{'  201 -> ' + name:<22} p50 {pct(ms, 50):8.1f} ms  p99 {pct(ms, 99):8.1f} ms  max {max(ms, default=0):8.1f} ms  ({len(ms)} orders, {missing} not seen; {mode})")
    if name == "completed" and summary:
        with open(summary, "a") as f:
            f.write(f"{mode} {len(created)} {pct(ms, 50):.1f} {pct(ms, 99):.1f}\n")
    if name == "completed" and ms and not summary:
        edges = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 1e9]
        counts = [0] * len(edges)
        for x in ms:
            counts[next(i for i, e in enumerate(edges) if x <= e)] += 1
        low = 0
        for e, c in zip(edges, counts):
            if c:
                label = f"<= {e:g} ms" if e < 1e9 else f"> {low:g} ms"
                print(f"      {label:>12} {c:7d} {'#' * max(1, round(60 * c / len(ms)))}")
            low = e
print(f"  answers: {' '.join(' '.join(c.split()) for c in codes)}")
PY
}
# open_loop_orders: POST /orders at RATE a second for SECONDS_PER_RUN (hey:
# 50 workers, each at RATE/50 a second, whatever the answers), its report
# in $WORK/hey.txt.
open_loop_orders() {
  hey -z "${SECONDS_PER_RUN}s" -c 50 -q "$(( (RATE + 49) / 50 ))" -m POST -T application/json \
    -d "{\"product_id\":\"$PID_PRODUCT\",\"quantity\":1}" "$URL/orders" >"$WORK/hey.txt"
}
ensure_hey() {
  command -v hey >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing hey (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null
  else
    echo "hey is missing: install it (apt-get install hey)" >&2; exit 1
  fi
}

# `scripts/bench.sh cost OLD_WHARF NEW_WHARF`: what one order costs end to
# end, both binaries in turn for BENCH_ROUNDS rounds (default 3), each on
# a fresh stack (BENCH_ENV_A/B and BENCH_CONFIG_A/B as for `compare`):
# orders at a fixed rate well under saturation (BENCH_COST_RATE, default
# 800/s, open loop, backpressure off, so nothing waits), then until the last
# stock is taken and every group is empty; the host's and Redis's CPU over
# that time, less what each spends idle (measured first, for 2 s), and
# Redis's commands (INFO commandstats: a script's own commands count too),
# per order. At a rate both sides settle, this is the cost the pipeline's
# maximum rate follows from, without the bias of a saturated run (which
# leaves work behind, or makes writers wait).
if [ "${1:-}" = cost ]; then
  [ $# = 3 ] && [ -x "$2" ] && [ -x "$3" ] || { echo "usage: scripts/bench.sh cost OLD_WHARF NEW_WHARF" >&2; exit 2; }
  ensure_hey
  ROUNDS="${BENCH_ROUNDS:-3}"; RATE="${BENCH_COST_RATE:-800}"
  : >"$WORK/cost"
  redis_ticks() { awk '{print $14 + $15}' "/proc/$(rc info server | awk -F: '/^process_id/ {print $2}' | tr -d '\r')/stat"; }
  commandstats() { rc info commandstats | tr -d '\r' | grep '^cmdstat_' >"$1"; }
  for round in $(seq 1 "$ROUNDS"); do
    for which in A B; do
      side "$which" "$2" "$3"
      say "round $round of $ROUNDS: $which ($bin${extra:+ with $extra}), $RATE orders/s for ${SECONDS_PER_RUN}s"
      # shellcheck disable=SC2086 # VAR=VALUE words, split on purpose
      start_stack "$bin" WHARF_MAX_BACKLOG=0 $extra
      cache_stream_keys payment_settle order_completed refund_order order_stream product_changed
      sleep 2
      h0=$(host_ticks); r0=$(redis_ticks); i0=$(date +%s.%N); sleep 2
      h1=$(host_ticks); r1=$(redis_ticks); t1=$(date +%s.%N); commandstats "$WORK/stats0"
      open_loop_orders
      last_hop_done
      drain
      h2=$(host_ticks); r2=$(redis_ticks); t2=$(date +%s.%N); commandstats "$WORK/stats1"
      python3 - "$which" "$(orders_stored)" "$h0 $h1 $h2" "$r0 $r1 $r2" "$i0 $t1 $t2" "$WORK/stats0" "$WORK/stats1" "$WORK/cost" <<'PY'
import re, sys
which, n = sys.argv[1], int(sys.argv[2])
h0, h1, h2 = map(int, sys.argv[3].split()); r0, r1, r2 = map(int, sys.argv[4].split())
i0, t1, t2 = map(float, sys.argv[5].split())
def stats(path):
    return {m[1]: (int(m[2]), int(m[3])) for m in re.finditer(r"cmdstat_(\S+):calls=(\d+),usec=(\d+)", open(path).read())}
a, b = stats(sys.argv[6]), stats(sys.argv[7])
idle = (t2 - t1) / (t1 - i0)
# Clock ticks are 10 ms: us per order.
host = ((h2 - h1) - (h1 - h0) * idle) * 10000 / n
redis = ((r2 - r1) - (r1 - r0) * idle) * 10000 / n
calls = {k: (v[0] - a.get(k, (0, 0))[0]) / n for k, v in b.items()}
top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
print(f"  {n} orders: host {host:.0f} us, Redis {redis:.0f} us, {sum(calls.values()):.1f} commands per order ("
      + ", ".join(f"{k} {c:.1f}" for k, c in top) + ")")
# Idle: ticks over the idle look, as a share of one core.
idle_host, idle_redis = (h1 - h0) / (t1 - i0), (r1 - r0) / (t1 - i0)
print(f"  idle before the load: host {idle_host:.1f}%, Redis {idle_redis:.1f}% of a core")
open(sys.argv[8], "a").write(f"{which} {host:.1f} {redis:.1f} {sum(calls.values()):.2f} {calls.get('evalsha', 0):.2f}"
                             f" {idle_host:.2f} {idle_redis:.2f}\n")
PY
      stop_stack
    done
  done
  python3 - "$WORK/cost" "$2" "$3" "$RATE" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\nper order at {sys.argv[4]} orders/s, medians over the rounds (idle CPU subtracted):")
med = {}
for w in "AB":
    r = [list(map(float, x[1:])) for x in rows if x[0] == w]
    med[w] = [statistics.median(c) for c in zip(*r)]
    h, rd, c, e, ih, ir = med[w]
    print(f"  {w}: host {h:5.0f} us  Redis {rd:5.0f} us  commands {c:5.1f} (scripts {e:.1f})   (host runs: {', '.join(f'{x[0]:.0f}' for x in r)}; Redis: {', '.join(f'{x[1]:.0f}' for x in r)})")
    print(f"     idle: host {ih:.1f}%, Redis {ir:.1f}% of a core")
print(f"  B/A: host {med['B'][0] / med['A'][0]:.2f}x, Redis {med['B'][1] / med['A'][1]:.2f}x CPU per order")
PY
  exit 0
fi

# languages: the route `wharf new` writes (GET /<name>/hello/{who}: one kv
# increment, a JSON answer), scaffolded in Rust, Python and JavaScript and
# loaded side by side, once with a fresh instance per request and once with
# instance_reuse. Per language: req/s, p50/p99, host CPU per request, the
# time to make an instance, and resident memory per instance.
if [ "${1:-}" = languages ]; then
  cargo build --release -p wharf
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wharf"
  ensure_python_tools
  ensure_js_tools
  WS="$WORK/ws"
  mkdir -p "$WS/components"
  cp -r wit .cargo Cargo.lock "$WS/"
  cp -r components/wharf-sdk components/wharf-js "$WS/components/"
  awk '/^members = \[/ { print "members = [\"components/wharf-sdk\"]"; skip = 1; next } skip && /^\]/ { skip = 0; next } !skip && !/^default-members/' Cargo.toml >"$WS/Cargo.toml"
  "$BIN" new greeter-rs --workspace "$WS" >/dev/null
  "$BIN" new greeter-py --lang python --workspace "$WS" >/dev/null
  "$BIN" new greeter-js --lang js --workspace "$WS" >/dev/null
  say "languages: building the same route in Rust, Python and JavaScript"
  (cd "$WS" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" cargo build -q --profile component --target wasm32-wasip2 -p greeter-rs)
  mkdir -p "$WORK/wasm"
  cp "$WASM_DIR/greeter_rs.wasm" "$WORK/wasm/greeter-rs.wasm"
  build_py_component "$WS/components/greeter-py" "$WORK/wasm/greeter-py.wasm"
  # componentize-js reads what the app imports from under the directory it runs in.
  (cd "$WS" && build_js_component components/greeter-js "$WORK/wasm/greeter-js.wasm")
  ls -l "$WORK"/wasm/*.wasm | awk '{printf "  %-14s %6.1f MB\n", $NF, $5 / 1e6}' | sed "s|$WORK/wasm/||"
  metric() { curl -sf "$URL/metrics" | awk -v n="$1" -v c="component=\"$2\"" '$1 ~ "^"n && index($0, c) {print $NF}' | head -1; }
  for reuse in 0 1000; do
    STACK_CONFIG="$WORK/lang-$reuse.toml"
    grep -v '^#' "$SHOP_CONFIG" | awk '/^\[/ { skip = ($0 ~ /^\[components\.(analytics|payment)/) } !skip' >"$STACK_CONFIG"
    for lang in rs py js; do
      printf '\n[components.greeter-%s]\nwasm = "%s"\ninstance_reuse = %s\n' "$lang" "$WORK/wasm/greeter-$lang.wasm" "$reuse" >>"$STACK_CONFIG"
    done
    start_stack "$BIN"
    say "languages: instance_reuse = $reuse (first load compiles: not timed)"
    for lang in rs py js; do
      curl -sf "$URL/greeter-$lang/hello/warm" >/dev/null
      rss0=$(awk '/VmRSS/ {print $2}' "/proc/$HOST_PID/status")
      run "greeter-$lang reuse=$reuse" "/greeter-$lang/hello/world"
      live=$(curl -sf "$URL/metrics" | awk '$1 == "wharf_instances_live" {print $2}')
      rss1=$(awk '/VmRSS/ {print $2}' "/proc/$HOST_PID/status")
      sum=$(metric wharf_instantiate_duration_seconds_sum "greeter-$lang"); count=$(metric wharf_instantiate_duration_seconds_count "greeter-$lang")
      python3 - "$sum" "$count" "$rss0" "$rss1" "$live" <<'PY'
import sys
total, count, rss0, rss1, live = (float(x or 0) for x in sys.argv[1:])
made = f"{total / count * 1000:.2f} ms each, {int(count)} made" if count else "none made"
grown = (rss1 - rss0) / 1024
print(f"{'':22} instances: {made}; resident memory {rss1 / 1024:.0f} MB after the run ({grown:+.0f} MB), {int(live)} instances alive")
PY
    done
    stop_stack
  done
  exit 0
fi

# `scripts/bench.sh latency OLD_WHARF NEW_WHARF`: what backpressure does,
# both binaries in turn for BENCH_ROUNDS rounds (default 3), each on a fresh
# stack (BENCH_ENV_A/B and BENCH_CONFIG_A/B as for `compare`), with the
# default limits.max_backlog unless the environment says otherwise: orders
# at BENCH_LATENCY_RATE a second (default 4000, more than this kind of
# machine settles, so writes wait at the door; open loop), then the drain.
# Prints per binary the medians of the orders accepted per second and of
# p50 and p99 from 201 to completed: the two figures a backlog bound trades.
if [ "${1:-}" = latency ]; then
  [ $# = 3 ] && [ -x "$2" ] && [ -x "$3" ] || { echo "usage: scripts/bench.sh latency OLD_WHARF NEW_WHARF" >&2; exit 2; }
  ensure_hey
  ROUNDS="${BENCH_ROUNDS:-3}"; RATE="${BENCH_LATENCY_RATE:-4000}"
  : >"$WORK/latency"
  for round in $(seq 1 "$ROUNDS"); do
    for which in A B; do
      side "$which" "$2" "$3"
      say "round $round of $ROUNDS: $which ($bin${extra:+ with $extra}), $RATE orders/s offered for ${SECONDS_PER_RUN}s"
      # shellcheck disable=SC2086 # VAR=VALUE words, split on purpose
      start_stack "$bin" WHARF_LOG_FORMAT=json $extra
      cache_stream_keys payment_settle order_completed refund_order order_stream product_changed
      open_loop_orders
      drain
      completion_report "$which" "$WORK/latency"
      stop_stack
    done
  done
  python3 - "$WORK/latency" "$2" "$3" "$SECONDS_PER_RUN" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
secs = float(sys.argv[4])
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}\nmedians over the rounds, 201 -> completed:")
med = {}
for w in "AB":
    r = [(int(x[1]) / secs, float(x[2]), float(x[3])) for x in rows if x[0] == w]
    med[w] = [statistics.median(c[i] for c in r) for i in range(3)]
    runs = ", ".join(f"{a:.0f}/s p99 {c:.1f}" for a, _, c in r)
    print(f"  {w}: {med[w][0]:6.0f} orders/s accepted  p50 {med[w][1]:6.1f} ms  p99 {med[w][2]:6.1f} ms   (runs: {runs})")
if med["A"][0] and med["A"][2]:
    print(f"  B/A: {med['B'][0] / med['A'][0]:.2f}x orders/s, p99 {med['B'][2] / med['A'][2]:.2f}x")
PY
  exit 0
fi

if [ "${1:-}" = --cluster ]; then
  # One Redis, then a 3-primary Redis Cluster, each with 1, 2 and 3 hosts;
  # then, on a cluster with a replica per primary and one host, what
  # redis_durability = "replicated" costs against "local".
  cargo build --release -p wharf
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wharf"
  RUN=run_all
  # `--cluster durability`: the last two rows alone.
  [ "${2:-}" = durability ] || for topology in one-redis cluster; do
    for hosts in 1 2 3; do
      if [ $topology = cluster ]; then CLUSTER=1; else CLUSTER=""; fi
      HOSTS=$hosts cluster_round "$topology, $hosts host(s)"
    done
  done
  for durability in local replicated; do
    CLUSTER=1 CLUSTER_REPLICAS=1 HOSTS=1 cluster_round "cluster + a replica per primary, 1 host, durability $durability" \
      WHARF_REDIS_DURABILITY=$durability
  done
  exit 0
fi

cargo build --release -p wharf
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wharf"
# The main figures without backpressure (limits.max_backlog off): what the
# host and the pipeline do when nothing holds the front door back.
start_stack "$BIN" WHARF_MAX_BACKLOG=0

say "wrk -t$THREADS -c$CONNS -d${SECONDS_PER_RUN}s on loopback (host logs at info to a file; redis without persistence)"
run "GET /healthz" /healthz
run "GET /products/{id}" "/products/$PID_PRODUCT"
# The same component and route with a path segment that is not an id (a
# '.' is not an id character): a fresh instance and the guest's routing, and
# the guest answers 404 before asking Redis. It sizes what a wasm call costs
# apart from the data (the 404s are counted as non-2xx).
run "GET /products/{bad}" "/products/no.such.id"

orders_flow ""
python3 - "$WORK/results" <<'PY'
import sys
res = {}
for line in open(sys.argv[1]):
    parts = line.split()
    name = " ".join(parts[:-3]); res[name] = float(parts[-3])
print(f"{'ratio products/healthz':<22} {res['GET /products/{id}'] / res['GET /healthz']:10.2f}")
print(f"{'  no Redis: {bad}/healthz':<22} {res['GET /products/{bad}'] / res['GET /healthz']:10.2f}")
PY
ORDERS_RPS=$(awk '$1=="POST" && $2=="/orders" {print $(NF-2)}' "$WORK/results" | head -1)
# Hot swap: PUT -> new version serving, alternating two builds of inventory
# while wrk keeps 8 connections busy on the product endpoint.
say "hot swap under load: 20 swaps of inventory, wrk -c8 on GET /products/{id}"
wrk -t2 -c8 -d12s "$URL/products/$PID_PRODUCT" >"$WORK/swapload.txt" &
WRK_PID=$!
sleep 1
: >"$WORK/swaps"
for i in $(seq 1 20); do
  if [ $((i % 2)) = 1 ]; then f="$WASM_DIR/inventory-variant.wasm"; else f="$WASM_DIR/inventory.wasm"; fi
  code=$(curl -s -o "$WORK/swap.json" -w '%{http_code} %{time_total}' -XPUT -H "Authorization: Bearer $TOKEN" \
    --data-binary @"$f" "$URL/admin/components/inventory")
  [ "${code%% *}" = 200 ] || { echo "swap $i failed: $code $(cat "$WORK/swap.json")" >&2; exit 1; }
  echo "${code#* }" >>"$WORK/swaps"
  sleep 0.3
done
wait "$WRK_PID"
python3 - "$WORK/swaps" <<'PY'
import statistics, sys
t = [float(x) * 1000 for x in open(sys.argv[1])]
print(f"{'swap latency':<22} median {statistics.median(t):.1f} ms; first (compiles) {t[0]:.1f} ms; max {max(t):.1f} ms over {len(t)} swaps")
PY
non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/swapload.txt"); non2xx=${non2xx:-0}
sockerr=$(awk '/Socket errors/ {print}' "$WORK/swapload.txt")
reqs=$(awk '/requests in/ {print $1}' "$WORK/swapload.txt")
echo "requests during swaps   $reqs served, non-2xx $non2xx ${sockerr:-socket errors 0}"

rss=$(awk '/VmRSS/ {print $2, $3}' "/proc/$HOST_PID/status")
echo "host resident memory after the run: $rss"
# What one instance keeps resident between calls: the warm slots' bytes per slot.
curl -s -H "Authorization: Bearer $TOKEN" "$URL/metrics" | python3 -c '
import sys
m = {l.split()[0]: float(l.split()[1]) for l in sys.stdin if l.startswith(("wharf_pool_", "wharf_instances_live"))}
w, r = m.get("wharf_pool_warm_slots", 0), m.get("wharf_pool_resident_bytes", 0)
print(f"instance pool: {w:.0f} warm slots keep {r / 1048576:.1f} MiB resident, {r / max(w, 1) / 1024:.0f} KiB per instance")'

dead=0; for s in payment_settle order_completed refund_order order_stream product_changed; do
  for key in $(stream_keys $s); do d=$(rc xlen "$key:dead"); dead=$((dead + d)); done; done
echo "dead letters: $dead"

# The same product read with the read cache off: every read a Redis round
# trip, as before `kv.get-many-cached` (docs/ARCHITECTURE.md, the read cache).
say "without the read cache (WHARF_READ_CACHE_ENTRIES=0), on a fresh host and Redis"
stop_stack
start_stack "$BIN" WHARF_READ_CACHE_ENTRIES=0
run "GET /healthz (again)" /healthz
HEALTHZ_AGAIN=$RPS
run "GET /products/{id} (no cache)" "/products/$PID_PRODUCT"
python3 -c "import sys; print(f\"{'  ratio without cache':<22} {float(sys.argv[1]) / float(sys.argv[2]):10.2f}\")" "$RPS" "$HEALTHZ_AGAIN"

# Backpressure on (the default limits.max_backlog): the same orders at
# saturation; writes past the backlog wait, and past limits.backlog_wait_ms
# answer 503, retried by nobody here, so "accepted" counts the 201s only.
say "POST /orders with backpressure (default limits.max_backlog), on a fresh host and Redis"
stop_stack
start_stack "$BIN"
orders_flow " (throttled)"

# Completion latency: an open-loop load (hey, a fixed rate whatever the
# answers) at half the unthrottled POST /orders rate, settle delay 0, JSON
# logs; the times come from the log (completion_report).
ensure_hey
RATE=$(python3 -c "import sys; print(max(50, int(float(sys.argv[1]) / 2)))" "$ORDERS_RPS")
for mode in unthrottled throttled; do
  say "completion latency, $mode: hey -z ${SECONDS_PER_RUN}s at $RATE orders/s (open loop)"
  stop_stack
  if [ $mode = unthrottled ]; then start_stack "$BIN" WHARF_LOG_FORMAT=json WHARF_MAX_BACKLOG=0
  else start_stack "$BIN" WHARF_LOG_FORMAT=json; fi
  open_loop_orders
  drain
  completion_report "$mode"
done
stop_stack
