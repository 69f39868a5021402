// Hostile code against the file system view: host secrets, device nodes,
// masked and read-only /proc, the read-only /usr, setuid binaries, its own
// privileges, descriptors and binaries (CVE-2019-5736, CVE-2024-21626), and
// escaping its cgroup.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "hostile_util.h"

namespace sbx::sec {
namespace {

using std::chrono::seconds;

class FilesystemTest : public it::DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }
};

std::string Who(const ExecOptions& opts) { return opts.user.empty() ? "sandbox" : opts.user; }

struct Mount {
  std::string point;
  std::set<std::string> options;  // per-mount options (field 6)
  std::string fstype;
};

// The sandbox's mount table as a command sees it; a later mount on the same
// point hides an earlier one.
std::map<std::string, Mount> MountsInside(Stub& stub, const std::string& id) {
  std::map<std::string, Mount> mounts;
  ExecResult r = it::RunExec(stub, it::MakeStart(id, {"cat", "/proc/self/mountinfo"}));
  EXPECT_TRUE(r.Ok() && r.exit->exit_code() == 0) << r.Describe();
  for (const auto& line : it::SplitLines(r.out)) {
    std::istringstream in(line);
    std::vector<std::string> f;
    std::string w;
    while (in >> w) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 6 || dash == f.end() || dash + 1 == f.end()) continue;
    Mount m;
    m.point = f[4];
    std::stringstream opts(f[5]);
    std::string o;
    while (std::getline(opts, o, ',')) m.options.insert(o);
    m.fstype = *(dash + 1);
    mounts[m.point] = m;
  }
  return mounts;
}

TEST_F(FilesystemTest, HostShadowIsAbsent) {
  SBX_SANDBOX(sb);
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = it::RunExec(stub(), it::MakeStart(sb.id(), {"cat", "/etc/shadow"}, opts));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.exit->exit_code(), 1) << Who(opts);
    EXPECT_EQ(r.err, "cat: /etc/shadow: No such file or directory\n") << Who(opts);
    EXPECT_EQ(r.out, "");
  }
  RecordOutcome("cat /etc/shadow: No such file or directory");
}

TEST_F(FilesystemTest, DevMemAndKmsgAreAbsent) {
  SBX_SANDBOX(sb);
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = Py(stub(), sb.id(),
                      "for d in ('mem', 'kmem', 'port', 'kmsg', 'sda', 'vda', 'nvme0', 'vsock', "
                      "'fuse', 'net/tun', 'kvm', 'loop0', 'loop-control'):\n"
                      "    print(d, err(lambda: os.close(os.open('/dev/' + d, os.O_RDONLY))))\n",
                      opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out,
              "mem ENOENT\nkmem ENOENT\nport ENOENT\nkmsg ENOENT\nsda ENOENT\nvda ENOENT\n"
              "nvme0 ENOENT\nvsock ENOENT\nfuse ENOENT\nnet/tun ENOENT\nkvm ENOENT\n"
              "loop0 ENOENT\nloop-control ENOENT\n")
        << Who(opts) << ": " << r.Describe();
  }
  ExecResult cat = it::RunExec(stub(), it::MakeStart(sb.id(), {"cat", "/dev/mem"}, AsRoot()));
  ASSERT_TRUE(cat.Ok()) << cat.Describe();
  EXPECT_EQ(cat.err, "cat: /dev/mem: No such file or directory\n");
  ExecResult ls = it::Sh(stub(), sb.id(), "ls /dev | tr '\\n' ' '");
  ASSERT_TRUE(ls.Ok()) << ls.Describe();
  RecordOutcome("/dev/mem, /dev/kmsg, disks, kvm, tun: ENOENT; /dev = " + it::Trim(ls.out));
}

