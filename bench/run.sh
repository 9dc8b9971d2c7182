#!/usr/bin/env bash
# `berth run --rm --network none IMG true` against `crun run` of an equivalent unpacked bundle and
# `podman run --rm --network none` of the same image (issue 4: ≤ 1.5× crun, ≤ 0.3× podman), plus
# `ps -a` with 100 containers (≤ 30 ms). Medians from hyperfine, same run, same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
berth="$PWD/target/release/berth"
dir=${BENCH_DIR:-/var/tmp/berth-bench}/run
umount "$dir/podman/overlay" 2>/dev/null || true   # podman leaves its storage bind-mounted
rm -rf "$dir"; mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc"
cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
for a in sh true echo sleep; do ln -s busybox "$dir/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
echo 'root:x:0:' > "$dir/rootfs/etc/group"
tar -C "$dir/rootfs" -cf "$dir/bb.tar" .
root="$dir/root"
"$berth" --root "$root" import "$dir/bb.tar" bench/bb:1 >/dev/null

# crun: the same rootfs as a plain bundle with crun's default spec (own net namespace).
mkdir -p "$dir/bundle"
cp -a "$dir/rootfs" "$dir/bundle/rootfs"
(cd "$dir/bundle" && crun spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)
# crun refuses this VM's hybrid cgroup layout; berth hides the cgroup2 mount from it the same way.
crun_cmd="crun --root $dir/crun-state run --bundle $dir/bundle b1"
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  crun_cmd="unshare --mount --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec $crun_cmd'"
fi

podman_cmd=""
if command -v podman >/dev/null; then
  "$berth" --root "$root" save -o "$dir/bb-save.tar" bench/bb:1
  podman --root "$dir/podman" --runroot "$dir/podman-run" load -i "$dir/bb-save.tar" >/dev/null 2>&1 || true
  podman_cmd="podman --root $dir/podman --runroot $dir/podman-run run --rm --network none bench/bb:1 true"
fi

args=(-N --warmup 5 --runs 40 --export-json "$dir/result.json"
  -n "berth run" "$berth --root $root run --rm --network none bench/bb:1 true"
  -n "crun run" "$crun_cmd")
if [ -n "$podman_cmd" ] && $podman_cmd >/dev/null 2>&1; then
  args+=(-n "podman run" "$podman_cmd")
fi
hyperfine "${args[@]}" || hyperfine "${args[@]/-N/}"

# ps -a with 100 containers.
for i in $(seq 1 100); do "$berth" --root "$root" create --network none bench/bb:1 true >/dev/null; done
hyperfine -N --warmup 5 --runs 50 "$berth --root $root ps -a"
"$berth" --root "$root" rm $("$berth" --root "$root" ps -aq) >/dev/null
umount "$dir/podman/overlay" 2>/dev/null || true
