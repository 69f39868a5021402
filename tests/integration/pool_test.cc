// The warm pool: ready sandboxes are handed out exactly once with the
// caller's limits and labels, stay invisible until then, are replaced when
// used or dead, and never outlive sbxd unused.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <set>
#include <thread>

#include "daemon.h"
#include "proc_util.h"
#include "server/manager/state_file.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

constexpr int kPoolSize = 3;
constexpr int64_t kMiB = 1 << 20;

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    DaemonOptions options;
    options.pool_size = kPoolSize;
    options.extra_args = {"--max-sandboxes", "6"};
    daemon_ = std::make_unique<Daemon>(options);
    ASSERT_TRUE(daemon_->Start());
    ASSERT_TRUE(WaitFor([&] { return Pooled().size() == kPoolSize; }, seconds(20)))
        << "pool never filled; " << Pooled().size() << " of " << kPoolSize;
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- sbxd log (tail) ----\n" << daemon_->LogTail(4000) << "\n";
    daemon_->Stop();
  }
  Stub& stub() { return daemon_->stub(); }

  // Ready pooled sandboxes: on disk, marked pooled, and not listed.
  std::set<std::string> Pooled() {
    std::vector<std::string> listed = ListIds(stub());
    std::set<std::string> out;
    for (const std::string& name : ListDir(daemon_->state_dir() + "/sandboxes")) {
      auto state = manager::ReadStateFile(daemon_->state_dir() + "/sandboxes/" + name);
      if (!state.ok() || !state->pooled) continue;
      if (std::find(listed.begin(), listed.end(), name) == listed.end()) out.insert(name);
    }
    return out;
  }

  // The init pid a pooled sandbox's state file records.
  pid_t InitPidOf(const std::string& id) {
    auto state = manager::ReadStateFile(daemon_->state_dir() + "/sandboxes/" + id);
    return state.ok() ? state->pid : -1;
  }

  std::unique_ptr<Daemon> daemon_;
};

TEST_F(PoolTest, PooledSandboxesAreInvisible) {
  const std::set<std::string> pooled = Pooled();
  EXPECT_TRUE(ListIds(stub()).empty());
  for (const std::string& id : pooled) {
    v1::Sandbox got;
    EXPECT_EQ(Get(stub(), id, &got).error_code(), grpc::StatusCode::NOT_FOUND) << id;
    bool existed = true;
    ASSERT_TRUE(Destroy(stub(), id, &existed).ok());
    EXPECT_FALSE(existed) << "a caller destroyed pooled sandbox " << id;
    ExecResult r = RunExec(stub(), MakeStart(id, {"true"}));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::NOT_FOUND) << r.Describe();
  }
  EXPECT_EQ(Pooled(), pooled) << "touching pooled ids changed the pool";
}

TEST_F(PoolTest, HandOutAppliesTheRequest) {
  const std::set<std::string> before = Pooled();
  CreateOptions o;
  o.memory = 96 * kMiB;
  o.cpus = 0.5;
  o.pids = 40;
  o.labels = {{"team", "judge"}};
  o.env = {{"GREETING", "hi"}};
  o.ttl = std::chrono::minutes(10);
  ScopedSandbox sb(*daemon_, o);
  ASSERT_TRUE(sb.status().ok()) << StatusText(sb.status());
  EXPECT_EQ(before.count(sb.id()), 1u) << sb.id() << " did not come from the pool";

  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);
  EXPECT_EQ(got.limits().memory_bytes(), 96 * kMiB);
  EXPECT_EQ(got.limits().pids(), 40);
  EXPECT_DOUBLE_EQ(got.limits().cpus(), 0.5);
  EXPECT_EQ(got.labels().at("team"), "judge");
  EXPECT_TRUE(got.has_expires_at());

  // The kernel has the limits, not only the record.
  bool memory_checked = false, pids_checked = false;
  for (const std::string& dir : daemon_->CgroupParentDirs()) {
    const std::string base = dir + "/" + sb.id();
    if (auto v = ReadFile(base + "/memory.limit_in_bytes")) {
      EXPECT_EQ(std::stoll(*v), 96 * kMiB);
      memory_checked = true;
    }
    if (auto v = ReadFile(base + "/memory.max")) {
      EXPECT_EQ(std::stoll(*v), 96 * kMiB);
      memory_checked = true;
    }
    if (auto v = ReadFile(base + "/pids.max")) {
      EXPECT_EQ(std::stoll(*v), 40);
      pids_checked = true;
    }
  }
  EXPECT_TRUE(memory_checked && pids_checked) << "no memory / pids limit file found";

  ExecResult r = Sh(stub(), sb.id(), "echo $GREETING; hostname");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "hi\n" + sb.id() + "\n");

  v1::ListSandboxesResponse list;
  ASSERT_TRUE(List(stub(), &list, {{"team", "judge"}}).ok());
  ASSERT_EQ(list.sandboxes_size(), 1);
  EXPECT_EQ(list.sandboxes(0).id(), sb.id());
}

