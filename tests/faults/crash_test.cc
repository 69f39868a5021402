// sbxd is SIGKILLed while 50 creates are in flight, then restarted: every
// sandbox is either usable (listed, exec works) or fully cleaned up (no
// cgroup, process or state dir), and nothing is leaked once all are
// destroyed.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "fault_util.h"

namespace sbx::faults {
namespace {

using CrashTest = FaultTest;

constexpr int kCreates = 50;

TEST_F(CrashTest, SigkillDuringConcurrentCreatesLeavesUsableOrNothing) {
  std::mutex mu;
  std::set<std::string> created;  // Create answered OK before the crash
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kCreates; ++i) {
    clients.emplace_back([&, i] {
      CreateOptions o;
      o.labels = {{"n", std::to_string(i)}};
      v1::Sandbox sb;
      grpc::Status s = Create(stub(), MakeCreate(o), &sb);
      ++answered;
      if (s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        created.insert(sb.id());
      }
    });
  }
  // Kill it once a few creates went through, with most still in flight.
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(mu);
        return created.size() >= 3;
      },
      seconds(20), milliseconds(2)));
  daemon_.Kill9();
  for (auto& t : clients) t.join();
  std::cerr << "[crash] " << created.size() << " of " << kCreates
            << " creates answered OK before SIGKILL\n";
  EXPECT_LT(created.size(), static_cast<size_t>(kCreates)) << "the crash came too late";

  ASSERT_TRUE(daemon_.Restart()) << daemon_.LogTail();
  v1::ListSandboxesResponse list;
  ASSERT_TRUE(List(stub(), &list).ok());
  std::set<std::string> listed;
  for (const auto& sb : list.sandboxes()) listed.insert(sb.id());
  // A create that answered OK is durable.
  for (const auto& id : created) EXPECT_EQ(listed.count(id), 1u) << id << " was lost";
  // Everything listed works.
  for (const auto& sb : list.sandboxes()) {
    EXPECT_EQ(sb.state(), v1::SANDBOX_STATE_RUNNING) << sb.id();
    ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"echo", sb.id()}));
    EXPECT_TRUE(r.Ok()) << sb.id() << ": " << r.Describe();
    EXPECT_EQ(r.out, sb.id() + "\n");
  }
  // Everything not listed is gone: no cgroup, no state dir.
  for (const auto& entry : daemon_.CgroupChildren()) {
    const std::string name = entry.substr(entry.rfind(':') + 1);
    EXPECT_EQ(listed.count(name), 1u) << "cgroup of an unlisted sandbox: " << entry;
  }
  for (const auto& name : StateDirs()) {
    EXPECT_EQ(listed.count(name), 1u) << "state dir of an unlisted sandbox: " << name;
  }
  // Every process in the daemon's uid range belongs to a listed sandbox
  // (looked at afresh each time: sandboxes make new spares after commands).
  EXPECT_TRUE(WaitFor(
      [&] {
        std::set<pid_t> owned;
        for (const auto& id : listed) {
          for (pid_t pid : SandboxProcesses(id)) owned.insert(pid);
        }
        for (pid_t pid : ProcessesInUidRange()) {
          if (owned.count(pid) == 0) return false;
        }
        return true;
      },
      seconds(5)))
      << "sandbox processes outside every listed sandbox";

  for (const auto& id : listed) {
    grpc::Status s = Destroy(stub(), id);
    EXPECT_TRUE(s.ok()) << id << ": " << StatusText(s);
  }
  ExpectNothingLeft();
  // And the daemon still creates.
  ScopedSandbox after(daemon_);
  ASSERT_TRUE(after.status().ok()) << StatusText(after.status());
}

}  // namespace
}  // namespace sbx::faults
