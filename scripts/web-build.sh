#!/usr/bin/env bash
# Builds the web app into dist/ (trunk, release, the `wasm-release` profile) and the embeddable
# library into pkg/: the wasm-bindgen output plus websr.mjs (the API) and websr-worker.mjs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# trunk builds offline (trunk.toml): fetch what the wasm32 build needs first.
scripts/fetch-deps.sh
# The product card names the file trunk.toml; trunk itself looks for Trunk.toml.
trunk --config trunk.toml build --release
rm -rf pkg && mkdir -p pkg
cp dist/websr.js dist/websr_bg.wasm www/websr.mjs www/websr-worker.mjs www/websr-federated.mjs pkg/
cat > pkg/package.json <<JSON
{
  "name": "websr",
  "version": "$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)",
  "description": "Wavelet super-resolution in the browser (WebGPU, CPU fallback), in a Web Worker",
  "type": "module",
  "main": "websr.mjs",
  "files": ["websr.mjs", "websr-worker.mjs", "websr-federated.mjs", "websr.js", "websr_bg.wasm"],
  "license": "MIT OR Apache-2.0"
}
JSON
raw=$(stat -c %s dist/websr_bg.wasm)
gz=$(gzip -9 -c dist/websr_bg.wasm | wc -c)
echo "websr_bg.wasm: $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzip"
