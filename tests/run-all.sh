#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, starts a local
# Kafka-protocol broker, runs formatting and lint checks, every test, builds the benches,
# and fuzzes every fuzz target briefly.
# Fails (non-zero) when anything it needs is missing; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
log() { echo "run-all: $*" >&2; }

command -v cargo >/dev/null || { log "ERROR: cargo not found"; exit 1; }
t0=$SECONDS

# Disk: the whole suite took 3.1 GB at its peak (2026-11-25: target/ 1.8 GB, the fuzz
# build 1.3 GB; building tansu takes ~2 GB more in /tmp, once). Fail now with that said
# rather than with ENOSPC halfway through a compile. A fresh clone gains nothing from
# incremental compilation but its cache (1.6 GB), so it is off unless asked for.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
NEED_GB=${CALLHOOK_SUITE_DISK_GB:-4}
target_dir=${CARGO_TARGET_DIR:-target}
mkdir -p "$target_dir"
free_kb=$(df -Pk "$target_dir" | awk 'NR == 2 {print $4}')
log "disk: $((free_kb / 1024 / 1024)) GB free where $target_dir is (the suite needs about $NEED_GB GB)"
if (( free_kb < NEED_GB * 1024 * 1024 )); then
  log "ERROR: not enough free disk for the build: $((free_kb / 1024)) MB free, about $NEED_GB GB needed (CALLHOOK_SUITE_DISK_GB overrides)"
  exit 1
fi

# tests/disk_full.rs mounts small tmpfs filesystems to fill them: that takes root (or
# CAP_SYS_ADMIN). Say so now rather than after the build.
if [ "$(id -u)" -ne 0 ] && ! command -v capsh >/dev/null; then
  log "ERROR: the suite needs root (tests/disk_full.rs mounts a tmpfs); run it as root, e.g. in a container"
  exit 1
fi
if [ "$(id -u)" -ne 0 ] && ! capsh --print 2>/dev/null | grep -q '^Current:.*cap_sys_admin'; then
  log "ERROR: the suite needs root or CAP_SYS_ADMIN (tests/disk_full.rs mounts a tmpfs)"
  exit 1
fi

# 1. A real Kafka-protocol broker (tansu, built from crates.io once; ~16-20 min on 2 cores).
deploy/local/kafka-local.sh install
log "broker ready to start after $((SECONDS - t0)) s"

# Test tools beyond Rust: promtool and prometheus (alert unit tests, a real scrape), PyYAML.
deploy/local/install-test-tools.sh

# 2. Build everything once, then check formatting and lints.
cargo build --locked --all-targets
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
log "build and lints done after $((SECONDS - t0)) s"

# 3. Start the broker on its own port and run every test against it.
PORT=${KAFKA_LOCAL_PORT:-19092}
KAFKA_BOOTSTRAP=$(deploy/local/kafka-local.sh start "$PORT")
export KAFKA_BOOTSTRAP
trap 'deploy/local/kafka-local.sh stop "$PORT"' EXIT
cargo test --locked --all-targets
log "all tests passed after $((SECONDS - t0)) s"

# 4. A short bounded fuzz run (fuzz/README.md): every target built once (nightly; installs
#    cargo-fuzz if missing) without ASan, the committed regression inputs replayed, then
#    30 s of fuzzing per target. Any crash, failing regression input (known-open ones
#    too) or missing tool fails the suite. The long ASan run is `fuzz/run.sh 600`.
SANITIZER=none STRICT=1 fuzz/run.sh 30
log "fuzzing done after $((SECONDS - t0)) s"
