#!/usr/bin/env python3
"""Runs test binaries inside a cgroup v2 VM and judges their gtest results.

The VM is Debian 12's kernel (linux-image-amd64, 6.1) under qemu's software
emulation (TCG), booted from a small initramfs (busybox + the virtio, 9p and
overlay modules) that mounts the host's root read-only over 9p under a tmpfs
overlay. The guest therefore sees the build tree at the same paths, so the
test binaries and the paths baked into them work unchanged. guest_run.sh
mounts cgroup2 alone at /sys/fs/cgroup, enables every controller in the
root's subtree_control, runs the binaries and writes gtest XML, logs and exit
statuses to a second, writable 9p share; this script then counts them.

Exit status: 0 when every test ran and passed, 1 otherwise, 77 (ctest's
SKIP_RETURN_CODE) when a tool the VM needs is not installed (see
scripts/deps/vm.list). See docs/cgroup-v2.md.
"""

import argparse
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = 77
# Modules the initramfs loads (with their dependencies) to reach the host's
# root: the virtio PCI transport, 9p over virtio, overlayfs.
MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay"]
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "busybox": "busybox-static",
    "depmod": "kmod",
    "modprobe": "kmod",
    "cpio": "cpio",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
}


def log(msg):
    print(f"vm: {msg}", flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def missing_tools():
    return [f"{t} (package {p})" for t, p in TOOLS.items() if shutil.which(t) is None]


# ---- the kernel ---------------------------------------------------------


def kernel_package():
    """The versioned package linux-image-amd64 depends on now."""
    out = run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    m = re.search(r"Depends:\s*(linux-image-[0-9][^\s]*)", out)
    if not m:
        raise RuntimeError("apt-cache knows no linux-image-amd64 (run apt-get update):\n" + out)
    return m.group(1)


def with_fresh_lists(what, action):
    """Runs action(); if apt's package lists are missing or stale (a 404 for
    a superseded version), refreshes them once and tries again."""
    try:
        return action()
    except (subprocess.CalledProcessError, RuntimeError) as e:
        detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else str(e)
        log(f"{what} failed ({(detail or '').strip()[-300:]}); running apt-get update once")
        run(["apt-get", "update", "-qq"])
        return action()


def download_kernel(cache_dir):
    """apt-get downloads the current kernel package; returns (name, .deb)."""
    name = kernel_package()
    tree = os.path.join(cache_dir, name)
    if os.path.isdir(os.path.join(tree, "boot")):
        return name, None  # unpacked by an earlier run
    log(f"downloading {name}")
    for old in os.listdir(cache_dir):
        if old.endswith(".deb"):
            os.remove(os.path.join(cache_dir, old))
    run(["apt-get", "download", name], cwd=cache_dir)
    debs = [f for f in os.listdir(cache_dir) if f.startswith(name + "_")]
    if len(debs) != 1:
        raise RuntimeError(f"apt-get download {name} left {debs} in {cache_dir}")
    return name, os.path.join(cache_dir, debs[0])


def fetch_kernel(cache_dir):
    """The kernel package, unpacked into cache_dir (never installed into
    /boot). Returns (root of the unpacked tree, kernel release)."""
    os.makedirs(cache_dir, exist_ok=True)
    deb = os.environ.get("SBX_VM_KERNEL_DEB")
    if deb:
        name = os.path.basename(deb).split("_")[0]
    else:
        name, deb = with_fresh_lists("fetching the kernel",
                                     lambda: download_kernel(cache_dir))
    tree = os.path.join(cache_dir, name)
    if not os.path.isdir(os.path.join(tree, "boot")):
        tmp = tree + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", deb, tmp])
        os.rename(tmp, tree)
    releases = os.listdir(os.path.join(tree, "lib", "modules"))
    if len(releases) != 1:
        raise RuntimeError(f"expected one kernel release in {tree}, found {releases}")
    release = releases[0]
    if not os.path.exists(os.path.join(tree, "lib", "modules", release, "modules.dep")):
        run(["depmod", "-b", tree, release])
    return tree, release


def module_files(tree, release):
    """The .ko files of MODULES and what they need, dependencies first."""
    order = []
    for module in MODULES:
        out = run(["modprobe", "-d", tree, "-S", release, "--show-depends", module]).stdout
        for line in out.splitlines():
            fields = line.split()
            if fields[:1] == ["builtin"]:
                continue
            if fields[:1] != ["insmod"]:
                raise RuntimeError(f"unexpected modprobe output for {module}: {line}")
            if fields[1] not in order:
                order.append(fields[1])
    return order


def build_initramfs(tree, release, out_path):
    stage = out_path + ".d"
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(os.path.join(stage, "bin"))
    os.makedirs(os.path.join(stage, "modules"))
    shutil.copy2(shutil.which("busybox"), os.path.join(stage, "bin", "busybox"))
    shutil.copy2(os.path.join(HERE, "guest_init.sh"), os.path.join(stage, "init"))
    os.chmod(os.path.join(stage, "init"), 0o755)
    names = []
    for path in module_files(tree, release):
        names.append(os.path.basename(path))
        shutil.copy2(path, os.path.join(stage, "modules", names[-1]))
    with open(os.path.join(stage, "modules", "order"), "w") as f:
        f.write("\n".join(names) + "\n")
    files = subprocess.run(["find", "."], cwd=stage, check=True, capture_output=True).stdout
    archive = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=stage,
                             input=files, check=True, capture_output=True).stdout
    with gzip.open(out_path, "wb", compresslevel=1) as f:
        f.write(archive)
    shutil.rmtree(stage)


