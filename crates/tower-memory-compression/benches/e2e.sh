#!/usr/bin/env bash
# End-to-end throughput of GET /api/documents (256 KiB JSON) through compression_bench_server:
# tower-http 0.7's CompressionLayer (defaults) against this crate's layer, per encoding, run
# A, B, A, B, ... with the server pinned to core 0 and wrk to core 1. Prints each run, then the
# medians, the median of the per-pair ratios, and the compressed sizes.
#
#   crates/tower-memory-compression/benches/e2e.sh                 # 3 reps of 10 s
#   REPS=1 DURATION=3s crates/tower-memory-compression/benches/e2e.sh
#
# Built with `-p tower-memory-compression` alone so that flate2 keeps its default backend
# (miniz_oxide) for tower-http, as in an application that does not ask for another.
set -euo pipefail
cd "$(dirname "$0")/../../.."

REPS=${REPS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
ENCODINGS=${ENCODINGS:-"gzip zstd br"}

cargo build --release -q -p tower-memory-compression --example compression_bench_server
BIN=target/release/examples/compression_bench_server
WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start_server() {
    taskset -c 0 "$BIN" --mode "$1" --port 0 --workers 1 >"$WORK/server.out" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q LISTENING "$WORK/server.out" 2>/dev/null && break
        sleep 0.05
    done
    PORT=$(awk '/LISTENING/ {print $2}' "$WORK/server.out")
    [ -n "$PORT" ] || { echo "server did not start" >&2; exit 1; }
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
        run tower-http "$enc" "$rep"
        run layer "$enc" "$rep"
    done
done

python3 - "$RESULTS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
by = {}
for enc, mode, rep, rps, size in rows:
    by.setdefault((enc, mode), []).append((int(rep), float(rps), int(size)))
print()
print(f"{'encoding':<9} {'tower-http req/s':>17} {'layer req/s':>12} {'ratio':>7} {'tower-http B':>13} {'layer B':>9} {'size':>7}")
for (enc, mode), v in sorted(by.items()):
    if mode == "none":
        print(f"{enc:<9} uncompressed: {st.median(r for _, r, _ in v):.0f} req/s, {v[0][2]} B")
encs = sorted({e for e, m in by if m == "layer"})
for enc in encs:
    a = dict((rep, (r, s)) for rep, r, s in by[(enc, "tower-http")])
    b = dict((rep, (r, s)) for rep, r, s in by[(enc, "layer")])
    ratios = [b[k][0] / a[k][0] for k in a if k in b and a[k][0] > 0]
    ta = st.median(r for r, _ in a.values()); tb = st.median(r for r, _ in b.values())
    sa = st.median(s for _, s in a.values()); sb = st.median(s for _, s in b.values())
    print(f"{enc:<9} {ta:>17.0f} {tb:>12.0f} {st.median(ratios):>6.2f}x {sa:>13.0f} {sb:>9.0f} {100*(sb/sa-1):>+6.1f}%")
PY
