// The cgroup v2 backend against fake cgroupfs trees (version forced to v2).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/cgroup.h"
#include "tests/unit/fake_cgroupfs.h"

namespace sbx::engine {
namespace {

using ::sbx::testing::Exists;
using ::sbx::testing::FakeCgroupTest;
using ::sbx::testing::PopulateFiles;
using ::sbx::testing::PutFile;
using ::sbx::testing::ReadFile;
using ::sbx::testing::SleepingChild;
using ::sbx::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kOwnPath = "/user.slice/sbxd.service";

class CgroupV2Test : public FakeCgroupTest {
 protected:
  void SetUp() override {
    root_ = tmp_.path() + "/cgroup";
    own_ = root_ + kOwnPath;
    parent_ = own_ + "/sbx";
    options_.root = root_;
    options_.version = "v2";
    options_.parent = "sbx";
    options_.self_cgroup_file = tmp_.path() + "/self_cgroup";
    PutFile(options_.self_cgroup_file, absl::StrCat("0::", kOwnPath, "\n"));
    // What the kernel shows for a delegated service cgroup holding sbxd...
    PopulateFiles(own_, {{"cgroup.controllers", "cpuset cpu io memory pids\n"},
                         {"cgroup.subtree_control", ""},
                         {"cgroup.type", "domain\n"},
                         {"cgroup.procs", ""}});
    // ...and, as mkdir would, the leaf and the parent with their files.
    PopulateFiles(own_ + "/sbx.daemon", {{"cgroup.procs", ""}});
    PopulateFiles(parent_,
                  {{"cgroup.controllers", "cpu memory pids\n"}, {"cgroup.subtree_control", ""}});
  }

  // Creates a child and the interface files the kernel would put in it.
  std::unique_ptr<Cgroup> MakeChild(CgroupManager& manager, const std::string& name) override {
    absl::StatusOr<std::unique_ptr<Cgroup>> child = manager.CreateChild(name);
    EXPECT_TRUE(child.ok()) << child.status();
    PopulateFiles(parent_ + "/" + name, {{"cgroup.procs", ""},
                                         {"memory.max", ""},
                                         {"memory.swap.max", ""},
                                         {"cpu.max", ""},
                                         {"pids.max", ""}});
    return child.ok() ? std::move(*child) : nullptr;
  }

  std::string root_, own_, parent_;
};

TEST_F(CgroupV2Test, MovesDaemonToLeafThenEnablesControllers) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(manager->version(), CgroupVersion::kV2);
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(parent_));
  EXPECT_EQ(ReadFile(own_ + "/sbx.daemon/cgroup.procs"), absl::StrCat(::getpid()));
  EXPECT_EQ(ReadFile(own_ + "/cgroup.subtree_control"), "+memory +pids +cpu");
  EXPECT_EQ(ReadFile(parent_ + "/cgroup.subtree_control"), "+memory +pids +cpu");
}

TEST_F(CgroupV2Test, CreatesParentDirectoryBelowOwnCgroup) {
  std::filesystem::remove_all(parent_);
  // mkdir of a plain directory yields no interface files, so Create stops at
  // reading them, naming the file; the directory is made at the right place.
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options_);
  EXPECT_THAT(manager.status().message(), HasSubstr(parent_ + "/cgroup.controllers"));
  EXPECT_TRUE(std::filesystem::is_directory(parent_));
}

TEST_F(CgroupV2Test, RootCgroupNeedsNoLeaf) {
  PutFile(options_.self_cgroup_file, "0::/\n");
  PopulateFiles(root_, {{"cgroup.controllers", "cpu memory pids\n"},
                        {"cgroup.subtree_control", "cpu\n"},
                        {"cgroup.procs", "1\n"}});
  PopulateFiles(root_ + "/sbx",
                {{"cgroup.controllers", "cpu memory pids\n"}, {"cgroup.subtree_control", ""}});
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(root_ + "/sbx"));
  EXPECT_FALSE(Exists(root_ + "/sbx.daemon"));
  // cpu was already enabled at the root: only the others are added.
  EXPECT_EQ(ReadFile(root_ + "/cgroup.subtree_control"), "+memory +pids");
}

TEST_F(CgroupV2Test, RestartInsideLeafUsesItsParent) {
  PutFile(options_.self_cgroup_file, absl::StrCat("0::", kOwnPath, "/sbx.daemon\n"));
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(parent_));
  EXPECT_FALSE(Exists(own_ + "/sbx.daemon/sbx"));
}

TEST_F(CgroupV2Test, NothingToEnableLeavesDaemonWhereItIs) {
  PutFile(own_ + "/cgroup.subtree_control", "cpu memory pids\n");
  PutFile(parent_ + "/cgroup.subtree_control", "memory pids cpu\n");
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(ReadFile(own_ + "/sbx.daemon/cgroup.procs"), "");
  EXPECT_EQ(ReadFile(own_ + "/cgroup.subtree_control"), "cpu memory pids\n");
}

TEST_F(CgroupV2Test, MissingControllerIsReportedOnUse) {
  PutFile(own_ + "/cgroup.controllers", "memory pids\n");
  PutFile(parent_ + "/cgroup.controllers", "memory pids\n");
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(ReadFile(own_ + "/cgroup.subtree_control"), "+memory +pids");
  std::unique_ptr<Cgroup> child = MakeChild(*manager, "box");
  ASSERT_NE(child, nullptr);
  Limits limits;
  limits.cpus = 1;
  absl::Status status = child->SetLimits(limits);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("cpu controller"));
}

TEST_F(CgroupV2Test, SetLimitsWritesV2Formats) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  ASSERT_TRUE(box_->SetLimits({64 << 20, 0.5, 16}).ok());
  const std::string dir = parent_ + "/box";
  EXPECT_EQ(ReadFile(dir + "/memory.max"), "67108864");
  EXPECT_EQ(ReadFile(dir + "/memory.swap.max"), "0");
  EXPECT_EQ(ReadFile(dir + "/cpu.max"), "50000 100000");
  EXPECT_EQ(ReadFile(dir + "/pids.max"), "16");
}

TEST_F(CgroupV2Test, SetLimitsLeavesUnsetLimitsAlone) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  Limits limits;
  limits.pids = 7;
  ASSERT_TRUE(box_->SetLimits(limits).ok());
  EXPECT_EQ(ReadFile(parent_ + "/box/pids.max"), "7");
  EXPECT_EQ(ReadFile(parent_ + "/box/memory.max"), "");
  EXPECT_EQ(ReadFile(parent_ + "/box/cpu.max"), "");
}

TEST_F(CgroupV2Test, MissingSwapMaxIsFine) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  std::filesystem::remove(parent_ + "/box/memory.swap.max");
  Limits limits;
  limits.memory_bytes = 1 << 20;
  EXPECT_TRUE(box_->SetLimits(limits).ok());
  EXPECT_EQ(ReadFile(parent_ + "/box/memory.max"), "1048576");
}

TEST_F(CgroupV2Test, GetLimitsRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  ASSERT_TRUE(box_->SetLimits({256 << 20, 1.25, 64}).ok());
  absl::StatusOr<Limits> limits = box_->GetLimits();
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->memory_bytes, 256 << 20);
  EXPECT_DOUBLE_EQ(limits->cpus.value_or(0), 1.25);
  EXPECT_EQ(limits->pids, 64);
}

TEST_F(CgroupV2Test, MaxReadsBackAsUnset) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PopulateFiles(parent_ + "/box",
                {{"memory.max", "max\n"}, {"cpu.max", "max 100000\n"}, {"pids.max", "max\n"}});
  absl::StatusOr<Limits> limits = box_->GetLimits();
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_FALSE(limits->memory_bytes.has_value());
  EXPECT_FALSE(limits->cpus.has_value());
  EXPECT_FALSE(limits->pids.has_value());
}

TEST_F(CgroupV2Test, GarbageInLimitFileIsAnError) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PopulateFiles(parent_ + "/box",
                {{"memory.max", "max\n"}, {"cpu.max", "lots\n"}, {"pids.max", "max\n"}});
  absl::StatusOr<Limits> limits = box_->GetLimits();
  EXPECT_EQ(limits.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(limits.status().message(), HasSubstr("cpu.max"));
}

TEST_F(CgroupV2Test, GetUsageParsesKernelFiles) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PopulateFiles(parent_ + "/box",
                {{"memory.current", "1234\n"},
                 {"memory.peak", "5678\n"},
                 {"cpu.stat", "usage_usec 4200\nuser_usec 3000\nsystem_usec 1200\n"},
                 {"pids.current", "3\n"},
                 {"memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n"}});
  absl::StatusOr<Usage> usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->memory_bytes, 1234);
  EXPECT_EQ(usage->memory_peak_bytes, 5678);
  EXPECT_EQ(usage->cpu_usec, 4200);
  EXPECT_EQ(usage->pids, 3);
  EXPECT_EQ(usage->oom_kills, 2);
}

