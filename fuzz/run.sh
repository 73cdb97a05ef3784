#!/usr/bin/env bash
# Builds every callhook fuzz target once, replays the committed regression inputs, then
# fuzzes each target for SECONDS_PER_TARGET seconds (default 30) from the seeds plus the
# regressions, in a throw-away working corpus. See fuzz/README.md.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Environment:
#   SANITIZER=none  build without AddressSanitizer, in target/nosan (what tests/run-all.sh
#                   runs: a third less build CPU, 4-14x the execs; panics, debug
#                   assertions and overflow checks still crash). Default: address, target/
#   STRICT=1        known-open findings (fuzz/known-open.txt) fail the run too
#   KEEP_CORPUS=1   keep the working corpora (path printed at the end)
#   JOBS=N          libFuzzer -fork=N per target (default: no fork, one process)
#   FUZZ_ARGS="..." extra libFuzzer flags for the fuzzing step
#
# Exit status: 0 when nothing new crashed; 1 when a target crashed (artifact paths are
# printed) or a regression input failed; 2 when the toolchain is missing (after trying to
# install it) or the build failed.
set -uo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
T_START=$(date +%s)
cd "$FUZZ_DIR"

SECS="${1:-30}"
shift $(( $# > 0 ? 1 : 0 ))
case "$SECS" in
  ''|*[!0-9]*) echo "usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

die() { echo "run.sh: $*" >&2; exit 2; }

# --- toolchain -------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found (install rustup)"
if ! cargo +nightly --version >/dev/null 2>&1; then
  command -v rustup >/dev/null || die "no nightly toolchain and no rustup to install it"
  echo "run.sh: no nightly toolchain (cargo-fuzz needs it); installing it" >&2
  rustup toolchain install nightly --profile minimal >&2 \
    || die "rustup toolchain install nightly failed"
  cargo +nightly --version >/dev/null 2>&1 || die "nightly toolchain still not usable"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "run.sh: cargo-fuzz missing; installing it from crates.io (about 70 s)" >&2
  cargo install cargo-fuzz --locked >&2 || die "cargo install cargo-fuzz failed"
  cargo +nightly fuzz --version >/dev/null 2>&1 || die "cargo-fuzz still not usable"
fi

ALL_TARGETS=(inspect_body query verify_jwt ncco_template spool_record segment_reader config)
if (( $# > 0 )); then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

# --- build -------------------------------------------------------------------------------
# -O: optimised; -a: debug assertions and overflow checks on (arithmetic overflow is a
# finding). All targets in one cargo invocation, so callhook is compiled once.
# The C libraries (librdkafka, zstd, ring's C) are linked but never fuzzed: CFLAGS=-O0
# keeps them from dominating a cold build (user CFLAGS come after and win).
# (Exported for the whole script: `cargo fuzz run` re-checks the build with the same env.)
export CFLAGS="-O0 -g0${CFLAGS:+ $CFLAGS}"
SANITIZER="${SANITIZER:-address}"
HOST="$(rustc +nightly -vV | sed -n 's/^host: //p')"
case "$SANITIZER" in
  address)
    # The C dependencies get AddressSanitizer from the cc crate, which breaks librdkafka's
    # configure link checks unless the link also has it: hence LDFLAGS.
    export LDFLAGS="-fsanitize=address${LDFLAGS:+ $LDFLAGS}"
    FLAGS=(-O -a)
    TARGET_DIR="$FUZZ_DIR/target"
    ;;
  none)
    # Its own target dir, so switching between this and the ASan build rebuilds nothing.
    FLAGS=(-O -a -s none --target-dir target/nosan)
    TARGET_DIR="$FUZZ_DIR/target/nosan"
    ;;
  *) die "SANITIZER must be address or none (got '$SANITIZER')" ;;
esac
BUILD=(cargo +nightly fuzz build "${FLAGS[@]}")
echo "== build: CFLAGS=$CFLAGS${LDFLAGS:+ LDFLAGS=$LDFLAGS} ${BUILD[*]}"
start=$(date +%s)
"${BUILD[@]}" || die "build failed"
echo "== built in $(( $(date +%s) - start ))s"
# Run the binaries just built rather than `cargo fuzz run`, which would rebuild when src/
# changes under a long run (other people edit it) and so test a different callhook.
BIN="$TARGET_DIR/$HOST/release"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
for t in "${TARGETS[@]}"; do
  [[ -x "$BIN/$t" ]] || die "no such target: $t (have: ${ALL_TARGETS[*]})"
done

# Known, reported, not yet fixed findings: skipped while fuzzing (so the fuzzer looks for
# new ones), still replayed strictly below.
KNOWN_OPEN="$(grep -v '^\s*#' known-open.txt 2>/dev/null | awk '{print $1}' | grep . | paste -sd, -)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/callhook-fuzz.XXXXXX")"
# The spool targets write and fsync files: on tmpfs when there is one (about 40x the execs
# of segment_reader on this machine's disk).
scratch_base="${TMPDIR:-/tmp}"
[[ -d /dev/shm && -w /dev/shm ]] && scratch_base=/dev/shm
CALLHOOK_FUZZ_SCRATCH="$(mktemp -d "$scratch_base/callhook-fuzz-scratch.XXXXXX")" \
  || die "cannot create a scratch dir in $scratch_base"
