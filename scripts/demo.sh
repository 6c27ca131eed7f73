#!/usr/bin/env bash
# The main job. Today: the core's convergence demo — three gateways
# aggregate offline, two hubs receive their deltas duplicated and shuffled,
# and end bit-identical. The hub/edge/firmware demo replaces it (issue #10).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "==> building and running the convergence demo"
exec cargo run --quiet -p tributary-core --example converge -- "$@"
