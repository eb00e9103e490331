#!/usr/bin/env bash
# The README's main job: build the web app with the shipped models and serve it on
# http://127.0.0.1:8080 (Ctrl-C stops). Installs the build tools first when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scripts/web-tools.sh
scripts/web-build.sh
echo "websr is at http://127.0.0.1:${PORT:-8080}/"
exec node scripts/static-server.mjs dist "${PORT:-8080}"
