#!/usr/bin/env bash
# The main job, as far as it is built: the core's convergence demo (three
# gateways aggregate offline, two hubs receive their deltas duplicated and
# shuffled, and end bit-identical), then an edge gateway with simulated
# sensors that keeps running, with its local API, until Ctrl-C. The hub and
# the firmware join it as issues #5, #8 and #10 land.
#
#   DEMO_DIR   where the gateway keeps its data (default ./demo-data)
#   DEMO_PORT  the gateway's HTTP port (default 8080)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "==> building and running the convergence demo"
cargo run --quiet -p tributary-core --example converge -- "$@"

dir="${DEMO_DIR:-$PWD/demo-data}"
port="${DEMO_PORT:-8080}"
mkdir -p "$dir"
cat > "$dir/edge.toml" <<TOML
# Written by scripts/demo.sh: a gateway with 8 simulated sensors at 2 Hz.
[node]
data_dir = "$dir/edge"
[http]
listen = "127.0.0.1:$port"
[sources.simulator]
sensors = 8
first_sensor = 1000
rate_hz = 2.0
spike_probability = 0.002
TOML
echo "==> building the edge gateway"
cargo build --quiet -p tributary-edge
base="http://127.0.0.1:$port"
cat <<TEXT
==> edge gateway running (data in $dir/edge; Ctrl-C stops it cleanly)
    status      $base/api/v1/status
    aggregates  $base/api/v1/aggregates?sensor=1000&resolution=1m
    alerts      $base/api/v1/alerts
    metrics     $base/metrics
TEXT
exec cargo run --quiet -p tributary-edge -- run --config "$dir/edge.toml"