export CALLHOOK_FUZZ_SCRATCH
cleanup() {
  rm -rf "$CALLHOOK_FUZZ_SCRATCH"
  if [[ "${KEEP_CORPUS:-0}" == 1 ]]; then
    echo "working corpora kept in $WORK/corpus" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

failures=()
known_failures=()
declare -A FAILED_REG=()

# --- replay regressions ------------------------------------------------------------------
for t in "${TARGETS[@]}"; do
  dir="regressions/$t"
  [[ -d "$dir" ]] || continue
  shopt -s nullglob
  inputs=("$dir"/*)
  shopt -u nullglob
  (( ${#inputs[@]} )) || continue
  echo "== replay $t: ${#inputs[@]} regression input(s)"
  for f in "${inputs[@]}"; do
    log="$WORK/replay-$t-$(basename "$f").log"
    if env -u CALLHOOK_FUZZ_KNOWN_OPEN "$BIN/$t" -runs=1 "$f" >"$log" 2>&1; then
      id="$(basename "$f")"; id="${id%%--*}"
      if [[ ",$KNOWN_OPEN," == *",$id,"* ]]; then
        echo "   passes now: $f (remove '$id' from fuzz/known-open.txt if it was fixed)"
      fi
      continue
    fi
    FAILED_REG["$f"]=1
    id="$(basename "$f")"; id="${id%%--*}"
    why="$(grep -m1 -E "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer" "$log" -A1 | tr '\n' ' ' | cut -c1-240)"
    if [[ ",$KNOWN_OPEN," == *",$id,"* ]]; then
      echo "   KNOWN OPEN ($id): $f :: $why"
      known_failures+=("$f")
    else
      echo "   FAIL: $f :: $why (log: $log)"
      failures+=("regression $f")
    fi
  done
done

# --- fuzz ----------------------------------------------------------------------------------
declare -A RESULT=()
for t in "${TARGETS[@]}"; do
  corpus="$WORK/corpus/$t"
  artifacts="$FUZZ_DIR/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  [[ -d "seeds/$t" ]] && cp seeds/"$t"/* "$corpus"/ 2>/dev/null
  # Regressions join the corpus unless they still fail (they were reported above).
  if [[ -d "regressions/$t" ]]; then
    for f in regressions/"$t"/*; do
      [[ -f "$f" && -z "${FAILED_REG[$f]:-}" ]] && cp "$f" "$corpus/"
    done
  fi
  flags=(-max_total_time="$SECS" -rss_limit_mb=2048 -max_len=65536 -timeout=10
         -print_final_stats=1 -artifact_prefix="$artifacts/")
  [[ -f "dicts/$t.dict" ]] && flags+=(-dict="dicts/$t.dict")
  [[ -n "${JOBS:-}" ]] && flags+=(-fork="$JOBS")
  # shellcheck disable=SC2206
  [[ -n "${FUZZ_ARGS:-}" ]] && flags+=($FUZZ_ARGS)
  before="$(ls "$artifacts" | sort)"
  log="$WORK/fuzz-$t.log"
  echo "== fuzz $t for ${SECS}s"
  CALLHOOK_FUZZ_KNOWN_OPEN="$KNOWN_OPEN" "$BIN/$t" "${flags[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  execs="$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')"
  eps="$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')"
  cov="$(grep -E '^#[0-9]+.*(cov|ft):' "$log" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')"
  new="$(comm -13 <(echo "$before") <(ls "$artifacts" | sort) | grep -v '^$')"
  if [[ $rc -ne 0 || -n "$new" ]]; then
    echo "   CRASH in $t (exit $rc); log: $log"
    grep -m1 -E "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY" "$log" -A2 | sed 's/^/     /'
    for a in $new; do echo "   artifact: $artifacts/$a"; done
    echo "   reproduce: $BIN/$t <artifact>   (or: cd fuzz && cargo +nightly fuzz run ${FLAGS[*]} $t <artifact>)"
    echo "   minimize:  $BIN/$t -minimize_crash=1 -max_total_time=60 -exact_artifact_path=<out> <artifact>"
    failures+=("$t")
    RESULT[$t]="CRASH execs=${execs:-?} exec/s=${eps:-?}"
    [[ "${KEEP_CORPUS:-0}" == 1 ]] || cp "$log" "$artifacts/last-crash.log"
  else
    RESULT[$t]="ok execs=${execs:-?} exec/s=${eps:-?} ${cov}"
  fi
  echo "   ${RESULT[$t]}"
done

echo
echo "== summary (${SECS}s per target, sanitizer $SANITIZER; $(( $(date +%s) - T_START ))s in all)"
for t in "${TARGETS[@]}"; do printf '   %-16s %s\n' "$t" "${RESULT[$t]:-not run}"; done
if (( ${#known_failures[@]} )); then
  echo "   known open findings still reproduce: ${#known_failures[@]} (see fuzz/known-open.txt)"
fi
if (( ${#failures[@]} )); then
  echo "FAILED: ${failures[*]}"
  exit 1
fi
if [[ "${STRICT:-0}" == 1 ]] && (( ${#known_failures[@]} )); then
  echo "FAILED (STRICT=1): known open findings reproduce"
  exit 1
fi
echo "OK"
