#!/usr/bin/env bash
# Builds components by name, in whatever language each is written:
# components/NAME/Cargo.toml (Rust), app.py (Python) or app.js (JavaScript),
# into target/wasm32-wasip2/component/NAME.wasm. No name: every shipped one.
#   scripts/build.sh loyalty greeter
source "$(dirname "$0")/lib.sh"
ensure_wasm_target
[ $# -gt 0 ] || { build_components; exit; }
for name in "$@"; do
  dir="components/$name"
  if [ -f "$dir/Cargo.toml" ]; then
    say "building $name (Rust)"
    cargo build --profile component --target wasm32-wasip2 -p "$name"
  elif [ -f "$dir/app.py" ]; then
    ensure_python_tools
    say "building $name (Python)"
    mkdir -p "$WASM_DIR"
    build_py_component "$dir" "$WASM_DIR/$name.wasm"
  elif [ -f "$dir/app.js" ]; then
    ensure_js_tools
    say "building $name (JavaScript)"
    mkdir -p "$WASM_DIR"
    build_js_component "$dir" "$WASM_DIR/$name.wasm"
  else
    echo "$dir holds no Cargo.toml, app.py or app.js" >&2
    exit 1
  fi
done
say "built into $WASM_DIR"
