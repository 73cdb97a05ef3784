#!/usr/bin/env bash
# Alternating A/B of callhook builds (and nginx, the ceiling) on one workload, for
# comparisons finer than the load run's single cells: each server listens on its own port
# (pinned to CPU 0), and wrk (CPU 1, 64 connections, SECONDS_PER_RUN s) drives them in
# turn, ROUNDS times, so the shared machine's drifts (its speed moves by up to 2x within
# minutes) hit every server alike. Prints req/s, the server's CPU time per request
# (user + system, all its threads or nginx's worker) and wrk's p99 / p99.9 latency per
# round and server, then each server's medians, and with `nginx` among them each build's median of its per-round
# ratios to nginx: the robust form of the load run's "vs nginx" column.
#
#   bash benches/load/ab.sh answer|event|inbound|mixed fsync|os ROUNDS BUILD|nginx [...]
#
# KAFKA_BROKERS=host:port turns on callhook's Kafka fan-out (topics created, replication
# 1; start a broker with deploy/local/kafka-local.sh). THREADS=1 also prints, per round
# and callhook build, each thread's CPU time and context switches (voluntary, then
# involuntary) per request, from /proc/PID/task (threads of one name summed; one started
# during the round counts from zero). SPOOL_EXTRA adds lines to callhook's [spool]
# section, e.g. a small `retention_bytes` for the steady state of a long-running spool,
# where every roll finds a segment to delete (and, from 2026-11-25, to recycle);
# SERVER_EXTRA adds lines to [server], e.g. `background_threads = "normal"`.
#
# Each server gets an unrecorded warm-up (WARMUP_SECS, 3 s) first, and the order rotates
# from round to round; compare medians. Loopback only; needs
# wrk (and nginx when named).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 4 ] || { sed -n '2,20p' "$0"; exit 2; }
WL=$1; DUR=$2; ROUNDS=$3; shift 3
SECS=${SECONDS_PER_RUN:-5}
command -v wrk >/dev/null || { echo "ab: wrk is missing (apt-get install wrk)" >&2; exit 1; }
W=$(mktemp -d)
# Stops every server and waits (5 s at most) for it to exit before removing its spool.
stop_all() {
  for f in "$W"/pid*; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  for f in "$W"/pid*; do
    for _ in $(seq 1 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$W"
}
trap stop_all EXIT
# shellcheck source=benches/load/workloads.sh
. benches/load/workloads.sh
spool_fs "$W"
use_workload ab "$WL" "$W"
printf '\ndone = function(s, lat, req) io.write(string.format("LAT %%.3f %%.3f\\n", lat:percentile(99) / 1000, lat:percentile(99.9) / 1000)) end\n' >> "$W/$WL.lua"
# utime + stime of a process, all threads, in clock ticks.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# Per thread name: CPU ticks, voluntary and involuntary context switches, summed.
thread_snap() {
  for t in /proc/"$1"/task/*; do
    # utime and stime counted after the `(comm)` field, which may hold spaces.
    printf '%s %s %s\n' "$(tr ' ' _ < "$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')" \
      "$(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v, n}' "$t/status")"
  done | awk '{c[$1] += $2; v[$1] += $3; n[$1] += $4} END {for (k in c) print k, c[k], v[k], n[k]}' | LC_ALL=C sort
}
i=0
NGINX_AT=
for b in "$@"; do
  i=$((i + 1))
  port=$(free_port)
  echo "$port" > "$W/port$i"
  if [ "$b" = nginx ]; then
    command -v nginx >/dev/null || { echo "ab: nginx is missing (apt-get install nginx)" >&2; exit 1; }
    [ -z "$NGINX_AT" ] || { echo "ab: name nginx once" >&2; exit 2; }
    NGINX_AT=$i
    start_nginx "$W/n$i" "$port"
    cp "$W/n$i/nginx.pid" "$W/pid$i"
    # CPU is counted for the worker, which serves every request.
    pgrep -P "$(cat "$W/pid$i")" > "$W/cpupid$i"
    continue
  fi
  [ -x "$b" ] || { echo "ab: $b is not an executable" >&2; exit 1; }
  kafka=
  [ -z "${KAFKA_BROKERS:-}" ] || kafka=$(printf '[kafka]\nbrokers = "%s"\ncreate_topics = true\nreplication_factor = 1\npartitions = 3' "$KAFKA_BROKERS")
  callhook_config "$port" "$DUR" "${SPOOL_EXTRA:+$SPOOL_EXTRA$'\n'}$kafka" > "$W/c$i.toml"
  $PIN_SERVER "$b" serve --config "$W/c$i.toml" --data-dir "$W/d$i" > "$W/out$i" 2>&1 &
  echo $! > "$W/pid$i"
  cp "$W/pid$i" "$W/cpupid$i"
  for _ in $(seq 1 100); do grep -q listening "$W/out$i" && break; sleep 0.1; done
  grep -q listening "$W/out$i" || { cat "$W/out$i" >&2; exit 1; }
done
# A warm-up per server (WARMUP_SECS, 3 s; not recorded), so that no server's first round
# is its first load; then each round starts one server later than the one before, so no
# server always runs right after the same one.
SERVERS=("$@")
for i in $(seq 1 $#); do
  $PIN_CLIENT wrk -t1 -c64 -d"${WARMUP_SECS:-3}s" -s "$W/$WL.lua" "http://127.0.0.1:$(cat "$W/port$i")" > /dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $(($# - 1))); do
    i=$(( (k + r - 1) % $# + 1 ))
    b=${SERVERS[$((i - 1))]}
    pid=$(cat "$W/cpupid$i")
    t0=$(cpu_ticks "$pid")
    [ -z "${THREADS:-}" ] || thread_snap "$pid" > "$W/ts0"
    out=$($PIN_CLIENT wrk -t1 -c64 -d"${SECS}s" -s "$W/$WL.lua" "http://127.0.0.1:$(cat "$W/port$i")")
    t1=$(cpu_ticks "$pid")
    [ -z "${THREADS:-}" ] || thread_snap "$pid" > "$W/ts1"
    rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
    n=$(awk '/requests in/ {print $1}' <<< "$out")
    us=$(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
    read -r p99 p999 <<< "$(awk '/^LAT/ {print $2, $3}' <<< "$out")"
    # Refused or failed requests still count in req/s (a build answering 503 fast would
    # look fast): said on the round's line, and the run exits 1 at the end.
    errors=$(awk '/Non-2xx or 3xx responses:/ {e += $NF} /Socket errors:/ {gsub(",", ""); e += $4 + $6 + $8 + $10} END {print e + 0}' <<< "$out")
    flag=
    if [ "$errors" != 0 ]; then
      flag=", $errors ERRORS"
      echo "round $r server $i ($b): $errors errors" >> "$W/errors"
    fi
    echo "round $r server $i ($b): $rps req/s, $us CPU us/request, p99 $p99 ms, p99.9 $p999 ms$flag"
    if [ -n "${THREADS:-}" ] && [ "$b" != nginx ]; then
      LC_ALL=C join -a2 -e0 -o auto "$W/ts0" "$W/ts1" | awk -v n="$n" -v hz="$(getconf CLK_TCK)" \
        '{printf "  %-16s %6.2f CPU us, %.3f / %.3f switches per request\n", $1, ($5 - $2) / hz * 1e6 / n, ($6 - $3) / n, ($7 - $4) / n}'
    fi
    echo "$rps" >> "$W/r$i"
    echo "$us" >> "$W/u$i"
    echo "$p99" >> "$W/p99_$i"
    echo "$p999" >> "$W/p999_$i"
  done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
i=0
for b in "$@"; do
  i=$((i + 1))
  line="median server $i ($b): $(median "$W/r$i") req/s, $(median "$W/u$i") CPU us/request, p99 $(median "$W/p99_$i") ms, p99.9 $(median "$W/p999_$i") ms (per round $(paste -sd' ' "$W/p999_$i"))"
  if [ -n "$NGINX_AT" ] && [ "$i" != "$NGINX_AT" ]; then
    paste "$W/r$i" "$W/r$NGINX_AT" | awk '{printf "%.3f\n", $1 / $2}' > "$W/ratio$i"
    line="$line, $(median "$W/ratio$i")x nginx (per-round ratios $(paste -sd' ' "$W/ratio$i"))"
  fi
  echo "$line ($WL, $DUR, $ROUNDS rounds of ${SECS} s)"
done
if [ -s "$W/errors" ]; then
  echo "ab: requests failed (non-2xx or socket errors), so these figures are not comparable:" >&2
  cat "$W/errors" >&2
  exit 1
fi
