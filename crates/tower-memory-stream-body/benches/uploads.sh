#!/usr/bin/env bash
# Peak RSS under concurrent large uploads: the upload_server example behind StreamBodyLayer
# (MODE=layer, POST /api/uploads spools to disk) against the same route with axum's `Bytes`
# extractor and no layer (MODE=baseline), and the workspace's main example server with the whole
# stack (`server`), interleaved, a fresh server process per case.
#
#   crates/tower-memory-stream-body/benches/uploads.sh            # 16 x 64 MiB, 3 repetitions
#   COUNT=4 SIZE_MIB=16 REPS=1 SETTLE=1 crates/tower-memory-stream-body/benches/uploads.sh   # quick check
#
# Per case it reports the server's VmHWM (peak RSS) growth over its idle RSS, VmRSS right after
# the burst and SETTLE seconds later. Target: layer peak growth under 48 MiB.
# Bounded: COUNT uploads per case, each curl limited to 300 s, 2 * REPS cases. 127.0.0.1 only.
# The server is pinned to core 0 and curl to core 1. The example uses jemalloc (as examples/server.rs).
set -euo pipefail

COUNT=${COUNT:-16}
SIZE_MIB=${SIZE_MIB:-64}
REPS=${REPS:-3}
SETTLE=${SETTLE:-5}
MODES=${MODES:-baseline layer server}

root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cargo build --release -q -p tower-memory-stream-body --features axum --example upload_server
bin="$root/target/release/examples/upload_server"
case " $MODES " in
    *" server "*) cargo build --release -q --features full --example server ;;
esac
main_bin="$root/target/release/examples/server"

# Work files on the build's disk (uploads must not land on a tmpfs: that is memory too).
. "$root/benches/lib.sh"
bench_workdir "$root/target/stream-body-bench.XXXXXX"

head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$work/body.bin"
expected_sha=$(sha256sum "$work/body.bin" | cut -d' ' -f1)

kib() { awk -v f="$2" '$1 == f":" { print $2 }' "/proc/$1/status"; }

run_case() {
    local mode=$1 rep=$2
    mkdir -p "$work/uploads"
    # Removed first: the new server's redirection may come after the wait loop's first look.
    rm -f "$work/server.out"
    local server_bin=$bin
    [ "$mode" = server ] && server_bin=$main_bin
    taskset -c 0 env PORT=0 MODE="$mode" UPLOAD_DIR="$work/uploads" "$server_bin" >"$work/server.out" 2>/dev/null &
    server_pid=$!
    local addr
    addr=$(wait_for_addr "$work/server.out" grep -o 'http://[0-9.:]*')
    [ -n "$addr" ] || { echo "server did not start" >&2; exit 1; }
    local idle_kib; idle_kib=$(kib "$server_pid" VmRSS)

    local start; start=$(date +%s.%N)
    local pids=()
    for i in $(seq "$COUNT"); do
        taskset -c 1 curl -sS --max-time 300 -X POST -T "$work/body.bin" \
            -H 'Content-Type: application/octet-stream' \
            -o "$work/resp.$i" -w '%{http_code}' "$addr/api/uploads" >"$work/code.$i" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    local secs; secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')

    for i in $(seq "$COUNT"); do
        [ "$(cat "$work/code.$i")" = 200 ] || { echo "$mode: upload $i got $(cat "$work/code.$i"): $(cat "$work/resp.$i")" >&2; exit 1; }
        grep -q "\"sha256\":\"$expected_sha\"" "$work/resp.$i" || { echo "$mode: upload $i: wrong answer $(cat "$work/resp.$i")" >&2; exit 1; }
    done

    local hwm_kib rss_kib settled_kib
    hwm_kib=$(kib "$server_pid" VmHWM)
    rss_kib=$(kib "$server_pid" VmRSS)
    sleep "$SETTLE"
    settled_kib=$(kib "$server_pid" VmRSS)
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    rm -rf "$work/uploads"

    awk -v m="$mode" -v r="$rep" -v i="$idle_kib" -v h="$hwm_kib" -v a="$rss_kib" -v s="$settled_kib" -v t="$secs" \
        'BEGIN { printf "%-8s %3s %8.1f %10.1f %12.1f %10.1f %14.1f %7s\n", m, r, i / 1024, h / 1024, (h - i) / 1024, a / 1024, s / 1024, t }' \
        | tee -a "$work/results"
}

echo "$COUNT concurrent uploads of $SIZE_MIB MiB to POST /api/uploads, $REPS repetitions (MiB)"
printf '%-8s %3s %8s %10s %12s %10s %14s %7s\n' mode rep idle peak peak_growth rss_after "rss_+${SETTLE}s" secs
for rep in $(seq "$REPS"); do
    for mode in $MODES; do
        run_case "$mode" "$rep"
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] }'; }
echo "medians (MiB):"
for mode in $MODES; do
    col() { awk -v m="$mode" -v c="$1" '$1 == m { print $c }' "$work/results" | median; }
    echo "$mode: peak growth $(col 5), rss after $(col 6), rss +${SETTLE}s $(col 7), seconds $(col 8)"
done
