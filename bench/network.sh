#!/usr/bin/env bash
# Issue 5's numbers, peers in the same run:
#  1. `berth run --rm IMG true` on the default bridge vs `--network none` (hyperfine medians;
#     the bridge may add at most 15 ms).
#  2. Container-to-container TCP throughput over a berth bridge vs two plain network namespaces
#     on a plain Linux bridge (iperf3, >= 0.9x).
#  3. Published-port throughput (host 127.0.0.1:PORT, DNAT) vs the container's address directly
#     (>= 0.8x).
# The containers run Debian's iperf3 from the host's /usr (bind-mounted read-only).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
berth="$PWD/target/release/berth"
dir=${BENCH_DIR:-/var/tmp/berth-bench}/network
root="$dir/root"
secs=${IPERF_SECS:-5}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$berth" --root "$root" rm -f ips ipc web >/dev/null 2>&1 || true
  ip netns del bnA 2>/dev/null || true
  ip netns del bnB 2>/dev/null || true
  ip link del bnbr 2>/dev/null || true
  ip link del bbench0 2>/dev/null || true
  nft delete table ip "berth_$(printf %s "$root" | sha256sum | cut -c1-10)" 2>/dev/null || true
}
trap cleanup EXIT
rm -rf "$dir"; mkdir -p "$dir/rootfs/bin" "$dir/rootfs/etc" "$dir/rootfs/usr" "$dir/rootfs/tmp" "$root"
cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
for a in sh true echo sleep; do ln -s busybox "$dir/rootfs/bin/$a"; done
ln -s usr/lib "$dir/rootfs/lib"; ln -s usr/lib64 "$dir/rootfs/lib64"
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
echo 'root:x:0:' > "$dir/rootfs/etc/group"
tar -C "$dir/rootfs" -cf "$dir/bb.tar" .
echo '{"bridge":"bbench0","bip":"10.199.0.1/24"}' > "$root/daemon.json"
"$berth" --root "$root" import "$dir/bb.tar" bench/bb:1 >/dev/null
"$berth" --root "$root" run --rm bench/bb:1 true   # the bridge and its rules exist from here on

echo "== run latency: default bridge vs --network none"
hyperfine -N --warmup 5 --runs 40 --export-json "$dir/run.json" \
  -n "bridge" "$berth --root $root run --rm bench/bb:1 true" \
  -n "none" "$berth --root $root run --rm --network none bench/bb:1 true" >/dev/null
python3 - "$dir/run.json" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
b, n = r["bridge"]["median"] * 1000, r["none"]["median"] * 1000
print(f"bridge median {b:.1f} ms, none {n:.1f} ms: the bridge adds {b - n:.1f} ms (target <= 15 ms)")
EOF

mbps() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(round(d["end"]["sum_received"]["bits_per_second"]/1e9, 2))'; }

echo "== container-to-container TCP over the bridge vs plain namespaces on a plain bridge"
# Plain: two namespaces on a bridge, nothing else.
ip link add bnbr type bridge; ip addr add 10.198.0.1/24 dev bnbr; ip link set bnbr up
for n in A B; do
  ip netns add bn$n
  ip link add bn${n}h type veth peer name bn${n}c
  ip link set bn${n}c netns bn$n
  ip link set bn${n}h master bnbr up
  ip -n bn$n link set lo up
done
ip -n bnA addr add 10.198.0.2/24 dev bnAc; ip -n bnA link set bnAc up
ip -n bnB addr add 10.198.0.3/24 dev bnBc; ip -n bnB link set bnBc up
ip netns exec bnA iperf3 -s -1 >/dev/null 2>&1 & pids+=($!)
sleep 0.5
plain=$(ip netns exec bnB iperf3 -c 10.198.0.2 -t "$secs" -J | mbps)

"$berth" --root "$root" run -d --name ips -v /usr:/usr:ro bench/bb:1 iperf3 -s >/dev/null
"$berth" --root "$root" run -d --name ipc -v /usr:/usr:ro bench/bb:1 sleep 600 >/dev/null
sip=$("$berth" --root "$root" inspect -f '{{.NetworkSettings.IPAddress}}' ips)
sleep 0.5
cont=$("$berth" --root "$root" exec ipc iperf3 -c "$sip" -t "$secs" -J | mbps)
python3 -c "print(f'plain namespaces {$plain} Gbit/s, berth containers {$cont} Gbit/s: {$cont/$plain:.2f}x (target >= 0.9x)')"

echo "== published port vs the container's address"
"$berth" --root "$root" rm -f ips >/dev/null
"$berth" --root "$root" run -d --name ips -p 15201:5201 -v /usr:/usr:ro bench/bb:1 iperf3 -s >/dev/null
sip=$("$berth" --root "$root" inspect -f '{{.NetworkSettings.IPAddress}}' ips)
sleep 0.5
direct=$(iperf3 -c "$sip" -t "$secs" -J | mbps)
published=$(iperf3 -c 127.0.0.1 -p 15201 -t "$secs" -J | mbps)
python3 -c "print(f'direct {$direct} Gbit/s, published 127.0.0.1:15201 {$published} Gbit/s: {$published/$direct:.2f}x (target >= 0.8x)')"
