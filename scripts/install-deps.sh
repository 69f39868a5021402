#!/usr/bin/env bash
# Installs every Debian 12 package sbx needs to build, run and test.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root" >&2; exit 1; }

packages=(
  # build
  build-essential cmake pkg-config git
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libgtest-dev libgmock-dev
  libseccomp-dev libcap-dev libcli11-dev nlohmann-json3-dev
  # the default `host` image: what commands in a sandbox find under /usr
  coreutils procps iproute2 bash python3 gcc g++ util-linux bubblewrap  # bwrap: bench baseline
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
