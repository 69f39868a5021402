#!/usr/bin/env bash
# sbxd under the privileges deploy/systemd/sbxd.service leaves it: the
# unit's CapabilityBoundingSet (and NoNewPrivileges) applied with setpriv to
# a real sbxd, which then creates a sandbox, runs commands (with a tty),
# copies files both ways, changes limits, is restarted and re-attaches to
# the sandbox, destroys it and serves a one-shot Run. A capability the unit
# forgot makes one of these fail.
# Needs root and a kernel that allows sandboxes; skips (77) otherwise. Uses
# its own socket, state directory, cgroup parent and uid range, and stops
# every sbxd it starts by pid.
#   unit_caps_test.sh SBXD SBX      (from the repository root)
set -euo pipefail
sbxd=${1:?usage: unit_caps_test.sh SBXD SBX}
sbx=${2:?usage: unit_caps_test.sh SBXD SBX}
unit=deploy/systemd/sbxd.service
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (sbxd does)"; exit 77; }
command -v setpriv >/dev/null || { echo "setpriv (util-linux) is missing"; exit 1; }

caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit" | tail -1)
[ -n "$caps" ] || { echo "FAIL: $unit has no CapabilityBoundingSet"; exit 1; }
bounding=-all
for c in $caps; do
  [[ "$c" == CAP_* ]] || { echo "FAIL: unexpected capability '$c'"; exit 1; }
  c=${c#CAP_}
  bounding+=",+${c,,}"
done
nnp=()
[ "$(sed -n 's/^NoNewPrivileges=//p' "$unit" | tail -1)" = yes ] && nnp=(--no-new-privs)

dir=$(mktemp -d /tmp/sbx-unit-caps.XXXXXX)
uid_base=$((3700000000 + ($$ % 1000) * 65536 * 8))
parent=sbx-unit-caps-$$
pid=
S=(--server "unix://$dir/sbxd.sock")

start() {  # start [setpriv args...]
  rm -f "$dir/sbxd.sock"
  "$@" "$sbxd" --socket "$dir/sbxd.sock" --state-dir "$dir/state" --cgroup-parent "$parent" \
    --uid-base "$uid_base" --max-sandboxes 8 --log-level warn 2>>"$dir/sbxd.log" &
  pid=$!
  for _ in $(seq 100); do
    "$sbx" "${S[@]}" ls >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "sbxd did not come up:"; cat "$dir/sbxd.log"
  return 1
}
stop() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
cleanup() {
  stop
  # Whatever a failed run left: destroy it with an unrestricted sbxd.
  if [ -d "$dir/state/sandboxes" ] && [ -n "$(ls -A "$dir/state/sandboxes" 2>/dev/null)" ]; then
    if start; then
      "$sbx" "${S[@]}" ls 2>/dev/null | awk 'NR > 1 {print $1}' | xargs -r "$sbx" "${S[@]}" rm || true
      stop
    fi
  fi
  rm -rf "$dir"
  # A start-up that failed half-way may leave empty parent cgroups behind;
  # rmdir removes only empty ones, children first.
  find /sys/fs/cgroup -maxdepth 8 -depth -type d -path "*/$parent*" -exec rmdir {} + 2>/dev/null || true
}
trap cleanup EXIT

# Can this host run sandboxes at all?
start || { echo "skipped: sbxd does not start here"; exit 77; }
if ! "$sbx" "${S[@]}" run -- true >/dev/null 2>"$dir/probe.err"; then
  echo "skipped: this host cannot run sandboxes: $(cat "$dir/probe.err")"
  exit 77
fi
stop

restricted=(setpriv --bounding-set "$bounding" "${nnp[@]}" --)
echo "sbxd under: ${restricted[*]}"
fail() { echo "FAIL: $*"; echo "--- sbxd log"; cat "$dir/sbxd.log"; exit 1; }
expect() {  # expect WANT DESCRIPTION CMD...
  local want=$1 what=$2 got
  shift 2
  got=$("$@" 2>&1) || fail "$what: exit $?: $got"
  [ "$got" = "$want" ] || fail "$what: got '$got', want '$want'"
}

start "${restricted[@]}" || fail "sbxd did not start with the unit's capabilities"
id=$("$sbx" "${S[@]}" create --memory 128M --pids 64) || fail "create"
expect "hi" "exec" "$sbx" "${S[@]}" exec "$id" -- sh -c 'echo hi'
tty=$("$sbx" "${S[@]}" exec -t "$id" -- tty </dev/null 2>&1) || fail "exec -t: $tty"
[[ "$tty" == /dev/pts/* ]] || fail "exec -t: got '$tty'"
echo "data $$" >"$dir/in.txt"
"$sbx" "${S[@]}" cp "$dir/in.txt" "$id:/work/in.txt" || fail "cp into the sandbox"
"$sbx" "${S[@]}" cp "$id:/work/in.txt" "$dir/out.txt" || fail "cp out of the sandbox"
cmp -s "$dir/in.txt" "$dir/out.txt" || fail "cp: the file came back different"
"$sbx" "${S[@]}" limits "$id" --memory 64M --pids 32 || fail "limits"

# A restart: the sandbox keeps running and the new sbxd re-attaches.
stop
start "${restricted[@]}" || fail "sbxd did not restart"
"$sbx" "${S[@]}" ls | grep -q "$id" || fail "the sandbox did not survive the restart"
expect "data $$" "exec after the restart" "$sbx" "${S[@]}" exec "$id" -- cat /work/in.txt
"$sbx" "${S[@]}" rm "$id" || fail "rm"
! "$sbx" "${S[@]}" ls | grep -q "$id" || fail "the sandbox is still listed after rm"
expect "ok" "run" "$sbx" "${S[@]}" run -- echo ok
stop
echo "sbxd works under the unit's capability bounding set ($caps)"
