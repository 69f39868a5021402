#!/usr/bin/env bash
# Installs the packages, builds, installs sbxd/sbx under /usr/local and starts
# sbxd with its defaults (socket /run/sbx/sbxd.sock, state /var/lib/sbx).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh --core
./scripts/build.sh -DSBX_BUILD_TESTS=OFF
cmake --install build >/dev/null

if [ -f /run/sbx/sbxd.pid ] && kill -0 "$(cat /run/sbx/sbxd.pid)" 2>/dev/null; then
  echo "sbxd already running (pid $(cat /run/sbx/sbxd.pid))"
  exit 0
fi
mkdir -p /run/sbx /var/log
nohup /usr/local/bin/sbxd >>/var/log/sbxd.log 2>&1 &
echo $! > /run/sbx/sbxd.pid
for _ in $(seq 100); do
  if /usr/local/bin/sbx ls >/dev/null 2>&1; then
    echo "sbxd running (pid $(cat /run/sbx/sbxd.pid)), socket /run/sbx/sbxd.sock, log /var/log/sbxd.log"
    exit 0
  fi
  sleep 0.1
done
echo "sbxd did not come up; see /var/log/sbxd.log" >&2
tail -20 /var/log/sbxd.log >&2
exit 1
