#!/bin/sh
# A cached build on a fresh state root with only --cache-from, against `berth pull` of the same
# final image into a fresh root, from the same `berth registry serve` on loopback (issue 7:
# target <= 2x). The image: a busybox base plus a RUN layer of SIZE_MB (half random, half
# zeros) and a small COPY. Machine A builds it with --cache-to and pushes it; then hyperfine
# times, each run on an empty root, (1) `build --cache-from` (pulls the base, finds every step
# CACHED, fetches the final image's layers) and (2) `pull` of the pushed image.
# Usage: bench/build_cache.sh [SIZE_MB] [RUNS]   (needs hyperfine, busybox, python3, a built berth)
set -eu
SIZE_MB=${1:-64}
RUNS=${2:-5}
BERTH=${BERTH:-$(dirname "$0")/../target/release/berth}
[ -x "$BERTH" ] || BERTH=$(dirname "$0")/../target/debug/berth
BERTH=$(realpath "$BERTH")
T=$(mktemp -d)
REG=
trap '[ -n "$REG" ] && kill $REG 2>/dev/null; rm -rf "$T"' EXIT
python3 - "$T/bb.tar" "$(command -v busybox)" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    for d in ["bin", "tmp", "etc"]:
        i = tarfile.TarInfo(d); i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
    t.add(sys.argv[2], "bin/busybox")
    for a in ["sh", "head", "cat", "dd", "mkdir"]:
        i = tarfile.TarInfo("bin/" + a); i.type = tarfile.SYMTYPE; i.linkname = "busybox"; t.addfile(i)
PY
"$BERTH" --root "$T/reg-root" registry serve --addr 127.0.0.1:0 --storage "$T/reg" >"$T/reg.out" 2>"$T/reg.log" &
REG=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q listening "$T/reg.out" 2>/dev/null && break; sleep 0.3; done
R=$(sed -n 's|listening on http://||p' "$T/reg.out")
A=$T/a
"$BERTH" --root "$A" import "$T/bb.tar" "$R/bench/base:1" >/dev/null
"$BERTH" --root "$A" push -q "$R/bench/base:1" >/dev/null
mkdir -p "$T/ctx"
echo hello >"$T/ctx/msg.txt"
HALF=$((SIZE_MB / 2))
cat >"$T/ctx/Dockerfile" <<DF
FROM $R/bench/base:1
RUN mkdir /data && head -c ${HALF}m /dev/urandom > /data/random && dd if=/dev/zero of=/data/zeros bs=1M count=$HALF 2>/dev/null
COPY msg.txt /msg.txt
CMD ["cat", "/msg.txt"]
DF
"$BERTH" --root "$A" build -q -t "$R/bench/app:1" --cache-to "type=registry,ref=$R/bench/app:cache" "$T/ctx" >/dev/null
"$BERTH" --root "$A" push -q "$R/bench/app:1" >/dev/null
echo "registry $R, final image $(du -sh "$T/reg" | cut -f1) in the registry storage (image + cache + base)"
hyperfine -N --runs "$RUNS" --export-json "$T/h.json" \
    --prepare "rm -rf $T/b" \
    -n "build --cache-from (fresh root)" "$BERTH --root $T/b build -q --cache-from $R/bench/app:cache -t app:1 $T/ctx" \
    -n "pull (fresh root)" "$BERTH --root $T/b pull -q $R/bench/app:1"
python3 - "$T/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
b, p = r[0], r[1]
print(f"build --cache-from: median {b['median']:.3f}s ({b['min']:.3f}-{b['max']:.3f})")
print(f"pull:               median {p['median']:.3f}s ({p['min']:.3f}-{p['max']:.3f})")
print(f"ratio: {b['median'] / p['median']:.2f}x (target <= 2x)")
PY
# The cached build really was all CACHED and gave the same image ID.
rm -rf "$T/b"
"$BERTH" --root "$T/b" build --progress plain --cache-from "$R/bench/app:cache" -t app:1 "$T/ctx" 2>"$T/plain.log" >/dev/null
echo "steps run on the fresh root: $(grep -c ' DONE ' "$T/plain.log" || true); CACHED: $(grep -c ' CACHED$' "$T/plain.log")"
[ "$("$BERTH" --root "$T/b" inspect --format '{{.Id}}' app:1)" = "$("$BERTH" --root "$A" inspect --format '{{.Id}}' "$R/bench/app:1")" ] && echo "same image ID"
