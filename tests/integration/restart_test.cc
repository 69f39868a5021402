// sbxd crashes (SIGKILL) and restarts: its sandboxes stay usable, and what
// became inconsistent meanwhile is cleaned up, with nothing leaked.
#include <gtest/gtest.h>
#include <signal.h>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

// Each test owns its daemon, since it kills it.
class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(daemon_.Start()); }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- sbxd log (tail) ----\n" << daemon_.LogTail(4000) << "\n";
    daemon_.Stop();
  }
  Stub& stub() { return daemon_.stub(); }
  Daemon daemon_;
};

TEST_F(RestartTest, SandboxesSurviveSigkillOfDaemon) {
  v1::Sandbox a, b;
  CreateOptions o;
  o.labels = {{"name", "a"}};
  o.memory = 100 << 20;
  ASSERT_TRUE(Create(stub(), MakeCreate(o), &a).ok());
  o.labels = {{"name", "b"}};
  ASSERT_TRUE(Create(stub(), MakeCreate(o), &b).ok());
  for (const auto* sb : {&a, &b}) {
    ExecResult r = Sh(stub(), sb->id(), "echo " + sb->id() + " > /work/mark; cat /work/mark");
    ASSERT_TRUE(r.Ok()) << r.Describe();
    ASSERT_EQ(r.out, sb->id() + "\n");
  }
  const uint64_t a_start = ProcStartTime(a.init_pid());
  const uint64_t b_start = ProcStartTime(b.init_pid());
  const pid_t old_pid = daemon_.pid();

  daemon_.Kill9();
  // The sandboxes are not children of sbxd: they outlive it.
  EXPECT_FALSE(ProcessGone(a.init_pid(), a_start)) << "sandbox a died with sbxd";
  EXPECT_FALSE(ProcessGone(b.init_pid(), b_start)) << "sandbox b died with sbxd";

  ASSERT_TRUE(daemon_.Restart());
  EXPECT_NE(daemon_.pid(), old_pid);

  v1::ListSandboxesResponse list;
  ASSERT_TRUE(List(stub(), &list).ok());
  EXPECT_EQ(list.sandboxes_size(), 2);
  for (const auto* sb : {&a, &b}) {
    v1::Sandbox got;
    grpc::Status s = Get(stub(), sb->id(), &got);
    ASSERT_TRUE(s.ok()) << sb->id() << ": " << StatusText(s);
    EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);
    EXPECT_EQ(got.init_pid(), sb->init_pid());
    EXPECT_EQ(got.labels().at("name"), sb->labels().at("name"));
    EXPECT_EQ(got.limits().memory_bytes(), 100 << 20);
    // Same sandbox (its files are there), and exec works, with the task
    // limit its init takes (the state file says it does).
    ExecResult r = RunExec(stub(), MakeStart(sb->id(), {"cat", "/work/mark"}));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, sb->id() + "\n");
    r = RunExec(stub(), MakeStart(sb->id(), {"bash", "-c", "ulimit -Hu"}));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, std::to_string(got.limits().pids() - 2) + "\n");
  }
  v1::ListSandboxesResponse sel;
  ASSERT_TRUE(List(stub(), &sel, {{"name", "b"}}).ok());
  ASSERT_EQ(sel.sandboxes_size(), 1);
  EXPECT_EQ(sel.sandboxes(0).id(), b.id());

  for (const auto* sb : {&a, &b}) {
    bool existed = false;
    grpc::Status s = Destroy(stub(), sb->id(), &existed);
    ASSERT_TRUE(s.ok()) << StatusText(s);
    EXPECT_TRUE(existed);
  }
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(a.init_pid(), a_start); }, seconds(3)));
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(b.init_pid(), b_start); }, seconds(3)));
  EXPECT_TRUE(WaitFor([&] { return daemon_.CgroupChildren().empty(); }, seconds(3)));
  EXPECT_TRUE(daemon_.CgroupProcesses().empty());
  EXPECT_TRUE(daemon_.StateEntriesFor(a.id()).empty());
  EXPECT_TRUE(daemon_.StateEntriesFor(b.id()).empty());
  EXPECT_TRUE(ListIds(stub()).empty());
}

