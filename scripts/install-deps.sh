#!/usr/bin/env bash
# Installs every Debian 12 package sbx needs to build, run and test.
# The core list is below; each feature that needs more (the v2 VM, the
# router, the other-language clients, ...) keeps its packages in
# scripts/deps/<feature>.list, one package per line, '#' comments allowed.
# With --core only the core list is installed (what `up.sh` needs).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root" >&2; exit 1; }

packages=(
  # build
  build-essential cmake pkg-config git
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev libgtest-dev libgmock-dev
  libseccomp-dev libcap-dev libcli11-dev nlohmann-json3-dev
  libyaml-cpp-dev prometheus-cpp-dev  # sbxd's config file and metrics (scripts/deps/ops.list)
  # the default `host` image: what commands in a sandbox find under /usr
  coreutils procps iproute2 bash python3 gcc g++ util-linux bubblewrap  # bwrap: bench baseline
)
if [ "${1:-}" != --core ]; then
  for list in scripts/deps/*.list; do
    [ -e "$list" ] || continue
    while read -r p; do packages+=("$p"); done < <(sed 's/#.*//' "$list" | tr -s ' \t' '\n' | grep -v '^$')
  done
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# npm: Debian's package conflicts with NodeSource's nodejs (which bundles
# npm), so it is installed only where the command is missing.
if [ "${1:-}" != --core ] && ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi
