// Hostile code against processes: killing everything it can, hiding daemons
// and zombies, tracing, spying on the init, the host and a second sandbox.
#include <gtest/gtest.h>
#include <signal.h>

#include <regex>
#include <set>
#include <thread>

#include "hostile_util.h"

namespace sbx::sec {
namespace {

using it::ExecSession;
using std::chrono::milliseconds;
using std::chrono::seconds;

class ProcessTest : public it::DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }
};

struct HostProcess {
  pid_t pid;
  uint64_t start_time;
};

std::vector<HostProcess> Snapshot(const std::vector<pid_t>& pids) {
  std::vector<HostProcess> out;
  for (pid_t p : pids) out.push_back({p, it::ProcStartTime(p)});
  return out;
}

bool AllAlive(const std::vector<HostProcess>& procs) {
  for (const auto& p : procs) {
    if (it::ProcessGone(p.pid, p.start_time)) return false;
  }
  return true;
}

TEST_F(ProcessTest, KillAllSignalsOnlyTheSandboxesOwnProcesses) {
  SBX_SANDBOX(sb);
  SBX_SANDBOX(neighbour);
  ExecSession victim(stub(), seconds(60));
  ASSERT_TRUE(victim.Start(it::MakeStart(sb.id(), {"sleep", "60"})));
  ASSERT_TRUE(victim.WaitStarted());
  ExecSession bystander(stub(), seconds(60));
  ASSERT_TRUE(bystander.Start(it::MakeStart(neighbour.id(), {"sleep", "60"})));
  ASSERT_TRUE(bystander.WaitStarted());
  std::vector<HostProcess> neighbour_procs;
  ASSERT_TRUE(it::WaitFor(
      [&] {
        neighbour_procs = Snapshot(SandboxHostPids(daemon(), neighbour.id()));
        return neighbour_procs.size() >= 2;  // init and sleep
      },
      seconds(3)));
  const pid_t sbxd = daemon().pid();
  const uint64_t sbxd_start = it::ProcStartTime(sbxd);

  for (const auto& opts : {AsUser(), AsRoot()}) {
    const std::string who = opts.user.empty() ? "sandbox" : opts.user;
    // A process of the caller's own uid to hit (as root there is no other).
    ExecResult r = it::Sh(stub(), sb.id(),
                          "sleep 60 & kill -9 -1; echo survived $?; wait $!; echo sleep $?", opts);
    ASSERT_TRUE(r.Ok()) << who << ": " << r.Describe();
    EXPECT_EQ(r.out, "survived 0\nsleep 137\n") << who << ": " << r.Describe();
    EXPECT_TRUE(SandboxAnswers(stub(), sb.id())) << "after kill -9 -1 as " << who;
  }
  // The sandbox's own other command died of it.
  grpc::Status s = victim.Finish();
  ASSERT_TRUE(s.ok() && victim.exit.has_value()) << it::StatusText(s);
  EXPECT_EQ(victim.exit->signal(), 9);
  EXPECT_EQ(victim.exit->verdict(), v1::VERDICT_SIGNALED);
  // Nothing outside did.
  EXPECT_TRUE(AllAlive(neighbour_procs)) << "a process of the neighbour sandbox died";
  EXPECT_FALSE(it::ProcessGone(sbxd, sbxd_start)) << "sbxd died";
  EXPECT_TRUE(DaemonAlive(daemon()));
  EXPECT_TRUE(HostCanForkExec());
  ASSERT_TRUE(bystander.SendSignal(SIGTERM));
  s = bystander.Finish();
  ASSERT_TRUE(s.ok() && bystander.exit.has_value()) << it::StatusText(s);
  EXPECT_EQ(bystander.exit->signal(), SIGTERM) << "the neighbour's sleep did not survive";
  RecordOutcome("own sleep SIGKILLed, init + neighbour (" + std::to_string(neighbour_procs.size()) +
                " procs) + sbxd alive, as user and root");
}

