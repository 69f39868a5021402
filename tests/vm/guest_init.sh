#!/bin/busybox sh
# /init of the v2 test VM's initramfs (see run_vm_tests.py and
# docs/cgroup-v2.md). It loads the virtio, 9p and overlay modules, mounts the
# host's root (shared read-only over 9p) under a tmpfs overlay, and hands over
# to guest_run.sh (from the host's tree, named by sbx.run= on the kernel
# command line) as pid 1 of that root. Everything here is busybox.
/bin/busybox mkdir -p /proc /sys /dev /bin /lower /rw /newroot
/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "sbx-vm: $*" > /dev/console; }
die() {
  say "FATAL: $*"
  for p in /proc /newroot/proc; do echo o > "$p/sysrq-trigger"; done 2>/dev/null
  sleep 10
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say "initramfs up at $(cut -d' ' -f1 /proc/uptime) s"

# The modules and their load order (dependencies first) were resolved on the
# host by modprobe --show-depends.
while read -r module; do
  insmod "/modules/$module" || die "insmod $module failed"
done < /modules/order

arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
run=$(arg sbx.run)
[ -n "$run" ] || die "no sbx.run= on the kernel command line"

# msize: larger 9p messages cut the round trips of every read (TCG makes each
# one costly). The host is read-only to the guest; writes land in tmpfs.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /lower ||
  die "mounting the host root over 9p failed"
mount -t tmpfs -o mode=0755 tmpfs /rw || die "tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot ||
  die "mounting the overlay root failed"

# switch_root, not chroot: a chrooted process may not create user namespaces.
for fs in proc sys dev; do
  mount --move "/$fs" "/newroot/$fs" || die "moving /$fs"
done
say "switching root at $(cut -d' ' -f1 /newroot/proc/uptime) s"
exec switch_root /newroot /bin/bash "$run"
die "switch_root failed"
