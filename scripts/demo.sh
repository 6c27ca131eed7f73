#!/usr/bin/env bash
# The main job: a Tributary hub (embedded MQTT broker + SQLite) and three
# edge gateways with simulated sensors, as real processes; the third
# gateway loses its uplink for a minute every three minutes and catches up.
# Prints the dashboard URL; Ctrl-C stops everything cleanly. Data and logs
# stay in ./tributary-demo-data (the next run continues from them).
#
# Flags go to tributary-demo (`scripts/demo.sh --help` lists them), e.g.
#   scripts/demo.sh --sensors 20 --rate-hz 2 --hub-http 0.0.0.0:8090
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "==> building the hub, the gateway and the demo (debug build; first time ~5 min)"
cargo build --locked --bins -p tributary-hub -p tributary-edge -p tributary-tests
target="${CARGO_TARGET_DIR:-target}"
exec "$target/debug/tributary-demo" "$@"
