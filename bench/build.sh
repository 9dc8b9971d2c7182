#!/usr/bin/env bash
# `berth build` against `buildah build` (issue 6's Numbers): the small busybox Dockerfile (ENV,
# WORKDIR, COPY, three RUN steps writing 2,000 files and a 20 MB file), the same with a 200 MB /
# 5,000-file context, and a two-stage build — each cold (no cache) and fully cached — plus a
# rebuild after changing one context file. Medians from hyperfine, same run, same machine.
# BERTH=path/to/berth skips the release build (e.g. to measure a debug binary).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BERTH:-}" ]; then
  cargo build --release --quiet
  BERTH="$PWD/target/release/berth"
fi
dir=${BENCH_DIR:-/var/tmp/berth-bench}/build
RUNS=${RUNS:-10}
rm -rf "$dir"; mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc"
cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
for a in sh true echo seq mkdir touch head cat; do ln -s busybox "$dir/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
echo 'root:x:0:' > "$dir/rootfs/etc/group"
tar -C "$dir/rootfs" -cf "$dir/bb.tar" .
root="$dir/root"
"$BERTH" --root "$root" import "$dir/bb.tar" bench/bb:1 >/dev/null
"$BERTH" --root "$root" save -o "$dir/bb-save.tar" bench/bb:1

# buildah: its own storage, the base image loaded from berth's save. crun refuses this VM's
# hybrid cgroup layout, so buildah runs in a mount namespace without the cgroup2 mount (as
# bench/run.sh does for crun); the wrapper costs ~2 ms.
bstore="--root $dir/buildah --runroot $dir/buildah-run"
wrap() {
  if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
    echo "unshare --mount --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; ulimit -n 1024; exec $*'"
  else
    echo "$*"
  fi
}
buildah $bstore pull "docker-archive:$dir/bb-save.tar" >/dev/null
buildah $bstore tag "$(buildah $bstore images -q | head -1)" localhost/bench/bb:1

small="$dir/small"; mkdir -p "$small"
head -c 100000 /dev/urandom > "$small/app.bin"
cat > "$small/Dockerfile" <<'EOF'
FROM bench/bb:1
ENV APP=/app
WORKDIR /app
COPY app.bin /app/
RUN mkdir files && for i in $(seq 1 2000); do echo $i > files/f$i; done
RUN head -c 20000000 /dev/zero > big
RUN echo done > /app/status
EOF

large="$dir/large"; mkdir -p "$large/ctx"
cp "$small/Dockerfile" "$small/app.bin" "$large/"
sed -i 's|^COPY app.bin /app/|COPY app.bin /app/\nCOPY ctx /app/ctx/|' "$large/Dockerfile"
for d in $(seq 1 50); do
  mkdir -p "$large/ctx/d$d"
  for f in $(seq 1 100); do head -c 40000 /dev/urandom > "$large/ctx/d$d/f$f"; done
done

two="$dir/two"; mkdir -p "$two"
cp "$small/app.bin" "$two/"
cat > "$two/Dockerfile" <<'EOF'
FROM bench/bb:1 AS build
WORKDIR /src
COPY app.bin .
RUN mkdir out && for i in $(seq 1 500); do echo $i > out/f$i; done
FROM bench/bb:1
COPY --from=build /src/out /app/out
RUN echo ok > /app/status
EOF

for shape in small large two; do
  ctx="$dir/$shape"
  berth_cold="$BERTH --root $root build --no-cache -q -t bench/$shape $ctx"
  berth_cached="$BERTH --root $root build -q -t bench/$shape $ctx"
  buildah_cold=$(wrap buildah $bstore build --no-cache -q --layers -t bench/$shape "$ctx")
  buildah_cached=$(wrap buildah $bstore build -q --layers -t bench/$shape "$ctx")
  $berth_cached >/dev/null; eval "$buildah_cached" >/dev/null
  echo "== $shape: cold"
  hyperfine --runs "$RUNS" --export-json "$dir/$shape-cold.json" \
    -n "berth build (cold)" "$berth_cold" -n "buildah build (cold)" "$buildah_cold"
  echo "== $shape: fully cached"
  hyperfine --warmup 2 --runs "$((RUNS * 3))" --export-json "$dir/$shape-cached.json" \
    -n "berth build (cached)" "$berth_cached" -n "buildah build (cached)" "$buildah_cached"
done

# One context file changed: only the steps from its COPY rerun.
echo "== small: one context file changed"
hyperfine --runs "$RUNS" --export-json "$dir/small-changed.json" \
  --prepare "head -c 100000 /dev/urandom > $small/app.bin" \
  -n "berth build (app.bin changed)" "$BERTH --root $root build -q -t bench/small $small" \
  -n "buildah build (app.bin changed)" "$(wrap buildah $bstore build -q --layers -t bench/small "$small")"
buildah $bstore rmi -a -f >/dev/null 2>&1 || true
