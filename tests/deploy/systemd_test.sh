#!/usr/bin/env bash
# deploy/systemd/sbxd.service, offline:
# * `systemd-analyze verify` loads it cleanly (it needs no running systemd;
#   ExecStart is pointed at the built sbxd, since verify checks the binary).
#   The one warning allowed is DelegateSubgroup= unknown to systemd < 254.
# * The settings sbx depends on are there (delegation, KillMode=process so
#   sandboxes outlive a restart, no task cap, OOMPolicy=continue, ...), and
#   none of the hardening options that would break sandboxes is.
# * ExecStart's flags are flags of sbxd, and its socket and state paths are
#   the unit's RuntimeDirectory and StateDirectory.
#   systemd_test.sh SBXD      (from the repository root)
set -euo pipefail
sbxd=$(realpath "${1:?usage: systemd_test.sh SBXD}")
unit=deploy/systemd/sbxd.service
command -v systemd-analyze >/dev/null ||
  { echo "systemd-analyze is missing (scripts/deps/deploy.list)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# ---- systemd-analyze verify ---------------------------------------------------
mkdir -p "$tmp/units"
sed "s#^ExecStart=/usr/local/bin/sbxd #ExecStart=$sbxd #" "$unit" >"$tmp/units/sbxd.service"
grep -q "^ExecStart=$sbxd " "$tmp/units/sbxd.service" || fail "ExecStart is not /usr/local/bin/sbxd ..."
rc=0
SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$tmp/units/sbxd.service" \
  >"$tmp/out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "systemd-analyze verify exited $rc: $(cat "$tmp/out")"
version=$(systemd-analyze --version | sed -n 's/^systemd \([0-9]*\).*/\1/p' | head -1)
while IFS= read -r line; do
  case "$line" in
    *"$tmp/units/sbxd.service"*"Unknown key 'DelegateSubgroup'"*)
      [ "${version:-0}" -lt 254 ] || fail "systemd $version: $line" ;;
    *"$tmp/units/"* | *sbxd.service*) fail "systemd-analyze verify: $line" ;;
    "") ;;
    *) echo "note (not about this unit): $line" ;;
  esac
done <"$tmp/out"

# ---- settings -------------------------------------------------------------------
# The last assignment of KEY in [Service].
get() { sed -n '/^\[Service\]/,/^\[/p' "$unit" | sed -n "s/^$1=//p" | tail -1; }
want() { [ "$(get "$1")" = "$2" ] || fail "$1 must be '$2' (is '$(get "$1")'): $3"; }
want Type simple "sbxd does not fork or notify"
want Delegate yes "sbxd creates the sandboxes' cgroups below its own"
want KillMode process "sandboxes must outlive a restart of sbxd"
want Restart on-failure "a crashed sbxd comes back and re-attaches"
want RuntimeDirectory sbx "the socket lives in /run/sbx"
want StateDirectory sbx "sandbox state lives in /var/lib/sbx"
want TasksMax infinity "the unit's cgroup holds every sandbox"
want OOMPolicy continue "an OOM kill in a sandbox must not stop sbxd"
[ -n "$(get TimeoutStopSec)" ] || fail "TimeoutStopSec must be set"
[ "$(sed -n '/^\[Install\]/,/^\[/p' "$unit" | sed -n 's/^WantedBy=//p')" = multi-user.target ] ||
  fail "WantedBy=multi-user.target"

# Options that break sandboxes (why: the comments in the unit, docs/deploy.md).
for key in ProtectControlGroups ProtectKernelTunables ProtectKernelLogs ProtectProc ProcSubset \
    PrivateUsers PrivateNetwork RestrictNamespaces ProtectHostname ProtectClock PrivateDevices \
    DeviceAllow DevicePolicy MemoryDenyWriteExecute SystemCallFilter SystemCallArchitectures \
    RestrictAddressFamilies LockPersonality PrivatePIDs; do
  value=$(get "$key")
  case "$value" in
    "" | no | false | default) ;;
    *) fail "$key=$value would break sandboxes" ;;
  esac
done

# ---- ExecStart ----------------------------------------------------------------------
exec_start=$(get ExecStart)
read -r -a argv <<<"$exec_start"
[ "${argv[0]}" = /usr/local/bin/sbxd ] || fail "ExecStart runs ${argv[0]}, not cmake's install path"
help=$("$sbxd" --help)
parent=sbx
for ((i = 1; i < ${#argv[@]}; i++)); do
  a=${argv[$i]}
  case "$a" in
    --*)
      flag=${a%%=*}
      grep -q -- "$flag\b" <<<"$help" || fail "ExecStart: $flag is not a flag of sbxd"
      if [[ "$a" != *=* ]]; then value=${argv[$((i + 1))]:-}; i=$((i + 1)); else value=${a#*=}; fi
      case "$flag" in
        --socket) [[ "$value" == /run/sbx/* ]] || fail "--socket $value is not in RuntimeDirectory" ;;
        --state-dir) [ "$value" = /var/lib/sbx ] || fail "--state-dir $value is not StateDirectory" ;;
        --cgroup-parent) parent=$value ;;
      esac ;;
    *) fail "ExecStart: unexpected argument $a" ;;
  esac
done
want DelegateSubgroup "$parent.daemon" "sbxd's own leaf is <--cgroup-parent>.daemon"

if [ "$fails" -gt 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "systemd unit ok (systemd $version)"
