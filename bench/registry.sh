#!/usr/bin/env bash
# berth registry vs Debian's docker-registry (distribution) on the same machine, same run:
#  1. manifest GET by tag, requests/s under 32 connections (wrk, 2 threads); manifest and blob
#     HEAD under 32 connections with oha (`cargo install oha`; Debian's wrk cannot time HEAD, it
#     waits for a body of the announced Content-Length), and the same blob HEAD on a berth
#     registry in token mode (every request verifies an ES256 JWT)
#  2. push (POST + monolithic PUT) of a 1 GiB random layer, then REPS pulls (GET) of it from
#     each server, alternating: MiB/s median and min-max, server peak RSS
# Usage: bench/registry.sh [seconds-per-wrk-run (default 10)] [layer MiB (default 1024)] [REPS (default 5)]
set -euo pipefail
shopt -s inherit_errexit
DUR=${1:-10}
MIB=${2:-1024}
REPS=${3:-5}
cd "$(dirname "$0")/.."
for t in wrk oha curl docker-registry sha256sum openssl; do
    command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }
done
cargo build --release -q -p berth
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
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
    [ -s "$W/small" ] || head -c 4096 /dev/urandom >"$W/small" # the same image on both servers
    local cd ld
    cd=sha256:$(sha256sum "$W/cfg" | cut -d' ' -f1); ld=sha256:$(sha256sum "$W/small" | cut -d' ' -f1)
    push_blob "$1" bench/app "$W/cfg" "$cd"
    push_blob "$1" bench/app "$W/small" "$ld"
    printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":4096}]}' \
        "$MT" "$cd" "$(stat -c %s "$W/cfg")" "$ld" >"$W/manifest"
    curl -sf -X PUT -H "Content-Type: $MT" --data-binary @"$W/manifest" "http://127.0.0.1:$1/v2/bench/app/manifests/latest" -o /dev/null
}

rps() { # port path [head [extra header]]
    if [ "${3:-}" = head ]; then
        local hdr=()
        [ -n "${4:-}" ] && hdr=(-H "$4")
        # oha's summary line: "  Requests/sec:  12345.6789"; a non-2xx answer would show in
        # its status distribution, so check_head runs first.
        oha -z "${DUR}s" -c 32 -m HEAD --no-tui -H "Accept: $MT" "${hdr[@]}" "http://127.0.0.1:$1$2" |
            awk '/Requests\/sec/ {print $2}'
    else
        wrk -t2 -c32 -d"${DUR}s" -H "Accept: $MT" "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'
    fi
}
# wrk counts a response whatever its status; make sure each server answers 200 with no body
check_head() { # port path
    local out
    out=$(curl -s -I -o /dev/null -w '%{http_code}' -H "Accept: $MT" "http://127.0.0.1:$1$2")
    [ "$out" = 200 ] || { echo "HEAD $2 on port $1 answered $out" >&2; exit 1; }
}
compare() { # label path [head]
    local b d
    b=$(rps "$BERTH_PORT" "$2" "${3:-}"); d=$(rps "$DIST_PORT" "$2" "${3:-}")
    printf '%-28s berth %9.0f  docker-registry %9.0f req/s  ratio %5.2fx\n' "$1" "$b" "$d" "$(echo "$b / $d" | bc -l)"
}
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f %.0f %.0f\n", m, a[1], a[NR]}'; }

hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

push_big() { # port -> MiB/s
    local t0 t1
    t0=$(date +%s.%N)
    push_blob "$1" bench/big "$W/big" "$BIG_DIGEST"
    t1=$(date +%s.%N)
    printf '%.0f\n' "$(echo "$MIB / ($t1 - $t0)" | bc -l)"
}
pull_big() { # port -> MiB/s
    local t0 t1
    t0=$(date +%s.%N)
    curl -sf -o /dev/null "http://127.0.0.1:$1/v2/bench/big/blobs/$BIG_DIGEST"
    t1=$(date +%s.%N)
    printf '%.0f\n' "$(echo "$MIB / ($t1 - $t0)" | bc -l)"
}

