#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian machine as root: build berth, import a busybox base
# image from Debian's busybox-static, list, inspect, save and load it, and verify the store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
berth="$PWD/target/release/berth"
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
root="$work/root"
trap 'rm -rf "$work"' EXIT

# A busybox root filesystem.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh ls cat echo env id ps sleep; do ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

set -x
"$berth" --root "$root" import -c 'CMD ["/bin/sh"]' "$work/busybox.tar" busybox:demo
"$berth" --root "$root" images
"$berth" --root "$root" inspect --format '{{.Id}} {{json .Config.Cmd}} {{json .RootFS.Layers}}' busybox:demo
"$berth" --root "$root" history busybox:demo
skopeo inspect "oci:$root/images:docker.io/library/busybox:demo" | head -5
"$berth" --root "$root" save -o "$work/busybox-save.tar" busybox:demo
"$berth" --root "$work/root2" load -i "$work/busybox-save.tar"
"$berth" --root "$work/root2" images
"$berth" --root "$work/root2" system check
"$berth" --root "$root" info
