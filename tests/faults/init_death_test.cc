// A sandbox's init is SIGKILLed from outside: the sandbox turns DEAD, its
// processes are reclaimed, Destroy leaves nothing, and its neighbour is
// untouched.
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <functional>

#include "fault_util.h"

namespace sbx::faults {
namespace {

using InitDeathTest = FaultTest;

TEST_F(InitDeathTest, KilledInitMakesSandboxDeadAndDestroyReclaimsAll) {
  v1::Sandbox victim, other;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &victim).ok());
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &other).ok());
  // Background processes in both, so "reclaimed" means more than the init.
  for (const auto* sb : {&victim, &other}) {
    ExecResult r = Sh(stub(), sb->id(), "sleep 300 >/dev/null 2>&1 & sleep 300 >/dev/null 2>&1 &");
    ASSERT_TRUE(r.Ok()) << r.Describe();
  }
  ASSERT_GE(SandboxProcesses(victim.id()).size(), 3u);
  const uint64_t other_start = ProcStartTime(other.init_pid());

  // A long command running in the victim when its init dies.
  ExecSession running(stub(), std::chrono::seconds(20));
  ASSERT_TRUE(running.Start(MakeStart(victim.id(), {"sleep", "300"})));
  ASSERT_TRUE(running.WaitStarted());

  ASSERT_EQ(kill(victim.init_pid(), SIGKILL), 0);

  v1::Sandbox got;
  EXPECT_TRUE(WaitFor(
      [&] { return Get(stub(), victim.id(), &got).ok() && got.state() == v1::SANDBOX_STATE_DEAD; },
      seconds(5)))
      << "state " << v1::SandboxState_Name(got.state());
  // The running command's stream ends (not hangs) and reports the kill.
  grpc::Status finished = running.Finish();
  EXPECT_TRUE(finished.ok() || finished.error_code() == grpc::ABORTED ||
              finished.error_code() == grpc::UNAVAILABLE ||
              finished.error_code() == grpc::FAILED_PRECONDITION)
      << StatusText(finished);
  EXPECT_NE(finished.error_code(), grpc::DEADLINE_EXCEEDED);
  // Its processes are reclaimed while it awaits Destroy.
  EXPECT_TRUE(WaitFor([&] { return SandboxProcesses(victim.id()).empty(); }, seconds(5)))
      << SandboxProcesses(victim.id()).size() << " processes left in a DEAD sandbox";
  // DEAD is listed as such, and refuses work cleanly.
  ExecResult r = RunExec(stub(), MakeStart(victim.id(), {"true"}));
  EXPECT_EQ(r.status.error_code(), grpc::FAILED_PRECONDITION) << r.Describe();
  v1::Limits limits;
  limits.set_pids(50);
  grpc::Status s = SetLimits(stub(), victim.id(), limits);
  EXPECT_EQ(s.error_code(), grpc::FAILED_PRECONDITION) << StatusText(s);

  bool existed = false;
  s = Destroy(stub(), victim.id(), &existed);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_TRUE(existed);
  ExpectNothingLeftOf(victim.id());
  EXPECT_EQ(Get(stub(), victim.id(), &got).error_code(), grpc::NOT_FOUND);

  // The neighbour did not notice.
  EXPECT_FALSE(ProcessGone(other.init_pid(), other_start));
  ASSERT_TRUE(Get(stub(), other.id(), &got).ok());
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);
  r = Sh(stub(), other.id(), "echo alive; ps -e -o comm= 2>/dev/null | grep -c sleep || true");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(SplitLines(r.out).at(0), "alive");
  EXPECT_GE(SandboxProcesses(other.id()).size(), 3u);

  ASSERT_TRUE(Destroy(stub(), other.id()).ok());
  ExpectNothingLeft();
}

bool WriteTo(const std::string& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  return static_cast<bool>(out);
}

// A Destroy that fails (the init does not die within sbxd's kill timeout,
// here because it is frozen, which on cgroup v1 holds off even SIGKILL)
// leaves the sandbox DEAD, and sbxd tries again on its own once the init can
// die: a sandbox nobody asks about again (a Run's) does not linger until its
// TTL.
TEST_F(InitDeathTest, FailedDestroyIsRetriedUntilTheSandboxIsGone) {
  const std::string freezer = OwnV1CgroupDir("freezer");
  if (freezer.empty() || !PathExists(freezer + "/cgroup.procs")) {
    GTEST_SKIP() << "needs a cgroup v1 freezer hierarchy: cgroup v2's freezer lets SIGKILL "
                    "through, so a frozen init still dies";
  }
  v1::Sandbox victim;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &victim).ok());
  // A freezer cgroup of the test's own, removed whatever happens.
  const std::string frozen = freezer + "/" + daemon_.cgroup_parent() + "-frozen";
  ASSERT_EQ(::mkdir(frozen.c_str(), 0755), 0) << frozen << ": " << strerror(errno);
  auto thaw_and_remove = [&] {
    WriteTo(frozen + "/freezer.state", "THAWED");
    // The init, if still there, goes back to the freezer cgroup it came from.
    for (pid_t pid : CgroupProcsRecursive(frozen)) {
      WriteTo(freezer + "/cgroup.procs", std::to_string(pid));
    }
    ::rmdir(frozen.c_str());
  };
  struct Guard {
    std::function<void()> f;
    ~Guard() { f(); }
  } guard{thaw_and_remove};
  ASSERT_TRUE(WriteTo(frozen + "/cgroup.procs", std::to_string(victim.init_pid())));
  ASSERT_TRUE(WriteTo(frozen + "/freezer.state", "FROZEN"));
  ASSERT_TRUE(WaitFor(
      [&] { return Trim(ReadFile(frozen + "/freezer.state").value_or("")) == "FROZEN"; },
      seconds(5)));

  // sbxd gives the init 5 s to die after its SIGKILL.
  grpc::Status s = Destroy(stub(), victim.id());
  EXPECT_EQ(s.error_code(), grpc::DEADLINE_EXCEEDED) << StatusText(s);
  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), victim.id(), &got).ok());
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_DEAD);
  // It is due again within about a second, and stays while the init cannot die.
  ASSERT_TRUE(got.has_expires_at());
  std::this_thread::sleep_for(seconds(2));
  ASSERT_TRUE(Get(stub(), victim.id(), &got).ok()) << "gone while its init was frozen";

  ASSERT_TRUE(WriteTo(frozen + "/freezer.state", "THAWED"));
  // The retry after the next failure comes 2 s after it, then 4 s, ...
  EXPECT_TRUE(WaitFor(
      [&] { return Get(stub(), victim.id(), &got).error_code() == grpc::NOT_FOUND; },
      seconds(20)))
      << "still there: " << v1::SandboxState_Name(got.state());
  ExpectNothingLeftOf(victim.id());
}

}  // namespace
}  // namespace sbx::faults
