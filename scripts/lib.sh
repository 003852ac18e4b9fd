# Shared set-up for the scripts: sourced, not run.
# Installs what a fresh machine lacks (the wasm target, redis-server) and
# builds the components. Safe to run again: each step checks first.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

COMPONENTS=(inventory payment analytics)
WASM_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/wasm32-wasip2/component"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_wasm_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    say "adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
  fi
}

# apt_install "WHY IT IS MISSING" PACKAGE...: installs Debian packages when
# run as root with apt-get; otherwise says what is missing and fails.
apt_install() {
  local why=$1; shift
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $* (apt)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "$why" >&2
    return 1
  fi
}

# redis-cli too: the cluster tests join their nodes with `redis-cli --cluster create`
# (Debian's redis-server package brings redis-tools, which has it).
ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
  apt_install "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) or set REDIS_URL" \
    redis-server redis-tools
}

# ensure_chromium: the console's tests drive headless Chromium through
# chromedriver (Debian's chromium and chromium-driver packages).
ensure_chromium() {
  command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || [ -n "${CHROMIUM:-}" ]; } && return 0
  apt_install "chromium and chromedriver are missing: the console's tests need them (Debian/Ubuntu: sudo apt-get install chromium chromium-driver; elsewhere set CHROMIUM and CHROMEDRIVER)" \
    chromium chromium-driver
}

# ensure_openssl: the https CLI test puts `openssl s_server` in front of a host.
ensure_openssl() {
  command -v openssl >/dev/null 2>&1 && return 0
  apt_install "openssl is missing: the https CLI test needs it (Debian/Ubuntu: sudo apt-get install openssl)" openssl
}

# The API fuzzer the conformance test runs (host/tests/it/conformance.rs),
# pinned: a new release may check more, and the test must not change by itself.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="${CARGO_TARGET_DIR:-$ROOT/target}/tools/schemathesis-$SCHEMATHESIS_VERSION"

# ensure_schemathesis: a private virtualenv under target/tools (python3 and
# its venv module, from Debian's python3-venv when missing), exported as
# WHARF_SCHEMATHESIS for the test.
ensure_schemathesis() {
  local bin="$SCHEMATHESIS_VENV/bin/schemathesis"
  if [ ! -x "$bin" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing python3-venv (apt)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
      else
        echo "python3 with venv is missing: the API conformance test needs it (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
        return 1
      fi
    fi
    say "installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into $SCHEMATHESIS_VENV"
    rm -rf "$SCHEMATHESIS_VENV"
    python3 -m venv "$SCHEMATHESIS_VENV"
    "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  export WHARF_SCHEMATHESIS="$bin"
}

# build_components [extra crates...]: every component, release, to $WASM_DIR.
build_components() {
  local args=()
  for c in "${COMPONENTS[@]}" "$@"; do args+=(-p "$c"); done
  say "building components: ${COMPONENTS[*]} $*"
  cargo build --profile component --target wasm32-wasip2 "${args[@]}"
}

# build_test_fixtures: the components only tests use, including second
# versions of one component for the hot-swap tests.
build_test_fixtures() {
  say "building test fixtures"
  local out="$WASM_DIR"
  cargo build --profile component --target wasm32-wasip2 -p faulty -p alien -p bare
  cargo build --profile component --target wasm32-wasip2 -p hostile --features greedy
  cp "$out/hostile.wasm" "$out/hostile-greedy.wasm"
  cargo build --profile component --target wasm32-wasip2 -p hostile --features poacher
  cp "$out/hostile.wasm" "$out/hostile-poacher.wasm"
  cargo build --profile component --target wasm32-wasip2 -p hostile --features sneaky
  cp "$out/hostile.wasm" "$out/hostile-sneaky.wasm"
  cargo build --profile component --target wasm32-wasip2 -p hostile --features scripted
  cp "$out/hostile.wasm" "$out/hostile-scripted.wasm"
  cargo build --profile component --target wasm32-wasip2 -p hostile
  cargo build --profile component --target wasm32-wasip2 -p versioned --features v2
  cp "$out/versioned.wasm" "$out/versioned-v2.wasm"
  cargo build --profile component --target wasm32-wasip2 -p versioned --features bad-manifest
  cp "$out/versioned.wasm" "$out/versioned-bad.wasm"
  cargo build --profile component --target wasm32-wasip2 -p versioned --features v3
  cp "$out/versioned.wasm" "$out/versioned-v3.wasm"
  cargo build --profile component --target wasm32-wasip2 -p versioned --features failing
  cp "$out/versioned.wasm" "$out/versioned-failing.wasm"
  cargo build --profile component --target wasm32-wasip2 -p versioned
  cp "$out/versioned.wasm" "$out/versioned-v1.wasm"
  cargo build --profile component --target wasm32-wasip2 -p inventory --features variant
  cp "$out/inventory.wasm" "$out/inventory-variant.wasm"
}
