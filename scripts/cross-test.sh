#!/usr/bin/env bash
# Builds the whole workspace for 64-bit ARM with Debian's cross toolchain and runs the api
# crate's unit tests under qemu-user. Linker, runner and flags: .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${SKIFF_CROSS_TARGET:-aarch64-unknown-linux-gnu}
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
# The agent links libseccomp (libcontainer's seccomp filters) statically on ARM, from
# Debian's libseccomp-dev:<arch> (scripts/deps.sh installs the arm64 one).
case "$target" in
  aarch64-*) export LIBSECCOMP_LIB_PATH=/usr/lib/aarch64-linux-gnu ;;
  armv7-*) export LIBSECCOMP_LIB_PATH=/usr/lib/arm-linux-gnueabihf ;;
esac
export LIBSECCOMP_LINK_TYPE=static
cargo=/usr/bin/cargo

echo "== cross build ($target)"
"$cargo" build --workspace --bins --target "$target" --target-dir target/cross
echo "== api unit tests under qemu ($target)"
"$cargo" test -p skiff-api --lib --tests --target "$target" --target-dir target/cross
for bin in skiff-hub skiff skiff-agent; do
  file "target/cross/$target/debug/$bin" 2>/dev/null | grep -q "ARM aarch64\|ARM," ||
    { echo "error: target/cross/$target/debug/$bin is not an ARM binary" >&2; exit 1; }
done
echo "cross build and ARM tests passed"
