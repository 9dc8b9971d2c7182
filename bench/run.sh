#!/usr/bin/env bash
# `berth run --rm --network none IMG true` against `crun run` of an equivalent unpacked bundle and
# `podman run --rm --network none` of the same image (issue 4: ≤ 1.5× crun, ≤ 0.3× podman), plus
# `ps -a` with 100 containers (≤ 30 ms). Medians from hyperfine, same run, same machine.
#
# BERTH=path uses that binary instead of building one (e.g. an older build, for before/after);
# RUNS=n sets the number of timed runs (default 40).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BERTH:-}" ]; then
  cargo build --release --quiet -p berth
  BERTH="${CARGO_TARGET_DIR:-$PWD/target}/release/berth"
fi
berth=$BERTH
runs=${RUNS:-40}
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

# crun refuses this VM's hybrid cgroup layout ("cgroups in hybrid mode not supported"); the peers
# run in a private mount namespace without the cgroup2 mount, as berth's --runtime does.
hide_v2=""
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  hide_v2="umount -l /sys/fs/cgroup/unified;"
fi

# crun: the same rootfs as a plain bundle with crun's default spec (own net namespace).
mkdir -p "$dir/bundle"
cp -a "$dir/rootfs" "$dir/bundle/rootfs"
(cd "$dir/bundle" && crun spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"true"/' config.json)
crun_cmd="unshare --mount --propagation private sh -c '$hide_v2 exec crun --root $dir/crun-state run --bundle $dir/bundle b1'"

# podman: private storage and a private containers.conf. Its default ulimits ask for more than
# this VM's hard limits allow root here (no CAP_SYS_RESOURCE: RLIMIT_NOFILE 20000), so crun fails
# in setrlimit; the private config asks for limits within them.
podman_cmd=""
if command -v podman >/dev/null; then
  mkdir -p "$dir/podman-conf"
  printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' \
    > "$dir/podman-conf/containers.conf"
  export CONTAINERS_CONF="$dir/podman-conf/containers.conf"
  "$berth" --root "$root" save -o "$dir/bb-save.tar" bench/bb:1
  podman --root "$dir/podman" --runroot "$dir/podman-run" load -i "$dir/bb-save.tar" >/dev/null 2>&1 || true
  podman_cmd="unshare --mount --propagation private sh -c '$hide_v2 exec podman --root $dir/podman --runroot $dir/podman-run run --rm --network none bench/bb:1 true'"
fi

args=(-N --warmup 5 --runs "$runs" --export-json "$dir/result.json"
  -n "berth run" "$berth --root $root run --rm --network none bench/bb:1 true"
  -n "crun run" "$crun_cmd")
if [ -n "$podman_cmd" ] && sh -c "$podman_cmd" >/dev/null 2>&1; then
  args+=(-n "podman run" "$podman_cmd")
else
  echo "podman: not measured (its run failed here)" >&2
fi
# The VM's 2 cores are shared: the load around the run says how much the figures carry.
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine "${args[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/result.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
med = {k: v["median"] * 1000 for k, v in r.items()}
for k, v in r.items():
    print(f"{k:12} median {med[k]:7.1f} ms  min {v['min']*1000:6.1f}  max {v['max']*1000:6.1f}")
b = med["berth run"]
print(f"berth/crun   {b / med['crun run']:.2f}  (target <= 1.5)")
if "podman run" in med:
    print(f"berth/podman {b / med['podman run']:.2f}  (target <= 0.3)")
EOF

# ps -a with 100 containers.
for i in $(seq 1 100); do "$berth" --root "$root" create --network none bench/bb:1 true >/dev/null; done
hyperfine -N --warmup 5 --runs 50 "$berth --root $root ps -a"
"$berth" --root "$root" rm $("$berth" --root "$root" ps -aq) >/dev/null
umount "$dir/podman/overlay" 2>/dev/null || true
