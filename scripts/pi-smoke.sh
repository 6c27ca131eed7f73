#!/usr/bin/env bash
# Raspberry Pi smoke test: cross-builds the gateway for aarch64 (debug: a
# release cross-build costs CI ~8 min, debug ~1m40 cold) and runs it under
# qemu-aarch64 the way systemd runs it on a Pi: `--version`; the daemon with
# the default configuration (`print-config`) on a fresh data dir and a free
# port; /readyz; one POST of two readings; the 1-minute aggregate they make;
# /metrics; SIGTERM and a clean exit 0.
#
#   PI_SMOKE=0          skip (the only way to skip: a missing tool fails)
#   PI_SMOKE_ARMV7=1    also the 32-bit build (armv7, qemu-arm; ~70 s more)
#   PI_SMOKE_TIMEOUT=N  seconds allowed for start-up and for the drain (60)
#   PI_SMOKE_BIN=PATH   test this binary instead of building (e.g. a release
#                       build); PI_SMOKE_RUNNER overrides the emulator
#                       command ("" runs the binary directly).
#
# Re-runnable: every run uses a fresh temporary data dir and port, and the
# EXIT trap stops the daemon (by its PID) and removes the directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${PI_SMOKE:-1}" == 0 ]]; then
    echo "pi-smoke: SKIPPED (PI_SMOKE=0)"
    exit 0
fi

timeout_s="${PI_SMOKE_TIMEOUT:-60}"
for tool in curl python3; do
    command -v "$tool" >/dev/null || { echo "pi-smoke: FAIL: $tool not found (scripts/setup.sh installs it)"; exit 1; }
done

work=$(mktemp -d -t tributary-pi-smoke.XXXXXX)
daemon_pid=""
# Only ever the daemon this script started, by its PID.
kill_daemon() {
    if [[ -n "$daemon_pid" ]]; then
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
        daemon_pid=""
    fi
}
cleanup() {
    kill_daemon
    rm -rf "$work"
}
trap cleanup EXIT

# The emulator matching .cargo/config.toml's runners.
runner_for() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo "qemu-aarch64 -L /usr/aarch64-linux-gnu" ;;
        armv7-unknown-linux-gnueabihf) echo "qemu-arm -L /usr/arm-linux-gnueabihf" ;;
        *) return 1 ;;
    esac
}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

# A port nobody listens on right now (the daemon binds it a moment later).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# smoke LABEL BINARY RUNNER...: the checks; returns 1 after printing why.
smoke() {
    local label=$1 bin=$2
    shift 2
    local runner=("$@")
    local data="$work/$label/data" log="$work/$label/daemon.log" out="$work/$label/out"
    rm -rf "${work:?}/$label"
    mkdir -p "$data"
    fail() {
        echo "pi-smoke[$label]: $*"
        if [[ -s "$log" ]]; then
            echo "--- daemon log (last 40 lines) ---"
            tail -n 40 "$log"
            echo "---"
        fi
        kill_daemon
        return 1
    }

    local version
    version=$("${runner[@]}" "$bin" --version) || { fail "--version failed"; return 1; }
    [[ "$version" == "tributary-edge "* ]] || { fail "--version printed '$version'"; return 1; }
    echo "pi-smoke[$label]: $version"

    # The daemon reads the default configuration as the packaged unit does
    # (/etc/tributary/edge.toml is that file), with the flags on top.
    "${runner[@]}" "$bin" print-config >"$work/$label/edge.toml" || { fail "print-config failed"; return 1; }

    local port base
    port=$(free_port)
    base="http://127.0.0.1:$port"
    "${runner[@]}" "$bin" run --config "$work/$label/edge.toml" --data-dir "$data" \
        --http-listen "127.0.0.1:$port" >"$log" 2>&1 &
    daemon_pid=$!

    # Ready = /readyz answers 200 (the store is open, not draining).
    local deadline=$((SECONDS + timeout_s)) code
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$base/readyz" || true)" == 200 ]]; do
        kill -0 "$daemon_pid" 2>/dev/null || {
            wait "$daemon_pid" && code=0 || code=$?
            daemon_pid=""
            fail "the daemon exited with status $code before /readyz answered 200"
            return 1
        }
        ((SECONDS < deadline)) || { fail "/readyz not 200 within ${timeout_s}s"; return 1; }
        sleep 0.2
    done

    # Both readings share one timestamp, so they land in one 1-minute bucket.
    local ts body
    ts=$(python3 -c 'import time; print(time.time_ns() // 1_000_000)')
    body="{\"source\":\"smoke\",\"seq\":1,\"readings\":[{\"sensor\":1,\"value\":20.5,\"ts\":$ts},{\"sensor\":1,\"value\":21.5,\"ts\":$ts}]}"
    code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 10 \
        -H 'Content-Type: application/json' --data "$body" "$base/api/v1/readings") ||
        { fail "POST /api/v1/readings: curl failed"; return 1; }
    [[ "$code" == 200 ]] || { fail "POST /api/v1/readings: HTTP $code: $(cat "$out")"; return 1; }

    # The POST was answered after its commit, so the aggregate is there now:
    # one GET, no polling (a miss here is a read-your-writes bug).
    code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 10 \
        "$base/api/v1/aggregates?sensor=1&resolution=1m") ||
        { fail "GET /api/v1/aggregates: curl failed"; return 1; }
    [[ "$code" == 200 ]] || { fail "GET /api/v1/aggregates: HTTP $code: $(cat "$out")"; return 1; }
    python3 - "$out" <<'EOF' || { fail "GET /api/v1/aggregates: $(cat "$out")"; return 1; }
