#!/usr/bin/env bash
# Starts a Skiff cluster on this machine: builds the release binaries, installs them to
# /usr/local/bin and runs the hub in the foreground (Ctrl-C stops it cleanly).
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir=${SKIFF_HUB_DATA_DIR:-/var/lib/skiff-hub}
listen=${SKIFF_HUB_LISTEN:-127.0.0.1:6443}

scripts/deps.sh --build-only
if ! command -v cargo >/dev/null; then
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
fi
cargo build --release -p skiff-hub --bins
install -m 0755 target/release/skiff-hub target/release/skiff /usr/local/bin/

cat <<MSG

Skiff hub starting on http://$listen (data in $data_dir).
In another shell:
  export SKIFF_SERVER=http://$listen SKIFF_TOKEN=\$(cat $data_dir/admin.token)
  skiff get namespaces

MSG
exec /usr/local/bin/skiff-hub serve --data-dir "$data_dir" --listen "$listen"
