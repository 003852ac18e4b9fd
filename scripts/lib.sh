# Shared set-up for the scripts: sourced, not run.
# Installs what a fresh machine lacks (the wasm target, redis-server) and
# builds the components. Safe to run again: each step checks first.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

COMPONENTS=(inventory payment analytics)
# Components written in Python (components/<name>/app.py), built with
# componentize-py: see ensure_python_tools and build_py_components.
PY_COMPONENTS=(loyalty)
# Components written in JavaScript (components/<name>/app.js), built with
# componentize-js: see ensure_js_tools and build_js_components.
JS_COMPONENTS=(reviews)
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

# ensure_python_venv WHO: python3 with its venv module (Debian's python3-venv
# when missing), for WHO's private virtualenv.
ensure_python_venv() {
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && return 0
  apt_install "python3 with venv is missing: $1 needs it (Debian/Ubuntu: sudo apt-get install python3-venv)" \
    python3 python3-venv
}

# The API fuzzer the conformance test runs (host/tests/it/conformance.rs),
# pinned: a new release may check more, and the test must not change by itself.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="${CARGO_TARGET_DIR:-$ROOT/target}/tools/schemathesis-$SCHEMATHESIS_VERSION"

# runnable FILE: executable, and so is the interpreter its `#!` line names:
# a virtualenv's scripts name their python by absolute path, so a target/
# moved or copied elsewhere leaves them there but broken.
runnable() {
  [ -x "$1" ] || return 1
  local first=""
  IFS= read -r first <"$1" 2>/dev/null || true
  case $first in
    '#!'*) first=${first#??}; [ -x "${first%% *}" ] ;;
    *) return 0 ;;
  esac
}

# ensure_schemathesis: a private virtualenv under target/tools (python3 and
# its venv module, from Debian's python3-venv when missing), exported as
# WHARF_SCHEMATHESIS for the test.
ensure_schemathesis() {
  local bin="$SCHEMATHESIS_VENV/bin/schemathesis"
  if ! runnable "$bin"; then
    ensure_python_venv "the API conformance test"
    say "installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into $SCHEMATHESIS_VENV"
    rm -rf "$SCHEMATHESIS_VENV"
    python3 -m venv "$SCHEMATHESIS_VENV"
    "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  export WHARF_SCHEMATHESIS="$bin"
}

# build_components [extra crates...]: every component, release, to $WASM_DIR:
# the Rust ones, then the Python ones.
build_components() {
  local args=()
  for c in "${COMPONENTS[@]}" "$@"; do args+=(-p "$c"); done
  say "building components: ${COMPONENTS[*]} $*"
  cargo build --profile component --target wasm32-wasip2 "${args[@]}"
  build_py_components
  build_js_components
}

# Python components: componentize-py (the Bytecode Alliance's, from PyPI)
# bundles CPython, the app and the SDK (components/wharf-py) into one
# component; pytest runs their rules natively. Pinned: a new componentize-py
# may bundle another CPython, and the figures in docs/PERFORMANCE.md with it.
COMPONENTIZE_PY_VERSION=0.25.1
PYTEST_VERSION=9.2.0
PY_TOOLS="${CARGO_TARGET_DIR:-$ROOT/target}/tools/python-cpy$COMPONENTIZE_PY_VERSION-pytest$PYTEST_VERSION"

# ensure_python_tools: componentize-py and pytest in a private virtualenv
# under target/tools, exported as COMPONENTIZE_PY and PYTEST.
ensure_python_tools() {
  if ! runnable "$PY_TOOLS/bin/componentize-py" || ! runnable "$PY_TOOLS/bin/pytest"; then
    ensure_python_venv "Python components"
    say "installing componentize-py $COMPONENTIZE_PY_VERSION and pytest $PYTEST_VERSION (PyPI) into $PY_TOOLS"
    rm -rf "$PY_TOOLS"
    python3 -m venv "$PY_TOOLS"
    "$PY_TOOLS/bin/pip" install --quiet --disable-pip-version-check \
      "componentize-py==$COMPONENTIZE_PY_VERSION" "pytest==$PYTEST_VERSION"
  fi
  export COMPONENTIZE_PY="$PY_TOOLS/bin/componentize-py" PYTEST="$PY_TOOLS/bin/pytest"
}

# build_py_component DIR OUT [PYTHONPATH...]: the app module DIR/app.py,
# with the SDK and any extra paths, into OUT.
build_py_component() {
  local dir=$1 out=$2; shift 2
  local paths=(-p "$dir" -p components/wharf-py)
  for p in "$@"; do paths+=(-p "$p"); done
  # Nothing changed since OUT was built: keep it (a build takes seconds).
  # A find that fails (a path gone) means build.
  local changed
  if [ -f "$out" ] && changed=$(find "$dir" components/wharf-py wit "$@" \( -name '*.py' -o -name '*.wit' \) -newer "$out" -print -quit) && [ -z "$changed" ]; then
    return 0
  fi
  # Built aside, then moved: an interrupted build leaves no newer, broken OUT.
  "$COMPONENTIZE_PY" -q -d wit -w component componentize app "${paths[@]}" -o "$out.tmp"
  mv "$out.tmp" "$out"
}

