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
# The second wasm: the same crate with the convolution kernel on relaxed SIMD's fused
# multiply-add (feature relaxed-simd: only websr-kernels and websr recompile). The worker loads it
# where the browser validates relaxed SIMD, else trunk's websr.js.
cargo build --lib --target wasm32-unknown-unknown --profile wasm-release --no-default-features \
  --features flex,wgpu,train,relaxed-simd
wasm-bindgen --target web --no-typescript --out-dir dist --out-name websr-relaxed \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/websr.wasm"
rm -rf pkg && mkdir -p pkg
cp dist/websr.js dist/websr_bg.wasm dist/websr-relaxed.js dist/websr-relaxed_bg.wasm \
  www/websr.mjs www/websr-worker.mjs www/websr-federated.mjs pkg/
cat > pkg/package.json <<JSON
{
  "name": "websr",
  "version": "$(awk -F'"' '/^version = / { print $2; exit }' Cargo.toml)",
  "description": "Wavelet super-resolution in the browser (WebGPU, CPU fallback), in a Web Worker",
  "type": "module",
  "main": "websr.mjs",
  "files": ["websr.mjs", "websr-worker.mjs", "websr-federated.mjs", "websr.js", "websr_bg.wasm",
            "websr-relaxed.js", "websr-relaxed_bg.wasm"],
  "license": "MIT OR Apache-2.0"
}
JSON
raw=$(stat -c %s dist/websr_bg.wasm)
gz=$(gzip -9 -c dist/websr_bg.wasm | wc -c)
echo "websr_bg.wasm: $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzip"
raw=$(stat -c %s dist/websr-relaxed_bg.wasm)
gz=$(gzip -9 -c dist/websr-relaxed_bg.wasm | wc -c)
echo "websr-relaxed_bg.wasm: $((raw / 1024)) KiB raw, $((gz / 1024)) KiB gzip"
