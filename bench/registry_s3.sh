#!/usr/bin/env bash
# berth registry on its filesystem backend vs on S3 servers on loopback, same run: push of a
# MIB-MiB random layer (POST + one streamed PATCH + PUT: the session path `docker push` takes;
# and of another by POST + monolithic PUT), then a pull (GET) of each, REPS times, alternating
# backends. Fresh layers every rep, so every push stores its blob (none is found already
# stored); on S3 the session path's blob is stored by descriptor + data object and the
# monolithic one inline, so `pullp` and `pull` read one layout each. Pulls from a bucket are
# measured both ways: streamed through the registry (`pull`, `pullp`: a second replica on the
# same bucket with `redirect = false`) and redirected (`pullr`: the 307 to a presigned URL of
# the session-pushed blob's data object, followed by curl -L, as docker and skopeo follow it);
# on fs `pullr` is the same streamed GET as `pullp`.
# Prints per backend and phase: MiB/s median and min-max, the registry's peak RSS in that phase
# (VmHWM, reset before each phase through /proc/PID/clear_refs), and the CPU seconds the
# registry and the S3 server spent in it — where the time goes, ours or the store's.
#
# S3 servers (SERVERS, default "moto s3s-fs"): moto (Python, /opt/berth-test-venv, as the tests
# use), s3s-fs (Rust, on a directory; installed by this script with `cargo install` into
# BENCH_TOOLS, default ~/.cache/berth-bench — a bench-only tool, never a CI dependency) and
# garage (Garage, a production S3 server in Rust: one node, replication_factor 1, its default
# lmdb metadata and zstd-1 block compression, data and metadata under the run's temp dir;
# GARAGE names the binary, default $BENCH_TOOLS/bin/garage — build it once with
# `cargo install garage --locked --root $BENCH_TOOLS`, ~30 min on 2 cores, not done here).
# BERTH_ENV: extra environment for the registries (e.g. "MALLOC_ARENA_MAX=1").
# STORE_CPUS / REGISTRY_CPUS (taskset lists, e.g. 1 and 0): run the S3 servers on some CPUs and
# everything else (registries, curl) on others, as if the store had a machine of its own.
# PEER=distribution: the same phases, same layer size and reps, against the CNCF distribution
# registry (DISTRIBUTION, default /usr/bin/docker-registry: Debian's docker-registry 2.8) on its
# filesystem driver and its s3 driver on the same S3 servers (its own prefix in the same bucket;
# chunksize 8 MiB, as berth's parts; redirect on for pullr, a second process with
# `redirect: disable: true` for pull/pullp — as for berth). Rows `dist.<store>`, alternating with
# berth's per store; every backend pushes freshly generated layers (Garage deduplicates blocks,
# so the second registry must never push bytes the first has stored). The table gains
# `berth/dist`: berth's median MiB/s over distribution's, same phase and store.
# Usage: bench/registry_s3.sh [layer MiB (default 1024)] [REPS (default 3)]
set -euo pipefail
shopt -s inherit_errexit
if [ -n "${REGISTRY_CPUS:-}" ] && [ -z "${BENCH_PINNED:-}" ]; then
    BENCH_PINNED=1 exec taskset -c "$REGISTRY_CPUS" bash "$0" "$@"
fi
STORE_PIN=()
[ -n "${STORE_CPUS:-}" ] && STORE_PIN=(taskset -c "$STORE_CPUS")
MIB=${1:-1024}
REPS=${2:-3}
SERVERS=${SERVERS:-moto s3s-fs}
MOTO=/opt/berth-test-venv/bin/moto_server
BENCH_TOOLS=${BENCH_TOOLS:-$HOME/.cache/berth-bench}
GARAGE=${GARAGE:-$BENCH_TOOLS/bin/garage}
PEER=${PEER:-}
DISTRIBUTION=${DISTRIBUTION:-/usr/bin/docker-registry}
case $PEER in
'') ;;
distribution) [ -x "$DISTRIBUTION" ] || { echo "missing $DISTRIBUTION (apt-get install docker-registry, or DISTRIBUTION=path)" >&2; exit 1; } ;;
*) echo "unknown PEER $PEER (distribution)" >&2; exit 1 ;;
esac
S3S_VERSION=0.14.1 # the newest that builds with the workspace's rustc 1.95
cd "$(dirname "$0")/.."
for t in curl sha256sum python3; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
for s in $SERVERS; do
    case $s in
    moto) [ -x "$MOTO" ] || { echo "missing $MOTO (scripts/setup.sh installs moto)" >&2; exit 1; } ;;
    s3s-fs)
        if [ ! -x "$BENCH_TOOLS/bin/s3s-fs" ]; then
            echo "installing s3s-fs $S3S_VERSION into $BENCH_TOOLS" >&2
            cargo install -q "s3s-fs@$S3S_VERSION" --locked --features binary --root "$BENCH_TOOLS"
        fi ;;
    garage) [ -x "$GARAGE" ] || { echo "missing $GARAGE (GARAGE=path, or cargo install garage --locked --root $BENCH_TOOLS)" >&2; exit 1; } ;;
    *) echo "unknown S3 server $s (moto, s3s-fs, garage)" >&2; exit 1 ;;
    esac
