#!/usr/bin/env bash
# Sourced by every build script: one cargo target directory for the README's two commands and
# CI, and the installed tools on PATH.
#   WEBSR_TARGET_DIR  where to build (default: ./target of this checkout); .ci/run points it at a
#                     folder outside the clone so CI reuses earlier builds.
# An explicit CARGO_TARGET_DIR wins over both.
websr_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$websr_root/node_modules/.bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${WEBSR_TARGET_DIR:-$websr_root/target}}"