TEST_F(FilesystemTest, ProcSensitiveEntriesAreMasked) {
  SBX_SANDBOX(sb);
  const auto mounts = MountsInside(stub(), sb.id());
  std::string summary;
  for (const std::string name : {"kcore", "keys", "timer_list", "sched_debug", "latency_stats"}) {
    const std::string path = "/proc/" + name;
    for (const auto& opts : {AsUser(), AsRoot()}) {
      ExecResult r = Py(stub(), sb.id(),
                        "p = '" + path + "'\n"
                        "if not os.path.lexists(p):\n"
                        "    print('absent')\n"
                        "else:\n"
                        "    try:\n"
                        "        print('%d bytes' % len(open(p, 'rb').read(1 << 20)))\n"
                        "    except OSError as e:\n"
                        "        print(errno.errorcode[e.errno])\n",
                        opts);
      ASSERT_TRUE(r.Ok()) << r.Describe();
      const std::string got = it::Trim(r.out);
      EXPECT_TRUE(got == "absent" || got == "0 bytes")
          << path << " as " << Who(opts) << ": " << got << " (masked reads give 0 bytes)";
      if (got != "absent") {
        EXPECT_EQ(mounts.count(path), 1u) << path << " exists but nothing is mounted over it";
      }
      if (opts.user.empty()) summary += name + ": " + got + ", ";
    }
  }
  for (const std::string name : {"acpi", "scsi"}) {
    const std::string path = "/proc/" + name;
    ExecResult r = it::Sh(stub(), sb.id(),
                          "if [ -e " + path + " ]; then ls -A " + path +
                          " | wc -l; touch " + path + "/x 2>&1; else echo absent; fi",
                          AsRoot());
    ASSERT_TRUE(r.Ok()) << r.Describe();
    if (r.out == "absent\n") {
      summary += name + ": absent, ";
      continue;
    }
    auto lines = it::SplitLines(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.Describe();
    EXPECT_EQ(lines[0], "0") << path << " is not empty";
    EXPECT_TRUE(lines[1].find("Read-only file system") != std::string::npos ||
                lines[1].find("Permission denied") != std::string::npos)
        << r.Describe();
    EXPECT_EQ(mounts.count(path), 1u) << path << " is not covered by a mount";
    summary += name + ": empty ro, ";
  }
  // No /sys at all, so /sys/firmware cannot be reached.
  ExecResult sys = it::Sh(stub(), sb.id(),
                          "test -e /sys/firmware && ls -A /sys/firmware | wc -l || echo absent");
  ASSERT_TRUE(sys.Ok()) << sys.Describe();
  EXPECT_TRUE(sys.out == "absent\n" || sys.out == "0\n") << sys.Describe();
  summary += "/sys/firmware: " + it::Trim(sys.out);
  RecordOutcome(summary);
}

TEST_F(FilesystemTest, ProcKernelKnobsAreReadOnly) {
  SBX_SANDBOX(sb);
  const auto mounts = MountsInside(stub(), sb.id());
  std::string summary;
  for (const std::string name : {"sys", "sysrq-trigger", "bus", "fs", "irq"}) {
    const std::string path = "/proc/" + name;
    ExecResult e = it::RunExec(stub(), it::MakeStart(sb.id(), {"test", "-e", path}));
    ASSERT_TRUE(e.Ok()) << e.Describe();
    if (e.exit->exit_code() != 0) {
      summary += name + " absent, ";
      continue;
    }
    ASSERT_EQ(mounts.count(path), 1u) << path << " is not a read-only mount of its own";
    EXPECT_EQ(mounts.at(path).options.count("ro"), 1u) << path << " is mounted read-write";
    summary += name + " ro, ";
  }
  // Writes fail whoever tries (EROFS from the mount, or EACCES / EPERM from
  // permissions, which the kernel may check first).
  const std::string code = R"PY(
for p in ('/proc/sysrq-trigger', '/proc/sys/kernel/hostname', '/proc/sys/vm/drop_caches',
          '/proc/sys/kernel/core_pattern', '/proc/sys/kernel/modprobe',
          '/proc/irq/default_smp_affinity', '/proc/fs/nfsd/threads'):
    if not os.path.exists(p):
        print(p, 'absent')
        continue
    print(p, err(lambda: os.close(os.open(p, os.O_WRONLY))))
)PY";
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = Py(stub(), sb.id(), code, opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    for (const auto& line : it::SplitLines(r.out)) {
      const std::string result = line.substr(line.rfind(' ') + 1);
      EXPECT_TRUE(result == "EROFS" || result == "EACCES" || result == "EPERM" ||
                  result == "absent")
          << Who(opts) << ": " << line << " (expected EROFS, EACCES or EPERM)";
    }
    if (!opts.user.empty()) summary += "writes as root: " + it::Trim(r.out);
  }
  ExecResult echo = it::Sh(stub(), sb.id(), "echo h > /proc/sysrq-trigger", AsRoot());
  ASSERT_TRUE(echo.Ok()) << echo.Describe();
  EXPECT_NE(echo.exit->exit_code(), 0) << "sysrq-trigger was written";
  RecordOutcome(summary);
}

