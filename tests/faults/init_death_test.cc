// A sandbox's init is SIGKILLed from outside: the sandbox turns DEAD, its
// processes are reclaimed, Destroy leaves nothing, and its neighbour is
// untouched.
#include <signal.h>

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

}  // namespace
}  // namespace sbx::faults
