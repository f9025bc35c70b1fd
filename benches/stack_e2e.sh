#!/usr/bin/env bash
# The whole stack's cost per small request, end to end: the example server (every layer, built by
# MemoryStack) against the same routes on bare axum (`baseline_server` with BASELINE_LAYERS=none)
# and on a typical axum service (`baseline_server`: tower-http compression and decompression).
# All three run at once, pinned to core 0; wrk on core 1 runs short bursts against each in turn,
# the order rotating every round, so that the machine's drift hits all alike. Reported: each
# server's median req/s and the median of its per-round ratio to bare axum.
#
#   bash benches/stack_e2e.sh                 # 16 rounds of 3 s per server and workload
#   ROUNDS=4 SECONDS_PER_RUN=2 bash benches/stack_e2e.sh   # quick look
#
# Workloads: GET /api/hello, and POST /api/documents with a 4096-byte JSON array. Bounded:
# 2 workloads x 3 servers x ROUNDS wrk runs of SECONDS_PER_RUN; 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ROUNDS=${ROUNDS:-16}
SECS=${SECONDS_PER_RUN:-3}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
cargo build --release -q --features full --example server --example baseline_server
bin=target/release/examples

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# Not in a command substitution: the pid must reach this shell's `pids` for the cleanup.
start() { # name binary [VAR=value ...]: sets $url to the server's base URL
    local name=$1 binary=$2; shift 2
    env "$@" PORT=0 UPLOAD_DIR="$work/uploads-$name" taskset -c 0 "$binary" >"$work/$name.log" 2>&1 &
    pids+=("$!")
    url=""
    for _ in $(seq 100); do
        url=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$work/$name.log" | head -1)
        if [ -n "$url" ]; then return; fi
        sleep 0.1
    done
    echo "$name did not start: $(cat "$work/$name.log")" >&2
    exit 1
}
start bare "$bin/baseline_server" BASELINE_LAYERS=none; bare=$url
start typical "$bin/baseline_server"; typical=$url
start stack "$bin/server"; stack=$url
names=(bare typical stack)
urls=("$bare" "$typical" "$stack")

write_documents_body "$work/body.json"
write_post_lua "$work/post.lua"
export BODY_FILE="$work/body.json"
for u in "${urls[@]}"; do
    curl -sf "$u/api/hello" >/dev/null
    curl -sf -H 'Content-Type: application/json' --data-binary @"$BODY_FILE" "$u/api/documents" | grep -q received
done

rate() { taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
for workload in hello documents; do
    out="$work/$workload.tsv"
    : >"$out"
    for r in $(seq "$ROUNDS"); do
        for k in 0 1 2; do
            i=$(( (k + r) % 3 ))
            if [ "$workload" = hello ]; then
                v=$(rate "${urls[$i]}/api/hello")
            else
                v=$(rate -s "$work/post.lua" "${urls[$i]}/api/documents")
            fi
            printf '%s\t%s\t%s\n' "$r" "${names[$i]}" "$v" >>"$out"
        done
    done
    python3 - "$out" "$workload" "$ROUNDS" "$SECS" <<'PY'
import collections, statistics, sys
path, workload, rounds, secs = sys.argv[1:]
rates = collections.defaultdict(dict)
for line in open(path):
    r, name, v = line.split()
    rates[name][int(r)] = float(v)
print(f"{workload}: {rounds} rounds of {secs} s per server")
for name in ("bare", "typical", "stack"):
    ratios = [rates[name][r] / rates["bare"][r] for r in rates["bare"]]
    print(f"  {name:8} median {statistics.median(rates[name].values()):9.0f} req/s   "
          f"ratio to bare: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
PY
done
