#!/usr/bin/env bash
# Installs what building and testing Tributary needs on a fresh Debian 12
# machine that has rustup. Idempotent: re-running it only checks.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '==> %s\n' "$*"; }

# The pinned toolchain, its components and its targets (thumb for the
# no_std core, aarch64 for the Raspberry Pi gateway) come from
# rust-toolchain.toml; rustup >= 1.28 no longer installs them implicitly.
step "Rust toolchain (rust-toolchain.toml)"
rustup --quiet toolchain install
rustc --version

# Debian packages the tests need:
# - qemu-system-arm: firmware under emulated Cortex-M boards;
# - qemu-user (qemu-aarch64), gcc-aarch64-linux-gnu (linker, C compiler for
#   the bundled SQLite, cross glibc), curl, python3: scripts/pi-smoke.sh
#   cross-builds the gateway and runs it as on a Raspberry Pi;
# - mosquitto, mosquitto-clients: a real MQTT broker for the sync tests;
# - binutils-arm-none-eabi: firmware size reports;
# - chromium: the dashboard's browser test (cloud-hub/tests/dashboard.rs);
# - postgresql: the hub's PostgreSQL backend tests (each test runs its own
#   throwaway cluster, tributary_testkit::Postgres, never the packaged one);
# - openssl: a throwaway CA for the TLS tests (tributary_testkit::TestCa).
APT_PACKAGES=(
    qemu-system-arm qemu-user mosquitto mosquitto-clients
    gcc-aarch64-linux-gnu binutils-arm-none-eabi curl python3 chromium
    postgresql openssl
)
# The 32-bit Pi build (armv7, Raspberry Pi OS armhf) is opt-in: it costs CI
# about a minute more (docs/operations.md).
if [[ "${PI_SMOKE_ARMV7:-0}" == 1 ]]; then
    APT_PACKAGES+=(gcc-arm-linux-gnueabihf)
    rustup target list --installed | grep -qx armv7-unknown-linux-gnueabihf ||
        rustup target add armv7-unknown-linux-gnueabihf >/dev/null
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    step "apt packages: ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
