#!/usr/bin/env bash
# Installs what building and testing Tributary needs on a fresh Debian 12
# machine that has rustup. Idempotent: re-running it only checks.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '==> %s\n' "$*"; }

# The pinned toolchain, its components and the thumb targets come from
# rust-toolchain.toml; rustup >= 1.28 no longer installs them implicitly.
step "Rust toolchain (rust-toolchain.toml)"
rustup toolchain install >/dev/null
rustc --version

# Debian packages the tests need. None yet for the core; the edge, hub and
# firmware issues add mosquitto, qemu-system-arm and friends here.
APT_PACKAGES=()
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    step "apt packages: ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
