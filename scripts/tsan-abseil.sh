#!/usr/bin/env bash
# Builds Debian's own abseil (the installed version, with Debian's patches)
# as shared libraries with -fsanitize=thread, into $1 (default
# build-tsan/abseil), and prints the directory of the libraries.
#
# Why: gRPC and sbx lock through absl::Mutex, which tells ThreadSanitizer
# about its ordering only when abseil itself is built with TSan. With
# Debian's uninstrumented copy TSan sees no ordering at all and reports
# races that are none. The libraries keep their sonames, so the tests load
# them through LD_LIBRARY_PATH in place of Debian's. Built once; about
# 7 minutes on 2 cpus.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build-tsan/abseil}")
jobs=${SBX_JOBS:-2}
if [ -f "$out/lib/.built" ]; then echo "$out/lib"; exit 0; fi

version=$(dpkg-query -W -f='${source:Version}' libabsl-dev)
mkdir -p "$out/download"
fetch() { (cd "$out/download" && apt-get source -qq --download-only "abseil=$version") >&2; }
if ! fetch 2>/dev/null; then
  # No source index yet: add Debian's (deb-src) for the release in use, at
  # the mirror its binary packages come from.
  . /etc/os-release
  mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources \
             2>/dev/null | grep -v security | head -n1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' \
                                 /etc/apt/sources.list 2>/dev/null)
  mirror=${mirror:-http://deb.debian.org/debian}
  printf 'Types: deb-src\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n' \
    "$mirror" "$VERSION_CODENAME" "$VERSION_CODENAME" /usr/share/keyrings/debian-archive-keyring.gpg \
    > /etc/apt/sources.list.d/sbx-deb-src.sources
  apt-get update -qq >&2
  fetch
fi
rm -rf "$out/src"
dpkg-source -x "$out"/download/abseil_*.dsc "$out/src" >&2
# The options Debian builds its shared libraries with (debian/rules).
cmake -S "$out/src" -B "$out/build" -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" >&2
cmake --build "$out/build" -j"$jobs" >&2
rm -rf "$out/lib" && mkdir -p "$out/lib"
find "$out/build" -name 'libabsl_*.so.*' -exec cp -P {} "$out/lib/" \;
touch "$out/lib/.built"
echo "$out/lib"
