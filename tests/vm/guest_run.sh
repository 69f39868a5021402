#!/bin/bash
# pid 1 of the v2 test VM, after guest_init.sh switched to the overlay of the
# host's root. Sets up a plain cgroup v2 host (cgroup2 alone at
# /sys/fs/cgroup, every controller enabled in the root's subtree_control),
# runs the test binaries listed by the host in config.sh of the results share,
# leaves a gtest XML file, a log and an exit status per binary there, and
# powers the VM off. The host (run_vm_tests.py) judges the results.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TERM=dumb
umask 022

results=/run/sbx-vm-results

say() { echo "sbx-vm: $*" > /dev/console; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
poweroff_now() {
  sync
  umount "$results" 2>/dev/null
  echo o > /proc/sysrq-trigger
  sleep 30
}
die() {
  say "FATAL: $*"
  [ -d "$results" ] && echo "$*" > "$results/fatal" 2>/dev/null
  poweroff_now
}

setup() {
  mkdir -p /dev/pts /dev/shm /tmp /run
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts || return 1
  ln -sf pts/ptmx /dev/ptmx
  # What udev would add: bash's process substitution needs /dev/fd.
  ln -sfn /proc/self/fd /dev/fd
  ln -sf /proc/self/fd/0 /dev/stdin
  ln -sf /proc/self/fd/1 /dev/stdout
  ln -sf /proc/self/fd/2 /dev/stderr
  mount -t tmpfs -o mode=1777 tmpfs /dev/shm || return 1
  # The host's /tmp stays reachable at /.host-tmp (below) for a build
  # tree that lives there, as a CI clone may; the tests get a fresh /tmp.
  mkdir -p /.host-tmp && mount --bind /tmp /.host-tmp || return 1
  mount -t tmpfs -o mode=1777 tmpfs /tmp || return 1
  mount -t tmpfs -o mode=0755 tmpfs /run || return 1
  mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || return 1
  echo "+cpuset +cpu +io +memory +pids" > /sys/fs/cgroup/cgroup.subtree_control || return 1
  mkdir -p "$results"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 sbxresults "$results" || return 1
  ip link set lo up || return 1
  hostname sbx-vm
}

setup || die "setting up the guest failed"
[ -r "$results/config.sh" ] || die "no config.sh in the results share"
# shellcheck source=/dev/null
source "$results/config.sh"  # tests=(name|timeout|binary args...), jobs, env exports
mkdir -p "$results/xml" "$results/logs" "$results/status"

# A test binary under the host's /tmp (a build tree there): bring its
# top-level directory back over the fresh /tmp, at the same path.
for spec in "${tests[@]}"; do
  IFS='|' read -r -a fields <<< "$spec"
  case "${fields[2]}" in
    /tmp/?*)
      top=${fields[2]#/tmp/}
      top=${top%%/*}
      if [ ! -e "/tmp/$top" ]; then
        mkdir -p "/tmp/$top" && mount --bind "/.host-tmp/$top" "/tmp/$top" ||
          die "binding /tmp/$top from the host"
      fi
      ;;
  esac
done

{
  echo "kernel: $(uname -r)"
  echo "cpus: $(nproc)"
  echo "memory: $(sed -n 's/^MemTotal: *//p' /proc/meminfo)"
  echo "cgroup fs: $(stat -f -c %T /sys/fs/cgroup)"
  echo "root cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
  echo "root cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
  echo "own cgroup: $(cat /proc/self/cgroup)"
  echo "ready at: $(uptime_s) s"
} > "$results/guest-info.txt"
while read -r line; do say "$line"; done < "$results/guest-info.txt"

# Runs one binary as `tag`: gtest XML, log and "exit-code milliseconds" in
# the results share.
run_binary() {
  local tag=$1 timeout=$2 binary=$3
  shift 3
  local start rc ms
  start=$(date +%s%N)
  timeout -k 10 "$timeout" "$binary" "$@" --gtest_output="xml:$results/xml/$tag.xml" \
    > "$results/logs/$tag.log" 2>&1 < /dev/null
  rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  echo "$rc $ms" > "$results/status/$tag"
  say "finished $tag: exit $rc in $((ms / 1000)).$(printf %03d $((ms % 1000))) s"
}

# The failed tests of a gtest XML report, as a --gtest_filter.
failed_filter() {
  python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
names = [f"{c.get('classname')}.{c.get('name')}"
         for c in ET.parse(sys.argv[1]).getroot().iter("testcase")
         if c.find("failure") is not None or c.find("error") is not None]
print(":".join(names))
PY
}

# One test binary; the tests that failed run once more (retries=1 in
# config.sh), and the host reports them as passed on retry or failed.
run_one() {
  local name=$1 timeout=$2
  shift 2
  run_binary "$name" "$timeout" "$@"
  [ "${retries:-0}" -gt 0 ] && [ -s "$results/xml/$name.xml" ] || return 0
  local filter
  filter=$(failed_filter "$results/xml/$name.xml") || return 0
  [ -n "$filter" ] || return 0
  say "retrying the failed tests of $name: $filter"
  run_binary "$name.retry" "$timeout" "$@" --gtest_filter="$filter"
}

say "running ${#tests[@]} test binaries, ${jobs:-1} at a time"
running=0
for spec in "${tests[@]}"; do
  IFS='|' read -r -a fields <<< "$spec"
  if [ "$running" -ge "${jobs:-1}" ]; then
    wait -n
    running=$((running - 1))
  fi
  say "starting ${fields[0]} at $(uptime_s) s"
  run_one "${fields[@]}" &
  running=$((running + 1))
done
wait
say "all done at $(uptime_s) s"
echo "$(uptime_s)" > "$results/done"
poweroff_now
