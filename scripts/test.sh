#!/usr/bin/env bash
# Installs the packages, builds everything with tests and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh -DSBX_BUILD_TESTS=ON
cd build
ctest --output-on-failure -j"${SBX_TEST_JOBS:-2}" --timeout 600 "$@"
