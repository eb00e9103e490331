#!/usr/bin/env bash
# The main job until the web app lands: build the CLI (dev profile: dependencies are optimised,
# and it shares its build with the tests) and upscale an image with the shipped
# default model. Usage: scripts/run.sh IN [OUT] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
in=${1:?usage: scripts/run.sh IN [OUT] [MODEL]}
out=${2:-${in%.*}-x4.png}
model=${3:-wavelr-x4}
cargo run -p websr-cli -- upscale "$in" -o "$out" --model "$model"
