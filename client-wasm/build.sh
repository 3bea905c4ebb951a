#!/usr/bin/env bash
# Builds the JavaScript package of the browser MQTT client into client-wasm/pkg:
# cargo (profile wasm-release) -> wasm-bindgen --target web -> wasm-opt -Oz, plus the thin
# index.js wrapper, its types and package.json. Prints the gzip -9 size of wasm + JS.
# Usage: client-wasm/build.sh   (from anywhere; honours CARGO_TARGET_DIR)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
pkg="$root/client-wasm/pkg"

cargo build --profile wasm-release --target wasm32-unknown-unknown -p switchboard-client --features js,scram
rm -rf "$pkg"
wasm-bindgen --target web --out-dir "$pkg" \
  "$target_dir/wasm32-unknown-unknown/wasm-release/switchboard_client.wasm"
wasm_opt="$root/node_modules/.bin/wasm-opt"
if [ -x "$wasm_opt" ]; then
  "$wasm_opt" -Oz --converge --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$pkg/switchboard_client_bg.wasm" -o "$pkg/switchboard_client_bg.wasm.opt"
  mv "$pkg/switchboard_client_bg.wasm.opt" "$pkg/switchboard_client_bg.wasm"
else
  echo "warning: $wasm_opt not found, wasm not optimised" >&2
fi
cp client-wasm/js/index.js client-wasm/js/index.d.ts "$pkg/"
cat > "$pkg/package.json" <<'JSON'
{
  "name": "switchboard-client",
  "version": "0.1.0",
  "description": "Browser MQTT 3.1.1/5.0 client over WebSocket, in WebAssembly.",
  "type": "module",
  "main": "index.js",
  "module": "index.js",
  "types": "index.d.ts",
  "files": ["index.js", "index.d.ts", "switchboard_client.js", "switchboard_client.d.ts", "switchboard_client_bg.wasm", "switchboard_client_bg.wasm.d.ts"],
  "sideEffects": false,
  "license": "MIT OR Apache-2.0"
}
JSON

gz() { gzip -9 -c "$1" | wc -c; }
wasm=$(gz "$pkg/switchboard_client_bg.wasm")
glue=$(gz "$pkg/switchboard_client.js")
wrap=$(gz "$pkg/index.js")
echo "switchboard-client size (gzip -9): wasm $wasm + glue $glue + wrapper $wrap = $((wasm + glue + wrap)) bytes"
