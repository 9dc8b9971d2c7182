#!/usr/bin/env bash
# `berth logs` throughput: the json-file reader over a 1 GiB log, to /dev/null (target ≥ 500 MB/s
# on 2 cores), and the writer that produced it. Peers in the same run: `cat` of the file (the I/O
# floor) and serde_json per line (what a straightforward reader does).
# Usage: bench/logs.sh [LOG_MIB]   (default 1024: the size of the log file, not of the output)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p berth-runner --example logs_bench
bin="$PWD/target/release/examples/logs_bench"
dir=${BENCH_DIR:-/var/tmp/berth-bench}/logs
mkdir -p "$dir"
log="$dir/c-json.log"
want_mib=${1:-1024}
# The synthetic output (short, escape-heavy lines) roughly doubles in the log: write half.
out_mib=$((want_mib / 2))

hyperfine -N --warmup 1 --runs 5 --export-json "$dir/write.json" \
  "$bin write $dir/w-json.log $out_mib"
# The file the readers measure: the writer's output, kept.
"$bin" write "$log" "$out_mib"
rm -f "$dir/w-json.log"
size=$(stat -c %s "$log")
echo "input: $log ($((size / 1048576)) MiB, $(wc -l < "$log") entries)"

hyperfine -N --warmup 1 --runs 5 --export-json "$dir/read.json" \
  "$bin read $log" \
  "$bin read $log --timestamps" \
  "$bin read $log --since 2000-01-01T00:00:00Z" \
  "$bin read $log --tail 1000" \
  "$bin read-serde $log" \
  "cat $log"

python3 - "$dir/write.json" "$dir/read.json" "$size" "$out_mib" <<'PY'
import json, sys
size = int(sys.argv[3]); out = int(sys.argv[4]) << 20
def med(ts): return sorted(ts)[len(ts) // 2]
w = json.load(open(sys.argv[1]))["results"][0]
m = med(w["times"])
cpu = w["user"] + w["system"]
print(f'writer: median {m:.3f}s  min {min(w["times"]):.3f}s  max {max(w["times"]):.3f}s  '
      f'-> {out / m / 1e6:.0f} MB/s of output, {size / m / 1e6:.0f} MB/s of log;  cpu {cpu:.3f}s')
print(f'load average during the run: {open("/proc/loadavg").read().split()[0:3]}')
r = json.load(open(sys.argv[2]))["results"]
base = med(r[0]["times"])
for res in r:
    m = med(res["times"])
    name = res["command"].split("/")[-1]
    cpu = res["user"] + res["system"]
    print(f'{name[:60]:>60}: median {m:.3f}s  min {min(res["times"]):.3f}s  max {max(res["times"]):.3f}s'
          f'  -> {size / m / 1e6:.0f} MB/s of log  ({m / base:.2f}x berth read time);'
          f'  cpu {cpu:.3f}s -> {size / cpu / 1e6:.0f} MB/s per core')
PY
