#!/usr/bin/env bash
# Installs the packages, builds sbxd, sbx-init, sbx and sbx_bench (Release
# flags of the default build type) into ./build-bench, or ./build when only
# that exists, and runs the benchmark suite as root. Arguments go to
# sbx_bench, e.g. `--quick`, `--json out.json`, `--only oneshot,exec`,
# `--idle 500`. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root (sbxd needs it)" >&2; exit 1; }
./scripts/install-deps.sh
build=${SBX_BENCH_BUILD_DIR:-build-bench}
if [ -z "${SBX_BENCH_BUILD_DIR:-}" ] && [ ! -d build-bench ] && [ -d build ]; then build=build; fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBX_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j"${SBX_JOBS:-2}" --target sbxd sbx-init sbx sbx_bench >/dev/null
exec "$build/bin/sbx_bench" "$@"
