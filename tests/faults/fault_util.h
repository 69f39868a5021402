// Shared by the fault-injection tests: a fixture owning one real sbxd, and
// host-side checks that a sandbox left nothing behind.
#ifndef SBX_TESTS_FAULTS_FAULT_UTIL_H_
#define SBX_TESTS_FAULTS_FAULT_UTIL_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::faults {

using namespace ::sbx::it;  // NOLINT: the fixture's vocabulary
using std::chrono::milliseconds;
using std::chrono::seconds;

// Each test owns its daemon: the tests hurt it.
class FaultTest : public ::testing::Test {
 protected:
  explicit FaultTest(DaemonOptions options = {}) : daemon_(std::move(options)) {}
  void SetUp() override { ASSERT_TRUE(daemon_.Start()); }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- sbxd log (tail) ----\n" << daemon_.LogTail(6000) << "\n";
    daemon_.Stop();
  }
  Stub& stub() { return daemon_.stub(); }

  // Every cgroup directory of sandbox `id` (one per hierarchy).
  std::vector<std::string> SandboxCgroupDirs(const std::string& id) const {
    std::vector<std::string> out;
    for (const auto& dir : daemon_.CgroupParentDirs()) out.push_back(dir + "/" + id);
    return out;
  }
  bool CgroupGone(const std::string& id) const {
    for (const auto& dir : SandboxCgroupDirs(id)) {
      if (PathExists(dir)) return false;
    }
    return true;
  }
  // Processes in the sandbox's cgroups (recursive, each pid once); with
  // `spare` false, without the sandbox's spare (docs/architecture.md).
  std::vector<pid_t> SandboxProcesses(const std::string& id, bool spare = true) const {
    std::set<pid_t> pids;
    for (const auto& dir : SandboxCgroupDirs(id)) {
      for (pid_t pid : CgroupProcsRecursive(dir)) pids.insert(pid);
      if (spare) continue;
      for (const auto& leaf : ListSubdirs(dir)) {
        if (leaf != "init" && IsSpareLeaf(dir + "/" + leaf)) {
          for (pid_t pid : CgroupProcsRecursive(dir + "/" + leaf)) pids.erase(pid);
        }
      }
    }
    return {pids.begin(), pids.end()};
  }
  // Command leaves (every child cgroup but the init's and the spare's).
  std::vector<std::string> CommandLeaves(const std::string& id) const {
    std::vector<std::string> out;
    for (const auto& dir : SandboxCgroupDirs(id)) {
      for (const auto& leaf : ListSubdirs(dir)) {
        if (leaf != "init" && !IsSpareLeaf(dir + "/" + leaf)) out.push_back(dir + "/" + leaf);
      }
    }
    return out;
  }
  // Host processes whose real uid lies in this daemon's uid ranges: every
  // process of its sandboxes, wherever it ended up.
  std::vector<pid_t> ProcessesInUidRange() const {
    std::vector<pid_t> out;
    const int64_t lo = daemon_.uid_base();
    const int64_t hi = lo + 65536LL * 8;
    for (pid_t pid : AllPids()) {
      auto uids = ProcUids(pid);
      if (!uids.empty() && uids[0] >= lo && uids[0] < hi) out.push_back(pid);
    }
    return out;
  }
  // Entries of <state-dir>/sandboxes.
  std::vector<std::string> StateDirs() const {
    return ListDir(daemon_.state_dir() + "/sandboxes");
  }
  // Checks that nothing of `id` is left: no cgroup, no state entry.
  void ExpectNothingLeftOf(const std::string& id) {
    // Destroy returns once the processes are gone; cgroups and files follow.
    EXPECT_TRUE(WaitFor([&] { return CgroupGone(id); }, seconds(5)))
        << "cgroup of " << id << " left";
    EXPECT_TRUE(WaitFor([&] { return daemon_.StateEntriesFor(id).empty(); }, seconds(5)))
        << "state of " << id << " left";
  }
  // Checks that the daemon holds nothing at all.
  void ExpectNothingLeft() {
    EXPECT_TRUE(WaitFor([&] { return daemon_.CgroupChildren().empty(); }, seconds(5)))
        << daemon_.CgroupChildren().size() << " cgroups left";
    EXPECT_TRUE(daemon_.CgroupProcesses().empty());
    EXPECT_TRUE(WaitFor([&] { return ProcessesInUidRange().empty(); }, seconds(5)))
        << ProcessesInUidRange().size() << " sandbox processes left";
    EXPECT_TRUE(WaitFor([&] { return StateDirs().empty(); }, seconds(5)))
        << StateDirs().size() << " state dirs left";
  }

  Daemon daemon_;
};

// utime + stime of `pid`, in clock ticks.
inline uint64_t CpuTicks(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return 0;
  std::istringstream in(stat->substr(stat->rfind(')') + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return utime + stime;
}

// Seconds of CPU `pid` used over a `window` of wall time.
inline double CpuSecondsOver(pid_t pid, std::chrono::milliseconds window) {
  const uint64_t before = CpuTicks(pid);
  std::this_thread::sleep_for(window);
  return static_cast<double>(CpuTicks(pid) - before) / sysconf(_SC_CLK_TCK);
}

}  // namespace sbx::faults

#endif  // SBX_TESTS_FAULTS_FAULT_UTIL_H_
