#!/bin/sh
# Push and pull of a one-layer image of SIZE_MB random-ish data (half random, half zeros) to a
# local docker-registry, berth vs skopeo (skopeo copies berth's OCI layout, so both compress
# the same plain layer). Prints seconds for each and the ratio berth/skopeo.
# Usage: bench/pushpull.sh [SIZE_MB]   (needs docker-registry, skopeo, python3, a built berth)
set -eu
SIZE_MB=${1:-256}
BERTH=${BERTH:-$(dirname "$0")/../target/release/berth}
[ -x "$BERTH" ] || BERTH=$(dirname "$0")/../target/debug/berth
T=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s/data}}\nhttp: {addr: 127.0.0.1:%s}\n' "$T" "$PORT" > "$T/cfg.yml"
docker-registry serve "$T/cfg.yml" >"$T/reg.log" 2>&1 &
REG=$!
trap 'kill $REG 2>/dev/null; rm -rf "$T"' EXIT
python3 - "$T/l.tar" "$SIZE_MB" <<'PY'
import io, os, sys, tarfile
n = int(sys.argv[2]) << 20
with tarfile.open(sys.argv[1], "w") as t:
    d = os.urandom(n // 2) + bytes(n - n // 2)
    i = tarfile.TarInfo("data"); i.size = len(d); t.addfile(i, io.BytesIO(d))
PY
R=127.0.0.1:$PORT
sleep 0.5
"$BERTH" --root "$T/a" import "$T/l.tar" "$R/bench/berth:1" >/dev/null
now() { date +%s.%N; }
s=$(now); "$BERTH" --root "$T/a" push -q "$R/bench/berth:1" >/dev/null; bp=$(echo "$(now) - $s" | bc)
s=$(now); "$BERTH" --root "$T/b" pull -q "$R/bench/berth:1" >/dev/null; bl=$(echo "$(now) - $s" | bc)
s=$(now); skopeo copy -q --dest-tls-verify=false --dest-compress-format=gzip "oci:$T/a/images:$R/bench/berth:1" "docker://$R/bench/skopeo:1" >/dev/null; sp=$(echo "$(now) - $s" | bc)
s=$(now); skopeo copy -q --src-tls-verify=false "docker://$R/bench/skopeo:1" "oci:$T/sk:x" >/dev/null; sl=$(echo "$(now) - $s" | bc)
echo "push ${SIZE_MB} MiB: berth ${bp}s skopeo ${sp}s ratio $(echo "scale=2; $bp / $sp" | bc)"
echo "pull ${SIZE_MB} MiB: berth ${bl}s skopeo ${sl}s ratio $(echo "scale=2; $bl / $sl" | bc)"
