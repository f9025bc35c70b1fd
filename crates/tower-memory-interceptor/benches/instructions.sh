#!/usr/bin/env bash
# Instructions per request the interceptor adds, counted by callgrind (deterministic: a busy
# machine does not move them). For each configuration of benches/scenario: instructions per
# request with 1 poll and with 17 polls, minus the bare service's, and the cost per extra poll.
#
#   bash crates/tower-memory-interceptor/benches/instructions.sh [configuration ...]
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
bin=$(cargo bench -p tower-memory-interceptor --bench overhead_interleaved --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="overhead_interleaved" and m.get("executable"):
        print(m["executable"])')
ir() { # config polls rounds
    ONLY=$1 POLLS=$2 ROUNDS=$3 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --bench 2>&1 \
        | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}
per_request() { # config polls
    local a b
    a=$(ir "$1" "$2" 1); b=$(ir "$1" "$2" 11)
    echo $(( (b - a) / (10 * 2000) ))
}
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(layer layer_ledger layer_quota_pressure layer_quota_pressure_governor layer_no_metrics)
bare1=$(per_request bare 1); bare17=$(per_request bare 17)
printf '%-32s %12s %12s %14s %16s\n' configuration "instr/req@1" "instr/req@17" "added/request" "added/extra poll"
printf '%-32s %12s %12s %14s %16s\n' bare "$bare1" "$bare17" - -
for c in "${configs[@]}"; do
    one=$(per_request "$c" 1); seventeen=$(per_request "$c" 17)
    added1=$(( one - bare1 )); added17=$(( seventeen - bare17 ))
    printf '%-32s %12s %12s %14s %16s\n' "$c" "$one" "$seventeen" "$added1" \
        "$(python3 -c "print(f'{($added17 - $added1) / 16:.1f}')")"
done