done
cargo build --release -q -p berth
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 400); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return; sleep 0.05; done; echo "port $1 never answered" >&2; exit 1; }

# Garage's key format (GK + 24 hex, 64 hex); moto and s3s-fs take any key.
export AWS_ACCESS_KEY_ID=GK0123456789abcdef01234567 AWS_SECRET_ACCESS_KEY=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
declare -A SPID REGION
start_garage() { # -> garage on $S3PORT with bucket "bench"
    local g=$W/garage rpc; rpc=$(free_port)
    mkdir -p "$g/meta" "$g/data"
    cat >"$g/garage.toml" <<EOF
metadata_dir = "$g/meta"
data_dir = "$g/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3PORT"
root_domain = ".s3.garage.localhost"
EOF
    chmod 600 "$g/garage.toml"
    "${STORE_PIN[@]}" "$GARAGE" -c "$g/garage.toml" server >"$g/log" 2>&1 &
    PIDS+=($!); SPID[garage]=$!
    wait_port "$S3PORT"
    local gc=("$GARAGE" -c "$g/garage.toml") node
    node=$("${gc[@]}" node id -q 2>/dev/null | cut -d@ -f1)
    "${gc[@]}" layout assign -z dc1 -c 100G "$node" >/dev/null
    "${gc[@]}" layout apply --version 1 >/dev/null
    "${gc[@]}" key import --yes -n bench "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
    "${gc[@]}" bucket create bench >/dev/null
    "${gc[@]}" bucket allow --read --write --owner bench --key bench >/dev/null
    REGION[garage]=garage
}
start_s3() { # server -> sets S3PORT
    S3PORT=$(free_port)
    if [ "$1" = garage ]; then start_garage; return; fi
    case $1 in
    moto) "${STORE_PIN[@]}" "$MOTO" -H 127.0.0.1 -p "$S3PORT" >/dev/null 2>&1 & ;;
    s3s-fs)
        mkdir -p "$W/s3s"
        "${STORE_PIN[@]}" "$BENCH_TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$S3PORT" \
            --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$W/s3s" >/dev/null 2>&1 & ;;
    esac
    PIDS+=($!); SPID[$1]=$!
    wait_port "$S3PORT"
    if [ "$1" = s3s-fs ]; then mkdir -p "$W/s3s/bench"; else curl -sf -X PUT "http://127.0.0.1:$S3PORT/bench" -o /dev/null; fi
}

