// Isolation: pid namespace, host files, network, user mapping, hostname.
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

class IsolationTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() {
    DaemonOptions o;
    o.listen_tcp = true;
    StartDaemon(o);
  }
  static void TearDownTestSuite() { StopDaemon(); }
};

ExecOptions AsRoot() {
  ExecOptions o;
  o.user = "root";
  return o;
}

TEST_F(IsolationTest, PsShowsOnlyTheSandboxesProcesses) {
  SBX_SANDBOX(sb);
  SBX_SANDBOX(other);
  // A process in the other sandbox must not show up either.
  ExecResult bg = Sh(stub(), other.id(), "sleep 30 >/dev/null 2>&1 &");
  ASSERT_TRUE(bg.Ok()) << bg.Describe();

  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"ps", "-e", "-o", "pid=,comm="}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  ASSERT_EQ(r.exit->exit_code(), 0) << r.Describe();
  auto lines = SplitLines(Trim(r.out));
  EXPECT_GE(lines.size(), 2u) << r.out;
  EXPECT_LE(lines.size(), 4u) << "more than init and ps visible:\n" << r.out;
  bool has_init = false;
  for (const auto& l : lines) {
    std::istringstream in(l);
    int pid;
    std::string comm;
    in >> pid >> comm;
    if (pid == 1) has_init = true;
    EXPECT_NE(comm, "sbxd") << r.out;
    EXPECT_NE(comm, "sleep") << "a process of another sandbox is visible:\n" << r.out;
  }
  EXPECT_TRUE(has_init) << r.out;

  ExecResult p = Sh(stub(), sb.id(), "ls -d /proc/[0-9]* | wc -l");
  ASSERT_TRUE(p.Ok()) << p.Describe();
  EXPECT_LE(std::stoi(Trim(p.out)), 5) << p.Describe();
  EXPECT_GT(AllPids().size(), 10u) << "the host itself should show many";
}

TEST_F(IsolationTest, HostShadowIsNotVisible) {
  auto host_shadow = ReadFile("/etc/shadow");
  ASSERT_TRUE(host_shadow.has_value()) << "test runs as root and reads the host's /etc/shadow";
  const std::string host_root_line = SplitLines(*host_shadow).at(0);
  ASSERT_EQ(host_root_line.rfind("root:", 0), 0u) << host_root_line;
  SBX_SANDBOX(sb);
  for (const auto& opts : {ExecOptions{}, AsRoot()}) {
    ExecResult r = Sh(stub(), sb.id(), "cat /etc/shadow 2>/dev/null; exit 0", opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out.find(host_root_line), std::string::npos)
        << "host's shadow root line visible as user '" << opts.user << "'";
    EXPECT_NE(r.out, *host_shadow);
  }
}

TEST_F(IsolationTest, HostRootHomeIsNotVisible) {
  const auto host_entries = ListDir("/root");
  SBX_SANDBOX(sb);
  ExecResult r = Sh(stub(), sb.id(), "ls -A /root 2>/dev/null; exit 0", AsRoot());
  ASSERT_TRUE(r.Ok()) << r.Describe();
  std::set<std::string> inside;
  for (const auto& l : SplitLines(r.out)) inside.insert(Trim(l));
  for (const auto& e : host_entries) {
    EXPECT_EQ(inside.count(e), 0u) << "host /root/" << e << " is visible inside";
  }
}

TEST_F(IsolationTest, ProjectCheckoutAndStateAreNotVisible) {
  SBX_SANDBOX(sb);
  for (const std::string& path : {std::string(SBX_SOURCE_DIR), std::string(SBX_SOURCE_DIR) + "/protos",
                                 daemon().temp_dir(), daemon().state_dir(), daemon().socket_path()}) {
    ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"test", "-e", path}, AsRoot()));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.exit->exit_code(), 1) << path << " exists inside the sandbox";
  }
  // /work is the sandbox's own writable working directory.
  ExecResult pwd = RunExec(stub(), MakeStart(sb.id(), {"pwd"}));
  ASSERT_TRUE(pwd.Ok()) << pwd.Describe();
  EXPECT_EQ(pwd.out, "/work\n");
  ExecResult w = Sh(stub(), sb.id(), "echo x > /work/f && cat /work/f && ls -A /work");
  ASSERT_TRUE(w.Ok()) << w.Describe();
  EXPECT_EQ(w.out, "x\nf\n") << w.Describe();
  // /usr is read-only, even for root inside.
  ExecResult ro = Sh(stub(), sb.id(), "touch /usr/sbx-it-probe", AsRoot());
  ASSERT_TRUE(ro.Ok()) << ro.Describe();
  EXPECT_NE(ro.exit->exit_code(), 0) << "/usr is writable inside";
  EXPECT_FALSE(PathExists("/usr/sbx-it-probe"));
}

TEST_F(IsolationTest, OnlyLoopbackExists) {
  SBX_SANDBOX(sb);
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"cat", "/proc/net/dev"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  ASSERT_EQ(r.exit->exit_code(), 0) << r.Describe();
  std::vector<std::string> ifaces;
  for (const auto& line : SplitLines(r.out)) {
    size_t colon = line.find(':');
    if (colon != std::string::npos && line.find('|') == std::string::npos) {
      ifaces.push_back(Trim(line.substr(0, colon)));
    }
  }
  EXPECT_EQ(ifaces, std::vector<std::string>{"lo"}) << r.out;
  ExecResult sys = Sh(stub(), sb.id(), "ls /sys/class/net 2>/dev/null; exit 0");
  ASSERT_TRUE(sys.Ok());
  if (!Trim(sys.out).empty()) {
    EXPECT_EQ(Trim(sys.out), "lo");
  }
}

