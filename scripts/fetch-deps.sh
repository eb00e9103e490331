#!/usr/bin/env bash
# Downloads every locked dependency for every target (native and wasm32) into the cargo cache.
# The web build runs cargo with --offline (trunk.toml), so on a machine with an empty cargo cache
# it would fail on the first crate only the wasm32 build needs: every script that builds offline
# runs this first. Cheap when the cache is warm (nothing to download).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# No --target: cargo fetch then downloads the packages of every platform in Cargo.lock.
cargo fetch --locked
