#!/usr/bin/env bash
# Every check CI runs, in the order that fails fastest. `.ci/run` calls this.
# Set FUZZ_SECONDS=0 to skip fuzzing locally.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

step "format"
cargo fmt --all --check
(cd firmware && cargo fmt --check)

step "clippy (host crates, all targets)"
cargo clippy --all-targets --locked -- -D warnings

# ---- firmware (issue #8; docs/firmware.md) -------------------------------
# Before the workspace tests: edge-node/tests/firmware_qemu.rs runs the
# release ELF of the QEMU board built here; it looks in $CARGO_TARGET_DIR,
# then firmware/target (TRIBUTARY_FIRMWARE_ELF overrides).
step "firmware: host tests, clippy, release builds, sizes"
# Cargo resolves a relative CARGO_TARGET_DIR against firmware/ there.
fw_target=$(cd firmware && realpath -m "${CARGO_TARGET_DIR:-target}")
(
    cd firmware
    host=$(rustc -vV | sed -n 's/^host: //p')
    # Drivers (embedded-hal-mock) and application logic run on the host.
    cargo test --locked -p tributary-firmware --target "$host" 2>&1 | tee -a "$log"
    cargo clippy --locked -p tributary-firmware --all-targets --target "$host" -- -D warnings
    # Thumbv7em (the default target): the library and the QEMU board.
    cargo clippy --locked --workspace --exclude tributary-fw-rp2040 -- -D warnings
    cargo build --locked --release --workspace --exclude tributary-fw-rp2040
    # The Raspberry Pi Pico (Cortex-M0+): built, not linted here (a clippy
    # pass re-checks embassy-rp and its PAC: +2 min on 2 cores for 120
    # lines of board code; lint it by hand after changing it).
    cargo build --locked --release -p tributary-fw-rp2040 --target thumbv6m-none-eabi
)
# Flash = text + data (initial values of .data live in flash too),
# static RAM = data + bss (the stack comes on top).
for elf in "$fw_target/thumbv7em-none-eabihf/release/tributary-fw-mps2" \
           "$fw_target/thumbv6m-none-eabi/release/tributary-fw-rp2040"; do
    arm-none-eabi-size "$elf" | awk -v name="$(basename "$elf")" 'NR == 2 {
        printf "%s: flash %d B (%.1f KiB), static RAM %d B (%.1f KiB)\n",
            name, $1 + $2, ($1 + $2) / 1024, $2 + $3, ($2 + $3) / 1024 }'
done
# ---- end firmware ---------------------------------------------------------

step "tests (unit, property, doc, end-to-end)"
# The end-to-end tests (tests/tests/) run the real tributary-edge and
# tributary-hub binaries; build them first so they exist whatever cargo
# decides to build for the test run.
cargo build --workspace --bins --locked
cargo test --workspace --locked 2>&1 | tee -a "$log"
step "Raspberry Pi: aarch64 cross-build, smoke test under QEMU (PI_SMOKE=0 skips)" && bash scripts/pi-smoke.sh

# The system benchmark's --quick mode on the debug build: every part that
# runs there (ingest, sync bytes, the fleet document, catch-up and latency
# with real processes, firmware sizes) must still produce its figures; the
# numbers are not meaningful here (docs/benchmarks.md has the real ones).
step "system benchmark, smoke test (tributary-bench all --quick)"
cargo run --locked -q -p tributary-tests --bin tributary-bench -- all --quick > /dev/null

step "no_std builds of the core"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf; do
    cargo build --locked -p tributary-core --no-default-features --target "$target"
done

step "licences and duplicate crates (cargo-deny)"
# Pinned: a new cargo-deny may add checks; bump deliberately. Installing it
# builds from source, once per machine.
CARGO_DENY_VERSION="0.18.9"
if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    # --debug: an unoptimised build installs in ~2m50 instead of ~6 min on
    # 2 cores, and the check itself still takes ~3 s on this tree.
    cargo install cargo-deny --locked --debug --version "$CARGO_DENY_VERSION"
fi
cargo deny --log-level error check licenses bans

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

if [[ "${FUZZ_SECONDS:-30}" != 0 ]]; then
    step "fuzz (${FUZZ_SECONDS:-30} s per target)"
    bash scripts/fuzz.sh
fi

# One closing line over every cargo test binary, for whoever reads the end.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\n%d passed, %d failed, %d skipped\n", p, f, i; exit (f > 0) }' "$log"
