#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: unlike req/s on
# this shared machine (the same build moves by 30% between runs), the count repeats to
# about 0.1% for the same build and workload, so it shows a hot-path change of a few
# percent. It counts instructions, not time: it misses cache and syscall costs (the
# kernel's share of a request), so confirm with ab.sh what it suggests.
#
#   bash benches/load/instructions.sh answer|event|inbound|mixed fsync|os BUILD [BUILD...]
#
# Each build serves under callgrind (about 50x slower); wrk warms it up for 3 s with 8
# connections, the counters are zeroed, wrk runs SECONDS_PER_RUN s (default 10) more, and
# the total is divided by the requests wrk completed. Loopback only; needs wrk, valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { sed -n '2,12p' "$0"; exit 2; }
WL=$1; DUR=$2; shift 2
SECS=${SECONDS_PER_RUN:-10}
for tool in wrk valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "instructions: $tool is missing (apt-get install wrk valgrind)" >&2; exit 1; }
done
W=$(mktemp -d)
trap '[ -f "$W/pid" ] && kill "$(cat "$W/pid")" 2>/dev/null; rm -rf "$W"' EXIT
# shellcheck source=benches/load/workloads.sh
. benches/load/workloads.sh
use_workload instructions "$WL" "$W"
for b in "$@"; do
  [ -x "$b" ] || { echo "instructions: $b is not an executable" >&2; exit 1; }
  port=$(free_port)
  rm -rf "$W/d" "$W"/cg.out*
  callhook_config "$port" "$DUR" > "$W/c.toml"
  valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" \
    "$b" serve --config "$W/c.toml" --data-dir "$W/d" > "$W/out" 2>&1 &
  echo $! > "$W/pid"
  for _ in $(seq 1 600); do grep -q listening "$W/out" && break; sleep 0.1; done
  grep -q listening "$W/out" || { cat "$W/out" >&2; exit 1; }
  wrk -t1 -c8 -d3s -s "$W/$WL.lua" "http://127.0.0.1:$port" > /dev/null
  callgrind_control -z "$(cat "$W/pid")" > /dev/null
  out=$(wrk -t1 -c8 -d"${SECS}s" -s "$W/$WL.lua" "http://127.0.0.1:$port")
  callgrind_control -d "$(cat "$W/pid")" > /dev/null
  n=$(awk '/requests in/ {print $1}' <<< "$out")
  errors=$(awk '/Non-2xx|Socket errors/' <<< "$out")
  dump=$(ls -t "$W"/cg.out* | head -1)
  total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$b: $((total / n)) instructions/request ($WL, $DUR, $n requests)${errors:+ [$errors]}"
  kill "$(cat "$W/pid")"; wait "$(cat "$W/pid")" 2>/dev/null || true; rm -f "$W/pid"
done