// A sandbox's spare (the process its next command will run in) outlives
// sbxd like its init, and the restarted sbxd takes it over: the next command
// runs in it, not in a process forked anew.
TEST_F(RestartTest, TheSpareIsTakenOverAfterARestart) {
  v1::Sandbox sb;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &sb).ok());
  // The spare: the only process of the sandbox's one command leaf ("x<n>"),
  // still sbx-init. It is made on sbxd's worker right after the create.
  std::string sandbox_dir;
  for (const std::string& dir : daemon_.CgroupParentDirs()) {
    if (dir.find("/pids/") != std::string::npos || daemon_.CgroupParentDirs().size() == 1) {
      sandbox_dir = dir + "/" + sb.id();
    }
  }
  ASSERT_FALSE(sandbox_dir.empty()) << "no pids hierarchy among the daemon's cgroup dirs";
  pid_t spare = -1;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<std::string> leaves;
        for (const std::string& name : ListSubdirs(sandbox_dir)) {
          if (!name.empty() && name[0] == 'x') leaves.push_back(sandbox_dir + "/" + name);
        }
        if (leaves.size() != 1 || !IsSpareLeaf(leaves[0])) return false;
        spare = CgroupProcsRecursive(leaves[0]).at(0);
        return true;
      },
      seconds(10)))
      << "no spare in " << sandbox_dir;
  const pid_t spare_in_sandbox = ProcNsPid(spare);
  ASSERT_GT(spare_in_sandbox, 1);

  daemon_.Kill9();
  ASSERT_TRUE(daemon_.Restart());

  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"sh", "-c", "echo $$"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, std::to_string(spare_in_sandbox) + "\n")
      << "the command did not run in the spare made before the restart";

  ASSERT_TRUE(Destroy(stub(), sb.id()).ok());
  EXPECT_TRUE(WaitFor([&] { return daemon_.CgroupChildren().empty(); }, seconds(3)));
  EXPECT_TRUE(daemon_.StateEntriesFor(sb.id()).empty());
}

TEST_F(RestartTest, RestartCleansUpSandboxesThatDiedMeanwhile) {
  v1::Sandbox live, dead;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &live).ok());
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &dead).ok());
  const uint64_t dead_start = ProcStartTime(dead.init_pid());
  ExecResult r = Sh(stub(), dead.id(), "sleep 300 >/dev/null 2>&1 &");
  ASSERT_TRUE(r.Ok()) << r.Describe();

  daemon_.Kill9();
  // While sbxd is down, one sandbox's init dies (project-created, by pid).
  ASSERT_EQ(kill(dead.init_pid(), SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return ProcessGone(dead.init_pid(), dead_start); }, seconds(3)));
  ASSERT_TRUE(daemon_.Restart());

  v1::Sandbox got;
  grpc::Status s = Get(stub(), dead.id(), &got);
  EXPECT_TRUE(s.error_code() == grpc::NOT_FOUND ||
              (s.ok() && got.state() == v1::SANDBOX_STATE_DEAD))
      << StatusText(s) << " state " << v1::SandboxState_Name(got.state());
  s = Get(stub(), live.id(), &got);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);
  r = RunExec(stub(), MakeStart(live.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");
  // Exec in the dead one is refused cleanly.
  r = RunExec(stub(), MakeStart(dead.id(), {"true"}));
  EXPECT_TRUE(r.status.error_code() == grpc::NOT_FOUND ||
              r.status.error_code() == grpc::FAILED_PRECONDITION)
      << r.Describe();

  ASSERT_TRUE(Destroy(stub(), dead.id()).ok());
  ASSERT_TRUE(Destroy(stub(), live.id()).ok());
  EXPECT_TRUE(WaitFor([&] { return daemon_.CgroupChildren().empty(); }, seconds(3)))
      << daemon_.CgroupChildren().size() << " cgroups left";
  EXPECT_TRUE(daemon_.CgroupProcesses().empty());
  EXPECT_TRUE(daemon_.StateEntriesFor(dead.id()).empty());
  EXPECT_TRUE(daemon_.StateEntriesFor(live.id()).empty());
}

TEST_F(RestartTest, CleanRestartKeepsSandboxes) {
  // SIGTERM (an upgrade) must not take sandboxes down either.
  v1::Sandbox a;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &a).ok());
  const uint64_t a_start = ProcStartTime(a.init_pid());
  ASSERT_TRUE(daemon_.Terminate());
  EXPECT_FALSE(ProcessGone(a.init_pid(), a_start));
  ASSERT_TRUE(daemon_.Restart());
  ExecResult r = RunExec(stub(), MakeStart(a.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");
  ASSERT_TRUE(Destroy(stub(), a.id()).ok());
}

}  // namespace
}  // namespace sbx::it
