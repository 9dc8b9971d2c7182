#!/usr/bin/env bash
# Gzip layer decompression (+ diff ID hashing, as the store does when unpacking) against zlib-ng
# (python zlib-ng's gzip_ng CLI, decompress only) and GNU gzip, on the same ~1 GiB layer.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import zlib_ng' 2>/dev/null || pip install -q zlib-ng
cargo build --release --quiet -p berth-store --example gunzip
dir=${BENCH_DIR:-/var/tmp/berth-bench}/gunzip
mkdir -p "$dir"
if [ ! -f "$dir/layer.tar.gz" ]; then
  mkdir -p "$dir/src"
  set +o pipefail  # `head` closing the pipe early is expected here
  # Compressible content, like real layers: text and binaries.
  for i in $(seq 1 40); do cat /usr/bin/* 2>/dev/null | head -c 16M > "$dir/src/bin$i"; done
  for i in $(seq 1 20); do find / -xdev -name '*.h' 2>/dev/null | head -2000 | xargs cat 2>/dev/null | head -c 16M > "$dir/src/txt$i"; done
  tar -C "$dir/src" -cf - . | gzip -6 > "$dir/layer.tar.gz"
  rm -rf "$dir/src"
  set -o pipefail
fi
ls -la "$dir/layer.tar.gz"
hyperfine -N --warmup 1 --runs 5 --export-json "$dir/result.json" \
  "target/release/examples/gunzip $dir/layer.tar.gz" \
  "env NO_HASH=1 target/release/examples/gunzip $dir/layer.tar.gz" \
  "python3 -m zlib_ng.gzip_ng -dc $dir/layer.tar.gz" \
  "gzip -dc $dir/layer.tar.gz"
