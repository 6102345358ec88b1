#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time, starting from the checked-in seed corpus.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     # default 8; FUZZ_RUNS=N adds -runs=N
#   FUZZ_TARGETS="fuzz_config fuzz_device" scripts/fuzz.sh 60
#
# Needs the nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz, which is
# installed into $CARGO_HOME/bin when missing. Each target runs over a copy of
# fuzz/corpus/<target>/ in a temporary directory (the checked-in corpus does not grow), with a
# fixed seed; any crash, panic, leak or timeout fails the script and leaves the reproducer in
# fuzz/artifacts/<target>/. With CI=true a missing nightly toolchain is an error; otherwise
# the script says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-8}"
log() { printf '== fuzz: %s\n' "$*" >&2; }

export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    log "the nightly toolchain is missing (rustup toolchain install nightly); CI=true: failing"
    exit 1
  fi
  log "the nightly toolchain is missing (rustup toolchain install nightly): fuzzing skipped"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "cargo install cargo-fuzz"
  cargo install --quiet --locked cargo-fuzz
fi

# One build for all targets: no sanitizer (the code under test is safe Rust; unsafe is limited
# to syscall modules the targets do not reach); debug assertions and overflow checks come from
# the release profile in fuzz/Cargo.toml.
build=(--sanitizer none)
log "cargo +nightly fuzz build ${build[*]}"
cargo +nightly fuzz build "${build[@]}"

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
extra=()
[ -n "${FUZZ_RUNS:-}" ] && extra+=("-runs=$FUZZ_RUNS")
failed=()
for t in $targets; do
  mkdir -p "$work/$t" "artifacts/$t"
  if [ -d "corpus/$t" ]; then cp -r "corpus/$t/." "$work/$t/"; fi
  log "$t for ${secs}s"
  if cargo +nightly fuzz run "${build[@]}" "$t" "$work/$t" -- \
    -max_total_time="$secs" -seed=1234 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${extra[@]}" 2>"$work/$t.log"; then
    grep -E '^stat::number_of_executed_units|^Done' "$work/$t.log" | sed "s/^/   $t: /" >&2 || true
  else
    tail -n 40 "$work/$t.log" >&2
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  log "FAILED: ${failed[*]} (reproducers in fuzz/artifacts/<target>/)"
  exit 1
fi
log "all targets ran ${secs}s without a crash"
