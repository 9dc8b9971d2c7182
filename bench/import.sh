#!/usr/bin/env bash
# Import of a 1 GiB rootfs tar: hashing + storing throughput (target ≥ 500 MB/s on 2 cores).
# Peers in the same run: `sha256sum` of the file and `cp` of it (the hashing and the writing floor).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
berth="$PWD/target/release/berth"
dir=${BENCH_DIR:-/var/tmp/berth-bench}/import
mkdir -p "$dir"
tarf="$dir/rootfs-1g.tar"
if [ ! -f "$tarf" ]; then
  mkdir -p "$dir/src"
  for i in $(seq 1 64); do head -c 16M /dev/urandom > "$dir/src/f$i"; done
  for i in $(seq 1 2000); do head -c 4096 /dev/urandom > "$dir/src/s$i"; done
  tar -C "$dir/src" -cf "$tarf" .
  rm -rf "$dir/src"
fi
size=$(stat -c %s "$tarf")
echo "input: $tarf ($((size / 1048576)) MiB)"
hyperfine --warmup 1 --runs 5 --export-json "$dir/result.json" \
  --prepare "rm -rf $dir/root $dir/copy; sync" \
  "$berth --root $dir/root import $tarf bench:1g" \
  "sha256sum $tarf" \
  "cp $tarf $dir/copy && sync -f $dir/copy"
python3 - "$dir/result.json" "$size" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); size = int(sys.argv[2])
for res in r["results"]:
    med = sorted(res["times"])[len(res["times"]) // 2]
    print(f'{res["command"].split()[0].split("/")[-1]:>10}: median {med:.3f}s  min {min(res["times"]):.3f}s  max {max(res["times"]):.3f}s  -> {size / med / 1e6:.0f} MB/s')
PY
