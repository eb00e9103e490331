#!/usr/bin/env bash
# Installs what building and testing the web app needs, without any tool downloading binaries at
# build time: the wasm32 target, the wasm-bindgen CLI at exactly Cargo.lock's version, trunk,
# the npm packages (playwright-core, binaryen's wasm-opt) and Debian's Chromium. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown

# wasm-bindgen's CLI must match the library version in Cargo.lock exactly.
bindgen=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$bindgen" ]; then
  # Without --locked: with it, the install fails on a yanked transitive crate.
  cargo install wasm-bindgen-cli --version "$bindgen"
fi
# trunk 0.22 needs a newer rustc than this machine's.
if [ "$(trunk --version 2>/dev/null | awk '{print $2}')" != "0.21.14" ]; then
  cargo install trunk --version 0.21.14 --locked
fi

if [ ! -x node_modules/.bin/playwright-core ] || [ ! -x node_modules/.bin/wasm-opt ]; then
  npm ci --no-audit --no-fund
fi

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }
fi
