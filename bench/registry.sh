#!/usr/bin/env bash
# berth registry vs Debian's docker-registry (distribution) on the same machine, same run:
#  1. manifest GET by tag, requests/s under 32 connections (wrk, 2 threads)
#  2. push (POST + monolithic PUT) and pull of a 1 GiB random layer: MiB/s, server peak RSS
# Usage: bench/registry.sh [seconds-per-wrk-run (default 10)] [layer MiB (default 1024)]
set -euo pipefail
shopt -s inherit_errexit
DUR=${1:-10}
MIB=${2:-1024}
cd "$(dirname "$0")/.."
for t in wrk curl docker-registry sha256sum; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
cargo build --release -q -p berth
BERTH=$PWD/target/release/berth
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

start_berth() {
    "$BERTH" registry serve --addr 127.0.0.1:0 --storage "$W/berth" >"$W/berth.out" 2>/dev/null &
    PIDS+=($!); BERTH_PID=$!
    for _ in $(seq 100); do grep -q listening "$W/berth.out" 2>/dev/null && break; sleep 0.05; done
    BERTH_PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$W/berth.out")
}

start_distribution() {
    DIST_PORT=$(free_port)
    cat >"$W/config.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $W/dist}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$DIST_PORT}
YML
    docker-registry serve "$W/config.yml" >/dev/null 2>&1 &
    PIDS+=($!); DIST_PID=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$DIST_PORT/v2/" >/dev/null && break; sleep 0.05; done
}

push_blob() { # port repo file digest
    local loc
    loc=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$1/v2/$2/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    case "$loc" in http*) ;; *) loc="http://127.0.0.1:$1$loc" ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$4" ;; *) loc="$loc?digest=$4" ;; esac
    curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$3" -o /dev/null "$loc"
}

MT=application/vnd.oci.image.manifest.v1+json
make_image() { # port
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$W/cfg"
    head -c 4096 /dev/urandom >"$W/small"
    local cd ld
    cd=sha256:$(sha256sum "$W/cfg" | cut -d' ' -f1); ld=sha256:$(sha256sum "$W/small" | cut -d' ' -f1)
    push_blob "$1" bench/app "$W/cfg" "$cd"
    push_blob "$1" bench/app "$W/small" "$ld"
    printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":4096}]}' \
        "$MT" "$cd" "$(stat -c %s "$W/cfg")" "$ld" >"$W/manifest"
    curl -sf -X PUT -H "Content-Type: $MT" --data-binary @"$W/manifest" "http://127.0.0.1:$1/v2/bench/app/manifests/latest" -o /dev/null
}

rps() { # port
    wrk -t2 -c32 -d"${DUR}s" -H "Accept: $MT" "http://127.0.0.1:$1/v2/bench/app/manifests/latest" | awk '/Requests\/sec/ {print $2}'
}

hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

transfer() { # port pid -> "push_MiBs pull_MiBs peakRSS_KiB"
    local t0 t1 t2 up down
    t0=$(date +%s.%N)
    push_blob "$1" bench/big "$W/big" "$BIG_DIGEST"
    t1=$(date +%s.%N)
    curl -sf -o /dev/null "http://127.0.0.1:$1/v2/bench/big/blobs/$BIG_DIGEST"
    t2=$(date +%s.%N)
    up=$(echo "$MIB / ($t1 - $t0)" | bc -l); down=$(echo "$MIB / ($t2 - $t1)" | bc -l)
    printf '%.0f %.0f %s\n' "$up" "$down" "$(hwm "$2")"
}

start_berth; start_distribution
make_image "$BERTH_PORT"; make_image "$DIST_PORT"
for p in "$BERTH_PORT" "$DIST_PORT"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $MT" "http://127.0.0.1:$p/v2/bench/app/manifests/latest")
    [ "$code" = 200 ] || { echo "manifest GET on port $p answered $code" >&2; exit 1; }
done
echo "manifest GET by tag, 32 connections, ${DUR}s each"
B_RPS=$(rps "$BERTH_PORT"); D_RPS=$(rps "$DIST_PORT")
printf '  berth            %10.0f req/s\n  docker-registry  %10.0f req/s\n  ratio            %10.2fx\n' "$B_RPS" "$D_RPS" "$(echo "$B_RPS / $D_RPS" | bc -l)"

head -c "${MIB}M" /dev/urandom >"$W/big"
BIG_DIGEST=sha256:$(sha256sum "$W/big" | cut -d' ' -f1)
# fresh servers so the RSS peak is the transfer's
kill "$BERTH_PID" "$DIST_PID"; wait "$BERTH_PID" "$DIST_PID" 2>/dev/null || true
rm -rf "$W/berth" "$W/dist"
start_berth; start_distribution
read -r BU BD BR <<<"$(transfer "$BERTH_PORT" "$BERTH_PID")"
read -r DU DD DR <<<"$(transfer "$DIST_PORT" "$DIST_PID")"
echo "${MIB} MiB layer: push MiB/s, pull MiB/s, server peak RSS"
printf '  berth            push %6s  pull %6s  rss %6s MiB\n' "$BU" "$BD" "$((BR / 1024))"
printf '  docker-registry  push %6s  pull %6s  rss %6s MiB\n' "$DU" "$DD" "$((DR / 1024))"
printf '  ratio            push %6.2fx pull %6.2fx\n' "$(echo "$BU / $DU" | bc -l)" "$(echo "$BD / $DD" | bc -l)"