TEST_F(FilesystemTest, UsrAndEtcAreReadOnlyEvenForRoot) {
  SBX_SANDBOX(sb);
  ExecResult t = it::RunExec(stub(), it::MakeStart(sb.id(), {"touch", "/usr/sbx-sec-probe"},
                                                   AsRoot()));
  ASSERT_TRUE(t.Ok()) << t.Describe();
  EXPECT_EQ(t.exit->exit_code(), 1);
  EXPECT_EQ(t.err, "touch: cannot touch '/usr/sbx-sec-probe': Read-only file system\n");
  const std::string before = it::Sha256Hex(it::ReadFile("/usr/bin/dash").value_or(""));
  ExecResult r = Py(stub(), sb.id(),
                    "print('usr_bin', err(lambda: open('/usr/bin/dash', 'ab')))\n"
                    "print('usr_new', err(lambda: open('/usr/lib/sbx-sec', 'wb')))\n"
                    "print('usr_rename', err(lambda: os.rename('/usr/bin/dash', '/usr/bin/x')))\n"
                    "print('usr_chmod', err(lambda: os.chmod('/usr/bin/dash', 0o4777)))\n"
                    "print('etc_new', err(lambda: open('/etc/sbx-sec', 'wb')))\n"
                    "print('etc_passwd', err(lambda: open('/etc/passwd', 'ab')))\n",
                    AsRoot());
  ASSERT_TRUE(r.Ok()) << r.Describe();
  // Host-owned files: permission (EACCES) may be checked before the mount.
  EXPECT_TRUE(r.out ==
                  "usr_bin EROFS\nusr_new EROFS\nusr_rename EROFS\nusr_chmod EROFS\n"
                  "etc_new EROFS\netc_passwd EROFS\n" ||
              r.out ==
                  "usr_bin EACCES\nusr_new EROFS\nusr_rename EROFS\nusr_chmod EROFS\n"
                  "etc_new EROFS\netc_passwd EROFS\n")
      << r.Describe();
  EXPECT_FALSE(it::PathExists("/usr/sbx-sec-probe"));
  EXPECT_FALSE(it::PathExists("/usr/lib/sbx-sec"));
  EXPECT_EQ(it::Sha256Hex(it::ReadFile("/usr/bin/dash").value_or("")), before);
  RecordOutcome("\"" + it::Trim(t.err) + "\"; /usr and /etc writes EROFS as root");
}

TEST_F(FilesystemTest, SetuidBinaryGainsNothing) {
  SBX_SANDBOX(sb);
  ExecResult mk = it::Sh(stub(), sb.id(),
                         "cp /usr/bin/id /tmp/id && chmod 4755 /tmp/id && stat -c %a:%u /tmp/id",
                         AsRoot());
  ASSERT_TRUE(mk.Ok()) << mk.Describe();
  ASSERT_EQ(mk.out, "4755:0\n") << "root inside could not make a setuid-root copy: "
                                << mk.Describe();
  ExecResult run = it::RunExec(stub(), it::MakeStart(sb.id(), {"/tmp/id"}));
  ASSERT_TRUE(run.Ok()) << run.Describe();
  EXPECT_EQ(run.out, "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)\n")
      << "the setuid bit took effect: " << run.Describe();
  ExecResult u = it::RunExec(stub(), it::MakeStart(sb.id(), {"/tmp/id", "-u"}));
  ASSERT_TRUE(u.Ok()) << u.Describe();
  EXPECT_EQ(u.out, "1000\n");
  RecordOutcome("root made /tmp/id 4755 (owner 0); run by the user it prints uid=1000, no euid");
}

