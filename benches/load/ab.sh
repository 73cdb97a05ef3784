#!/usr/bin/env bash
# Alternating A/B of two or more callhook builds on one workload, for before/after
# comparisons finer than the load run's single cells: each build serves on its own port
# (pinned to CPU 0), and wrk (CPU 1, 64 connections, SECONDS_PER_RUN s) drives them in
# turn, ROUNDS times, so slow drifts of this shared machine hit every build alike.
# Prints req/s and the server's CPU time per request (user + system, all its threads)
# per round and build, then each build's medians. CPU per request moves less than req/s
# when the generator or a neighbour slows down, so it shows smaller differences.
#
#   bash benches/load/ab.sh answer|event|mixed fsync|os ROUNDS BUILD_A BUILD_B [...]
#
# The first round of the first build runs cold; compare medians. Loopback only; needs wrk.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 5 ] || { sed -n '2,10p' "$0"; exit 2; }
WL=$1; DUR=$2; ROUNDS=$3; shift 3
SECS=${SECONDS_PER_RUN:-5}
command -v wrk >/dev/null || { echo "ab: wrk is missing (apt-get install wrk)" >&2; exit 1; }
W=$(mktemp -d)
trap 'for f in "$W"/pid*; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done; rm -rf "$W"' EXIT
# shellcheck source=benches/load/workloads.sh
. benches/load/workloads.sh
case $WL in
  answer | event | mixed) write_workloads "$W" ;;
  *) echo "ab: workload is answer, event or mixed" >&2; exit 2 ;;
esac
# utime + stime of a process, all threads, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
i=0
for b in "$@"; do
  i=$((i + 1))
  [ -x "$b" ] || { echo "ab: $b is not an executable" >&2; exit 1; }
  port=$(free_port)
  echo "$port" > "$W/port$i"
  callhook_config "$port" "$DUR" > "$W/c$i.toml"
  $PIN_SERVER "$b" serve --config "$W/c$i.toml" --data-dir "$W/d$i" > "$W/out$i" 2>&1 &
  echo $! > "$W/pid$i"
  for _ in $(seq 1 100); do grep -q listening "$W/out$i" && break; sleep 0.1; done
  grep -q listening "$W/out$i" || { cat "$W/out$i" >&2; exit 1; }
done
for r in $(seq 1 "$ROUNDS"); do
  i=0
  for b in "$@"; do
    i=$((i + 1))
    pid=$(cat "$W/pid$i")
    t0=$(cpu_ticks "$pid")
    out=$($PIN_CLIENT wrk -t1 -c64 -d"${SECS}s" -s "$W/$WL.lua" "http://127.0.0.1:$(cat "$W/port$i")")
    t1=$(cpu_ticks "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
    n=$(awk '/requests in/ {print $1}' <<< "$out")
    us=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    echo "round $r build $i ($b): $rps req/s, $us CPU us/request"
    echo "$rps" >> "$W/r$i"
    echo "$us" >> "$W/u$i"
  done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
i=0
for b in "$@"; do
  i=$((i + 1))
  echo "median build $i ($b): $(median "$W/r$i") req/s, $(median "$W/u$i") CPU us/request ($WL, $DUR, $ROUNDS rounds of ${SECS} s)"
done
