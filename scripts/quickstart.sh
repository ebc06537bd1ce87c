#!/usr/bin/env bash
# Starts a Skiff cluster on this machine: the hub (with its embedded MQTT broker) and one
# local agent running real containers. Builds the release binaries, installs them to
# /usr/local/bin, imports a busybox image built from Debian's busybox-static, joins this
# host as a node and stays in the foreground; Ctrl-C stops both cleanly (pods keep their
# state in the agent's state dir and come back on the next start).
# Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir=${SKIFF_HUB_DATA_DIR:-/var/lib/skiff-hub}
state_dir=${SKIFF_AGENT_STATE_DIR:-/var/lib/skiff-agent}
listen=${SKIFF_HUB_LISTEN:-127.0.0.1:6443}
node=${SKIFF_NODE_NAME:-$(hostname -s)}
server=http://$listen

scripts/deps.sh --build-only
if ! command -v cargo >/dev/null; then
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
fi
cargo build --release -p skiff-hub -p skiff-agent --bins
install -m 0755 target/release/skiff-hub target/release/skiff target/release/skiff-agent /usr/local/bin/

mkdir -p "$data_dir"
/usr/local/bin/skiff-hub serve --data-dir "$data_dir" --listen "$listen" >>"$data_dir/hub.log" 2>&1 &
hub=$!
agent=
stop() {
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  kill -TERM "$hub" 2>/dev/null && wait "$hub" 2>/dev/null
  exit 0
}
trap stop INT TERM

export SKIFF_SERVER=$server SKIFF_TOKEN_FILE=$data_dir/admin.token
for _ in $(seq 100); do
  skiff get namespaces >/dev/null 2>&1 && break
  kill -0 "$hub" 2>/dev/null || { echo "the hub did not start; see $data_dir/hub.log" >&2; tail -20 "$data_dir/hub.log" >&2; exit 1; }
  sleep 0.1
done

if ! skiff image ls 2>/dev/null | grep -q '^busybox '; then
  image=$(mktemp --suffix=.tar)
  scripts/busybox-image.sh "$image" busybox:1 >/dev/null
  skiff image import "$image" --tag busybox:1
  rm -f "$image"
fi

join=()
if [ ! -e "$state_dir/credentials.json" ]; then
  # The token goes straight to the agent; its banner (meant for a person) only if it fails.
  token=$(skiff-hub token create --data-dir "$data_dir" --server "$server" --ttl 10m 2>"$data_dir/token.err") \
    || { cat "$data_dir/token.err" >&2; exit 1; }
  rm -f "$data_dir/token.err"
  join=(--token "$token")
fi
/usr/local/bin/skiff-agent --hub "$server" --node-name "$node" --state-dir "$state_dir" "${join[@]}" \
  >>"$state_dir.log" 2>&1 &
agent=$!

cat <<MSG

Skiff is running: hub on $server (data in $data_dir, log $data_dir/hub.log),
node "$node" (state in $state_dir, log $state_dir.log).
In another shell:
  export SKIFF_SERVER=$server SKIFF_TOKEN_FILE=$data_dir/admin.token
  skiff get nodes
  skiff run hello --image busybox:1 -- sh -c 'echo hello from Skiff; sleep 3600'
  skiff logs hello

Ctrl-C stops the hub and the agent.
MSG
wait "$hub"
