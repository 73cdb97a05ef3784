#!/usr/bin/env bash
# Load run: callhook against the machine's HTTP ceiling, side by side in one run.
#
# The ceiling is nginx answering the same paths with a fixed `return 200` (no parsing, no
# disk). Both get the same wrk load (CONNS connections, DURATION seconds each); the server
# is pinned to CPU 0 and wrk to CPU 1 where taskset works. Prints one table with req/s,
# latency percentiles, errors and the callhook/ceiling ratio for: answer (GET with query),
# voice event (POST JSON), messages inbound and a mixed burst, for callhook with durability
# fsync, durability os, and (voice event) signatures on. Then the answer path's latency at a
# fixed rate (half of the measured max; open loop, benches/load/pace.rs), alone and while
# events stream at a tenth of theirs, next to nginx given the same streams, and RSS idle
# / after load / with many idle keep-alive connections.
#
#   bash benches/load/run.sh            # DURATION=10 CONNS=64 IDLE_CONNS=10000
#   BASELINE_BIN=/path/to/older/callhook bash benches/load/run.sh
#       adds rows for an older build (fsync and os, answer and voice event) in the same run,
#       for before/after comparisons of a change
#
# Also measures RSS with IDLE_CONNS idle keep-alive connections (benches/load/idle.py opens
# them, one request each, and holds them) on a fresh callhook.
# Needs nginx and wrk (Debian packages; installed when missing, as root). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
log() { echo "load: $*" >&2; }

