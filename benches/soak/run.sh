#!/usr/bin/env bash
# Soak run: callhook at a fixed rate for a long time, forwarding to Kafka, then proof that
# nothing it accepted was lost on the way.
#
# Starts callhook (release build, spool durability fsync, Kafka forwarding to the broker at
# KAFKA_BOOTSTRAP, topics of its own created at startup) and drives it open-loop with voice
# events at a fixed RATE for DURATION seconds: the seed `completed` event, each with a unique
# uuid `soak-<i>` (4 events per conversation), over CONNS keep-alive connections (sending
# stops at 1.5 x DURATION + 30 s even if the rate could not be held). Every
# SAMPLE seconds it prints callhook's RSS (/proc/<pid>/status VmRSS), the accepted rate, the
# spool size, the forwarder's lag (records and seconds) and the error counters from /metrics
# (spool write errors, Kafka produce errors, dead-lettered records, HTTP 5xx). Then it stops
# sending, waits until the forwarder has delivered and checkpointed everything (lag 0), reads
# the run's topic back from the beginning in a new consumer group and reports: accepted (2xx),
# consumed, missing (accepted but never consumed: must be 0), duplicates (at-least-once
# redeliveries), RSS first/last/max and the errors. Exit status 1 on any loss, when the
# forwarder does not drain within DRAIN_TIMEOUT, or when callhook does not exit cleanly.
#
#   KAFKA_BOOTSTRAP=$(deploy/local/kafka-local.sh start 19092) bash benches/soak/run.sh
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 DURATION=60 bash benches/soak/run.sh   # a short check
#
# Environment: DURATION (default 600 s), RATE (default 5000 req/s: well under the load run's
# fsync max of ~32k req/s, since here the generator, the forwarder and the broker share the
# machine's 2 cores with callhook; raise it where there is room), CONNS (128: each waits for its
# event's fsync, so the rate needs enough of them in flight), SAMPLE (10 s), DRAIN_TIMEOUT (600 s),
# SEGMENT_BYTES (16 MiB) and RETENTION_BYTES (128 MiB: forwarded segments are deleted during
# the run, so deletion is soaked too), SOAK_VENV (where the consumer's venv lives).
# Needs python3 and a Kafka-protocol broker (tests use tansu: deploy/local/kafka-local.sh);
# the consumer is confluent-kafka (librdkafka >= 2.12 is needed for tansu; Debian's kcat is
# too old), installed from PyPI into SOAK_VENV on the first run. Loopback only. The broker is
# used, never started or stopped here. tansu's memory storage keeps every record in RAM
# (~1 KB each: a 10-minute run at 5,000/s holds ~3 GB until the broker stops).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-600}
RATE=${RATE:-5000}
CONNS=${CONNS:-128}
SAMPLE=${SAMPLE:-10}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
SEGMENT_BYTES=${SEGMENT_BYTES:-16777216}
RETENTION_BYTES=${RETENTION_BYTES:-134217728}
SOAK_VENV=${SOAK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/callhook-soak-venv}
CONFLUENT_KAFKA=confluent-kafka==2.16.1
log() { echo "soak: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -n "${KAFKA_BOOTSTRAP:-}" ] ||
  die "KAFKA_BOOTSTRAP is not set: start a broker with 'deploy/local/kafka-local.sh start 19092' (it prints the address) and export it"
case $KAFKA_BOOTSTRAP in
  127.*|localhost:*|\[::1\]:*) ;;
  *) die "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP is not on loopback; the soak only talks to this machine" ;;
esac
host=${KAFKA_BOOTSTRAP%:*} port=${KAFKA_BOOTSTRAP##*:}
[ "$host" = localhost ] && host=127.0.0.1
(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null || die "no broker answers at $KAFKA_BOOTSTRAP"
command -v python3 >/dev/null || die "python3 not found"

# The consumer's client library, once per machine.
if ! "$SOAK_VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
  log "installing $CONFLUENT_KAFKA into $SOAK_VENV"
  python3 -m venv "$SOAK_VENV"
  "$SOAK_VENV/bin/pip" install -q --disable-pip-version-check "$CONFLUENT_KAFKA"
fi

cargo build --release --locked -q
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET/release/callhook
[ -x "$BIN" ] || die "no release binary at $BIN"
WORK=$(mktemp -d)
cleanup() {
  [ -f "$WORK/callhook.pid" ] && kill "$(cat "$WORK/callhook.pid")" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

LISTEN=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
P=soak-$(date +%s)-$$
cat > "$WORK/callhook.toml" <<EOF
[server]
listen = "127.0.0.1:$LISTEN"
[spool]
durability = "fsync"
segment_bytes = $SEGMENT_BYTES
retention_bytes = $RETENTION_BYTES
[log]
level = "warn"
[kafka]
brokers = "$KAFKA_BOOTSTRAP"
create_topics = true
partitions = 3
replication_factor = 1
[kafka.topics]
voice_answer = "$P.voice.answer"
voice_event = "$P.voice.event"
messages_inbound = "$P.messages.inbound"
messages_status = "$P.messages.status"
rtc_event = "$P.rtc.event"
dlq = "$P.dlq"
EOF
"$BIN" serve --config "$WORK/callhook.toml" --data-dir "$WORK/data" > "$WORK/callhook.out" 2> "$WORK/callhook.err" &
PID=$!
echo "$PID" > "$WORK/callhook.pid"
for _ in $(seq 1 100); do grep -q listening "$WORK/callhook.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$WORK/callhook.out" || { cat "$WORK/callhook.err" >&2; die "callhook did not start"; }
# Ready = spool writable and the topics exist (created at startup).
ready=""
for _ in $(seq 1 300); do
  if python3 - "$LISTEN" <<'PY' 2>/dev/null; then ready=1; break; fi
import json, sys, urllib.request
r = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2))
sys.exit(0 if r.get("status") == "ready" else 1)
PY
  sleep 0.1
done
[ -n "$ready" ] || { cat "$WORK/callhook.err" >&2; die "callhook not ready (Kafka topics?) after 30 s"; }

CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
log "callhook pid $PID on :$LISTEN, broker $KAFKA_BOOTSTRAP, topics $P.*; $(nproc) cores ($CPU)"
status=0
"$SOAK_VENV/bin/python" benches/soak/soak.py --port "$LISTEN" --pid "$PID" \
  --brokers "$KAFKA_BOOTSTRAP" --topic "$P.voice.event" --dlq "$P.dlq" \
  --fixture tests/fixtures/seed-inbound-completed.json --duration "$DURATION" --rate "$RATE" \
  --conns "$CONNS" --sample "$SAMPLE" --drain-timeout "$DRAIN_TIMEOUT" || status=$?

kill -TERM "$PID" 2>/dev/null || true
code=0
wait "$PID" || code=$?
rm -f "$WORK/callhook.pid"
if [ "$code" -ne 0 ]; then
  log "callhook exited with $code after SIGTERM; its log:"
  tail -n 30 "$WORK/callhook.err" >&2
  status=1
fi
if [ -s "$WORK/callhook.err" ]; then
  log "callhook warnings/errors during the run (last 10 lines):"
  tail -n 10 "$WORK/callhook.err" >&2
fi
echo "soak $(date -u +%Y-%m-%dT%H:%MZ): DURATION=$DURATION RATE=$RATE CONNS=$CONNS, fsync, Kafka $KAFKA_BOOTSTRAP; exit $status"
exit "$status"