TEST_F(CgroupV2Test, UsageFilesKeptOpenAreReadAnew) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  const std::string dir = parent_ + "/box";
  PopulateFiles(dir, {{"memory.current", "1\n"},
                      {"memory.peak", "1\n"},
                      {"cpu.stat", "usage_usec 1\n"},
                      {"pids.current", "1\n"},
                      {"memory.events", "oom_kill 0\n"}});
  ASSERT_TRUE(box_->KeepUsageFilesOpen().ok());
  // Opened, not read: the text comes from the read.
  PopulateFiles(dir, {{"memory.current", "4096\n"},
                      {"memory.peak", "8192\n"},
                      {"cpu.stat", "usage_usec 777\nuser_usec 700\nsystem_usec 77\n"},
                      {"pids.current", "5\n"},
                      {"memory.events", "low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n"}});
  absl::StatusOr<Usage> usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->memory_bytes, 4096);
  EXPECT_EQ(usage->memory_peak_bytes, 8192);
  EXPECT_EQ(usage->cpu_usec, 777);
  EXPECT_EQ(usage->pids, 5);
  EXPECT_EQ(usage->oom_kills, 1);
}

// Kernels before 5.19 have no memory.peak: keeping the others open works.
TEST_F(CgroupV2Test, UsageFilesKeptOpenWithoutMemoryPeak) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  const std::string dir = parent_ + "/box";
  PopulateFiles(dir, {{"memory.current", "300\n"},
                      {"cpu.stat", "usage_usec 1\n"},
                      {"pids.current", "1\n"},
                      {"memory.events", "oom_kill 0\n"}});
  ASSERT_TRUE(box_->KeepUsageFilesOpen().ok());
  PutFile(dir + "/memory.current", "200\n");
  absl::StatusOr<Usage> usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->memory_bytes, 200);
  EXPECT_EQ(usage->memory_peak_bytes, 200);
}

TEST_F(CgroupV2Test, PeakWithoutMemoryPeakIsHighestSeen) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  const std::string dir = parent_ + "/box";
  PopulateFiles(
      dir,
      {{"cpu.stat", "usage_usec 1\n"}, {"pids.current", "1\n"}, {"memory.events", "oom_kill 0\n"}});
  for (auto [current, peak] : {std::pair{100, 100}, {50, 100}, {300, 300}}) {
    PutFile(dir + "/memory.current", absl::StrCat(current));
    absl::StatusOr<Usage> usage = box_->GetUsage();
    ASSERT_TRUE(usage.ok()) << usage.status();
    EXPECT_EQ(usage->memory_peak_bytes, peak) << "current " << current;
  }
}

