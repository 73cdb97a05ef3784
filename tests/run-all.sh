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
