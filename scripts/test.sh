#!/usr/bin/env bash
# The test command of the README: formatting, lints, every test of the workspace on every backend
# this machine reaches (burn's CPU backend `flex`, and wgpu on Mesa's lavapipe Vulkan driver when
# no GPU is present; `.ci/run` installs it), then the web app in a real browser, twice: with
# WebGPU (Chromium's SwiftShader adapter) and without (the CPU fallback).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
wasm_features=(--target wasm32-unknown-unknown --no-default-features --features flex,wgpu,train)

scripts/web-tools.sh
scripts/fetch-deps.sh
cargo fmt --all -- --check
for js in www/*.mjs tests/browser/*.mjs scripts/*.mjs; do node --check "$js"; done
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --lib "${wasm_features[@]}" -- -D warnings
# The second browser build (the kernel on relaxed SIMD), as scripts/web-build.sh makes it.
cargo clippy --lib "${wasm_features[@]}" --features relaxed-simd -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --features websr/wgpu 2>&1 | tee "$log"

scripts/web-build.sh
WEBSR_BIN="$CARGO_TARGET_DIR/debug/websr" node tests/browser/run.mjs 2>&1 | tee -a "$log"
WEBSR_BIN="$CARGO_TARGET_DIR/debug/websr" WEBSR_AGGREGATOR="$CARGO_TARGET_DIR/debug/websr-aggregator" \
  node tests/browser/federated.mjs 2>&1 | tee -a "$log"

# One closing line for the whole run, summed over every test binary and the browser suite.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
