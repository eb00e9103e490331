#!/usr/bin/env bash
# Upscales one image with the native CLI (dev profile: dependencies are optimised, and it shares
# its build with the tests), by the shipped default x4 model unless MODEL names another.
# Usage: scripts/run.sh IN [OUT] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
in=${1:?usage: scripts/run.sh IN [OUT] [MODEL]}
out=${2:-${in%.*}-x4.png}
cargo run -p websr-cli -- upscale "$in" -o "$out" ${3:+--model "$3"}
