#!/usr/bin/env bash
# kafka-local.sh: a real Kafka-protocol broker on loopback for callhook's tests, benchmarks and local runs.
#
# The broker is tansu (crates.io, Rust, Apache-2.0), built with cargo. That avoids
# Docker, Maven Central and downloaded binaries. It listens on 127.0.0.1 only.
#
#   kafka-local.sh install               cargo install tansu (pinned, --locked); skipped if already there (16-20 min on 2 cores)
#   kafka-local.sh start [PORT]          start on 127.0.0.1:PORT (default 19092), wait until it answers, print HOST:PORT on stdout
#   kafka-local.sh topics T1[:N] T2 ...  create topics (N partitions, default 3). tansu never auto-creates topics
#   kafka-local.sh stop [PORT]           stop the broker that `start` started on PORT (only that pid)
#   kafka-local.sh kill [PORT]           the same, but SIGKILL at once: a crashed broker, not a graceful stop
#
# Environment:
#   KAFKA_LOCAL_PORT     port used when none is given (default 19092)
#   KAFKA_LOCAL_WAIT     seconds `start` waits for the broker to answer (default 30)
#   KAFKA_LOCAL_PARTITIONS  partitions for `topics` entries without :N (default 3)
#   KAFKA_LOCAL_STORAGE  memory (default; fast, gone on stop) | sqlite (one file; survives stop/start)
#   KAFKA_LOCAL_DATA     data dir to use and keep (e.g. for restart tests); default: a fresh temp dir, removed on stop
#   KAFKA_LOCAL_STATE    where pid/log files go (default ${TMPDIR:-/tmp}/kafka-local)
#   KAFKA_LOCAL_ADVERTISE  HOST:PORT the broker tells clients to connect to (default 127.0.0.1:PORT);
#                        e.g. a TLS terminator in front of it (tansu 0.6 takes --cert/--key but serves
#                        no TLS), as tests/kafka_tls.rs does
#   TANSU_ROOT           cargo install root (default $HOME/.cargo; the binary goes to $TANSU_ROOT/bin/tansu)
#
# Known limits of tansu 0.6.0 (see README.md, "Kafka locally"):
#   memory: ListOffsets(latest) is wrong, so avoid auto.offset.reset=latest and watermark or lag checks.
#   sqlite: fetch slows down badly beyond about 10k messages per partition.
#   sqlite: during its graceful-stop window tansu still answers Produce, with errors, so librdkafka's
#     idempotent producer bumps its epoch locally; the restarted tansu then panics on that epoch
#     ("more or less than one row") and stays broken. Outage tests use `kill`, which avoids the window.
#   Debian's kcat (librdkafka 2.0.2) cannot parse tansu's ApiVersions reply; use librdkafka >= 2.12.
set -euo pipefail

TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,libsql # dynostore = memory:// engine, libsql = sqlite:// engine
TANSU_ROOT=${TANSU_ROOT:-$HOME/.cargo}
BIN=$TANSU_ROOT/bin/tansu
STATE=${KAFKA_LOCAL_STATE:-${TMPDIR:-/tmp}/kafka-local}

