#!/usr/bin/env bash
# Installs the Debian packages Skiff's build, tests and benchmarks need (idempotent).
# Run as root on Debian 12.
set -euo pipefail

# `--build-only`: just what building and running Skiff needs (the quick start); without it,
# everything the tests and benchmarks need too.
packages=(
  # host build (Debian's Rust toolchain is the fallback when no rustup toolchain is installed;
  # make builds the hub's jemalloc)
  gcc make pkg-config rustc-web cargo-web
  # the agent's container runtime (libcontainer's seccomp support links libseccomp)
  libseccomp-dev
  # the quick start's busybox image, built offline (scripts/busybox-image.sh)
  umoci busybox-static python3
  # the CA bundle the agent trusts for https registries
  ca-certificates
)
if [ "${1:-}" != "--build-only" ]; then
  packages+=(
  # ARM cross builds, run under qemu-user
  libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static file
  # libseccomp.a for the statically linked ARM agent
  libseccomp-dev:arm64
  # benchmark peers and test tooling
  sqlite3 wrk procps iproute2 mosquitto skopeo runc
  # certificates for the https registry and probe tests
  openssl
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
