#!/usr/bin/env bash
# Runs the cargo-fuzz targets of tributary-core (shared/fuzz/) for a fixed time each.
#
#   scripts/fuzz.sh                  # every target, FUZZ_SECONDS (default 30) each
#   scripts/fuzz.sh frame_decode     # only the named targets
#   FUZZ_SECONDS=600 scripts/fuzz.sh
#
# Needs only rustup and a C++ compiler (libFuzzer is C++); installs the pinned
# nightly and cargo-fuzz when missing, so a fresh CI machine gets the same tools.
# Build artefacts go to $CARGO_TARGET_DIR when set (cacheable), else
# shared/fuzz/target; the growing corpus to shared/fuzz/corpus/<target>.
# A crash is saved under shared/fuzz/artifacts/<target>/; minimise it and
# copy it to shared/tests/fuzz-crashers/ (see the README there).
set -euo pipefail

# Pinned by date so every machine fuzzes with the same compiler; bump deliberately.
NIGHTLY="nightly-2026-05-19"
CARGO_FUZZ_VERSION="0.13.2"
FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

if ! [[ "$FUZZ_SECONDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz.sh: FUZZ_SECONDS must be a positive whole number of seconds, got '$FUZZ_SECONDS'" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# A login shell on a fresh machine may not have rustup's bin directory on PATH yet.
if ! command -v rustup >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
command -v rustup >/dev/null 2>&1 || {
    echo "fuzz.sh: rustup not found; install it from https://rustup.rs" >&2
    exit 1
}

if ! command -v c++ >/dev/null 2>&1 && ! command -v clang++ >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing g++ (libFuzzer is built from C++ sources)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends g++ >/dev/null
    else
        echo "fuzz.sh: no C++ compiler found; libFuzzer needs one (Debian: apt-get install g++)" >&2
        exit 1
    fi
fi

if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    echo "==> installing $NIGHTLY"
    rustup toolchain install "$NIGHTLY" --profile minimal
fi

if [[ "$(cargo +"$NIGHTLY" fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo +"$NIGHTLY" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
fi

cd "$repo/shared"

target_dir=()
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    target_dir=(--target-dir "$CARGO_TARGET_DIR")
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +"$NIGHTLY" fuzz list)
fi

# Seeds for every target: past crashes, so fuzzing starts from them, and the
# golden wire fixtures (hex text, turned into bytes here), so the message
# targets start from valid messages and reach the round-trip checks instead of
# stalling on CBOR syntax. Kept out of the corpus so it only holds finds.
seeds="$(mktemp -d)"
trap 'rm -rf "$seeds"' EXIT
for file in "$repo/shared/tests/fuzz-crashers"/*; do
    if [[ -f "$file" && "$(basename "$file")" != README.md ]]; then
        cp "$file" "$seeds/"
    fi
done
if [[ -d "$repo/shared/tests/fixtures/wire" ]]; then
    while IFS= read -r -d '' hex_file; do
        hex="$(tr -d ' \t\r\n' <"$hex_file")"
        escaped=""
        for ((i = 0; i < ${#hex}; i += 2)); do
            escaped+="\\x${hex:i:2}"
        done
        name="${hex_file#"$repo/shared/tests/fixtures/wire/"}"
        printf '%b' "$escaped" >"$seeds/fixture-${name//\//-}.bin"
    done < <(find "$repo/shared/tests/fixtures/wire" -name '*.hex' -print0)
fi

failed=()
for target in "${targets[@]}"; do
    echo "==> fuzzing $target for ${FUZZ_SECONDS}s with $NIGHTLY"
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    if ! cargo +"$NIGHTLY" fuzz run "${target_dir[@]}" "$target" "$corpus" "$seeds" \
        -- -max_total_time="$FUZZ_SECONDS"; then
        failed+=("$target")
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz.sh: failing targets: ${failed[*]} (inputs in shared/fuzz/artifacts/)" >&2
    exit 1
fi
echo "==> fuzzing done: ${targets[*]}"