# ---- the run --------------------------------------------------------------


def write_config(results, tests, jobs, retries, env):
    lines = ["# Written by run_vm_tests.py; sourced by guest_run.sh.", f"jobs={jobs}",
             f"retries={retries}", "tests=("]
    for name, timeout, argv in tests:
        spec = "|".join([name, str(timeout)] + argv)
        lines.append("  " + shlex_quote(spec))
    lines.append(")")
    for key, value in env:
        lines.append(f"export {key}={shlex_quote(value)}")
    with open(os.path.join(results, "config.sh"), "w") as f:
        f.write("\n".join(lines) + "\n")


def shlex_quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def boot(args, kernel, initrd, results, console_path):
    """Boots the VM and waits for it to power off; returns (seconds, boot s, timed out)."""
    guest_run = os.path.join(HERE, "guest_run.sh")
    cmdline = " ".join([
        "console=ttyS0", "quiet", "loglevel=4", "panic=-1", "cgroup_no_v1=all",
        "random.trust_cpu=on", f"sbx.run={guest_run}",
    ])
    cmd = [
        "qemu-system-x86_64",
        "-accel", "tcg,thread=multi,tb-size=512",
        "-cpu", args.cpu_model,
        "-smp", str(args.cpus),
        "-m", args.memory,
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-serial", "stdio", "-monitor", "none",
        "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
        "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,multidevs=remap,readonly=on,id=hostroot",
        "-virtfs", f"local,path={results},mount_tag=sbxresults,security_model=none,id=sbxresults",
    ]
    log("booting: " + " ".join(cmd))
    start = time.monotonic()
    ready = [None]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)

    def pump():
        with open(console_path, "wb") as console:
            for raw in proc.stdout:
                console.write(raw)
                console.flush()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if "sbx-vm:" in line:
                    text = line[line.index("sbx-vm:"):]
                    if ready[0] is None and "root cgroup.subtree_control" in text:
                        ready[0] = time.monotonic() - start
                    print(f"[{time.monotonic() - start:7.1f}s] {text}", flush=True)

    def stop(signum, _frame):  # ctest's own timeout, ^C: take qemu along
        proc.kill()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=args.vm_timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        log(f"the VM did not power off within {args.vm_timeout} s; killing qemu (pid {proc.pid})")
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    return time.monotonic() - start, ready[0], timed_out


