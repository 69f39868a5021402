// A test process that dies without its teardown (a crash, ctest's SIGKILL at
// its timeout) leaves its sbxd's sandboxes running: sbxd keeps sandboxes
// over a stop by design. The next test process's harness removes them
// (SweepAfterDeadTestProcesses), and nothing of a live process.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>

#include "fault_util.h"

namespace sbx::faults {
namespace {

// Another prefix than the harness's, so that no other test process, starting
// meanwhile, sweeps these leftovers first.
constexpr char kPrefix[] = "sbx-itdead";

std::map<std::string, std::string> KeyValues(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& line : SplitLines(text)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

TEST(DeadTestProcessTest, WhatItLeftIsRemovedByTheNextOne) {
  ProcessResult dying = RunProcess({SBX_DYING_TEST_PROCESS_PATH}, "", seconds(60),
                                   {std::string("SBX_IT_NAME_PREFIX=") + kPrefix});
  ASSERT_TRUE(dying.started && dying.signal == 0 && dying.exit_code == 0) << dying.Describe();
  auto made = KeyValues(dying.out);
  const std::string temp_dir = made["temp_dir"];
  const std::string parent = made["cgroup_parent"];
  ASSERT_EQ(temp_dir.rfind(std::string("/tmp/") + kPrefix + "-", 0), 0u) << dying.out;
  ASSERT_EQ(parent.rfind(std::string(kPrefix) + "-", 0), 0u) << dying.out;
  const pid_t sbxd = static_cast<pid_t>(std::stol(made["sbxd"]));
  const uint64_t sbxd_started = ProcStartTime(sbxd);

  // Left behind: the sandbox's processes in its cgroups, and the temp dir.
  std::map<pid_t, uint64_t> sandbox_processes;
  for (const auto& dir : CgroupParentDirs(parent)) {
    for (pid_t pid : CgroupProcsRecursive(dir)) sandbox_processes[pid] = ProcStartTime(pid);
  }
  EXPECT_FALSE(sandbox_processes.empty()) << "the dead process's sandbox is not running";
  EXPECT_TRUE(PathExists(temp_dir));

  // A live process's are not touched: this one's own name, made up.
  const std::string live_dir = "/tmp/" + std::string(kPrefix) + "-" + std::to_string(getpid()) +
                               "-live";
  ASSERT_EQ(mkdir(live_dir.c_str(), 0700), 0) << strerror(errno);

  const std::vector<std::string> removed = SweepAfterDeadTestProcesses(kPrefix);
  std::ostringstream said;
  for (const auto& line : removed) said << "  " << line << "\n";
  std::cerr << "[sweep] removed:\n" << said.str();

  EXPECT_TRUE(PathExists(live_dir)) << "a live process's dir was removed";
  rmdir(live_dir.c_str());
  for (const auto& dir : CgroupParentDirs(parent)) {
    EXPECT_FALSE(PathExists(dir)) << dir << " is left; sweep said:\n" << said.str();
    EXPECT_FALSE(PathExists(dir + ".daemon")) << dir << ".daemon is left";
  }
  EXPECT_FALSE(PathExists(temp_dir)) << "sweep said:\n" << said.str();
  EXPECT_TRUE(MountsBelow(temp_dir).empty());
  // Dead and reaped (by whoever inherited them) within a few seconds.
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(sbxd, sbxd_started); }, seconds(5)))
      << "sbxd pid " << sbxd << " is still there";
  for (const auto& [pid, started] : sandbox_processes) {
    EXPECT_TRUE(WaitFor([&] { return ProcessGone(pid, started); }, seconds(5)))
        << "sandbox process " << pid << " is still there";
  }
}

}  // namespace
}  // namespace sbx::faults
