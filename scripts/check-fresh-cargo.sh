#!/usr/bin/env bash
# CI check for the "works here, fails on a new machine" class of bug: a build step that runs
# offline before anything downloaded its dependencies. It runs the dependency step the build
# scripts run (scripts/fetch-deps.sh) with a throw-away CARGO_HOME that holds only the installed
# binaries (an empty registry cache, as on a new user's machine), then asks cargo, offline, to
# load every package of every build the scripts make. It compiles nothing: about a minute.
#   FETCH="cmd" replaces the dependency step (FETCH=true: none, as before it existed; the check
#   must then fail).
set -euo pipefail
cd "$(dirname "$0")/.."
real_home="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$real_home/bin:$HOME/.cargo/bin:$PATH"
fresh=$(mktemp -d /tmp/websr-fresh-cargo.XXXXXX)
trap 'rm -rf "$fresh"' EXIT
mkdir -p "$fresh"
ln -s "$real_home/bin" "$fresh/bin"
export CARGO_HOME="$fresh"

if ! (eval "${FETCH:-scripts/fetch-deps.sh}") >"$fresh/fetch.log" 2>&1; then
  tail -5 "$fresh/fetch.log" >&2
  echo "check-fresh-cargo: the dependency step failed" >&2
  exit 1
fi

fail=0
# Each build the scripts make: target, then cargo flags (scripts/test.sh, scripts/web-build.sh).
while read -r target flags; do
  [ -n "$target" ] || continue
  # shellcheck disable=SC2086
  if ! out=$(cargo tree --offline --locked --target "$target" -e normal,build,dev $flags 2>&1 >/dev/null); then
    echo "check-fresh-cargo: an offline build for $target $flags would fail on an empty cargo cache:" >&2
    echo "$out" | grep -m3 -E 'error|Caused|failed' >&2 || echo "$out" | tail -3 >&2
    fail=1
  fi
done <<'BUILDS'
x86_64-unknown-linux-gnu --workspace --features websr/wgpu
wasm32-unknown-unknown -p websr --no-default-features --features flex,wgpu,train
wasm32-unknown-unknown -p websr --no-default-features --features flex,wgpu,train,relaxed-simd
BUILDS
[ "$fail" = 0 ] && echo "check-fresh-cargo: every build's dependencies are fetched before it runs offline"
exit "$fail"
