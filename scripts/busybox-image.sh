#!/usr/bin/env bash
# Builds a busybox image (OCI image layout, as a tar) from Debian's busybox-static, with no
# network: `scripts/busybox-image.sh busybox.tar [NAME:TAG]`, then `skiff image import busybox.tar`.
set -euo pipefail
out=${1:?usage: busybox-image.sh OUT.tar [NAME:TAG]}
ref=${2:-busybox:1}
tag=${ref##*:}
for tool in umoci busybox; do
  command -v "$tool" >/dev/null || { echo "busybox-image.sh: $tool is missing (apt-get install umoci busybox-static)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/layout"
umoci new --image "$work/layout:$tag"
umoci unpack --rootless --image "$work/layout:$tag" "$work/bundle" >/dev/null
rootfs=$work/bundle/rootfs
mkdir -p "$rootfs"/{bin,etc,tmp,proc,sys,dev,root,var}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
umoci repack --image "$work/layout:$tag" "$work/bundle" >/dev/null
umoci config --image "$work/layout:$tag" --config.cmd=/bin/sh \
  --config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --architecture="$(dpkg --print-architecture)" --os=linux
umoci gc --layout "$work/layout"
# The name the hub tags it with on import.
python3 - "$work/layout/index.json" "$ref" <<'PY'
import json, sys
path, ref = sys.argv[1], sys.argv[2]
index = json.load(open(path))
for m in index["manifests"]:
    m.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = ref
json.dump(index, open(path, "w"))
PY
tar -C "$work/layout" -cf "$out" .
echo "wrote $out ($ref)"