build_py_components() {
  ensure_python_tools
  say "building Python components: ${PY_COMPONENTS[*]}"
  mkdir -p "$WASM_DIR"
  for c in "${PY_COMPONENTS[@]}"; do
    build_py_component "components/$c" "$WASM_DIR/$c.wasm"
  done
}

# JavaScript components: componentize-js (the Bytecode Alliance's, from npm:
# StarlingMonkey, SpiderMonkey built for WASI) bundles the engine, the app,
# its relative imports and the SDK (components/wharf-js) into one component;
# Node's own test runner runs their rules natively. Pinned, like Python's.
COMPONENTIZE_JS_VERSION=0.23.0
JS_TOOLS="${CARGO_TARGET_DIR:-$ROOT/target}/tools/componentize-js-$COMPONENTIZE_JS_VERSION"

# ensure_js_tools: node and npm (Debian's when missing), and componentize-js
# under target/tools, exported as COMPONENTIZE_JS.
ensure_js_tools() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install "node and npm are missing: JavaScript components need them (Debian/Ubuntu: sudo apt-get install nodejs npm)" nodejs npm
  fi
  if [ ! -x "$JS_TOOLS/node_modules/.bin/componentize-js" ]; then
    say "installing componentize-js $COMPONENTIZE_JS_VERSION (npm) into $JS_TOOLS"
    rm -rf "$JS_TOOLS"; mkdir -p "$JS_TOOLS"
    npm install --prefix "$JS_TOOLS" --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION"
  fi
  export COMPONENTIZE_JS="$JS_TOOLS/node_modules/.bin/componentize-js"
}

# build_js_component DIR OUT [MORE SOURCE DIRS...]: the module DIR/app.js
# (and what it imports) into OUT. No wasi:http: a Wharf component reaches
# the world through the host's capabilities only.
build_js_component() {
  local dir=$1 out=$2; shift 2
  local changed
  if [ -f "$out" ] && changed=$(find "$dir" components/wharf-js wit "$@" \( -name '*.js' -o -name '*.wit' \) -newer "$out" -print -quit) && [ -z "$changed" ]; then
    return 0
  fi
  "$COMPONENTIZE_JS" "$dir/app.js" --wit wit --world-name component -d http fetch-event -o "$out.tmp" >/dev/null
  mv "$out.tmp" "$out"
}

build_js_components() {
  ensure_js_tools
  say "building JavaScript components: ${JS_COMPONENTS[*]}"
  mkdir -p "$WASM_DIR"
  for c in "${JS_COMPONENTS[@]}"; do
    build_js_component "components/$c" "$WASM_DIR/$c.wasm"
  done
}

# test_js_components: the JavaScript SDK's tests and each JavaScript
# component's rules, natively with node --test.
test_js_components() {
  ensure_js_tools
  say "testing the JavaScript SDK and components (node --test)"
  local dirs=(components/wharf-js)
  for c in "${JS_COMPONENTS[@]}"; do dirs+=("components/$c"); done
  node --test "${dirs[@]}"
}

# test_py_components: the Python SDK's tests and each Python component's
# rules, natively with pytest.
test_py_components() {
  ensure_python_tools
  say "testing the Python SDK and components (pytest)"
  # One run per folder: every component has its own `rules` module.
  local dir status=0
  for dir in components/wharf-py "${PY_COMPONENTS[@]/#/components/}"; do
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=components/wharf-py "$PYTEST" -q -p no:cacheprovider "$dir" || status=1
  done
  return $status
}

# build_test_fixtures: the components only tests use, including second
# versions of one component for the hot-swap tests.
build_test_fixtures() {
  say "building test fixtures"
  local out="$WASM_DIR"
  cargo build --profile component --target wasm32-wasip2 -p faulty -p alien -p bare
  cargo build --profile component --target wasm32-wasip2 -p hello-http --features v2
  cp "$out/hello_http.wasm" "$out/hello-http-v2.wasm"
  cargo build --profile component --target wasm32-wasip2 -p hello-http
  cp "$out/hello_http.wasm" "$out/hello-http.wasm"
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
  ensure_python_tools
  local py=host/tests/components/pyversioned
  build_py_component "$py" "$out/pyversioned-v1.wasm" "$py/v1"
  build_py_component "$py" "$out/pyversioned-v2.wasm" "$py/v2"
  ensure_js_tools
  local js=host/tests/components/jsversioned
  build_js_component "$js/v1" "$out/jsversioned-v1.wasm" "$js"
  build_js_component "$js/v2" "$out/jsversioned-v2.wasm" "$js"
}