TEST_F(PoolTest, ConcurrentCreatesGetDistinctSandboxesAndThePoolRefills) {
  constexpr int kCreates = 6;  // twice the pool, the daemon's maximum
  std::vector<std::string> ids(kCreates);
  std::vector<grpc::Status> statuses(kCreates);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCreates; ++i) {
    threads.emplace_back([&, i] {
      v1::Sandbox box;
      statuses[i] = Create(stub(), MakeCreate({}), &box);
      ids[i] = box.id();
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> distinct;
  for (int i = 0; i < kCreates; ++i) {
    ASSERT_TRUE(statuses[i].ok()) << StatusText(statuses[i]);
    distinct.insert(ids[i]);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kCreates)) << "a sandbox was handed out twice";
  for (const std::string& id : ids) {
    ExecResult r = Sh(stub(), id, "echo ok");
    EXPECT_TRUE(r.Ok() && r.out == "ok\n") << id << ": " << r.Describe();
  }
  // Callers own the maximum now: the next create is refused, pool or not.
  v1::Sandbox extra;
  EXPECT_EQ(Create(stub(), MakeCreate({}), &extra).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);

  for (const std::string& id : ids) ASSERT_TRUE(Destroy(stub(), id).ok());
  EXPECT_TRUE(WaitFor([&] { return Pooled().size() == kPoolSize; }, seconds(20)))
      << "pool did not refill: " << Pooled().size();
  for (const std::string& id : Pooled()) {
    EXPECT_EQ(distinct.count(id), 0u) << "used sandbox " << id << " went back to the pool";
  }
}

TEST_F(PoolTest, DeadPooledSandboxIsReplacedNotHandedOut) {
  const std::set<std::string> before = Pooled();
  const std::string victim = *before.begin();
  const pid_t init = InitPidOf(victim);
  ASSERT_GT(init, 1);
  ASSERT_EQ(kill(init, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        std::set<std::string> now = Pooled();
        return now.count(victim) == 0 && now.size() == kPoolSize;
      },
      seconds(20)))
      << "the dead pooled sandbox was not replaced";
  for (int i = 0; i < kPoolSize + 1; ++i) {
    v1::Sandbox box;
    ASSERT_TRUE(Create(stub(), MakeCreate({}), &box).ok());
    EXPECT_NE(box.id(), victim);
    ExecResult r = Sh(stub(), box.id(), "echo ok");
    EXPECT_TRUE(r.Ok() && r.out == "ok\n") << r.Describe();
  }
}

TEST_F(PoolTest, UnusedPoolDoesNotOutliveTheDaemon) {
  v1::Sandbox kept;
  ASSERT_TRUE(Create(stub(), MakeCreate({}), &kept).ok());
  ASSERT_TRUE(WaitFor([&] { return Pooled().size() == kPoolSize; }, seconds(20)));
  const std::set<std::string> pooled = Pooled();

  // A crash leaves the pool behind; the next sbxd removes it and keeps
  // what was handed out.
  daemon_->Kill9();
  ASSERT_TRUE(daemon_->Restart());
  EXPECT_EQ(ListIds(stub()), std::vector<std::string>{kept.id()});
  for (const std::string& id : pooled) {
    EXPECT_TRUE(daemon_->StateEntriesFor(id).empty()) << "stale pooled sandbox " << id;
    for (const std::string& child : daemon_->CgroupChildren()) {
      EXPECT_EQ(child.find(id), std::string::npos) << "stale pooled cgroup " << child;
    }
  }
  ExecResult r = Sh(stub(), kept.id(), "echo still here");
  EXPECT_TRUE(r.Ok() && r.out == "still here\n") << r.Describe();
  ASSERT_TRUE(Destroy(stub(), kept.id()).ok());

  // A clean stop removes the pool too: nothing of the daemon is left.
  ASSERT_TRUE(WaitFor([&] { return Pooled().size() == kPoolSize; }, seconds(20)));
  ASSERT_TRUE(daemon_->Terminate());
  EXPECT_TRUE(ListDir(daemon_->state_dir() + "/sandboxes").empty());
  EXPECT_TRUE(daemon_->CgroupChildren().empty());
  EXPECT_TRUE(daemon_->CgroupProcesses().empty());
}

}  // namespace
}  // namespace sbx::it
