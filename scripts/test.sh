#!/usr/bin/env bash
# Every check CI makes: setup, formatting, lints, and the whole test suite (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CI="${CI:-true}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Issue 16's structural bounds: no file over 800 lines of non-test code, no import cycle.
python3 scripts/structure.py --quiet
cargo nextest run --workspace --no-fail-fast --failure-output final
# Containers, mounts and cgroups the tests made must all be gone.
bash scripts/leaks.sh