TEST_F(IsolationTest, DaemonTcpPortIsUnreachable) {
  const int port = daemon().tcp_port();
  ASSERT_GT(port, 0);
  ASSERT_TRUE(CanConnectTcp(port)) << "sbxd does not listen on 127.0.0.1:" << port
                                   << " from the host; the check below would prove nothing";
  SBX_SANDBOX(sb);
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"bash", "-c",
                                                     "echo > /dev/tcp/127.0.0.1/" + std::to_string(port)}),
                         "", seconds(20));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_NE(r.exit->exit_code(), 0) << "connected to sbxd's port from inside: " << r.Describe();
  // Loopback inside is the sandbox's own, and up.
  ExecResult lo = RunExec(stub(), MakeStart(sb.id(), {"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/1"}));
  ASSERT_TRUE(lo.Ok()) << lo.Describe();
  EXPECT_NE(lo.exit->exit_code(), 0);
  EXPECT_NE(lo.err.find("Connection refused"), std::string::npos)
      << "lo is not up inside: " << lo.Describe();
}

TEST_F(IsolationTest, RootInsideIsNotRootOutside) {
  SBX_SANDBOX(sb);
  ExecResult id = RunExec(stub(), MakeStart(sb.id(), {"id", "-u"}, AsRoot()));
  ASSERT_TRUE(id.Ok()) << id.Describe();
  EXPECT_EQ(id.out, "0\n");

  const pid_t init_pid = sb.sandbox().init_pid();
  ASSERT_GT(init_pid, 0);
  auto uids = ProcUids(init_pid);
  ASSERT_EQ(uids.size(), 4u) << "cannot read /proc/" << init_pid << "/status";
  for (int64_t u : uids) {
    EXPECT_NE(u, 0);
    EXPECT_GE(u, daemon().uid_base());
  }
  // The uid map never maps host root.
  auto map = ReadFile("/proc/" + std::to_string(init_pid) + "/uid_map");
  ASSERT_TRUE(map.has_value());
  for (const auto& line : SplitLines(*map)) {
    std::istringstream in(line);
    int64_t inside, outside, count;
    ASSERT_TRUE(in >> inside >> outside >> count) << line;
    EXPECT_GE(outside, daemon().uid_base()) << line;
    EXPECT_LE(count, 65536) << line;
  }
  // A command running as root inside: its host uid is not 0 either.
  ExecSession s(stub(), seconds(20));
  ASSERT_TRUE(s.Start(MakeStart(sb.id(), {"sleep", "30"}, AsRoot())));
  ASSERT_TRUE(s.WaitStarted());
  std::vector<pid_t> descendants;
  ASSERT_TRUE(WaitFor(
      [&] {
        descendants.clear();
        std::vector<pid_t> todo = {init_pid};
        while (!todo.empty()) {
          pid_t p = todo.back();
          todo.pop_back();
          for (pid_t c : ProcChildren(p)) {
            descendants.push_back(c);
            todo.push_back(c);
          }
        }
        return !descendants.empty();
      },
      seconds(3)));
  for (pid_t p : descendants) {
    auto u = ProcUids(p);
    if (u.empty()) continue;  // exited meanwhile
    EXPECT_NE(u[0], 0) << "host pid " << p;
    EXPECT_GE(u[0], daemon().uid_base()) << "host pid " << p;
  }
  ASSERT_TRUE(s.SendSignal(9));
  s.Finish();
}

TEST_F(IsolationTest, DefaultUserIsUnprivileged) {
  SBX_SANDBOX(sb);
  ExecResult r = Sh(stub(), sb.id(), "id -u; id -un");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "1000\nsandbox\n");
  // No capabilities as the default user: mounting fails.
  ExecResult m = Sh(stub(), sb.id(), "mount -t tmpfs none /tmp");
  ASSERT_TRUE(m.Ok()) << m.Describe();
  EXPECT_NE(m.exit->exit_code(), 0);
}

TEST_F(IsolationTest, HostnameIsSandboxId) {
  SBX_SANDBOX(sb);
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"cat", "/proc/sys/kernel/hostname"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, sb.id() + "\n");
  ExecResult u = RunExec(stub(), MakeStart(sb.id(), {"uname", "-n"}));
  ASSERT_TRUE(u.Ok()) << u.Describe();
  EXPECT_EQ(u.out, sb.id() + "\n");
}

TEST_F(IsolationTest, SandboxesCannotSeeEachOthersFiles) {
  SBX_SANDBOX(a);
  SBX_SANDBOX(b);
  ExecResult w = Sh(stub(), a.id(), "echo secret > /tmp/a-only && echo secret > /work/a-only");
  ASSERT_TRUE(w.Ok() && w.exit->exit_code() == 0) << w.Describe();
  ExecResult r = Sh(stub(), b.id(), "ls /tmp /work /dev/shm");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out.find("a-only"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace sbx::it
