#!/usr/bin/env bash
# Alternating A/B of two or more callhook builds on one workload, for before/after
# comparisons finer than the load run's single cells: each build serves on its own port
# (pinned to CPU 0), and wrk (CPU 1, 64 connections, SECONDS_PER_RUN s) drives them in
# turn, ROUNDS times, so slow drifts of this shared machine hit every build alike.
# Prints req/s per round and build, then each build's median.
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
PIN_SERVER="taskset -c 0"; PIN_CLIENT="taskset -c 1"
taskset -c 0 true 2>/dev/null || { PIN_SERVER=""; PIN_CLIENT=""; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
lua_str() { python3 -c 'import json,sys; print(json.dumps(json.dumps(json.load(open(sys.argv[1])), separators=(",",":"))))' "$1"; }
Q='from=441234567890&to=442038297050&uuid=0779a56d002f1c7f47f82ef5fe84ab79&conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6'
EV=$(lua_str tests/fixtures/seed-inbound-completed.json)
IN=$(lua_str tests/fixtures/messages-inbound-sms.json)
case $WL in
  answer) printf 'wrk.path = "/webhooks/voice/answer?%s"\n' "$Q" > "$W/l.lua" ;;
  event) printf 'wrk.method = "POST"\nwrk.path = "/webhooks/voice/event"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "$EV" > "$W/l.lua" ;;
  mixed) cat > "$W/l.lua" <<LUA
local reqs = {
  wrk.format("POST", "/webhooks/voice/event", {["Host"]="bench", ["Content-Type"]="application/json"}, $EV),
  wrk.format("POST", "/webhooks/voice/event", {["Host"]="bench", ["Content-Type"]="application/json"}, $EV),
  wrk.format("POST", "/webhooks/messages/inbound", {["Host"]="bench", ["Content-Type"]="application/json"}, $IN),
  wrk.format("GET", "/webhooks/voice/answer?$Q", {["Host"]="bench"}, nil),
}
local i = 0
request = function() i = i + 1; return reqs[(i % #reqs) + 1] end
LUA
  ;;
  *) echo "ab: workload is answer, event or mixed" >&2; exit 2 ;;
esac
i=0
for b in "$@"; do
  i=$((i + 1))
  [ -x "$b" ] || { echo "ab: $b is not an executable" >&2; exit 1; }
  port=$(free_port)
  echo "$port" > "$W/port$i"
  {
    printf '[server]\nlisten = "127.0.0.1:%s"\n[spool]\ndurability = "%s"\n[log]\nlevel = "warn"\n' "$port" "$DUR"
    sed -n '/^\[answer.default\]/,/^# -----/p' deploy/config/callhook.toml | grep -v '^# ---'
  } > "$W/c$i.toml"
  $PIN_SERVER "$b" serve --config "$W/c$i.toml" --data-dir "$W/d$i" > "$W/out$i" 2>&1 &
  echo $! > "$W/pid$i"
  for _ in $(seq 1 100); do grep -q listening "$W/out$i" && break; sleep 0.1; done
  grep -q listening "$W/out$i" || { cat "$W/out$i" >&2; exit 1; }
done
for r in $(seq 1 "$ROUNDS"); do
  i=0
  for b in "$@"; do
    i=$((i + 1))
    rps=$($PIN_CLIENT wrk -t1 -c64 -d"${SECS}s" -s "$W/l.lua" "http://127.0.0.1:$(cat "$W/port$i")" | awk '/Requests\/sec/ {print $2}')
    echo "round $r build $i ($b): $rps"
    echo "$rps" >> "$W/r$i"
  done
done
i=0
for b in "$@"; do
  i=$((i + 1))
  echo "median build $i ($b): $(sort -n "$W/r$i" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}') req/s ($WL, $DUR, $ROUNDS rounds of ${SECS} s)"
done
