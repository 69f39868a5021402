// A sandbox's cgroup is removed behind sbxd's back (its processes killed
// and its cgroup directories rmdir'ed by the test, only that sandbox's):
// Get / Exec / SetLimits answer with a clear error or show it DEAD, Destroy
// succeeds and leaves nothing, the other sandboxes are untouched.
#include <signal.h>
#include <unistd.h>

#include "fault_util.h"

namespace sbx::faults {
namespace {

using CgroupRemovedTest = FaultTest;

bool IsClearRefusal(grpc::StatusCode code) {
  return code == grpc::FAILED_PRECONDITION || code == grpc::NOT_FOUND;
}

TEST_F(CgroupRemovedTest, RemovedCgroupGivesClearErrorsAndDestroyCleans) {
  v1::Sandbox victim, other;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &victim).ok());
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &other).ok());
  ASSERT_TRUE(Sh(stub(), victim.id(), "sleep 300 >/dev/null 2>&1 &").Ok());
  const uint64_t other_start = ProcStartTime(other.init_pid());

  // Remove the victim's cgroups: kill what is in them, rmdir bottom-up.
  for (const auto& dir : SandboxCgroupDirs(victim.id())) RemoveCgroupTree(dir);
  ASSERT_TRUE(CgroupGone(victim.id()));

  v1::Sandbox got;
  grpc::Status s = Get(stub(), victim.id(), &got);
  EXPECT_TRUE(s.ok() || IsClearRefusal(s.error_code())) << StatusText(s);
  // It turns DEAD soon (its init died with the cgroup's processes).
  EXPECT_TRUE(WaitFor(
      [&] {
        grpc::Status g = Get(stub(), victim.id(), &got);
        return g.ok() && got.state() == v1::SANDBOX_STATE_DEAD;
      },
      seconds(5)))
      << v1::SandboxState_Name(got.state());
  ExecResult r = RunExec(stub(), MakeStart(victim.id(), {"true"}));
  EXPECT_TRUE(IsClearRefusal(r.status.error_code())) << r.Describe();
  v1::Limits limits;
  limits.set_memory_bytes(64 << 20);
  s = SetLimits(stub(), victim.id(), limits);
  EXPECT_TRUE(IsClearRefusal(s.error_code())) << StatusText(s);
  v1::ListSandboxesResponse list;
  ASSERT_TRUE(List(stub(), &list).ok());
  EXPECT_EQ(list.sandboxes_size(), 2);

  bool existed = false;
  s = Destroy(stub(), victim.id(), &existed);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_TRUE(existed);
  ExpectNothingLeftOf(victim.id());
  EXPECT_EQ(Get(stub(), victim.id(), &got).error_code(), grpc::NOT_FOUND);

  EXPECT_FALSE(ProcessGone(other.init_pid(), other_start));
  r = RunExec(stub(), MakeStart(other.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");
  ASSERT_TRUE(Destroy(stub(), other.id()).ok());
  ExpectNothingLeft();
}

// Only the cgroup of a running command is pulled away while the init stays:
// the command's stream ends cleanly, and the sandbox stays usable.
TEST_F(CgroupRemovedTest, RemovedCommandLeafEndsOnlyThatCommand) {
  v1::Sandbox sb;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &sb).ok());
  ExecSession running(stub(), std::chrono::seconds(20));
  ASSERT_TRUE(running.Start(MakeStart(sb.id(), {"sleep", "300"})));
  ASSERT_TRUE(running.WaitStarted());
  std::vector<std::string> leaves;
  ASSERT_TRUE(WaitFor([&] { return !(leaves = CommandLeaves(sb.id())).empty(); }, seconds(3)));
  for (const auto& leaf : leaves) RemoveCgroupTree(leaf);

  grpc::Status finished = running.Finish();
  EXPECT_NE(finished.error_code(), grpc::DEADLINE_EXCEEDED) << StatusText(finished);
  EXPECT_NE(finished.error_code(), grpc::UNKNOWN) << StatusText(finished);
  if (finished.ok()) {
    ASSERT_TRUE(running.exit.has_value());
    EXPECT_EQ(running.exit->signal(), SIGKILL);
  }
  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");
  ASSERT_TRUE(Destroy(stub(), sb.id()).ok());
  ExpectNothingLeft();
}

}  // namespace
}  // namespace sbx::faults