TEST_F(ProcessTest, DaemonsAndZombiesAreReapedAndDieWithDestroy) {
  SBX_SANDBOX(sb);
  // Two detached daemons (double fork, new session) and a parent that leaves
  // five zombies behind when it exits.
  const std::string script = R"SH(
setsid sh -c 'sleep 300 & exec sleep 301' </dev/null >/dev/null 2>&1 &
( setsid sleep 302 </dev/null >/dev/null 2>&1 & )
python3 -c '
import os, time
for i in range(5):
    if os.fork() == 0:
        os._exit(0)
time.sleep(0.3)
z = 0
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            if open("/proc/%s/stat" % p).read().rsplit(") ", 1)[1][0] == "Z":
                z += 1
        except OSError:
            pass
print("zombies", z)
'
)SH";
  ExecResult r = it::Sh(stub(), sb.id(), script);
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "zombies 5\n") << r.Describe();

  // The orphaned zombies are reaped by the sandbox's init; the daemons live on.
  std::string ps;
  EXPECT_TRUE(it::WaitFor(
      [&] {
        ExecResult p = it::RunExec(stub(), it::MakeStart(sb.id(), {"ps", "-eo", "stat=,args="}));
        ps = p.out;
        return p.Ok() && !std::regex_search(ps, std::regex(R"((^|\n) *Z)"));
      },
      seconds(3)))
      << "zombies are not reaped:\n"
      << ps;
  for (const char* d : {"sleep 300", "sleep 301", "sleep 302"}) {
    EXPECT_NE(ps.find(d), std::string::npos) << d << " is not running:\n" << ps;
  }

  // From the host: every process of the sandbox, then Destroy.
  const std::vector<HostProcess> procs = Snapshot(SandboxHostPids(daemon(), sb.id()));
  EXPECT_GE(procs.size(), 4u) << "init and three sleeps expected in the sandbox's cgroup";
  grpc::Status s = it::Destroy(stub(), sb.id());
  ASSERT_TRUE(s.ok()) << it::StatusText(s);
  std::vector<pid_t> left;
  EXPECT_TRUE(it::WaitFor(
      [&] {
        left.clear();
        for (const auto& p : procs) {
          if (!it::ProcessGone(p.pid, p.start_time)) left.push_back(p.pid);
        }
        return left.empty();
      },
      seconds(5)))
      << left.size() << " process(es) of the destroyed sandbox survive, e.g. host pid "
      << (left.empty() ? 0 : left[0]);
  // Its cgroups go right after Destroy returns.
  for (const auto& dir : daemon().CgroupParentDirs()) {
    EXPECT_TRUE(it::WaitFor([&] { return !it::PathExists(dir + "/" + sb.id()); }, seconds(5)))
        << "cgroup left: " << dir;
  }
  RecordOutcome("5 zombies reaped, 3 setsid daemons outlived the command, all " +
                std::to_string(procs.size()) + " host pids gone after Destroy");
}

TEST_F(ProcessTest, PtraceAndProcessVmOfSiblingAreDenied) {
  SBX_SANDBOX(sb);
  const std::string code = R"PY(
import subprocess, time
p = subprocess.Popen(['sleep', '30'])
time.sleep(0.1)
print('ptrace_attach', sc(101, 16, p.pid, 0, 0))
print('ptrace_seize', sc(101, 0x4206, p.pid, 0, 0))
print('ptrace_traceme', sc(101, 0, 0, 0, 0))
print('process_vm_readv', sc(310, p.pid, 0, 0, 0, 0, 0))
print('process_vm_writev', sc(311, p.pid, 0, 0, 0, 0, 0))
print('kcmp', sc(312, os.getpid(), p.pid, 0, 0, 0))
pidfd = libc.syscall(434, p.pid, 0)
print('pidfd_getfd', sc(438, pidfd, 0, 0) if pidfd >= 0 else 'no pidfd')
p.kill()
p.wait()
)PY";
  const std::string expected =
      "ptrace_attach EPERM\nptrace_seize EPERM\nptrace_traceme EPERM\n"
      "process_vm_readv EPERM\nprocess_vm_writev EPERM\nkcmp EPERM\npidfd_getfd EPERM\n";
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = Py(stub(), sb.id(), code, opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, expected) << "as " << (opts.user.empty() ? "sandbox" : opts.user) << ": "
                               << r.Describe();
  }
  // strace, as a user would try it.
  ExecResult st = it::RunExec(stub(), it::MakeStart(sb.id(), {"strace", "-f", "true"}));
  ASSERT_TRUE(st.Ok()) << st.Describe();
  EXPECT_NE(st.exit->exit_code(), 0) << st.Describe();
  EXPECT_NE(st.err.find("Operation not permitted"), std::string::npos) << st.Describe();
  ExecResult sp = it::RunExec(stub(), it::MakeStart(sb.id(), {"strace", "-p", "1"}, AsRoot()));
  ASSERT_TRUE(sp.Ok()) << sp.Describe();
  EXPECT_NE(sp.exit->exit_code(), 0) << sp.Describe();
  EXPECT_NE(sp.err.find("Operation not permitted"), std::string::npos) << sp.Describe();
  RecordOutcome("ptrace/process_vm/kcmp/pidfd_getfd EPERM; strace: " +
                it::Trim(it::SplitLines(st.err).empty() ? "" : it::SplitLines(st.err)[0]));
}