start_berth; start_distribution
make_image "$BERTH_PORT"; make_image "$DIST_PORT"
for p in "$BERTH_PORT" "$DIST_PORT"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $MT" "http://127.0.0.1:$p/v2/bench/app/manifests/latest")
    [ "$code" = 200 ] || { echo "manifest GET on port $p answered $code" >&2; exit 1; }
done
SMALL=/v2/bench/app/blobs/sha256:$(sha256sum "$W/small" | cut -d' ' -f1)
for p in "$BERTH_PORT" "$DIST_PORT"; do
    check_head "$p" /v2/bench/app/manifests/latest; check_head "$p" "$SMALL"
done
echo "32 connections, ${DUR}s each, wrk -t2 (GET) and oha (HEAD)"
compare "manifest GET by tag" /v2/bench/app/manifests/latest
compare "manifest HEAD by tag" /v2/bench/app/manifests/latest head
compare "blob HEAD" "$SMALL" head

# Token mode: the same blob HEAD with a bearer token from the built-in token server.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$W/token.key" 2>/dev/null
echo bench | "$BERTH" --root "$W/root" registry htpasswd bench --file "$W/htpasswd" 2>/dev/null
"$BERTH" registry serve --addr 127.0.0.1:0 --storage "$W/berth" --htpasswd "$W/htpasswd" \
    --auth-token-key "$W/token.key" >"$W/token.out" 2>/dev/null &
PIDS+=($!); TOKEN_PID=$!
for _ in $(seq 100); do grep -q listening "$W/token.out" 2>/dev/null && break; sleep 0.05; done
TOKEN_PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$W/token.out")
TOKEN=$(curl -sf -u bench:bench "http://127.0.0.1:$TOKEN_PORT/token?service=berth-registry&scope=repository:bench/app:pull" |
    sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
code=$(curl -s -I -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$TOKEN_PORT$SMALL")
[ "$code" = 200 ] || { echo "token-mode HEAD answered $code" >&2; exit 1; }
b=$(rps "$BERTH_PORT" "$SMALL" head); t=$(rps "$TOKEN_PORT" "$SMALL" head "Authorization: Bearer $TOKEN")
printf '%-28s berth %9.0f  berth+token %9.0f req/s  ratio %5.2fx\n' "blob HEAD, token mode" "$b" "$t" "$(echo "$t / $b" | bc -l)"
kill "$TOKEN_PID"; wait "$TOKEN_PID" 2>/dev/null || true

head -c "${MIB}M" /dev/urandom >"$W/big"
BIG_DIGEST=sha256:$(sha256sum "$W/big" | cut -d' ' -f1)
# fresh servers so the RSS peak is the transfer's
kill "$BERTH_PID" "$DIST_PID"; wait "$BERTH_PID" "$DIST_PID" 2>/dev/null || true
rm -rf "$W/berth" "$W/dist"
start_berth; start_distribution
BU=$(push_big "$BERTH_PORT"); DU=$(push_big "$DIST_PORT")
: >"$W/pull.berth"; : >"$W/pull.dist"
for _ in $(seq "$REPS"); do
    pull_big "$BERTH_PORT" >>"$W/pull.berth"; pull_big "$DIST_PORT" >>"$W/pull.dist"
done
read -r BD BMIN BMAX <<<"$(median <"$W/pull.berth")"
read -r DD DMIN DMAX <<<"$(median <"$W/pull.dist")"
BR=$(hwm "$BERTH_PID"); DR=$(hwm "$DIST_PID")
echo "${MIB} MiB layer: push MiB/s (1 run), pull MiB/s (median and min-max of $REPS, alternating), server peak RSS"
printf '  berth            push %6s  pull %6s (%s-%s)  rss %6s MiB\n' "$BU" "$BD" "$BMIN" "$BMAX" "$((BR / 1024))"
printf '  docker-registry  push %6s  pull %6s (%s-%s)  rss %6s MiB\n' "$DU" "$DD" "$DMIN" "$DMAX" "$((DR / 1024))"
printf '  ratio            push %6.2fx pull %6.2fx\n' "$(echo "$BU / $DU" | bc -l)" "$(echo "$BD / $DD" | bc -l)"