TEST_F(FilesystemTest, EveryMountIsNosuidAndWritableOnesNodev) {
  SBX_SANDBOX(sb);
  // Every writable place is nosuid and nodev; so is everything else that can be.
  const auto mounts = MountsInside(stub(), sb.id());
  for (const std::string point : {"/", "/tmp", "/work", "/dev/shm", "/usr", "/etc", "/proc"}) {
    ASSERT_EQ(mounts.count(point), 1u) << point << " is not a mount";
    EXPECT_EQ(mounts.at(point).options.count("nosuid"), 1u) << point << " lacks nosuid";
    EXPECT_EQ(mounts.at(point).options.count("nodev"), 1u) << point << " lacks nodev";
  }
  std::string without_nosuid;
  for (const auto& [point, m] : mounts) {
    if (!m.options.count("nosuid")) without_nosuid += point + " ";
  }
  EXPECT_EQ(without_nosuid, "") << "mounts without nosuid";
  RecordOutcome(std::to_string(mounts.size()) + " mounts; without nosuid: " +
                (without_nosuid.empty() ? "none" : without_nosuid));
}

TEST_F(FilesystemTest, OwnCapabilitySetsAreEmpty) {
  SBX_SANDBOX(sb);
  const std::string expected =
      "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n"
      "CapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = it::RunExec(
        stub(), it::MakeStart(sb.id(),
                              {"grep", "-E", "^(Cap[A-Za-z]+|NoNewPrivs|Seccomp):",
                               "/proc/self/status"},
                              opts));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, expected) << Who(opts);
  }
  RecordOutcome("Cap{Inh,Prm,Eff,Bnd,Amb}=0, NoNewPrivs 1, Seccomp 2 as user and root");
}

TEST_F(FilesystemTest, OnlyStandardFdsAndCwdInsideRoot) {
  SBX_SANDBOX(sb);
  for (const auto& opts : {AsUser(), AsRoot()}) {
    // No pipeline or substitution: those would open pipes in the shell itself.
    ExecResult r = it::Sh(stub(), sb.id(), "ls /proc/$$/fd; readlink /proc/$$/cwd /proc/$$/root",
                          opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, "0\n1\n2\n/work\n/\n") << Who(opts);
    // What the descriptors are: the exec's pipes, nothing of the host.
    ExecResult l = it::Sh(stub(), sb.id(), "readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2",
                          opts);
    ASSERT_TRUE(l.Ok()) << l.Describe();
    for (const auto& line : it::SplitLines(l.out)) {
      EXPECT_EQ(line.rfind("pipe:[", 0), 0u) << Who(opts) << ": fd target " << line;
    }
  }
  // CVE-2024-21626: a working directory given through a descriptor path.
  std::string cwds;
  for (const std::string cwd : {"/proc/self/fd/3", "/proc/self/fd/7", "/proc/1/cwd", "/.."}) {
    ExecOptions o;
    o.cwd = cwd;
    ExecResult r = it::RunExec(stub(), it::MakeStart(sb.id(), {"sh", "-c", "pwd -P; ls -A"}, o));
    cwds += ", " + cwd + ": " +
            (r.Ok() ? "pwd " + it::SplitLines(r.out + "\n")[0]
                    : std::string(it::CodeName(r.status.error_code())));
    if (!r.Ok() || r.exit->exit_code() != 0) continue;  // refused: fine
    EXPECT_TRUE(r.out.rfind("/\n", 0) == 0 || r.out.rfind("/proc", 0) == 0 ||
                r.out.rfind("/work", 0) == 0)
        << "cwd " << cwd << " leads outside the root: " << r.Describe();
    EXPECT_EQ(r.out.find("sbxd.sock"), std::string::npos) << r.Describe();
  }
  RecordOutcome("fds 0 1 2 (pipes), cwd /work, root /" + cwds);
}

TEST_F(FilesystemTest, HostBinariesAreNotWritableThroughProcSelfExe) {
  SBX_SANDBOX(sb);
  const std::string before = it::Sha256Hex(it::ReadFile("/usr/bin/python3.11").value_or(""));
  ASSERT_NE(before, it::Sha256Hex(""));
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = Py(stub(), sb.id(),
                      "print('self_exe', err(lambda: open('/proc/self/exe', 'r+b')))\n"
                      "print('init_exe', err(lambda: open('/proc/1/exe', 'rb')))\n"
                      "print('init_root', err(lambda: os.listdir('/proc/1/root')))\n",
                      opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    auto lines = it::SplitLines(r.out);
    ASSERT_EQ(lines.size(), 3u) << r.Describe();
    const std::string self = lines[0].substr(lines[0].find(' ') + 1);
    EXPECT_TRUE(self == "EROFS" || self == "ETXTBSY" || self == "EACCES")
        << Who(opts) << ": /proc/self/exe opened for writing: " << self;
    EXPECT_EQ(lines[1], "init_exe EACCES") << Who(opts);
    EXPECT_EQ(lines[2], "init_root EACCES") << Who(opts);
  }
  EXPECT_EQ(it::Sha256Hex(it::ReadFile("/usr/bin/python3.11").value_or("")), before);
  RecordOutcome("open(/proc/self/exe, rw) refused; /proc/1/exe and /proc/1/root EACCES");
}

TEST_F(FilesystemTest, CgroupEscapeFails) {
  SBX_SANDBOX(sb);
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = it::Sh(stub(), sb.id(), "echo $$ > /sys/fs/cgroup/cgroup.procs", opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.exit->exit_code(), 2) << Who(opts);
    EXPECT_EQ(r.err, "sh: 1: cannot create /sys/fs/cgroup/cgroup.procs: Directory nonexistent\n")
        << Who(opts);
    ExecResult p = Py(stub(), sb.id(),
                      "for f in ('/sys/fs/cgroup/cgroup.procs', '/sys/fs/cgroup/memory/tasks',\n"
                      "          '/sys/fs/cgroup/pids/cgroup.procs'):\n"
                      "    print(err(lambda: open(f, 'w').write(str(os.getpid()))))\n"
                      "print(sc(165, b'cgroup', b'/tmp', b'cgroup2', 0, 0))\n"
                      "print(sorted(os.listdir('/sys')) if os.path.exists('/sys') else 'absent')\n",
                      opts);
    ASSERT_TRUE(p.Ok()) << p.Describe();
    EXPECT_TRUE(p.out == "ENOENT\nENOENT\nENOENT\nEPERM\nabsent\n" ||
                p.out == "ENOENT\nENOENT\nENOENT\nEPERM\n[]\n")
        << Who(opts) << ": " << p.Describe();
  }
  // Its cgroup namespace is rooted at its own cgroup.
  ExecResult c = it::RunExec(stub(), it::MakeStart(sb.id(), {"cat", "/proc/self/cgroup"}));
  ASSERT_TRUE(c.Ok()) << c.Describe();
  for (const auto& line : it::SplitLines(c.out)) {
    EXPECT_EQ(line.substr(line.rfind(':')), ":/") << "cgroup path visible: " << line;
  }
  // From the host: the command ran in the sandbox's cgroup, nowhere else.
  RecordOutcome("cgroup.procs: \"Directory nonexistent\" (no /sys); mount cgroup EPERM; "
                "/proc/self/cgroup all '/'");
}

}  // namespace
}  // namespace sbx::sec