need=()
for t in nginx wrk; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --locked -q --bins --example pace
BIN=$PWD/target/release/callhook
PACE=$PWD/target/release/examples/pace
WORK=$(mktemp -d)
cleanup() {
  for p in "$WORK"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  # An idle.py left by an early exit.
  for j in $(jobs -p); do kill "$j" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=benches/load/workloads.sh
. benches/load/workloads.sh
spool_fs "$WORK"
write_workloads "$WORK"

# Signatures: one Vonage-style token per body; the same jti with the same payload is
# accepted as Vonage's idempotent retry, so one token serves the whole run.
SECRET=load-test-signature-secret-0123456789
APP=aaaaaaaa-bbbb-cccc-dddd-0123456789ab
token() {
  python3 - "$1" "$SECRET" "$APP" <<'PY'
import base64, hashlib, hmac, json, sys, time, uuid
payload, secret, app = sys.argv[1].encode(), sys.argv[2].encode(), sys.argv[3]
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
c = b(json.dumps({"iat": int(time.time()), "jti": str(uuid.uuid4()), "iss": "Vonage",
                  "payload_hash": hashlib.sha256(payload).hexdigest(), "api_key": "loadkey",
                  "application_id": app}).encode())
s = b(hmac.new(secret, f"{h}.{c}".encode(), hashlib.sha256).digest())
print(f"{h}.{c}.{s}", end="")
PY
}
SIGNED_CFG="[[applications]]
id = \"$APP\"
name = \"load\"
api_key = \"loadkey\"
signature_secrets = [\"$SECRET\"]
capabilities = [\"voice\", \"messages\", \"rtc\"]"

start_callhook() { # name durability extra-toml -> port
  local port
  port=$(free_port)
  callhook_config "$port" "$2" "retention_bytes = 1073741824
$3" > "$WORK/$1.toml"
  $PIN_SERVER "${SERVE_BIN:-$BIN}" serve --config "$WORK/$1.toml" --data-dir "$WORK/$1-data" > "$WORK/$1.out" 2> "$WORK/$1.err" &
  echo $! > "$WORK/$1.pid"
  for _ in $(seq 1 100); do grep -q listening "$WORK/$1.out" 2>/dev/null && break; sleep 0.1; done
  grep -q listening "$WORK/$1.out" || { cat "$WORK/$1.err" >&2; exit 1; }
  echo "$port"
}
new_nginx() {
  local port
  port=$(free_port)
  start_nginx "$WORK" "$port"
  echo "$port"
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# One wrk run -> "req/s p50_ms p99_ms p99.9_ms errors".
run_wrk() { # port lua
  local out
  # What earlier cells left dirty (a durability-os cell: hundreds of MB) goes to the disk
  # first, not during this cell, where its writeback would queue ahead of the fsyncs.
  sync
  # wrk prints p50..p99; its Lua `done` hook gives p99.9.
  { cat "$2"; printf '\ndone = function(s, lat, req) io.write(string.format("P999 %%d\\n", lat:percentile(99.9))) end\n'; } > "$2.run"
  out=$($PIN_CLIENT wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$2.run" "http://127.0.0.1:$1" 2>&1)
  python3 - "$out" <<'PY'
import re, sys
o = sys.argv[1]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    n = float(m.group(1))
    return n / 1000 if m.group(2) == "us" else n * 1000 if m.group(2) == "s" else n
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", o).group(1))
pct = dict(re.findall(r"^\s+(\d+(?:\.\d+)?)%\s+(\S+)", o, re.M))
def p(k):
    for key in (k, k.rstrip("0").rstrip(".")):
        if key in pct:
            return ms(pct[key])
    return float("nan")
p999 = re.search(r"^P999 (\d+)", o, re.M)
if p999:
    pct["99.900"] = p999.group(1) + "us"
err = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", o))
non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", o)
err += int(non2.group(1)) if non2 else 0
print(f"{rps:.0f} {p('50.000'):.3f} {p('99.000'):.3f} {p('99.900'):.3f} {err}")
PY
}

NGINX=$(new_nginx)
FSYNC=$(start_callhook fsync fsync "")
OS=$(start_callhook os os "")
SIGNED=$(start_callhook signed fsync "$SIGNED_CFG")
IDLE_RSS=$(rss_kb "$(cat "$WORK/fsync.pid")")
if [ -n "${BASELINE_BIN:-}" ]; then
  [ -x "$BASELINE_BIN" ] || { log "BASELINE_BIN=$BASELINE_BIN is not an executable"; exit 1; }
  BFSYNC=$(SERVE_BIN=$BASELINE_BIN start_callhook bfsync fsync "")
  BOS=$(SERVE_BIN=$BASELINE_BIN start_callhook bos os "")
fi
log "nginx :$NGINX, callhook fsync :$FSYNC, os :$OS, signed :$SIGNED; ${DURATION}s per cell, $CONNS connections"

declare -A R
for w in answer event inbound mixed; do
  R[nginx,$w]=$(run_wrk "$NGINX" "$WORK/$w.lua")
  R[fsync,$w]=$(run_wrk "$FSYNC" "$WORK/$w.lua")
  R[os,$w]=$(run_wrk "$OS" "$WORK/$w.lua")
  if [ -n "${BASELINE_BIN:-}" ] && [ "$w" != inbound ]; then
    R[bfsync,$w]=$(run_wrk "$BFSYNC" "$WORK/$w.lua")
    R[bos,$w]=$(run_wrk "$BOS" "$WORK/$w.lua")
  fi
  log "$w done"
done
# Minted now: callhook refuses tokens older than max_skew_secs (300 s), and the cells
# before this one can take longer than that.
lua_post "$EVENT" /webhooks/voice/event "$(token "$EVENT")" > "$WORK/event-signed.lua"
R[signed,event]=$(run_wrk "$SIGNED" "$WORK/event-signed.lua")
LOAD_RSS=$(rss_kb "$(cat "$WORK/fsync.pid")")

# Answer latency at a fixed rate: half of the measured max (the fsync answer cell), alone
# and while voice events stream at a tenth of theirs, with nginx given the same streams
# as the reference. benches/load/pace.rs is open-loop: requests are due at evenly spaced
# instants whatever the answers do, and each latency runs from when its request was due,
# so a stalled server shows as latency rather than as fewer requests. (wrk paced with a
# 1 ms pause per connection was used until 2026-11-25: its connections fired together, and
# the bursts that made set its p99; at half of a server's own max such a burst lasts about
# half the cycle, near 1 ms.)
# 256 answer connections: at half the max, callhook or nginx can stall for a few ms
# (the machine's own kernel threads included) before every one is busy and a request
# waits for a connection (`late` counts those, past 100 us). Spread out, requests cost
# callhook more CPU than in wrk's saturating bursts (the worker parks and wakes between
# them: 65% of the core for answers at half the max on 2026-11-25), so events at a quarter
# of their max on top, as the wrk version streamed them, overloaded the core in some runs.
MAX_ANSWER=$(echo "${R[fsync,answer]}" | cut -d' ' -f1)
HALF=$((MAX_ANSWER / 2))
TENTH_EVENTS=$(( $(echo "${R[fsync,event]}" | cut -d' ' -f1) / 10 ))
ANSWERS="answer:$WORK/answer.req:$HALF:256"
EVENTS="event:$WORK/event.req:$TENTH_EVENTS:64"
paced() { # port stream... -> one line per stream: "name rate req/s: p50 .. ms, ..."
  local port=$1
  shift
  { $PIN_CLIENT "$PACE" --addr "127.0.0.1:$port" --secs "$DURATION" --warmup 2 "${@/#/--stream=}" \
    || echo "pace failed (exit $?)"; } \
    | awk '/^pace failed/ {print} /^PACE / {printf "%s at %s req/s: p50 %s ms, p90 %s ms, p99 %s ms, p99.9 %s ms, max %s ms%s, %s sent late (max lag %s ms); from the send: p99 %s ms, p99.9 %s ms; generator off its core up to %s ms\n", $2, $3, $4, $5, $6, $7, $8, ($9 > 0 ? ", " $9 " ERRORS" : ""), $10, $11, $13, $14, $15}'
}
sync # as before each wrk cell
NGINX_ALONE=$(paced "$NGINX" "$ANSWERS")
ALONE=$(paced "$FSYNC" "$ANSWERS")
NGINX_MIXED=$(paced "$NGINX" "$ANSWERS" "$EVENTS")
MIXED=$(paced "$FSYNC" "$ANSWERS" "$EVENTS")

# RSS with many idle keep-alive connections, on a fresh callhook. The header read timeout
# (5 s by default) also closes idle keep-alive connections; it is raised here so all of
# them stay open while they are being opened and sampled. Sampled 3, 6 and 9 s after the
# last one answered: connections give their HTTP buffers back after idle_release_ms (1 s)
# of quiet, and the allocator returns freed memory to the system lazily.
IDLE_CONNS=${IDLE_CONNS:-10000}
idle_rss() { # name [binary] -> "RSS-before samples... (idle.py result)"
  local port pid r0 samples="" n=0
  port=$(CALLHOOK_SERVER__HEADER_READ_TIMEOUT_MS=60000 SERVE_BIN=${2:-$BIN} start_callhook "$1" fsync "")
  pid=$(cat "$WORK/$1.pid")
  r0=$(rss_kb "$pid")
  mkfifo "$WORK/$1-idle.in"
  python3 benches/load/idle.py "$port" "$IDLE_CONNS" < "$WORK/$1-idle.in" > "$WORK/$1-idle.out" 2>&1 &
  local py=$!
  exec 7>"$WORK/$1-idle.in"
  for _ in $(seq 1 1200); do grep -q '^ready' "$WORK/$1-idle.out" && break; sleep 0.1; done
  grep -q '^ready' "$WORK/$1-idle.out" || { log "idle connections did not open: $(cat "$WORK/$1-idle.out")"; exit 1; }
  grep -q '^ready [0-9]* failed 0$' "$WORK/$1-idle.out" || { log "not every idle connection opened: $(cat "$WORK/$1-idle.out")"; exit 1; }
  for _ in 1 2 3; do sleep 3; samples="$samples $(rss_kb "$pid")"; done
  local parked
  parked=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())' "http://127.0.0.1:$port/metrics" | awk '/^callhook_http_connections_parked /{print $2}')
  echo >&7
  exec 7>&-
  wait "$py" || true
  kill "$pid" 2>/dev/null || true
  rm -f "$WORK/$1.pid"
  echo "${r0} kB; with ${IDLE_CONNS} idle keep-alive connections${samples} kB at 3/6/9 s, ${parked:-n/a} parked ($(tr '\n' ' ' < "$WORK/$1-idle.out" | sed 's/ $//'))"
}
MANY=$(idle_rss many)
[ -n "${BASELINE_BIN:-}" ] && BMANY=$(idle_rss bmany "$BASELINE_BIN")

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
echo
echo "callhook load run $(date -u +%Y-%m-%dT%H:%MZ); $(nproc) cores ($CPU); ${DURATION}s x $CONNS connections per cell; wrk 1 thread${PIN_CLIENT:+, server on CPU 0, wrk on CPU 1}"
echo
echo "| workload | server | req/s | p50 ms | p99 ms | p99.9 ms | errors | vs nginx |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for w in answer event inbound mixed; do
  base=$(echo "${R[nginx,$w]}" | cut -d' ' -f1)
  for s in nginx fsync os signed bfsync bos; do
    v=${R[$s,$w]:-}
    [ -z "$v" ] && continue
    read -r rps p50 p99 p999 err <<<"$v"
    ratio=$(python3 -c "print(f'{$rps/$base:.2f}')")
    case $s in nginx) name="nginx (ceiling)" ;; fsync) name="callhook, fsync" ;; os) name="callhook, os" ;; signed) name="callhook, fsync + signatures" ;; bfsync) name="baseline build, fsync" ;; bos) name="baseline build, os" ;; esac
    echo "| $w | $name | $rps | $p50 | $p99 | $p999 | $err | $ratio |"
  done
done
echo
echo "answers at a fixed ${HALF} req/s (half of max), open loop (benches/load/pace.rs), alone and with voice events at ${TENTH_EVENTS} req/s (a tenth of max; 256 and 64 connections, ${DURATION} s after 2 s of warm-up):"
echo "  nginx, alone: $NGINX_ALONE"
echo "  callhook, alone: $ALONE"
echo "  nginx, with events:"
sed 's/^/    /' <<< "$NGINX_MIXED"
echo "  callhook, with events:"
sed 's/^/    /' <<< "$MIXED"
echo "RSS of callhook (fsync): idle ${IDLE_RSS} kB, after the load ${LOAD_RSS} kB"
echo "RSS of a fresh callhook: $MANY"
[ -n "${BMANY:-}" ] && echo "RSS of a fresh baseline build: $BMANY"
true
