#!/usr/bin/env bash
# Fine-grained A/B: both servers up at once (pinned to core 0), alternating short wrk bursts
# (pinned to core 1), so that slow drift of the shared machine hits both sides alike.
# usage: ab.sh URL_A URL_B ROUNDS SECONDS [wrk args...]
#
#   benches/ab.sh http://127.0.0.1:5091/api/hello http://127.0.0.1:5092/api/hello 20 3
#
# Start the two servers first (each with `taskset -c 0`). Prints each side's median and the median
# of the per-round B/A ratios. Bounded: 2 * ROUNDS wrk runs of SECONDS; 127.0.0.1 only. The order
# within a round alternates, so neither side always runs first.
set -euo pipefail
a=$1; b=$2; rounds=$3; secs=$4; shift 4
rate() { taskset -c 1 wrk -t1 -c64 -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
ratios=(); as=(); bs=()
for i in $(seq "$rounds"); do
  if (( i % 2 )); then ra=$(rate "$@" "$a"); rb=$(rate "$@" "$b"); else rb=$(rate "$@" "$b"); ra=$(rate "$@" "$a"); fi
  as+=("$ra"); bs+=("$rb"); ratios+=("$(awk -v x="$rb" -v y="$ra" 'BEGIN{printf "%.4f", x/y}')")
done
med() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "A median $(med "${as[@]}") req/s, B median $(med "${bs[@]}") req/s, median B/A ratio $(med "${ratios[@]}") over $rounds rounds of ${secs}s; ratios: ${ratios[*]}"
