#!/bin/sh
# Push and pull of a one-layer image of SIZE_MB random-ish data (half random, half zeros) to a
# local docker-registry, berth vs skopeo (skopeo copies berth's OCI layout, so both compress
# the same plain layer). Each of RUNS rounds uses a fresh registry, a fresh berth root (no
# remembered compressed digests) and a fresh HOME for skopeo (no blob-info cache), so nothing is
# skipped. Prints seconds per round, then median and min–max for each, and the ratios.
# LAYER_TAR=FILE uses that tar as the layer instead (e.g. one of /usr/lib: real binaries and text
# compress very differently from half-random data, where zlib's level 6 searches in vain).
# BERTH_BASE=BINARY also times that berth's push in the same rounds (a build before a change).
# Usage: bench/pushpull.sh [SIZE_MB] [RUNS]   (needs docker-registry, skopeo, python3, bc, a built berth)
set -eu
SIZE_MB=${1:-256}
RUNS=${2:-5}
BERTH=${BERTH:-$(dirname "$0")/../target/release/berth}
[ -x "$BERTH" ] || BERTH=$(dirname "$0")/../target/debug/berth
T=$(mktemp -d)
REG=
trap '[ -n "$REG" ] && kill $REG 2>/dev/null; rm -rf "$T"' EXIT
if [ -n "${LAYER_TAR:-}" ]; then
    ln -s "$(realpath "$LAYER_TAR")" "$T/l.tar"
    SIZE_MB=$(( $(stat -c %s "$LAYER_TAR") >> 20 ))
else
python3 - "$T/l.tar" "$SIZE_MB" <<'PY'
import io, os, sys, tarfile
n = int(sys.argv[2]) << 20
with tarfile.open(sys.argv[1], "w") as t:
    d = os.urandom(n // 2) + bytes(n - n // 2)
    i = tarfile.TarInfo("data"); i.size = len(d); t.addfile(i, io.BytesIO(d))
PY
fi
now() { date +%s.%N; }
# median and min–max of the numbers in file $1
stats() { sort -n "$1" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "median %.2fs (%.2f–%.2f)", m, a[1], a[NR]}'; }
: >"$T/bp"; : >"$T/bl"; : >"$T/sp"; : >"$T/sl"; : >"$T/op"
i=0
while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s/data%s}}\nhttp: {addr: 127.0.0.1:%s}\n' "$T" "$i" "$PORT" > "$T/cfg.yml"
    docker-registry serve "$T/cfg.yml" >"$T/reg.log" 2>&1 &
    REG=$!
    R=127.0.0.1:$PORT
    "$BERTH" --root "$T/a$i" import "$T/l.tar" "$R/bench/berth:1" >/dev/null
    sleep 0.5
    s=$(now); "$BERTH" --root "$T/a$i" push -q "$R/bench/berth:1" >/dev/null; bp=$(echo "$(now) - $s" | bc)
    s=$(now); "$BERTH" --root "$T/b$i" pull -q "$R/bench/berth:1" >/dev/null; bl=$(echo "$(now) - $s" | bc)
    op=
    if [ -n "${BERTH_BASE:-}" ]; then
        "$BERTH_BASE" --root "$T/o$i" import "$T/l.tar" "$R/bench/base:1" >/dev/null
        s=$(now); "$BERTH_BASE" --root "$T/o$i" push -q "$R/bench/base:1" >/dev/null; op=$(echo "$(now) - $s" | bc)
        echo "$op" >>"$T/op"; op=" base ${op}s"
    fi
    mkdir -p "$T/home$i"
    s=$(now); HOME=$T/home$i skopeo copy -q --dest-tls-verify=false --dest-compress-format=gzip "oci:$T/a$i/images:$R/bench/berth:1" "docker://$R/bench/skopeo:1" >/dev/null; sp=$(echo "$(now) - $s" | bc)
    s=$(now); HOME=$T/home$i skopeo copy -q --src-tls-verify=false "docker://$R/bench/skopeo:1" "oci:$T/sk$i:x" >/dev/null; sl=$(echo "$(now) - $s" | bc)
    echo "round $i: push berth ${bp}s skopeo ${sp}s${op}; pull berth ${bl}s skopeo ${sl}s"
    echo "$bp" >>"$T/bp"; echo "$bl" >>"$T/bl"; echo "$sp" >>"$T/sp"; echo "$sl" >>"$T/sl"
    kill $REG; wait $REG 2>/dev/null || true; REG=
    rm -rf "$T/a$i" "$T/b$i" "$T/o$i" "$T/sk$i" "$T/data$i" "$T/home$i"
done
med() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
echo "push ${SIZE_MB} MiB x${RUNS}: berth $(stats "$T/bp"), skopeo $(stats "$T/sp"), ratio of medians berth/skopeo $(echo "scale=2; $(med "$T/bp") / $(med "$T/sp")" | bc)"
echo "pull ${SIZE_MB} MiB x${RUNS}: berth $(stats "$T/bl"), skopeo $(stats "$T/sl"), ratio of medians berth/skopeo $(echo "scale=2; $(med "$T/bl") / $(med "$T/sl")" | bc)"
[ -z "${BERTH_BASE:-}" ] || echo "push ${SIZE_MB} MiB x${RUNS}: base berth $(stats "$T/op"), ratio of medians base/skopeo $(echo "scale=2; $(med "$T/op") / $(med "$T/sp")" | bc), berth/base $(echo "scale=2; $(med "$T/bp") / $(med "$T/op")" | bc)"
