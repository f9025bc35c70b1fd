#!/usr/bin/env bash
# End-to-end throughput of GET /api/documents (256 KiB JSON) through compression_bench_server,
# per encoding: tower-http 0.7's CompressionLayer (defaults) with flate2's miniz_oxide backend and
# with its zlib-rs backend, and this crate's layer. Each rep runs every mode once (A, B, C, A,
# B, ...), the server pinned to core 0 and wrk to core 1. Prints each run, then the medians, the median of the per-rep ratios
# against tower-http (miniz) and the compressed sizes.
#
#   crates/tower-memory-compression/benches/e2e.sh                 # 3 reps of 10 s
#   REPS=1 DURATION=3s crates/tower-memory-compression/benches/e2e.sh
#   REPS=0 crates/tower-memory-compression/benches/e2e.sh          # only build the servers
#
# flate2's backend is a feature, and Cargo unifies features over a build: in the workspace this
# crate's gzip and deflate features turn on flate2's zlib-rs, so tower-http in the workspace's
# server would run zlib-rs too. tower-http's two servers are therefore the same source built
# outside the workspace (benches/tower-http-server/, with the workspace's Cargo.lock), once with
# flate2's defaults and once with `--features zlib-rs`.
set -euo pipefail
cd "$(dirname "$0")/../../.."

REPS=${REPS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ENCODINGS=${ENCODINGS:-"gzip deflate zstd br"}
MODES=${MODES:-"tower-http-miniz tower-http-zlib-rs layer"}

cargo build --release -q -p tower-memory-compression --features compression-full,decompression-full \
    --example compression_bench_server --example compression_mem_bench
EXAMPLES=target/release/examples
(
    cd crates/tower-memory-compression/benches/tower-http-server
    cp ../../../../Cargo.lock .
    # One target directory per backend, so that each build stays up to date.
    for backend in miniz zlib-rs; do
        features=()
        [ "$backend" = zlib-rs ] && features=(--features zlib-rs)
        CARGO_TARGET_DIR=../../../../target/tower-http-bench/$backend cargo build --release -q --offline "${features[@]}"
        cp "../../../../target/tower-http-bench/$backend/release/compression_bench_server" \
            "../../../../$EXAMPLES/compression_bench_server-tower-http-$backend"
    done
)
[ "$REPS" -gt 0 ] || exit 0

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start_server() { # mode
    local bin=$EXAMPLES/compression_bench_server mode=$1
    case "$1" in
        tower-http-*) bin=$EXAMPLES/compression_bench_server-$1; mode=tower-http ;;
    esac
    # On this shared machine a start now and then stalls for seconds: try again, three times.
    for _ in 1 2 3; do
        taskset -c 0 "$bin" --mode "$mode" --port 0 --workers 1 >"$WORK/server.out" 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 200); do
            grep -q LISTENING "$WORK/server.out" 2>/dev/null && break
            sleep 0.05
        done
        PORT=$(awk '/LISTENING/ {print $2}' "$WORK/server.out")
        [ -n "$PORT" ] && return 0
        echo "server $1 did not start in 10 s, again" >&2
        stop_server
    done
    echo "server $1 did not start" >&2
    exit 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

RESULTS="$WORK/results"
: >"$RESULTS"
run() { # mode encoding rep
    start_server "$1"
    local url="http://127.0.0.1:$PORT/api/documents"
    local size
    size=$(curl -s -H "Accept-Encoding: $2" "$url" | wc -c)
    taskset -c 1 wrk -t1 -c"$CONNS" -d1s -H "Accept-Encoding: $2" "$url" >/dev/null 2>&1 || true
    local rps
    rps=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" -H "Accept-Encoding: $2" "$url" | awk '/Requests\/sec/ {print $2}')
    stop_server
    echo "$2 $1 $3 $rps $size" | tee -a "$RESULTS"
}

echo "encoding mode rep req/s bytes"
for rep in $(seq "$REPS"); do
    run none identity "$rep"
done
for enc in $ENCODINGS; do
    for rep in $(seq "$REPS"); do
        for mode in $MODES; do
            run "$mode" "$enc" "$rep"
        done
    done
done

MODES="$MODES" python3 - "$RESULTS" <<'PY'
import os, sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
modes = os.environ["MODES"].split()
by = {}
for enc, mode, rep, rps, size in rows:
    by.setdefault((enc, mode), {})[int(rep)] = (float(rps), int(size))
print()
for (enc, mode), v in sorted(by.items()):
    if mode == "none":
        print(f"identity: {st.median(r for r, _ in v.values()):.0f} req/s, {next(iter(v.values()))[1]} B")
base = modes[0]
print(f"{'encoding':<9} {'mode':<19} {'req/s':>8} {'ratio to ' + base:>28} {'bytes':>8}")
for enc in sorted({e for e, m in by if m != "none"}):
    a = by.get((enc, base), {})
    for mode in modes:
        b = by.get((enc, mode))
        if not b:
            continue
        ratios = [b[k][0] / a[k][0] for k in b if k in a and a[k][0] > 0]
        ratio = f"{st.median(ratios):.2f}x" if ratios else "-"
        print(f"{enc:<9} {mode:<19} {st.median(r for r, _ in b.values()):>8.0f} {ratio:>28} {st.median(s for _, s in b.values()):>8.0f}")
PY
