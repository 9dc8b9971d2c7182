#!/usr/bin/env bash
# Layer unpack: berth's `extract::unpack_layer` (store/examples/unpack.rs) against GNU `tar -xf`
# run as root (which keeps owners and modes), on the same uncompressed ~1 GiB tar of ~50k files.
# Target: berth at >= 0.9x tar's speed (ratio = tar median / berth median).
# The tar is generated once under $BENCH_DIR (default /var/tmp/berth-bench)/unpack.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (tar -xf only keeps owners as root)" >&2; exit 1; }

cargo build --release --quiet -p berth-store --example unpack
target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
unpack="$target_dir/release/examples/unpack"

dir=${BENCH_DIR:-/var/tmp/berth-bench}/unpack
mkdir -p "$dir"
tarf="$dir/layer-1g-50k.tar"
out="$dir/out"

if [ ! -f "$tarf" ]; then
  echo "generating $tarf (once)..." >&2
  rm -rf "$dir/src"
  # A rootfs-like mix: mostly small files, some medium, a few large; ~2.6k directories a few
  # levels deep; symlinks and hard links; a few non-root owners and setuid/odd modes.
  python3 - "$dir/src" <<'PY'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(42)
pool = os.urandom(64 << 20)  # incompressible-ish data, sliced at random offsets
def data(n):
    out = bytearray()
    while n > 0:
        k = min(n, len(pool))
        o = rnd.randrange(0, len(pool) - k + 1)
        out += pool[o:o + k]
        n -= k
    return bytes(out)
dirs = []
for a in range(20):
    for b in range(10):
        for c in range(12):
            d = os.path.join(root, f"usr{a}", f"lib{b}", f"pkg{c}")
            dirs.append(d)
for d in dirs:
    os.makedirs(d, exist_ok=True)
# (count, min size, max size)
classes = [(40000, 0, 4 << 10), (8000, 4 << 10, 64 << 10), (1800, 64 << 10, 448 << 10), (100, 1 << 20, 4 << 20)]
files = []
for count, lo, hi in classes:
    for _ in range(count):
        files.append(rnd.randint(lo, hi))
rnd.shuffle(files)
paths = []
for i, size in enumerate(files):
    p = os.path.join(dirs[i % len(dirs)], f"f{i}")
    with open(p, "wb") as f:
        f.write(data(size))
    paths.append(p)
for i in range(0, len(paths), 97):
    os.chown(paths[i], 1000, 1000)
for i in range(0, len(paths), 501):
    os.chmod(paths[i], 0o4755)
for i in range(500):
    os.symlink(os.path.relpath(paths[i * 7], dirs[i % len(dirs)]), os.path.join(dirs[i % len(dirs)], f"s{i}"))
for i in range(100):
    os.link(paths[i * 13 + 1], os.path.join(dirs[(i + 5) % len(dirs)], f"h{i}"))
total = sum(files)
print(f"{len(files)} files, {len(dirs)} leaf dirs, {total / (1 << 30):.2f} GiB", file=sys.stderr)
PY
  tar -C "$dir/src" --numeric-owner -cf "$tarf.tmp" .
  mv "$tarf.tmp" "$tarf"
  rm -rf "$dir/src"
fi

size=$(stat -c %s "$tarf")
entries=$(tar -tf "$tarf" | wc -l)
echo "input: $tarf ($((size / 1048576)) MiB, $entries entries)"

# Outputs go here instead of being deleted between runs (see the prepare step below).
trash="$dir/trash"
rm -rf "$trash" "$out" "$dir/check-tar" "$dir/check-berth"
mkdir -p "$trash"

# Same result? (owners, modes, sizes, mtimes, link targets, contents)
mkdir -p "$dir/check-tar" && tar -xf "$tarf" -C "$dir/check-tar"
"$unpack" "$tarf" "$dir/check-berth"
listing() { (cd "$1" && find . -printf '%p %y %m %U:%G %s %T@ %n %l\n' | sort); }
if diff <(listing "$dir/check-tar") <(listing "$dir/check-berth") >/dev/null &&
  diff -r --no-dereference "$dir/check-tar" "$dir/check-berth" >/dev/null; then
  echo "trees identical (metadata and contents)"
else
  echo "WARNING: trees differ:" >&2
  diff <(listing "$dir/check-tar") <(listing "$dir/check-berth") | head -20 >&2 || true
fi
mv "$dir/check-tar" "$dir/check-berth" "$trash/"

# The prepare step takes the previous output out of the way and flushes its writes (so one run's
# writeback does not land in the next one's time); no cache is dropped, the tar stays warm.
# By default the previous output is moved into $dir/trash and deleted after the last run:
# on an ext4 without a journal (this VM's root fs) the inode allocator skips inodes freed in the
# last 60-360 s (`recently_deleted`), so `rm -rf` of 50k files right before a run makes both tools
# spend most of their time scanning inode bitmaps (runs swing between 16 and 37 s).
# BENCH_PREPARE=rm removes it in the prepare step instead.
if [ "${BENCH_PREPARE:-move}" = rm ]; then
  prepare="rm -rf $out && mkdir -p $out && sync"
else
  prepare="if [ -d $out ]; then mv $out $trash/\$(date +%s%N); fi && mkdir -p $out && sync"
fi
echo "prepare: $prepare"
hyperfine --warmup 1 --runs 5 --export-json "$dir/result.json" \
  --prepare "$prepare" \
  -n "tar -xf" "tar -xf $tarf -C $out" \
  -n "berth unpack" "$unpack $tarf $out"
rm -rf "$out" "$trash"

python3 - "$dir/result.json" "$size" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1])); size = int(sys.argv[2])
med = {}
for res in r["results"]:
    t = res["times"]
    m = statistics.median(t)
    med[res["command"]] = m
    print(f'{res["command"]:>12}: median {m:.3f}s  min {min(t):.3f}s  max {max(t):.3f}s  ({size / m / 1e6:.0f} MB/s)')
ratio = med["tar -xf"] / med["berth unpack"]
print(f"berth speed relative to tar -xf: {ratio:.2f}x (target >= 0.90x)")
PY
