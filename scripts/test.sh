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

step "tests (unit, property, doc)"
cargo test --workspace --locked 2>&1 | tee "$log"
step "Raspberry Pi: aarch64 cross-build, smoke test under QEMU (PI_SMOKE=0 skips)" && bash scripts/pi-smoke.sh

step "no_std builds of the core"
for target in thumbv6m-none-eabi thumbv7em-none-eabihf; do
    cargo build --locked -p tributary-core --no-default-features --target "$target"
done

step "firmware (own workspace, thumbv7em)"
(cd firmware && cargo clippy --locked -- -D warnings && cargo build --locked --release)

step "licences and duplicate crates (cargo-deny)"
# Pinned: a new cargo-deny may add checks; bump deliberately. Installing it
# builds from source (~5 min on 2 cores), once per machine.
CARGO_DENY_VERSION="0.18.9"
if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
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