declare -A RPID RPORT
start_registry() { # name storage [S3 port [region [redirect]]]
    local endpoint=() storage=(--storage "$2")
    [ -n "${3:-}" ] && endpoint=(AWS_ENDPOINT="http://127.0.0.1:$3" AWS_REGION="${4:-us-east-1}")
    if [ -n "${5:-}" ]; then # a replica on the same bucket, with redirect = $5
        printf '[storage]\nkind = "s3"\nbucket = "bench"\nprefix = "registry"\nredirect = %s\n' "$5" >"$W/$1.toml"
        storage=(--config "$W/$1.toml")
    fi
    env "${endpoint[@]}" ${BERTH_ENV:-} "$BERTH" --root "$W/root" registry serve --addr 127.0.0.1:0 "${storage[@]}" >"$W/$1.out" 2>/dev/null &
    PIDS+=($!); RPID[$1]=$!
    for _ in $(seq 200); do grep -q listening "$W/$1.out" 2>/dev/null && break; sleep 0.05; done
    RPORT[$1]=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$W/$1.out")
    [ -n "${RPORT[$1]}" ] || { echo "registry $1 did not start" >&2; exit 1; }
}
# The peer: distribution with a YAML config of its own, on a free loopback port.
start_distribution() { # name [S3 port region redirect-disable]
    local port storage; port=$(free_port)
    if [ -z "${2:-}" ]; then
        storage="  filesystem:
    rootdirectory: $W/dist-fs"
    else
        storage="  s3:
    region: $3
    regionendpoint: http://127.0.0.1:$2
    bucket: bench
    rootdirectory: /distribution
    accesskey: $AWS_ACCESS_KEY_ID
    secretkey: $AWS_SECRET_ACCESS_KEY
    secure: false
    v4auth: true
    chunksize: 8388608
  redirect:
    disable: $4"
    fi
    cat >"$W/$1.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
$storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: berth-bench-peer
EOF
    # env -u AWS_CA_BUNDLE: aws-sdk-go v1 refuses a custom CA bundle with its custom transport
    # (panics at start-up); the S3 servers here are plain http anyway.
    env -u AWS_CA_BUNDLE "$DISTRIBUTION" serve "$W/$1.yml" >"$W/$1.out" 2>&1 &
    PIDS+=($!); RPID[$1]=$! RPORT[$1]=$port
    for _ in $(seq 400); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return
        kill -0 "${RPID[$1]}" 2>/dev/null || { echo "distribution $1 exited:" >&2; cat "$W/$1.out" >&2; exit 1; }
        sleep 0.05
    done
    echo "distribution $1 never answered on $port" >&2; exit 1
}
BACKENDS=(fs)
start_registry fs "$W/fs"
[ -n "$PEER" ] && { start_distribution dist.fs; BACKENDS+=(dist.fs); }
for s in $SERVERS; do
    start_s3 "$s"
    start_registry "$s" "s3://bench/registry" "$S3PORT" "${REGION[$s]:-}"
    start_registry "$s.stream" - "$S3PORT" "${REGION[$s]:-}" false
    BACKENDS+=("$s")
    if [ -n "$PEER" ]; then
        start_distribution "dist.$s" "$S3PORT" "${REGION[$s]:-us-east-1}" false
        start_distribution "dist.$s.stream" "$S3PORT" "${REGION[$s]:-us-east-1}" true
        BACKENDS+=("dist.$s")
    fi
done
RPID[fs.stream]=${RPID[fs]} RPORT[fs.stream]=${RPORT[fs]}
RPID[dist.fs.stream]=${RPID[dist.fs]:-} RPORT[dist.fs.stream]=${RPORT[dist.fs]:-}

new_layers() { # -> $W/layer.patch, $W/layer.put; DP, DU their digests
    head -c "$((MIB << 20))" /dev/urandom >"$W/layer.patch"
    head -c "$((MIB << 20))" /dev/urandom >"$W/layer.put"
    DP=sha256:$(sha256sum "$W/layer.patch" | cut -d' ' -f1)
    DU=sha256:$(sha256sum "$W/layer.put" | cut -d' ' -f1)
    sync -f "$W/layer.put" # written back now, not during the next push
}
hz=$(getconf CLK_TCK)
cpu() { [ -n "${1:-}" ] && awk '{print $14+$15}' "/proc/$1/stat" || echo 0; }

