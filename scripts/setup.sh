#!/usr/bin/env bash
# Install what berth's build, demo and tests need on a Debian machine (run as root). Idempotent.
set -euo pipefail

pkgs=(busybox-static skopeo umoci hyperfine libseccomp-dev pkg-config cmake docker-registry curl wrk openssl podman crun runc iproute2 util-linux tini nftables iperf3 python3 python3-venv git gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust stable) is required; install it with rustup" >&2; exit 1; }
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest" >&2
  cargo install cargo-nextest --locked
fi

# An S3-compatible server for the object-storage tests (moto, from PyPI) in its own venv.
MOTO_VENV=/opt/berth-test-venv
if [ ! -x "$MOTO_VENV/bin/moto_server" ]; then
  echo "setup: installing moto[server] into $MOTO_VENV" >&2
  /usr/bin/python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==5.1.*"
fi

# An Azure Blob Storage emulator for the Azure tests (Azurite, from npm) in its own prefix.
AZURITE_PREFIX=/opt/berth-test-node
if [ ! -x "$AZURITE_PREFIX/node_modules/.bin/azurite-blob" ]; then
  # Debian's npm only where no Node.js with its own npm is installed (they conflict).
  if ! command -v npm >/dev/null 2>&1; then
    echo "setup: installing nodejs npm" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq nodejs npm >/dev/null
  fi
  echo "setup: installing azurite into $AZURITE_PREFIX" >&2
  mkdir -p "$AZURITE_PREFIX"
  npm install --prefix "$AZURITE_PREFIX" --no-audit --no-fund --silent "azurite@3" >/dev/null
fi