TEST_F(ProcessTest, InitEnvironRootAndExeAreUnreadable) {
  SBX_SANDBOX(sb);
  const std::string code = R"PY(
print('environ', err(lambda: open('/proc/1/environ', 'rb').read()))
print('root', err(lambda: os.listdir('/proc/1/root/')))
print('exe', err(lambda: os.readlink('/proc/1/exe')))
print('cwd', err(lambda: os.readlink('/proc/1/cwd')))
print('mem', err(lambda: open('/proc/1/mem', 'rb').read(1)))
print('fd', err(lambda: os.listdir('/proc/1/fd')))
)PY";
  for (const auto& opts : {AsUser(), AsRoot()}) {
    const std::string who = opts.user.empty() ? "sandbox" : opts.user;
    ExecResult r = Py(stub(), sb.id(), code, opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, "environ EACCES\nroot EACCES\nexe EACCES\ncwd EACCES\nmem EACCES\nfd EACCES\n")
        << who << ": " << r.Describe();
    ExecResult cat = it::RunExec(stub(), it::MakeStart(sb.id(), {"cat", "/proc/1/environ"}, opts));
    ASSERT_TRUE(cat.Ok()) << cat.Describe();
    EXPECT_EQ(cat.exit->exit_code(), 1) << who;
    EXPECT_EQ(cat.err, "cat: /proc/1/environ: Permission denied\n") << who;
    EXPECT_EQ(cat.out, "") << who;
  }
  RecordOutcome("environ/root/exe/cwd/mem/fd of pid 1: EACCES (Permission denied), user and root");
}

TEST_F(ProcessTest, HostProcessesAreInvisible) {
  SBX_SANDBOX(sb);
  ExecResult r = it::Sh(stub(), sb.id(),
                        "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm)\"; done");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  auto lines = it::SplitLines(r.out);
  // init, sh, and the command substitutions' subshells: nothing else.
  EXPECT_LE(lines.size(), 5u) << r.out;
  bool has_init = false;
  for (const auto& l : lines) {
    std::istringstream in(l);
    int pid = 0;
    std::string comm;
    in >> pid >> comm;
    EXPECT_LT(pid, 100) << "a host-sized pid is visible: " << l;
    EXPECT_NE(comm, "sbxd") << l;
    if (pid == 1) has_init = true;
  }
  EXPECT_TRUE(has_init) << r.out;
  // sbxd's host pid names nothing inside (or something of the sandbox).
  ExecResult d = it::Sh(stub(), sb.id(),
                        "cat /proc/" + std::to_string(daemon().pid()) + "/comm 2>&1; exit 0");
  ASSERT_TRUE(d.Ok()) << d.Describe();
  EXPECT_EQ(d.out.find("sbxd"), std::string::npos) << d.out;
  EXPECT_GT(it::AllPids().size(), 10u);
  RecordOutcome(std::to_string(lines.size()) + " pids visible (init, the command's own)");
}

TEST_F(ProcessTest, SecondSandboxCannotSeeSignalOrReadTheFirst) {
  SBX_SANDBOX(first);
  SBX_SANDBOX(second);
  // Push the first sandbox's pid counter up so its pids cannot collide with
  // the second's few.
  ExecResult burn = it::Sh(stub(), first.id(),
                           "for i in $(seq 60); do /bin/true; done; "
                           "echo secret > /work/secret && echo secret > /tmp/secret");
  ASSERT_TRUE(burn.Ok() && burn.exit->exit_code() == 0) << burn.Describe();
  // The target is forked by the command, after the burn: a high pid (the
  // command itself may run in a spare forked earlier, with a low one).
  ExecSession target(stub(), seconds(60));
  ASSERT_TRUE(target.Start(it::MakeStart(first.id(), {"sh", "-c", "sleep 60 & echo $!; wait"})));
  while (target.out.find('\n') == std::string::npos && target.ReadOne()) {
  }
  ASSERT_NE(target.out.find('\n'), std::string::npos) << "no pid from the target";
  const int pid = std::stoi(target.out);
  ASSERT_GT(pid, 60) << "pid inside the first sandbox";

  ExecResult ps = it::RunExec(stub(), it::MakeStart(second.id(), {"ps", "-eo", "pid=,args="}));
  ASSERT_TRUE(ps.Ok()) << ps.Describe();
  EXPECT_EQ(ps.out.find("sleep"), std::string::npos) << ps.out;
  const std::string code = "pid = " + std::to_string(pid) + R"PY(
print('exists', os.path.exists('/proc/%d' % pid))
print('kill0', err(lambda: os.kill(pid, 0)))
print('kill9', err(lambda: os.kill(pid, 9)))
print('work', err(lambda: open('/work/secret').read()))
print('tmp', err(lambda: open('/tmp/secret').read()))
)PY";
  for (const auto& opts : {AsUser(), AsRoot()}) {
    ExecResult r = Py(stub(), second.id(), code, opts);
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, "exists False\nkill0 ESRCH\nkill9 ESRCH\nwork ENOENT\ntmp ENOENT\n")
        << r.Describe();
  }
  // The target lives on.
  ExecResult alive = it::Sh(stub(), first.id(), "kill -0 " + std::to_string(pid) + " && echo up");
  ASSERT_TRUE(alive.Ok()) << alive.Describe();
  EXPECT_EQ(alive.out, "up\n") << alive.Describe();
  ASSERT_TRUE(target.SendSignal(SIGKILL));
  target.Finish();
  RecordOutcome("pid " + std::to_string(pid) + ": not in ps/proc, kill ESRCH, files ENOENT");
}

}  // namespace
}  // namespace sbx::sec
