#!/usr/bin/env bash
# Layer export of a 1 GiB diff (issue 6's Numbers): a RUN writes 1 GiB of mixed data (768 MiB of
# text, 256 MiB of random bytes); `berth build --output type=oci` of the cached image (so the time
# is the export: compressing the layer, hashing it, writing the archive) against single-threaded
# `gzip -6` of the same layer tar, and the zstd export beside them. Medians from hyperfine.
# BERTH=path/to/berth skips the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BERTH:-}" ]; then
  cargo build --release --quiet -p berth
  BERTH="$PWD/target/release/berth"
fi
dir=${BENCH_DIR:-/var/tmp/berth-bench}/export
RUNS=${RUNS:-3}
rm -rf "$dir"; mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc" "$dir/ctx"
cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
for a in sh seq cat head rm; do ln -s busybox "$dir/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
tar -C "$dir/rootfs" -cf "$dir/bb.tar" .
root="$dir/root"
"$BERTH" --root "$root" import "$dir/bb.tar" bench/bb:1 >/dev/null
cat > "$dir/ctx/Dockerfile" <<'EOF'
FROM bench/bb:1
RUN seq 1 1000000 > /t1 && for i in 1 2 3 4 5 6 7 8; do cat /t1 /t1 /t1 /t1 /t1 /t1 /t1 /t1; done > /t8 \
 && for i in $(seq 1 13); do cat /t8; done | head -c 805306368 > /text && rm /t1 /t8 \
 && head -c 268435456 /dev/urandom > /random
EOF
"$BERTH" --root "$root" build -q -t bench/export:1 "$dir/ctx" >/dev/null
# The layer as stored (plain tar), for gzip.
"$BERTH" --root "$root" build -q --compression uncompressed \
  -o "type=oci,dest=$dir/plain.tar" "$dir/ctx" >/dev/null
mkdir -p "$dir/plain" && tar -C "$dir/plain" -xf "$dir/plain.tar"
layer=$(ls -S "$dir"/plain/blobs/sha256/* | head -1)
size=$(stat -c %s "$layer")
echo "layer: $size bytes"

hyperfine --runs "$RUNS" --export-json "$dir/export.json" \
  -n "berth --output type=oci (gzip)" "$BERTH --root $root build -q -o type=oci,dest=$dir/gz.tar $dir/ctx" \
  -n "gzip -6 (1 thread)" "gzip -6 -c $layer > $dir/layer.gz" \
  -n "berth --output type=oci (zstd)" "$BERTH --root $root build -q --compression zstd -o type=oci,dest=$dir/zst.tar $dir/ctx"

python3 - "$dir/export.json" "$size" "$dir" <<'PY'
import json, os, sys
runs = json.load(open(sys.argv[1]))["results"]
size = int(sys.argv[2]); d = sys.argv[3]
mb = size / 1e6
med = {r["command"]: r["median"] for r in runs}
for r in runs:
    print(f'{r["command"]:34} median {r["median"]:.2f} s ({min(r["times"]):.2f}–{max(r["times"]):.2f})  {mb / r["median"]:.0f} MB/s')
b, g = med["berth --output type=oci (gzip)"], med["gzip -6 (1 thread)"]
print(f"gzip export throughput vs gzip -6: {g / b:.2f}x")
for f in ["gz.tar", "layer.gz", "zst.tar"]:
    print(f"{f}: {os.path.getsize(os.path.join(d, f)) / 1e6:.0f} MB")
PY
