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
procs=$(pgrep -af "__supervise" | grep -F "$base/berth-test-" || true)
if [ -n "$procs" ]; then
  echo "leak: supervisors still running:"; echo "$procs"; status=1
fi
[ $status -eq 0 ] && echo "leaks: none (mounts, cgroups, supervisors)"
exit $status
