#!/usr/bin/env bash
# End-to-end cost of MemoryInterceptorLayer: requests per second of GET /api/hello on the
# hello_bench example with the layer (LAYER=on by default) against the same server without it
# (off). Runs off, on, off, on, ... with a fresh server per run, server pinned to core 0 and wrk
# to core 1; reports each side's median and the median of the per-pair ratios.
#
#   crates/tower-memory-interceptor/benches/wrk_hello.sh                      # 3 pairs of 10 s
#   REPS=1 DURATION=3 crates/tower-memory-interceptor/benches/wrk_hello.sh    # quick check
#   LAYER=full PROMETHEUS=1 crates/tower-memory-interceptor/benches/wrk_hello.sh
#
# LAYER: on (defaults + ledger) or full (also a quota and pressure aborts). PROMETHEUS=1 installs
# the Prometheus recorder in both servers, so the histograms are really recorded.
# Also reported: the server's CPU time per request (utime + stime from /proc/<pid>/stat over the
# measured run, divided by the requests wrk completed). On a machine shared with other work the
# requests per second swing with the neighbours' load; CPU time per request swings much less, and
# off_cpu / on_cpu is the throughput ratio the server would have on a core of its own.
# Target: on >= 97% of off. Bounded: 2 * REPS wrk runs of DURATION seconds, 127.0.0.1 only.
set -euo pipefail

REPS=${REPS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
LAYER=${LAYER:-on}
PROMETHEUS=${PROMETHEUS:-0}

root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cargo build --release -q -p tower-memory-interceptor --features axum --example hello_bench
bin="$root/target/release/examples/hello_bench"

. "$root/benches/lib.sh"
bench_workdir "$root/target/interceptor-bench.XXXXXX"

extra=()
[ "$PROMETHEUS" = 1 ] && extra+=(--prometheus)

run() {
    local mode=$1
    # Removed first: the new server's redirection may come after the wait loop's first look.
    rm -f "$work/server.out"
    taskset -c 0 "$bin" --layer "$mode" --threads 1 "${extra[@]}" >"$work/server.out" 2>/dev/null &
    server_pid=$!
    local addr
    addr=$(wait_for_addr "$work/server.out" awk '/^listening on / { print $3 }')
    [ -n "$addr" ] || { echo "server did not start" >&2; exit 1; }
    # The route answers as it should before it is measured.
    local answer
    answer=$(curl -sS --max-time 10 "http://$addr/api/hello")
    [ "$answer" = "Hello, World!" ] || { echo "$mode: unexpected answer $answer" >&2; exit 1; }
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s "http://$addr/api/hello" >/dev/null
    local before after
    before=$(cpu_ticks "$server_pid")
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://$addr/api/hello" >"$work/wrk.out"
    after=$(cpu_ticks "$server_pid")
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
    if grep -q "Non-2xx\|Socket errors" "$work/wrk.out"; then echo "$mode: errors" >&2; cat "$work/wrk.out" >&2; exit 1; fi
    awk '/Requests\/sec/ { print $2 }' "$work/wrk.out" >"$work/rps"
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" '/requests in/ { printf "%.3f\n", t / hz * 1e6 / $1 }' "$work/wrk.out" >"$work/cpu"
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "GET /api/hello, wrk -t1 -c$CONNECTIONS -d${DURATION}s, layer=$LAYER prometheus=$PROMETHEUS, $REPS pairs"
printf '%-6s %12s %12s %8s   %14s %14s %9s\n' pair "off req/s" "$LAYER req/s" ratio "off cpu us/req" "$LAYER cpu us/req" "cpu ratio"
for rep in $(seq "$REPS"); do
    # Called directly, not in $(...): a subshell would hide server_pid from the cleanup trap.
    run off; a=$(cat "$work/rps"); ca=$(cat "$work/cpu")
    run "$LAYER"; b=$(cat "$work/rps"); cb=$(cat "$work/cpu")
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')
    cratio=$(awk -v a="$ca" -v b="$cb" 'BEGIN { printf "%.3f", a / b }')
    line=$(printf '%-6s %12s %12s %8s   %14s %14s %9s' "$rep" "$a" "$b" "$ratio" "$ca" "$cb" "$cratio")
    echo "$line" >>"$work/results"
    echo "$line"
done
col() { awk -v c="$1" '{ print $c }' "$work/results" | median; }
printf '%-6s %12s %12s %8s   %14s %14s %9s\n' median "$(col 2)" "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)" "$(col 7)"
