#!/usr/bin/env bash
# What fork bombs in some sandboxes cost everyone else: `sbx run -- true`
# from another client, timed as a whole process, first with nothing else
# running (the baseline), then beside BOMBS sandboxes (pids 64, one cpu)
# each running a fork loop that never backs off
# (perl -e 'while(1){fork}'). Prints median, p90, max and failures of each,
# and how long destroying the bomb sandboxes took. Starts its own sbxd on
# its own socket, state directory, cgroup parent and uid range, and stops
# it by pid. Needs root. See docs/operations.md (security model).
#   bench/forkbomb_neighbour.sh [--sbxd PATH] [--sbx PATH] [--runs N] [--bombs N]
set -euo pipefail
cd "$(dirname "$0")/.."
sbxd=build/bin/sbxd
sbx=build/bin/sbx
runs=20
bombs=4
while [ $# -gt 0 ]; do
  case $1 in
    --sbxd) sbxd=$2; shift 2 ;;
    --sbx) sbx=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --bombs) bombs=$2; shift 2 ;;
    *) echo "usage: $0 [--sbxd PATH] [--sbx PATH] [--runs N] [--bombs N]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: run as root (sbxd needs it)" >&2; exit 1; }

dir=$(mktemp -d /tmp/sbx-forkbomb.XXXXXX)
parent=sbx-forkbomb-$$
uid_base=$((3200000000 + ($$ % 1000) * 65536 * 16))
S=("$sbx" --server "unix://$dir/sbxd.sock")
pid=
cleanup() {
  if [ -n "$pid" ]; then
    "${S[@]}" ls 2>/dev/null | awk 'NR > 1 {print $1}' |
      xargs -r "${S[@]}" rm >/dev/null 2>&1 || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

"$sbxd" --config /dev/null --socket "$dir/sbxd.sock" --state-dir "$dir/state" \
  --cgroup-parent "$parent" --uid-base "$uid_base" --pool-size 2 --log-level warn \
  2>"$dir/sbxd.log" &
pid=$!
for _ in $(seq 100); do
  "${S[@]}" ls >/dev/null 2>&1 && break
  sleep 0.1
done

# Times `runs` processes of `sbx run -- true`; prints "median p90 max failed".
measure() {
  local times=() failed=0
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s%N)
    "${S[@]}" run -- true >/dev/null 2>&1 || failed=$((failed + 1))
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v failed="$failed" '
    { t[NR] = $1 }
    END {
      p50 = t[int((NR + 1) / 2)]; p90 = t[int(NR * 0.9 + 0.5)]
      printf "median %8.1f ms   p90 %8.1f ms   max %8.1f ms   failed %d of %d\n",
             p50 / 1000, p90 / 1000, t[NR] / 1000, failed, NR
    }'
}

echo "sbx run -- true, $runs runs, $(nproc) cpus, sbxd $sbxd"
printf '%-24s' "alone:"
measure
ids=()
for _ in $(seq "$bombs"); do ids+=("$("${S[@]}" create --pids 64 --cpus 1)"); done
clients=()
for id in "${ids[@]}"; do
  "${S[@]}" exec "$id" -- perl -e 'while(1){fork}' >/dev/null 2>&1 &
  clients+=($!)
done
sleep 3
printf '%-24s' "beside $bombs fork bombs:"
measure
t0=$(date +%s%N)
rm_status=ok
if ! "${S[@]}" rm "${ids[@]}" >/dev/null 2>"$dir/rm.err"; then
  rm_status="failed: $(tr '\n' ' ' <"$dir/rm.err")"
fi
t1=$(date +%s%N)
echo "destroying the $bombs bomb sandboxes: $(((t1 - t0) / 1000000)) ms, $rm_status"
for c in "${clients[@]}"; do wait "$c" 2>/dev/null || true; done
