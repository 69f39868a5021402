#!/usr/bin/env bash
# Installs the packages, builds everything with tests and runs the whole
# suite; then builds again with AddressSanitizer + UndefinedBehaviorSanitizer
# and runs the unit and integration suites under them, and with
# ThreadSanitizer for the daemon's concurrency tests (scripts/sanitize.sh).
# Arguments go to the first ctest run (e.g. -L unit), and then the sanitizer
# pass is left out; so it is with SBX_SANITIZE=0.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh -DSBX_BUILD_TESTS=ON
(cd build && ctest --output-on-failure -j"${SBX_TEST_JOBS:-2}" --timeout 600 "$@")
if [ $# -eq 0 ] && [ "${SBX_SANITIZE:-1}" != 0 ]; then
  ./scripts/sanitize.sh all
fi
