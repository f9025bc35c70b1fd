#!/usr/bin/env bash
# N-way fine-grained A/B: all servers up at once (start them pinned to core 0), short wrk bursts
# (pinned to core 1) against each in turn, the order rotating every round, so that slow drift of
# the shared machine hits all alike. Prints each URL's median req/s and the median (min, max) of
# its per-round ratio to the first URL.
#
#   benches/abn.sh ROUNDS SECONDS URL_BASE URL_1 [URL_2 ...]
#   benches/abn.sh 16 3 http://127.0.0.1:5091/api/hello http://127.0.0.1:5092/api/hello
#
# Bounded: ROUNDS x N wrk runs of SECONDS; 127.0.0.1 only. Extra wrk arguments: WRK_ARGS.
set -euo pipefail
rounds=$1; secs=$2; shift 2
urls=("$@"); n=${#urls[@]}
out=$(mktemp); trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
    for k in $(seq 0 $((n - 1))); do
        i=$(( (k + r) % n ))
        # shellcheck disable=SC2086
        v=$(taskset -c 1 wrk -t1 -c64 -d"${secs}s" ${WRK_ARGS:-} "${urls[$i]}" | awk '/Requests\/sec/ {print $2}')
        printf '%s %s %s\n' "$r" "$i" "$v" >>"$out"
    done
done
python3 - "$out" "${urls[@]}" <<'PY'
import collections, statistics, sys
path, urls = sys.argv[1], sys.argv[2:]
rates = collections.defaultdict(dict)
for line in open(path):
    r, i, v = line.split()
    rates[int(i)][int(r)] = float(v)
for i, url in enumerate(urls):
    ratios = [rates[i][r] / rates[0][r] for r in rates[0]]
    print(f"{url}: median {statistics.median(rates[i].values()):.0f} req/s, ratio to the first: "
          f"median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
PY