log() { echo "kafka-local: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

installed() { # right version *and* built with the storage engines we need
  [ -x "$BIN" ] || return 1
  [ "$("$BIN" --version 2>/dev/null)" = "tansu $TANSU_VERSION" ] || return 1
  "$BIN" --help 2>/dev/null | grep -q '^Storage engines: dynostore, libsql'
}

cmd_install() {
  if installed; then log "tansu $TANSU_VERSION already installed at $BIN"; return 0; fi
  command -v cargo >/dev/null || die "cargo not found"
  log "installing tansu $TANSU_VERSION (features $TANSU_FEATURES) into $TANSU_ROOT ..."
  local t0=$SECONDS
  cargo install tansu --version "$TANSU_VERSION" --locked --force \
    --features "$TANSU_FEATURES" --root "$TANSU_ROOT"
  installed || die "install finished but $BIN is not usable"
  log "installed in $((SECONDS - t0)) s"
}

alive() { # pid is running and is a tansu broker (guards against pid reuse)
  [ -n "${1:-}" ] && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q 'tansu broker'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_start() {
  local port=${1:-${KAFKA_LOCAL_PORT:-19092}} storage=${KAFKA_LOCAL_STORAGE:-memory}
  local dir="$STATE/$port"
  installed || die "tansu $TANSU_VERSION not installed at $BIN: run '$0 install' first"
  mkdir -p "$dir"
  if alive "$(cat "$dir/pid" 2>/dev/null || true)"; then
    log "already running (pid $(cat "$dir/pid"))"; echo "127.0.0.1:$port"; return 0
  fi
  rm -f "$dir/pid"
  port_open "$port" && die "port $port on 127.0.0.1 is already in use by another process"

  local data=${KAFKA_LOCAL_DATA:-}
  if [ -n "$data" ]; then mkdir -p "$data"; rm -f "$dir/data.tmp"
  else data=$(mktemp -d "${TMPDIR:-/tmp}/kafka-local-data.XXXXXX"); echo "$data" >"$dir/data.tmp"; fi
  local engine
  case $storage in
    memory) engine=memory://tansu/ ;;
    sqlite) engine=sqlite://tansu.db ;; # relative to the broker's working dir, i.e. $data
    *) die "KAFKA_LOCAL_STORAGE must be memory or sqlite, not '$storage'" ;;
  esac

  (cd "$data" && exec "$BIN" broker --silent \
      --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://${KAFKA_LOCAL_ADVERTISE:-127.0.0.1:$port}" \
      --storage-engine "$engine" </dev/null >>"$dir/broker.log" 2>&1) &
  local pid=$!
  echo "$pid" >"$dir/pid"

  local deadline=$((SECONDS + ${KAFKA_LOCAL_WAIT:-30}))
  # ready = the port accepts connections and a real Kafka request (Metadata via `tansu topic list`) succeeds
  until port_open "$port" && timeout 5 "$BIN" topic list --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$dir/broker.log" >&2 || true; cmd_stop TERM "$port" 2>/dev/null || true
      die "broker exited during startup (log: $dir/broker.log)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$dir/broker.log" >&2 || true; cmd_stop TERM "$port"; die "broker not ready on 127.0.0.1:$port after ${KAFKA_LOCAL_WAIT:-30} s"
    fi
    sleep 0.2
  done
  log "tansu broker pid $pid on 127.0.0.1:$port, storage $storage, data $data, log $dir/broker.log"
  echo "127.0.0.1:$port"
}

cmd_stop() { # [SIGNAL] [PORT]
  local sig=$1 port=${2:-${KAFKA_LOCAL_PORT:-19092}} dir pid
  dir="$STATE/$port"; pid=$(cat "$dir/pid" 2>/dev/null || true)
  if alive "$pid"; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.2; done
    if alive "$pid"; then log "pid $pid ignored SIG$sig for 10 s, sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    for _ in $(seq 1 25); do alive "$pid" || break; sleep 0.2; done
    alive "$pid" && die "could not stop pid $pid"
    log "stopped pid $pid (port $port)"
  else
    log "no broker of ours running on port $port"
  fi
  rm -f "$dir/pid"
  if [ -f "$dir/data.tmp" ]; then rm -rf "$(cat "$dir/data.tmp")"; rm -f "$dir/data.tmp"; fi
}

cmd_topics() {
  local port=${KAFKA_LOCAL_PORT:-19092} t name parts out
  installed || die "tansu not installed: run '$0 install' first"
  port_open "$port" || die "no broker on 127.0.0.1:$port (run '$0 start $port' first)"
  for t in "$@"; do
    name=${t%%:*}; parts=${KAFKA_LOCAL_PARTITIONS:-3}; [ "$t" != "$name" ] && parts=${t#*:}
    if out=$(timeout 60 "$BIN" topic create --broker "tcp://127.0.0.1:$port" --partitions "$parts" "$name" 2>&1); then
      log "created topic $name ($parts partitions)"
    elif grep -q 'already exists' <<<"$out"; then
      log "topic $name already exists"
    else
      echo "$out" >&2; die "could not create topic $name on 127.0.0.1:$port"
    fi
  done
}

case ${1:-} in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop TERM "$@" ;;
  kill) shift; cmd_stop KILL "$@" ;;
  topics) shift; cmd_topics "$@" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac
