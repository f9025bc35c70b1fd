#!/usr/bin/env bash
# Instructions per request of each configuration of benches/stack.rs, counted by callgrind
# (deterministic: a busy machine does not move them), minus the bare router's.
#
#   bash benches/stack_instructions.sh [configuration ...]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)"; exit 1; }
bin=$(cargo bench --features full --bench stack --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="stack" and m.get("executable"):
        print(m["executable"])')
ir() { # config rounds
    ONLY=$1 ROUNDS=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" 2>&1 \
        | sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' | tr -d ,
}
per_request() {
    local a b
    a=$(ir "$1" 5); b=$(ir "$1" 25)
    echo $(( (b - a) / (20 * 1000) ))
}
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(stack_six_layers health shed interceptor compression decompression stream_body)
bare=$(per_request bare)
printf '%-20s %14s %14s\n' configuration "instr/request" "added"
printf '%-20s %14s %14s\n' bare "$bare" -
for c in "${configs[@]}"; do
    n=$(per_request "$c")
    printf '%-20s %14s %14s\n' "$c" "$n" $(( n - bare ))
done
