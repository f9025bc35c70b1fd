#!/usr/bin/env bash
# Throughput of HealthLayer + PressureShedLayer (monitor running) on a pass-through route,
# against the same router without them; plus the rate at which the layered server answers
# /api/health/ready. Server pinned to core 0, wrk to core 1, A/B interleaved, medians.
#
#   bash crates/tower-memory-health/benches/layers.sh            # 3 x 10 s per side
#   DURATION=3s REPS=1 bash crates/tower-memory-health/benches/layers.sh   # quick check
set -euo pipefail
cd "$(dirname "$0")/../../.."
DURATION=${DURATION:-10s}
REPS=${REPS:-3}
CONNECTIONS=${CONNECTIONS:-64}

cargo build --release -q -p tower-memory-health --features jemalloc,prometheus --example health_server
BIN=target/release/examples/health_server
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# run <bare 0|1> <path> -> prints requests/s
run() {
    local bare=$1 path=$2
    BARE=$bare ADDR=127.0.0.1:0 MEMORY_CHECK_INTERVAL=1000 DRAIN_SECONDS=0 \
        taskset -c 0 "$BIN" >"$WORK/out" 2>"$WORK/err" &
    SERVER_PID=$!
    local addr=
    for _ in $(seq 1 100); do
        addr=$(sed -n 's/^listening on //p' "$WORK/out")
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "server did not start: $(cat "$WORK/err")" >&2; exit 1; }
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "http://$addr$path" \
        | awk '/Requests\/sec/ {print $2}'
    kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$WORK/bare"; : >"$WORK/layered"; : >"$WORK/ratio"; : >"$WORK/ready"
for i in $(seq 1 "$REPS"); do
    a=$(run 1 /api/hello)
    b=$(run 0 /api/hello)
    r=$(run 0 /api/health/ready)
    echo "$a" >>"$WORK/bare"; echo "$b" >>"$WORK/layered"; echo "$r" >>"$WORK/ready"
    awk -v a="$a" -v b="$b" 'BEGIN {print b / a}' >>"$WORK/ratio"
    echo "rep $i: bare $a req/s, layered $b req/s, /api/health/ready $r req/s"
done
echo "median bare:     $(median <"$WORK/bare") req/s"
echo "median layered:  $(median <"$WORK/layered") req/s"
echo "median ratio layered/bare: $(median <"$WORK/ratio")"
echo "median /api/health/ready: $(median <"$WORK/ready") req/s"
