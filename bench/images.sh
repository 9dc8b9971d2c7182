#!/usr/bin/env bash
# `berth images` with 1,000 tagged images: median wall time (target ≤ 20 ms).
# Peer in the same run: `skopeo list-tags`-free baseline is not comparable, so we report
# `cat index.json` (the I/O floor) beside it as the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
berth="$PWD/target/release/berth"
dir=${BENCH_DIR:-/var/tmp/berth-bench}/images
root="$dir/root"
if [ ! -f "$dir/.done" ]; then
  rm -rf "$dir"; mkdir -p "$dir/src"
  echo hello > "$dir/src/hello.txt"
  tar -C "$dir/src" -cf "$dir/small.tar" .
  for i in $(seq 1 1000); do
    "$berth" --root "$root" import -c "LABEL n=$i" "$dir/small.tar" "bench/img$i:v1" >/dev/null
  done
  touch "$dir/.done"
fi
echo "images: $("$berth" --root "$root" images -q | wc -l), tags: $("$berth" --root "$root" images | tail -n +2 | wc -l)"
hyperfine -N --warmup 5 --runs 50 --export-json "$dir/result.json" \
  "$berth --root $root images" \
  "$berth --root $root images --format json" \
  "cat $root/images/index.json"
