#!/usr/bin/env bash
# berth registry on its filesystem backend vs on S3 (a moto server on loopback), same run:
# push of a MIB-MiB random layer (POST + one streamed PATCH + PUT: the session path, the one
# `docker push` takes; and POST + monolithic PUT), then REPS pulls (GET) of it, alternating
# backends: MiB/s median and min-max, the server's peak RSS (VmHWM) across the run, and moto's
# CPU seconds (moto is single-process Python: when it is the bottleneck its CPU share says so).
# Usage: bench/registry_s3.sh [layer MiB (default 1024)] [REPS (default 3)]
set -euo pipefail
shopt -s inherit_errexit
MIB=${1:-1024}
REPS=${2:-3}
MOTO=/opt/berth-test-venv/bin/moto_server
cd "$(dirname "$0")/.."
for t in curl sha256sum python3 "$MOTO"; do
    command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.sh installs moto)" >&2; exit 1; }
done
cargo build --release -q -p berth
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

MOTO_PORT=$(free_port)
"$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >/dev/null 2>&1 &
PIDS+=($!); MOTO_PID=$!
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$MOTO_PORT/" && break; sleep 0.05; done
curl -sf -X PUT "http://127.0.0.1:$MOTO_PORT/bench" -o /dev/null
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export AWS_ENDPOINT=http://127.0.0.1:$MOTO_PORT AWS_ALLOW_HTTP=true

start() { # name storage
    "$BERTH" --root "$W/root" registry serve --addr 127.0.0.1:0 --storage "$2" >"$W/$1.out" 2>/dev/null &
    PIDS+=($!); eval "${1}_PID=$!"
    for _ in $(seq 100); do grep -q listening "$W/$1.out" 2>/dev/null && break; sleep 0.05; done
    eval "${1}_PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$W/$1.out")"
}
start fs "$W/fs"
start s3 "s3://bench/registry"

head -c "$((MIB << 20))" /dev/urandom >"$W/layer"
D=sha256:$(sha256sum "$W/layer" | cut -d' ' -f1)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

location() { # port repo
    local loc
    loc=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$1/v2/$2/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    echo "http://127.0.0.1:$1$loc"
}
push_patch() { # port repo
    local loc; loc=$(location "$1" "$2")
    curl -sf -X PATCH -H 'Content-Type: application/octet-stream' -T "$W/layer" -o /dev/null "$loc"
    curl -sf -X PUT -o /dev/null "$loc?digest=$D"
}
push_put() { # port repo
    local loc; loc=$(location "$1" "$2")
    curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$W/layer" -o /dev/null "$loc?digest=$D"
}
rate() { python3 -c "import sys; print(f'{$MIB/float(sys.argv[1]):.0f}')" "$1"; }
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); python3 -c "print($t1-$t0)"; }
stats() { python3 -c "import sys,statistics as s; v=sorted(map(float,sys.argv[1:])); print(f'{s.median(v):.0f} MiB/s ({v[0]:.0f}-{v[-1]:.0f})')" "$@"; }

declare -A R
m0=$(cpu "$MOTO_PID")
for i in $(seq "$REPS"); do
    for b in fs s3; do
        port_var=${b}_PORT; port=${!port_var}
        R[$b.patch]+=" $(rate "$(timed push_patch "$port" "patch/r$i")")"
        R[$b.put]+=" $(rate "$(timed push_put "$port" "put/r$i")")"
        R[$b.pull]+=" $(rate "$(timed curl -sf -o /dev/null "http://127.0.0.1:$port/v2/put/r$i/blobs/$D")")"
    done
done
m1=$(cpu "$MOTO_PID")
echo "layer ${MIB} MiB, ${REPS} reps, $(nproc) cores"
for op in patch put pull; do
    f=$(stats ${R[fs.$op]}); s=$(stats ${R[s3.$op]})
    fm=$(echo "$f" | cut -d' ' -f1); sm=$(echo "$s" | cut -d' ' -f1)
    printf '%-26s fs %-24s s3 %-24s s3/fs %.2f\n' "$op" "$f" "$s" "$(python3 -c "print($sm/$fm)")"
done
for b in fs s3; do
    pid_var=${b}_PID
    echo "$b server peak RSS: $(awk '/VmHWM/{printf "%.0f MiB", $2/1024}' "/proc/${!pid_var}/status")"
done
echo "moto CPU: $(python3 -c "print(f'{($m1-$m0)/$hz:.1f} s')") over the run"
