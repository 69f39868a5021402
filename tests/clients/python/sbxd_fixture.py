"""A real sbxd for one test module, like tests/integration/daemon.cc.

Each instance gets its own temp dir (socket, state dir, log), cgroup parent
(sbx-py-<pid>-<n>) and uid range, so test processes may run in parallel.
stop() destroys what is left through the API, SIGTERMs sbxd by its pid,
checks that no cgroup, process, mount or state of it remains (raising if
one did), removes those leftovers and the temp dir.

Daemon(extra_args=[...]) adds sbxd flags, e.g. a --config with a TCP
listener (test_auth.py).

Environment: SBX_TEST_SBXD and SBX_TEST_INIT (set by tests/clients/
CMakeLists.txt) name the sbxd and sbx-init binaries; SBX_TEST_KEEP=1 keeps
the temp dir.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import sbx

_instances = itertools.count()
# Host uid ranges: [1.1e9, 1.5e9), below the integration tests' (1.5e9 and
# up) and above the daemon's default (1e9 + 1024 ranges). tests/clients/
# CMakeLists.txt gives each test its own SBX_TEST_SLOT (0..7; 8 and 9 when
# run by hand), so the client tests of one run never share a range; pid % 37
# keeps concurrent runs (two build trees) apart. A test process has up to 2
# daemons of 8 ranges each: the top is 1.1e9 + (36 * 10 + 9 + 1) * 16 ranges
# of 65536 ids, about 1.488e9.
_UID_BASE = 1_100_000_000
_IDS_PER_SANDBOX = 65536
_MAX_SANDBOXES = 8  # with --pool-size 0: 8 id ranges per daemon
_SLOTS, _RUNS = 10, 37


def _uid_base(n: int) -> int:
    slot = int(os.environ.get("SBX_TEST_SLOT") or 8 + os.getpid() % 2) % _SLOTS
    ranges = ((os.getpid() % _RUNS) * _SLOTS + slot) * 2 * _MAX_SANDBOXES
    return _UID_BASE + (ranges + (n % 2) * _MAX_SANDBOXES) * _IDS_PER_SANDBOX


def _wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _cgroup_mounts() -> List[Dict[str, object]]:
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if "-" not in fields:
                continue
            dash = fields.index("-")
            fstype = fields[dash + 1]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            mounts.append({"root": fields[3], "mount_point": fields[4], "v2": fstype == "cgroup2",
                           "options": set(fields[dash + 3].split(","))})
    return mounts


def _join(mount, path: str) -> str:
    root = mount["root"]
    if root != "/" and path.startswith(root):
        path = path[len(root):]
    return mount["mount_point"] + ("" if path == "/" else path)


def own_cgroup_dirs() -> List[str]:
    """This process's cgroup directories for the controllers sbxd uses
    (v1: memory, pids, cpu, cpuacct), or its v2 directory."""
    path_of, v2_path = {}, None
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                v2_path = path
            for c in controllers.split(","):
                path_of[c] = path
    mounts = _cgroup_mounts()
    dirs: List[str] = []
    for controller in ("memory", "pids", "cpu", "cpuacct"):
        if controller not in path_of:
            continue
        for m in mounts:
            if not m["v2"] and controller in m["options"]:
                d = _join(m, path_of[controller])
                if d not in dirs:
                    dirs.append(d)
                break
    if not dirs and v2_path is not None:
        for m in mounts:
            if m["v2"]:
                dirs.append(_join(m, v2_path))
                break
    return dirs


def _cgroup_procs(directory: str) -> List[int]:
    pids = []
    for root, _, files in os.walk(directory):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
    return pids


def _remove_cgroup_tree(directory: str) -> None:
    if not os.path.isdir(directory):
        return

    def killed() -> bool:
        pids = _cgroup_procs(directory)
        for pid in pids:  # only processes in this daemon's own cgroup parent
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return not pids

    _wait_for(killed, 5)
    for root, dirs, _ in os.walk(directory, topdown=False):
        for d in dirs:
            _wait_for(lambda: _rmdir(os.path.join(root, d)), 2)
    _wait_for(lambda: _rmdir(directory), 2)


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _mounts_below(directory: str) -> List[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point == directory or point.startswith(directory + "/"):
                out.append(point)
    return out


class Daemon:
    def __init__(self, tag: str = "py", extra_args: Sequence[str] = ()):
        self.sbxd = os.environ.get("SBX_TEST_SBXD", "")
        self.init = os.environ.get("SBX_TEST_INIT", "")
        n = next(_instances)
        self.temp_dir = tempfile.mkdtemp(prefix=f"sbx-{tag}-")
        self.socket_path = os.path.join(self.temp_dir, "sbxd.sock")
        self.state_dir = os.path.join(self.temp_dir, "state")
        self.log_path = os.path.join(self.temp_dir, "sbxd.log")
        self.cgroup_parent = f"sbx-{tag}-{os.getpid()}-{n}"
        self.uid_base = _uid_base(n)
        self.process: Optional[subprocess.Popen] = None
        self.client: Optional[sbx.Client] = None
        self.address = "unix://" + self.socket_path
        self.extra_args = list(extra_args)
        self._destroyed: List[str] = []

    def start(self) -> None:
        for what, path in (("SBX_TEST_SBXD", self.sbxd), ("SBX_TEST_INIT", self.init)):
            if not path or not os.access(path, os.X_OK):
                raise RuntimeError(f"{what} does not name an executable: {path!r}")
        argv = [self.sbxd, "--socket", self.socket_path, "--state-dir", self.state_dir,
                "--cgroup-parent", self.cgroup_parent, "--uid-base", str(self.uid_base),
                "--max-sandboxes", str(_MAX_SANDBOXES), "--pool-size", "0",
                "--init-path", self.init,
                "--log-level", "debug", *self.extra_args]
        with open(self.log_path, "ab") as log:
            # Its own session: a ^C at the terminal reaches the test first.
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        last: List[BaseException] = []

        def ready() -> bool:
            if self.process.poll() is not None:
                return True
            if not os.path.exists(self.socket_path):
                return False
            client = sbx.connect(self.address, timeout=0.5)
            try:
                client.list()
            except sbx.SbxError as error:
                last[:] = [error]
                client.close()
                return False
            self.client = client
            return True

        ok = _wait_for(ready, 20)
        if self.process.poll() is not None:
            raise RuntimeError(f"sbxd exited ({self.process.returncode}) during start-up;"
                               f" log:\n{self.log_tail()}")
        if not ok:
            raise RuntimeError(f"sbxd did not answer within 20 s (last: {last}); log:\n"
                               f"{self.log_tail()}")
        self.client.close()
        self.client = sbx.connect(self.address)
        print(f"[daemon] sbxd pid {self.process.pid} ready in "
              f"{(time.monotonic() - t0) * 1000:.0f} ms ({self.temp_dir}, cgroup parent "
              f"{self.cgroup_parent}, uid base {self.uid_base})", flush=True)

    def log_tail(self, size: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "<no log>"
        return data[-size:].decode(errors="replace")

    def stop(self) -> None:
        """Destroys what is left, SIGTERMs sbxd, checks for and removes
        leftovers. Raises AssertionError naming what was left behind."""
        problems: List[str] = []
        if self.process is not None and self.process.poll() is None:
            try:
                for box in self.client.list():
                    self.client.destroy(box.id)
                    self._destroyed.append(box.id)
            except sbx.SbxError as error:
                problems.append(f"teardown: destroying the sandboxes left: {error}")
            self.client.close()
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=10)
                # sbxd takes SIGTERM and exits 0; dying of it is a failure too.
                if code != 0:
                    problems.append(f"sbxd exited with {code} on SIGTERM; log:\n{self.log_tail()}")
            except subprocess.TimeoutExpired:
                problems.append("sbxd did not exit within 10 s of SIGTERM")
                self.process.kill()
                self.process.wait()
        elif self.client is not None:
            self.client.close()

        for parent in own_cgroup_dirs():
            directory = os.path.join(parent, self.cgroup_parent)
            if os.path.isdir(directory):
                children = [d for d in os.listdir(directory)
                            if os.path.isdir(os.path.join(directory, d))]
                procs = _cgroup_procs(directory)
                if children or procs:
                    problems.append(f"teardown: leftovers in {directory}: {len(children)} child"
                                    f" cgroups, {len(procs)} processes")
                _remove_cgroup_tree(directory)
            # cgroup v2: the leaf sbxd moved itself into stays after it exits.
            _remove_cgroup_tree(os.path.join(parent, self.cgroup_parent + ".daemon"))
        for sandbox_id in self._destroyed:
            for root, dirs, files in os.walk(self.state_dir):
                left = [n for n in dirs + files if sandbox_id in n]
                if left:
                    problems.append(f"teardown: state left for {sandbox_id}: {left[0]}")
        mounts = _mounts_below(self.temp_dir)
        if mounts:
            problems.append(f"teardown: mounts left below {self.temp_dir}: {mounts}")
        for point in reversed(mounts):
            subprocess.run(["umount", "-l", point], check=False)
        if os.environ.get("SBX_TEST_KEEP"):
            print(f"[daemon] kept {self.temp_dir}", flush=True)
        else:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        if problems:
            raise AssertionError("\n".join(problems))


_daemon: Optional[Daemon] = None


def start_module_daemon(**options) -> Daemon:
    """setUpModule(): one daemon for the whole test module; `options` are
    Daemon's."""
    global _daemon
    _daemon = Daemon(**options)
    try:
        _daemon.start()
    except BaseException:
        stop_module_daemon()
        raise
    return _daemon


def stop_module_daemon() -> None:
    """tearDownModule()."""
    global _daemon
    daemon, _daemon = _daemon, None
    if daemon is not None:
        daemon.stop()


def daemon() -> Daemon:
    assert _daemon is not None, "setUpModule did not start sbxd"
    return _daemon