import json, sys
items = json.load(open(sys.argv[1]))["items"]
ok = [b for b in items if b["count"] == 2 and b["min"] == 20.5 and b["max"] == 21.5 and abs(b["mean"] - 21.0) < 1e-9]
if len(items) != 1 or not ok:
    print("expected exactly one bucket: count 2, min 20.5, max 21.5, mean 21.0", file=sys.stderr)
    sys.exit(1)
EOF

    code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 10 "$base/metrics") ||
        { fail "GET /metrics: curl failed"; return 1; }
    [[ "$code" == 200 ]] && grep -q '^tributary_readings_ingested_total{source="http"} 2$' "$out" ||
        { fail "GET /metrics: HTTP $code, no tributary_readings_ingested_total{source=\"http\"} 2"; return 1; }

    # SIGTERM is what systemd sends: drain, checkpoint, exit 0.
    kill -TERM "$daemon_pid"
    deadline=$((SECONDS + timeout_s))
    while kill -0 "$daemon_pid" 2>/dev/null; do
        ((SECONDS < deadline)) || { fail "still running ${timeout_s}s after SIGTERM"; return 1; }
        sleep 0.2
    done
    wait "$daemon_pid" && code=0 || code=$?
    daemon_pid=""
    [[ "$code" == 0 ]] || { fail "exit status $code after SIGTERM (expected 0)"; return 1; }
    [[ -f "$data/edge.sqlite3" ]] || { fail "no database in the data dir after the run"; return 1; }
}

targets=(aarch64-unknown-linux-gnu)
[[ "${PI_SMOKE_ARMV7:-0}" == 1 ]] && targets+=(armv7-unknown-linux-gnueabihf)

status=0
if [[ -n "${PI_SMOKE_BIN:-}" ]]; then
    read -r -a runner <<<"${PI_SMOKE_RUNNER-qemu-aarch64 -L /usr/aarch64-linux-gnu}"
    start=$(now)
    if smoke custom "$PI_SMOKE_BIN" "${runner[@]}"; then
        echo "pi-smoke: PASS $PI_SMOKE_BIN ($(elapsed "$start") s)"
    else
        echo "pi-smoke: FAIL $PI_SMOKE_BIN ($(elapsed "$start") s)"
        status=1
    fi
    exit "$status"
fi

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
for target in "${targets[@]}"; do
    start=$(now)
    echo "pi-smoke: cargo build -p tributary-edge --target $target"
    if ! cargo build --locked -p tributary-edge --target "$target"; then
        echo "pi-smoke: FAIL $target: cross-build failed ($(elapsed "$start") s)"
        status=1
        continue
    fi
    built=$(elapsed "$start")
    read -r -a runner <<<"$(runner_for "$target")"
    start=$(now)
    if smoke "$target" "$target_dir/$target/debug/tributary-edge" "${runner[@]}"; then
        echo "pi-smoke: PASS $target (build ${built} s, run $(elapsed "$start") s)"
    else
        echo "pi-smoke: FAIL $target (build ${built} s, run $(elapsed "$start") s)"
        status=1
    fi
done
exit "$status"
