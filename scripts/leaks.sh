#!/usr/bin/env bash
# After the whole suite: nothing a test made may be left on the host — no mount under a test
# root, no container cgroup, no supervisor of a test root still running. Exit 1 with a list if so.
set -uo pipefail
base=${BERTH_TEST_TMP:-${TMPDIR:-/tmp}}
status=0
mounts=$(awk '{print $5}' /proc/self/mountinfo | grep -F "$base/berth-test-" || true)
if [ -n "$mounts" ]; then
  echo "leak: mounts left under test roots:"; echo "$mounts"; status=1
fi
cgroups=$(find /sys/fs/cgroup -maxdepth 3 -path '*/berth/*' -type d 2>/dev/null | grep -E '/berth/[0-9a-f]{64}$' || true)
if [ -n "$cgroups" ]; then
  echo "leak: container cgroups left:"; echo "$cgroups"; status=1
fi
# RUN steps' cgroups (build-<pid>-…) whose build process is gone: neither the build nor the
# sweep of the next build removed them.
stale=""
for d in $(find /sys/fs/cgroup -maxdepth 3 -path '*/berth/build-*' -type d 2>/dev/null); do
  pid=$(basename "$d" | cut -d- -f2)
  [ -d "/proc/$pid" ] || stale="$stale$d"$'\n'
done
if [ -n "$stale" ]; then
  echo "leak: build step cgroups left:"; printf '%s' "$stale"; status=1
fi
procs=$(pgrep -af "__supervise" | grep -F "$base/berth-test-" || true)
if [ -n "$procs" ]; then
  echo "leak: supervisors still running:"; echo "$procs"; status=1
fi
# Networking: test bridges (bt<pid>), berth's veths, outside namespaces (bo<pid>), test roots'
# nftables tables.
links=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(bt[0-9a-f]+x[0-9]+|veth[0-9a-f]{11}|bo[0-9a-f]+h)$' || true)
if [ -n "$links" ]; then
  echo "leak: network links left:"; echo "$links"; status=1
fi
tables=$(nft list tables 2>/dev/null | grep -E '^table ip berth_' || true)
if [ -n "$tables" ]; then
  echo "leak: nftables tables left:"; echo "$tables"; status=1
fi
netns=$(ip netns list 2>/dev/null | grep -E '^bo[0-9a-f]+' || true)
if [ -n "$netns" ]; then
  echo "leak: network namespaces left:"; echo "$netns"; status=1
fi
[ $status -eq 0 ] && echo "leaks: none (mounts, cgroups, supervisors, links, nft tables, namespaces)"
exit $status
