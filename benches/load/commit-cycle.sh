#!/usr/bin/env bash
# Where a group commit's time goes under an event burst: starts one callhook build (server
# pinned to CPU 0, wrk to CPU 1, 64 connections, like ab.sh) with fsync durability and a
# small retention so that segments are recycled (a long-running spool's steady state),
# warms up for WARMUP s, then over MEASURE s prints req/s, commits per second, records per
# commit, the mean write + fdatasync time as the writer saw it (wake-up delays included),
# and how CPU 0 spent its time (user, system, softirq, and iowait: idle while the writer
# waits on the disk). With TRACE=1 (needs perf and root) it also records the block
# requests the disk saw for 1 s and prints, per commit, the gap from the data write's issue
# to the flush's issue and from the flush to the next data write, and how many commits
# also wrote an inode table block (ext4 writes the inode when a write changed its times).
#
#   bash benches/load/commit-cycle.sh BUILD [fsync|os]     (env WARMUP=14 MEASURE=5 TRACE=)
#
# Loopback only; needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,14p' "$0"; exit 2; }
BIN=$1; DUR=${2:-fsync}
[ -x "$BIN" ] || { echo "commit-cycle: $BIN is not an executable" >&2; exit 1; }
command -v wrk >/dev/null || { echo "commit-cycle: wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -z "${TRACE:-}" ] || command -v perf >/dev/null || { echo "commit-cycle: TRACE needs perf (apt-get install linux-perf)" >&2; exit 1; }
# shellcheck source=benches/load/workloads.sh
. benches/load/workloads.sh
W=$(mktemp -d)
spool_fs "$W"
pid=
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
port=$(free_port)
callhook_config "$port" "$DUR" 'retention_bytes = 134217728' > "$W/c.toml"
write_workloads "$W"
$PIN_SERVER "$BIN" serve --config "$W/c.toml" --data-dir "$W/d" > "$W/out" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q listening "$W/out" && break; sleep 0.1; done
grep -q listening "$W/out" || { cat "$W/out" >&2; exit 1; }
load() { $PIN_CLIENT wrk -t1 -c64 -d"$1s" -s "$W/event.lua" "http://127.0.0.1:$port"; }
commits() {
  curl -s "http://127.0.0.1:$port/metrics" |
    awk '/^callhook_spool_fsync_duration_seconds_(sum|count)|^callhook_spool_fsync_batch_records_sum/ {print $1, $2}'
}
cpu0() { awk '$1 == "cpu0" {print $2 + $3, $4, $6, $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
load "${WARMUP:-14}" > /dev/null
commits > "$W/m0"; cpu0 > "$W/c0"
if [ -n "${TRACE:-}" ]; then
  load "${MEASURE:-5}" > "$W/wrk" &
  wrk_pid=$!
  sleep 1
  perf record -q -e block:block_rq_issue -a -o "$W/blk" -- sleep 1 2> /dev/null
  wait "$wrk_pid"
else
  load "${MEASURE:-5}" > "$W/wrk"
fi
commits > "$W/m1"; cpu0 > "$W/c1"
awk '/Requests\/sec/ {print "req/s " $2} /Non-2xx|Socket errors/ {print "ERRORS: " $0}' "$W/wrk"
# Paired by name: the exporter's line order is not fixed between scrapes.
awk -v s="${MEASURE:-5}" 'NR == FNR {m0[$1] = $2; next} {d[$1] = $2 - m0[$1]}
  END {n = d["callhook_spool_fsync_duration_seconds_count"];
       printf "commits %.0f/s, %.1f records each, write + fdatasync %.0f us on average\n",
         n / s, d["callhook_spool_fsync_batch_records_sum"] / n, 1e6 * d["callhook_spool_fsync_duration_seconds_sum"] / n}' "$W/m0" "$W/m1"
paste "$W/c0" "$W/c1" | awk '{t = $10 - $5;
  printf "CPU 0: user %.0f%%, system %.0f%%, softirq %.0f%%, iowait %.0f%%\n",
    100 * ($6 - $1) / t, 100 * ($7 - $2) / t, 100 * ($9 - $4) / t, 100 * ($8 - $3) / t}'
if [ -n "${TRACE:-}" ]; then
  # Block requests name the whole disk, not a partition of it.
  src=$(df --output=source "$W" | tail -1)
  parent=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1)
  [ -z "$parent" ] || src=/dev/$parent
  dev=$(awk -v d="$src" 'BEGIN {sub("/dev/", "", d)} $3 == d {print $1 "," $2}' /proc/diskstats)
  perf script -i "$W/blk" 2> /dev/null | awk -v dev="$dev" '$6 == dev {
      t = $4; sub(":", "", t); ty = $7
      if (ty == "WS") { if (ff) { g2[++n2] = (t - ff) * 1e6; ff = 0 } ws = t }
      else if (ty == "WSM" && ws) inode++
      else if (ty == "FF" && ws) { g1[++n1] = (t - ws) * 1e6; ff = t; ws = 0 } }
    function med(a, n,   i, j, x) { if (!n) return "n/a"; for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { if (!n1) { print "no commits traced on " dev; exit }
      printf "traced %d commits: data write -> flush issued %.0f us, flush -> next data write %.0f us (medians); %d also wrote an inode block\n",
        n1, med(g1, n1), med(g2, n2), inode }'
fi
