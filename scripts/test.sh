#!/usr/bin/env bash
# Skiff's whole test suite: formatting, lints, every unit and end-to-end test, and the ARM
# cross build with the api tests under qemu. Run as root on Debian 12; it installs the
# Debian packages it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "error: the test suite runs as root (it installs packages and runs privileged end-to-end tests)" >&2
  exit 1
fi
scripts/deps.sh
if ! command -v cargo >/dev/null; then
  # No rustup toolchain: use Debian's (installed by deps.sh).
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
fi

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
echo "== build binaries (end-to-end tests run them)"
cargo build --workspace --bins
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
echo "== ARM64 cross build and api tests under qemu"
scripts/cross-test.sh 2>&1 | tee -a "$log" || status=1
echo "== tests"
# The runtime's leak test runs the 1,000 create/delete cycles the agent promises.
SKIFF_CYCLES=1000 cargo test --workspace --no-fail-fast 2>&1 | tee -a "$log" || status=1

# One closing line for the whole suite (ARM and host runs), counted per test.
passed=$(grep -cE '^test .+ \.\.\. ok' "$log" || true)
failed=$(grep -cE '^test .+ \.\.\. FAILED' "$log" || true)
# A test binary killed or crashed before its summary reports no FAILED line of its own.
unfinished=$(grep -cE "process didn't exit successfully: .*\(signal: " "$log" || true)
echo
if [ "$unfinished" -gt 0 ]; then
  echo "$passed passed, $failed failed, $unfinished test binaries did not finish (see above)"
else
  echo "$passed passed, $failed failed"
fi
exit $status