def read_cases(xml_path):
    """{Suite.Test: (outcome, failure text)} of a gtest XML report; outcome is
    'passed', 'failed' or 'skipped'; tests that did not run are left out."""
    # A failure message may quote a command's raw output, which gtest writes
    # unescaped: read the report as text, dropping what XML cannot hold.
    with open(xml_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    text = re.sub("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", "?", text)
    cases = {}
    for case in ET.fromstring(text).iter("testcase"):
        if case.get("status") == "notrun":
            continue
        full = f"{case.get('classname')}.{case.get('name')}"
        failures = case.findall("failure") + case.findall("error")
        if failures:
            text = "\n".join((f.get("message") or f.text or "").strip() for f in failures)
            cases[full] = ("failed", text or "failed")
        elif case.get("result") == "skipped" or case.find("skipped") is not None:
            cases[full] = ("skipped", "")
        else:
            cases[full] = ("passed", "")
    return cases


def read_status(results, tag):
    path = os.path.join(results, "status", tag)
    if not os.path.exists(path):
        return None
    rc, ms = open(path).read().split()
    return int(rc), int(ms)


class Tally:
    def __init__(self):
        self.total = self.passed = self.retried = self.skipped = 0
        self.problems = []  # (what, why, log to show or None)

    @property
    def failed(self):
        return self.total - self.passed - self.skipped


def judge_binary(results, name, tally):
    log_path = os.path.join(results, "logs", name + ".log")
    xml_path = os.path.join(results, "xml", name + ".xml")
    status = read_status(results, name)
    if status is None:
        tally.problems.append((name, "did not finish (no exit status)", log_path))
        return
    rc, ms = status
    if not os.path.exists(xml_path) or os.path.getsize(xml_path) == 0:
        why = "timed out" if rc in (124, 137) else f"exited {rc} without a gtest report"
        tally.problems.append((name, why, log_path))
        return
    cases = read_cases(xml_path)
    retry_xml = os.path.join(results, "xml", name + ".retry.xml")
    retry = read_cases(retry_xml) if os.path.exists(retry_xml) else {}
    counts = {"passed": 0, "failed": 0, "skipped": 0, "retried": 0}
    for full, (outcome, text) in sorted(cases.items()):
        if outcome == "failed" and retry.get(full, ("failed",))[0] == "passed":
            log(f"passed on retry in the VM: {name}: {full}; the first run said:\n    " +
                "\n    ".join(text.splitlines()[:6]))
            counts["retried"] += 1
            outcome = "passed"
        elif outcome == "failed" and full in retry:
            text += "\n(and again on retry:)\n" + retry[full][1]
        counts[outcome] += 1
        if outcome == "failed":
            tally.problems.append((f"{name}: {full}", text, None))
        elif outcome == "skipped":
            log(f"skipped in the VM: {name}: {full}")
    if counts["failed"] == 0 and rc != 0 and not retry:
        tally.problems.append((name, f"exited {rc} with no failed test", log_path))
    n = sum(counts[k] for k in ("passed", "failed", "skipped"))
    tally.total += n
    tally.passed += counts["passed"]
    tally.retried += counts["retried"]
    tally.skipped += counts["skipped"]
    log(f"{name}: {n} tests, {counts['passed']} passed ({counts['retried']} on retry), "
        f"{counts['failed']} failed, {counts['skipped']} skipped ({ms / 1000:.1f} s)")


def show_tail(path, lines=60):
    if not os.path.exists(path):
        return
    with open(path, errors="replace") as f:
        tail = f.readlines()[-lines:]
    print(f"---- last {len(tail)} lines of {path} ----")
    print("".join(tail), end="")
    print("----")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", required=True, help="kernel cache, initramfs and results")
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--cpu-model", default="max", help="qemu -cpu")
    p.add_argument("--memory", default="4G")
    p.add_argument("--jobs", type=int, default=1, help="test binaries run at once in the VM")
    p.add_argument("--retries", type=int, default=1, choices=[0, 1],
                   help="run the failed tests of a binary once more")
    p.add_argument("--test-timeout", type=int, default=600, help="seconds per binary")
    p.add_argument("--vm-timeout", type=int, default=1500, help="seconds for the whole VM")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the tests")
    p.add_argument("--exclude", action="append", default=[],
                   help="BINARY:Suite.Test not to run in the VM (said in the output)")
    p.add_argument("--test", action="append", default=[], required=True,
                   help="BINARY[,ARG...]: a gtest binary to run in the VM")
    return p.parse_args()


def main():
    args = parse_args()
    missing = missing_tools()
    if missing:
        log("SKIPPED: cannot boot the v2 VM, missing " + ", ".join(missing) +
            " (scripts/install-deps.sh installs them from scripts/deps/vm.list)")
        return SKIP
    excluded = {}  # binary name -> [Suite.Test]
    for spec in args.exclude:
        binary, _, test = spec.partition(":")
        excluded.setdefault(binary, []).append(test)
    tests = []
    for spec in args.test:
        argv = spec.split(",")
        if not os.access(argv[0], os.X_OK):
            log(f"test binary {argv[0]} is not built")
            return 1
        name = os.path.basename(argv[0])
        if name in excluded:
            for test in excluded[name]:
                log(f"EXCLUDED in the VM: {name}: {test}")
            argv.append("--gtest_filter=-" + ":".join(excluded[name]))
        tests.append((name, args.test_timeout, argv))
    env = [tuple(e.split("=", 1)) for e in args.env]

    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.monotonic()
    tree, release = fetch_kernel(os.path.join(args.work_dir, "kernel"))
    initrd = os.path.join(args.work_dir, "initramfs.cpio.gz")
    build_initramfs(tree, release, initrd)
    kernel = os.path.join(tree, "boot", f"vmlinuz-{release}")
    log(f"kernel {release} and initramfs ready in {time.monotonic() - t0:.1f} s")

    results = os.path.join(args.work_dir, "results")
    shutil.rmtree(results, ignore_errors=True)
    os.makedirs(results)
    write_config(results, tests, args.jobs, args.retries, env)
    console = os.path.join(args.work_dir, "console.log")
    wall, ready, timed_out = boot(args, kernel, initrd, results, console)

    fatal = os.path.join(results, "fatal")
    if os.path.exists(fatal) or not os.path.exists(os.path.join(results, "guest-info.txt")):
        log("the guest did not come up")
        show_tail(console, 80)
        return 1
    tally = Tally()
    for name, _, _ in tests:
        judge_binary(results, name, tally)
    shown = set()
    for what, why, log_path in tally.problems:
        lines = why.splitlines()
        if len(lines) > 40:
            lines = lines[:40] + [f"... ({len(lines) - 40} more lines)"]
        log(f"FAILED {what}: " + "\n    ".join(lines))
        # A binary that died or hung has no report: its log tells why.
        if log_path is not None and log_path not in shown:
            shown.add(log_path)
            show_tail(log_path)
    if timed_out:
        tally.problems.append(("the VM", "timed out", None))
        show_tail(console, 40)
    ready_text = f"{ready:.1f} s" if ready is not None else "?"
    log(f"cgroup v2 up {ready_text} after qemu started; VM wall time {wall:.1f} s; "
        f"results in {results}")
    n_excluded = sum(len(v) for k, v in excluded.items() if any(t[0] == k for t in tests))
    print(f"v2 VM: {tally.total} tests, {tally.passed} passed ({tally.retried} on retry), "
          f"{tally.failed} failed, {tally.skipped} skipped; {n_excluded} excluded", flush=True)
    if tally.total == 0:
        log("no test ran in the VM")
        return 1
    problems = tally.problems
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