TEST_F(CgroupV2Test, RejectsBadLimitsAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  const Limits bad[] = {
      {0, std::nullopt, std::nullopt},
      {-1, std::nullopt, std::nullopt},
      {64 << 20, 0.0, std::nullopt},
      {64 << 20, -0.5, std::nullopt},
      {64 << 20, std::nan(""), std::nullopt},
      {64 << 20, std::numeric_limits<double>::infinity(), std::nullopt},
      {64 << 20, 1.0, 0},
  };
  for (const Limits& limits : bad) {
    EXPECT_EQ(box_->SetLimits(limits).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(ReadFile(parent_ + "/box/memory.max"), "");
  EXPECT_EQ(ReadFile(parent_ + "/box/cpu.max"), "");
  EXPECT_EQ(ReadFile(parent_ + "/box/pids.max"), "");
}

TEST_F(CgroupV2Test, ValidatesChildNames) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  for (const std::string& name : {std::string(""), std::string("."), std::string(".."),
                                  std::string("a/b"), std::string("../x"), std::string("sp ace"),
                                  std::string("h\xc3\xa9llo"), std::string(129, 'x')}) {
    EXPECT_EQ(manager->CreateChild(name).status().code(), absl::StatusCode::kInvalidArgument)
        << name;
    EXPECT_EQ(manager->OpenChild(name).status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
  EXPECT_TRUE(manager->CreateChild("Ab-1_2.x").ok());
  EXPECT_TRUE(manager->CreateChild(std::string(128, 'y')).ok());
  EXPECT_FALSE(Exists(own_ + "/b"));
}

TEST_F(CgroupV2Test, CreateOpenAndList) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(manager->OpenChild("a").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(manager->CreateChild("b").ok());
  ASSERT_TRUE(manager->CreateChild("a").ok());
  EXPECT_EQ(manager->CreateChild("a").status().code(), absl::StatusCode::kAlreadyExists);
  absl::StatusOr<std::unique_ptr<Cgroup>> opened = manager->OpenChild("a");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->name(), "a");
  EXPECT_THAT((*opened)->Paths(), ElementsAre(parent_ + "/a"));
  absl::StatusOr<std::vector<std::string>> children = manager->ListChildren();
  ASSERT_TRUE(children.ok()) << children.status();
  // Interface files of the parent are not children.
  EXPECT_THAT(*children, ElementsAre("a", "b"));
}

TEST_F(CgroupV2Test, RemoveToleratesMissingDirectory) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  absl::StatusOr<std::unique_ptr<Cgroup>> child = manager->CreateChild("box");
  ASSERT_TRUE(child.ok());
  EXPECT_TRUE((*child)->Remove().ok());
  EXPECT_FALSE(Exists(parent_ + "/box"));
  EXPECT_TRUE((*child)->Remove().ok());
}

TEST_F(CgroupV2Test, RemoveOfBusyCgroupNamesProcesses) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PutFile(parent_ + "/box/cgroup.procs", "4242\n");
  absl::Status status = box_->Remove();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("4242"));
}

TEST_F(CgroupV2Test, RemoveParentFailsWhileChildrenRemain) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  ASSERT_TRUE(manager->CreateChild("left-over").ok());
  absl::Status status = manager->RemoveParentIfEmpty();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("left-over"));
}

TEST_F(CgroupV2Test, AddProcessWritesCgroupProcs) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  ASSERT_TRUE(box_->AddProcess(31337).ok());
  EXPECT_EQ(ReadFile(parent_ + "/box/cgroup.procs"), "31337");
  absl::StatusOr<std::vector<pid_t>> pids = box_->Processes();
  ASSERT_TRUE(pids.ok());
  EXPECT_THAT(*pids, ElementsAre(31337));
}

// A sub-cgroup caught while it is removed (its files answer ENODEV, or are
// gone, before its directory is) holds no process, and is no error for the
// listing above it: a sandbox's teardown meets its commands' leaves so.
TEST_F(CgroupV2Test, ProcessesSkipsASubCgroupBeingRemoved) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PutFile(parent_ + "/box/cgroup.procs", "7\n");
  ASSERT_EQ(::mkdir((parent_ + "/box/x1").c_str(), 0755), 0);  // no cgroup.procs left in it
  absl::StatusOr<std::vector<pid_t>> pids = box_->Processes();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre(7));
}

TEST_F(CgroupV2Test, KillAllUsesCgroupKill) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PutFile(parent_ + "/box/cgroup.kill", "");
  // The fake cgroup is empty, as the kernel would leave it after the kill.
  EXPECT_TRUE(box_->KillAll(100).ok());
  EXPECT_EQ(ReadFile(parent_ + "/box/cgroup.kill"), "1");
}

TEST_F(CgroupV2Test, KillAllWithoutCgroupKillFreezesKillsAndThaws) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  SleepingChild victim;
  ASSERT_GT(victim.pid(), 0);
  PopulateFiles(parent_ + "/box", {{"cgroup.freeze", ""}});
  PutFile(parent_ + "/box/cgroup.procs", absl::StrCat(victim.pid(), "\n"));
  // A fake cgroup.procs never empties: the process is killed, then the wait
  // for an empty cgroup times out naming the pid still listed.
  absl::Status status = box_->KillAll(50);
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat(victim.pid())));
  const int wstatus = victim.Wait();
  EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
  // Frozen ("1") then thawed: "0" overwrote the first byte.
  EXPECT_EQ(ReadFile(parent_ + "/box/cgroup.freeze"), "0");
}

TEST(CgroupOptionsTest, RejectsUnknownVersionAndBadParent) {
  CgroupOptions options;
  options.version = "v3";
  EXPECT_EQ(CgroupManager::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.version = "v2";
  options.parent = "../escape";
  EXPECT_EQ(CgroupManager::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sbx::engine
