#!/usr/bin/env bash
# The test command of the README: formatting, lints, and every test of the workspace on every
# backend this machine reaches: burn's CPU backend (flex) and wgpu (natively on Mesa's lavapipe
# Vulkan driver when no GPU is present; `.ci/run` installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
cargo test --workspace --features websr/wgpu 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
