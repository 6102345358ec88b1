#!/usr/bin/env bash
# The whole test suite, with every prerequisite installed first.
#
#   ./scripts/test.sh            # as root: installs apt packages, then fmt, clippy, all tests
#
# Tests that need root, network namespaces or an external peer (wg, wireguard-go, ...) FAIL
# rather than skip when CI=true and the prerequisite is missing. .ci/run calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

# ---- prerequisites -------------------------------------------------------------------------
# command -> Debian package
declare -A apt_for=(
  [wg]=wireguard-tools
  [wireguard-go]=wireguard-go
  [ip]=iproute2
  [ethtool]=ethtool
  [ping]=iputils-ping
  [cc]=gcc # boringtun-cli's build (ring) compiles C
)
missing=()
for cmd in "${!apt_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${apt_for[$cmd]}")
done
if ((${#missing[@]})); then
  log "installing apt packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# boringtun-cli, the second interop peer: not packaged, so built once into $CARGO_HOME/bin.
# Pinned: the tests rely on its `-f --disable-drop-privileges` flags.
BORINGTUN_VERSION=0.7.1
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$CARGO_HOME/bin:$PATH"
if ! command -v boringtun-cli >/dev/null 2>&1; then
  log "cargo install boringtun-cli $BORINGTUN_VERSION"
  cargo install --quiet --locked boringtun-cli --version "$BORINGTUN_VERSION"
fi

# ---- checks ----------------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo build --release -p uring-tunnel (the e2e and interop tests run this binary)"
cargo build --quiet --release --locked -p uring-tunnel
log "cargo test"
cargo test --workspace --locked
log "fuzz: every target for ${FUZZ_SECONDS:-8}s from the seed corpus (scripts/fuzz.sh)"
./scripts/fuzz.sh "${FUZZ_SECONDS:-8}"
