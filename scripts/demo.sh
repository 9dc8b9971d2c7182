#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian machine as root: build berth, import a busybox base
# image from Debian's busybox-static, list, inspect, save and load it, build an image from a
# two-stage Dockerfile on it (RUN --mount cache, rebuild from the cache, --check, an OCI archive
# export that skopeo reads), serve a registry on
# loopback, push the image to it and pull it into a second state root, verify the stores, share
# the build cache through the registry (a fresh root builds the same image, all CACHED), and run
# it: foreground, detached with logs/exec/volumes, and networked (published port, name lookup).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
berth="$PWD/target/release/berth"
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
root="$work/root"
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  "$berth" --root "$work/root3" rm -f web >/dev/null 2>&1 || true
  "$berth" --root "$work/root3" network rm demo-net >/dev/null 2>&1 || true
  nft delete table ip "berth_$(printf %s "$work/root3" | sha256sum | cut -c1-10)" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A busybox root filesystem.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh ls cat echo env id ps sleep; do ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

set -x
"$berth" --root "$root" import -c 'CMD ["/bin/sh"]' "$work/busybox.tar" busybox:demo
"$berth" --root "$root" images
"$berth" --root "$root" inspect --format '{{.Id}} {{json .Config.Cmd}} {{json .RootFS.Layers}}' busybox:demo
"$berth" --root "$root" history busybox:demo
skopeo inspect "oci:$root/images:docker.io/library/busybox:demo" | head -5
"$berth" --root "$root" save -o "$work/busybox-save.tar" busybox:demo
"$berth" --root "$work/root2" load -i "$work/busybox-save.tar"
"$berth" --root "$work/root2" images
"$berth" --root "$work/root2" system check

# Build an image from a two-stage Dockerfile on top of it (RUN in the sandbox with a cache mount
# kept across builds, COPY from the context and from the other stage), run it, and rebuild:
# every step is served from the cache. Then lint it, and export it as an OCI archive without
# storing it, which skopeo reads.
mkdir -p "$work/app"
printf 'hello from a berth-built image\n' > "$work/app/greeting.txt"
cat > "$work/app/Dockerfile" <<'EOF2'
FROM busybox:demo AS notes
RUN --mount=type=cache,target=/cache echo "a build" >> /cache/log && wc -l < /cache/log > /builds.txt
FROM busybox:demo
ARG WHO=berth
ENV APP_HOME=/app
WORKDIR /app
COPY greeting.txt .
COPY --from=notes /builds.txt .
RUN echo "built by $WHO" > built-by.txt && ls -l /app
CMD ["sh", "-c", "cat /app/greeting.txt /app/built-by.txt"]
EOF2
"$berth" --root "$root" build -t demo/app:1 "$work/app"
"$berth" --root "$root" run --rm --network none demo/app:1
"$berth" --root "$root" build -t demo/app:1 "$work/app"
"$berth" --root "$root" history demo/app:1
"$berth" --root "$root" build --check "$work/app"
"$berth" --root "$root" build -q -o "type=oci,dest=$work/app-oci.tar" "$work/app"
skopeo inspect --config "oci-archive:$work/app-oci.tar" | head -12

# A registry on loopback: push there, pull into a third root.
"$berth" --root "$root" registry serve --addr 127.0.0.1:0 --storage "$work/registry" \
  >"$work/registry.out" 2>"$work/registry.log" &
registry_pid=$!
for _ in $(seq 50); do grep -q listening "$work/registry.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's|^listening on http://||p' "$work/registry.out")
"$berth" --root "$root" tag busybox:demo "$addr/demo/busybox:1"
"$berth" --root "$root" push "$addr/demo/busybox:1"
"$berth" --root "$root" tag demo/app:1 "$addr/demo/app:1"
"$berth" --root "$root" push "$addr/demo/app:1"
"$berth" --root "$work/root3" pull "$addr/demo/busybox:1"
"$berth" --root "$work/root3" pull "$addr/demo/app:1"
"$berth" --root "$work/root3" run --rm --network none "$addr/demo/app:1"
"$berth" --root "$work/root3" inspect --format '{{.Id}}' "$addr/demo/busybox:1"
skopeo inspect --tls-verify=false "docker://$addr/demo/busybox:1" | head -3
"$berth" --root "$work/root3" system check

# Share the build cache through the registry: the first root exports it (mode=max: every stage's
# steps and the cache mount's contents); a fresh root with only the base image builds the same
# image from it, every step CACHED, the same image ID.
"$berth" --root "$root" build -q -t demo/app:1 \
  --cache-to "type=registry,ref=$addr/demo/app:buildcache,mode=max" "$work/app"
"$berth" --root "$work/root4" pull -q "$addr/demo/busybox:1"
"$berth" --root "$work/root4" tag "$addr/demo/busybox:1" busybox:demo
"$berth" --root "$work/root4" build --progress plain -t demo/app:1 \
  --cache-from "type=registry,ref=$addr/demo/app:buildcache" "$work/app"
id_a=$("$berth" --root "$root" inspect --format '{{.Id}}' demo/app:1)
id_b=$("$berth" --root "$work/root4" inspect --format '{{.Id}}' demo/app:1)
[ "$id_a" = "$id_b" ] && echo "fresh root built $id_b from the shared cache: the same image"

# Run the pulled image: foreground, then detached with logs, exec, a volume, stop and rm.
"$berth" --root "$work/root3" run --rm --network none "$addr/demo/busybox:1" sh -c 'echo hello from $(hostname); cat /proc/1/cmdline | tr "\0" " "; echo'
"$berth" --root "$work/root3" run -d --name ticker --network none -v demo-data:/data "$addr/demo/busybox:1" \
  sh -c 'trap "exit 0" TERM; i=0; while true; do echo tick $i | tee -a /data/ticks; i=$((i+1)); sleep 0.2; done'
sleep 1
"$berth" --root "$work/root3" ps
"$berth" --root "$work/root3" logs --tail 2 ticker
"$berth" --root "$work/root3" exec ticker sh -c 'ps; wc -l /data/ticks'
"$berth" --root "$work/root3" stop ticker
"$berth" --root "$work/root3" inspect --format '{{.State.Status}} exit={{.State.ExitCode}}' ticker
"$berth" --root "$work/root3" rm ticker
"$berth" --root "$work/root3" run --rm --network none -v demo-data:/data "$addr/demo/busybox:1" sh -c "wc -l /data/ticks"
"$berth" --root "$work/root3" volume rm demo-data

# Networking: a user-defined network, a published port on the host's loopback, and a second
# container reaching the first by name through the embedded DNS server.
"$berth" --root "$work/root3" network create demo-net
"$berth" --root "$work/root3" run -d --name web --network demo-net -p 127.0.0.1:18080:80 "$addr/demo/busybox:1" \
  sh -c 'mkdir /www && echo hello over the network > /www/index.html && exec httpd -f -p 80 -h /www'
"$berth" --root "$work/root3" port web
for _ in $(seq 50); do curl -sf http://127.0.0.1:18080/ && break; sleep 0.1; done
"$berth" --root "$work/root3" run --rm --network demo-net "$addr/demo/busybox:1" sh -c 'wget -q -O - http://web/'
"$berth" --root "$work/root3" network inspect -f '{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}' demo-net
"$berth" --root "$work/root3" rm -f web
"$berth" --root "$work/root3" network rm demo-net
"$berth" --root "$root" info
