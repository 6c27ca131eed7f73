#!/usr/bin/env bash
# The main job: a Tributary hub (embedded MQTT broker + SQLite) and three
# edge gateways with simulated sensors (plus the real firmware on a QEMU
# Cortex-M4 board feeding the first one), as real processes; the third
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
# The QEMU device: the real firmware on an emulated Cortex-M4, feeding the
# first gateway over a UART. Optional: without QEMU or this build the demo
# runs without it (and says so).
if command -v qemu-system-arm >/dev/null; then
    echo "==> building the firmware of the QEMU board (release, thumbv7em; first time ~1 min)"
    fw_target=$(realpath -m "$target")
    if ! (cd firmware && CARGO_TARGET_DIR="$fw_target" cargo build --locked --release -p tributary-fw-mps2); then
        echo "demo: the firmware did not build; the demo runs without the QEMU device" >&2
    fi
fi
exec "$target/debug/tributary-demo" "$@"