absolute() { # port Location-header-value (berth's is a path, distribution's a whole URL)
    case $2 in
    http://* | https://*) echo "$2" ;;
    *) echo "http://127.0.0.1:$1$2" ;;
    esac
}
location() { # port repo
    local loc
    loc=$(curl -sf -X POST -D - -o /dev/null "http://127.0.0.1:$1/v2/$2/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    absolute "$1" "$loc"
}
with_digest() { # URL digest (distribution's upload URLs carry a query already: ?_state=…)
    case $1 in *\?*) echo "$1&digest=$2" ;; *) echo "$1?digest=$2" ;; esac
}
push_patch() { # port repo (the PUT goes to the Location the PATCH answered, as clients do)
    local loc; loc=$(location "$1" "$2")
    loc=$(curl -sf -X PATCH -H 'Content-Type: application/octet-stream' -T "$W/layer.patch" -D - -o /dev/null "$loc" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    curl -sf -X PUT -o /dev/null "$(with_digest "$(absolute "$1" "$loc")" "$DP")"
}
push_put() { # port repo
    local loc; loc=$(location "$1" "$2")
    curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$W/layer.put" -o /dev/null "$(with_digest "$loc" "$DU")"
}
pull() { # port repo digest (follows a redirect, as registry clients do)
    local got
    got=$(curl -sfL "http://127.0.0.1:$1/v2/$2/blobs/$3" | sha256sum | cut -d' ' -f1)
    [ "sha256:$got" = "$3" ] || { echo "pull of $2 returned other bytes" >&2; exit 1; }
}

declare -A R RSS OURS THEIRS
# One phase: reset the registry's peak RSS, time the command, record MiB/s, peak RSS and the
# CPU seconds of the registry and of the S3 server.
phase() { # backend op registry command...
    local b=$1 op=$2 rp=${RPID[$3]} sp=${SPID[${1#dist.}]:-}; shift 3
    echo 5 >"/proc/$rp/clear_refs"
    local c0 s0 t0 t1 c1 s1
    c0=$(cpu "$rp"); s0=$(cpu "$sp"); t0=$(date +%s.%N)
    "$@"
    t1=$(date +%s.%N); c1=$(cpu "$rp"); s1=$(cpu "$sp")
    R[$b.$op]+=" $(python3 -c "print(f'{$MIB/($t1-$t0):.0f}')")"
    RSS[$b.$op]+=" $(awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$rp/status")"
    OURS[$b.$op]+=" $(python3 -c "print(f'{($c1-$c0)/$hz:.1f}')")"
    THEIRS[$b.$op]+=" $(python3 -c "print(f'{($s1-$s0)/$hz:.1f}')")"
}
for i in $(seq "$REPS"); do
    new_layers
    for b in "${BACKENDS[@]}"; do
        [ -n "$PEER" ] && [ "$b" != fs ] && new_layers
        p=${RPORT[$b]} ps=${RPORT[$b.stream]}
        phase "$b" patch "$b" push_patch "$p" "patch/r$i"
        phase "$b" put "$b" push_put "$p" "put/r$i"
        phase "$b" pull "$b.stream" pull "$ps" "put/r$i" "$DU"
        phase "$b" pullp "$b.stream" pull "$ps" "patch/r$i" "$DP"
        phase "$b" pullr "$b" pull "$p" "patch/r$i" "$DP"
    done
    # Keep the disk use to one rep's: the filesystem stores' blobs of this rep are never read
    # again (later reps push other layers to other repositories).
    find "$W/fs" "$W/dist-fs" -type f -size +"$((MIB << 9))"k -delete 2>/dev/null || true
done
med() { python3 -c "import sys,statistics as s; v=sorted(map(float,sys.argv[1:])); print(f'{s.median(v):.0f} ({v[0]:.0f}-{v[-1]:.0f})')" "$@"; }
medf() { python3 -c "import sys,statistics as s; print(f'{s.median(map(float,sys.argv[1:])):.1f}')" "$@"; }
echo "layer ${MIB} MiB, ${REPS} reps, $(nproc --all) cores${BERTH_ENV:+, registry env: $BERTH_ENV}${STORE_CPUS:+, S3 servers on CPUs $STORE_CPUS}${REGISTRY_CPUS:+, the rest on CPUs $REGISTRY_CPUS}"
printf '%-12s %-6s %-20s %-7s %-18s %-14s %-15s %s\n' backend op 'MiB/s med (min-max)' '×fs' 'peak RSS MiB' 'registry CPU s' 'S3 server CPU s' "${PEER:+berth/dist}"
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
for op in patch put pull pullp pullr; do
    for b in "${BACKENDS[@]}"; do
        m=$(med ${R[$b.$op]})
        fs=fs peer=-
        case $b in dist.*) fs=dist.fs ;; *) [ -n "$PEER" ] && peer=$(ratio "${m%% *}" "$(med ${R[dist.$b.$op]} | cut -d' ' -f1)") ;; esac
        printf '%-12s %-6s %-20s %-7s %-18s %-14s %-15s %s\n' "$b" "$op" "$m" \
            "$(ratio "${m%% *}" "$(med ${R[$fs.$op]} | cut -d' ' -f1)")" "$(med ${RSS[$b.$op]})" \
            "$(medf ${OURS[$b.$op]})" "$([ "$b" = "$fs" ] && echo - || medf ${THEIRS[$b.$op]})" "${PEER:+$peer}"
    done
done
