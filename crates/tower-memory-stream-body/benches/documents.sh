#!/usr/bin/env bash
# Small-body overhead: requests per second of POST /api/documents (a 4 KiB JSON array, buffered)
# on the upload_server example with StreamBodyLayer (MODE=layer) against the same route without
# it (MODE=baseline). Runs A, B, A, B, ... with a fresh server per run, server pinned to core 0,
# wrk to core 1; reports each side's median and the median of the per-pair ratios.
#
#   crates/tower-memory-stream-body/benches/documents.sh                   # 3 pairs of 10 s
#   REPS=1 DURATION=3 crates/tower-memory-stream-body/benches/documents.sh # quick check
#
# Target: layer >= 95% of baseline. Bounded: 2 * REPS wrk runs of DURATION seconds, 127.0.0.1.
set -euo pipefail

REPS=${REPS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}

root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cargo build --release -q -p tower-memory-stream-body --features axum --example upload_server
bin="$root/target/release/examples/upload_server"

. "$root/benches/lib.sh"
bench_workdir "$root/target/stream-body-bench.XXXXXX"

write_documents_body "$work/body.json"
[ "$(wc -c <"$work/body.json")" = 4096 ] || { echo "body is not 4096 bytes" >&2; exit 1; }
count=$(grep -o '{' "$work/body.json" | wc -l)

write_post_lua "$work/post.lua"

run() {
    local mode=$1
    # Removed first: the new server's redirection may come after the wait loop's first look.
    rm -f "$work/server.out"
    taskset -c 0 env PORT=0 MODE="$mode" UPLOAD_DIR="$work/uploads" "$bin" >"$work/server.out" 2>/dev/null &
    server_pid=$!
    local addr
    addr=$(wait_for_addr "$work/server.out" grep -o 'http://[0-9.:]*')
    [ -n "$addr" ] || { echo "server did not start" >&2; exit 1; }
    # The route answers as it should before it is measured.
    local answer
    answer=$(curl -sS --max-time 10 -H 'Content-Type: application/json' --data-binary @"$work/body.json" "$addr/api/documents")
    [ "$answer" = "{\"received\":$count}" ] || { echo "$mode: unexpected answer $answer" >&2; exit 1; }
    BODY_FILE="$work/body.json" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s -s "$work/post.lua" "$addr/api/documents" >/dev/null
    BODY_FILE="$work/body.json" taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$work/post.lua" "$addr/api/documents" >"$work/wrk.out"
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    if grep -q "Non-2xx" "$work/wrk.out"; then echo "$mode: error responses" >&2; cat "$work/wrk.out" >&2; exit 1; fi
    awk '/Requests\/sec/ { print $2 }' "$work/wrk.out" >"$work/rps"
}

echo "POST /api/documents, 4096-byte JSON array ($count objects), wrk -t1 -c$CONNECTIONS -d${DURATION}s, $REPS pairs"
printf '%-4s %12s %12s %8s\n' pair baseline layer ratio
for rep in $(seq "$REPS"); do
    # Called directly, not in $(...): a subshell would hide server_pid from the cleanup trap.
    run baseline; a=$(cat "$work/rps")
    run layer; b=$(cat "$work/rps")
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')
    printf '%-4s %12s %12s %8s\n' "$rep" "$a" "$b" "$ratio" | tee -a "$work/results"
done
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%s", v[int((NR + 1) / 2)] }'; }
echo "medians: baseline $(awk '{ print $2 }' "$work/results" | median) req/s," \
    "layer $(awk '{ print $3 }' "$work/results" | median) req/s," \
    "ratio $(awk '{ print $4 }' "$work/results" | median) (target >= 0.95)"
