// The cgroup v1 backend: against fake cgroupfs trees (version forced to v1),
// and once against the real v1 hierarchies of the host when it has them.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/cgroup.h"
#include "server/engine/cgroup_internal.h"
#include "tests/unit/fake_cgroupfs.h"

namespace sbx::engine {
namespace {

using ::sbx::engine::cgroup_internal::FileWrite;
using ::sbx::engine::cgroup_internal::V1MemoryLimitWrites;
using ::sbx::testing::Exists;
using ::sbx::testing::FakeCgroupTest;
using ::sbx::testing::PopulateFiles;
using ::sbx::testing::PutFile;
using ::sbx::testing::ReadFile;
using ::sbx::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr const char* kUnlimited = "9223372036854771712\n";

// A hybrid-host layout: memory nested (as in a container), cpu and cpuacct
// co-mounted, pids at its own path, plus hierarchies sbx does not use.
constexpr const char* kSelfCgroup =
    "12:pids:/user.slice\n"
    "9:name=systemd:/user.slice/session-1.scope\n"
    "4:memory:/process_api/abc\n"
    "3:cpu,cpuacct:/\n"
    "1:freezer:/\n"
    "0::/user.slice/session-1.scope\n";

class CgroupV1Test : public FakeCgroupTest {
 protected:
  void SetUp() override {
    root_ = tmp_.path() + "/cgroup";
    options_.root = root_;
    options_.version = "v1";
    options_.parent = "sbx";
    options_.self_cgroup_file = tmp_.path() + "/self_cgroup";
    PutFile(options_.self_cgroup_file, kSelfCgroup);
    memory_ = root_ + "/memory/process_api/abc/sbx";
    cpu_ = root_ + "/cpu,cpuacct/sbx";
    pids_ = root_ + "/pids/user.slice/sbx";
    for (const char* own : {"/memory/process_api/abc", "/cpu,cpuacct", "/pids/user.slice"}) {
      std::filesystem::create_directories(root_ + own);
    }
  }

  // Creates a child and the interface files the kernel would put in it.
  // Files sbx writes start empty so that what it wrote reads back exactly;
  // memory.limit_in_bytes starts small so that setting it is a raise.
  std::unique_ptr<Cgroup> MakeChild(CgroupManager& manager, const std::string& name) override {
    absl::StatusOr<std::unique_ptr<Cgroup>> child = manager.CreateChild(name);
    EXPECT_TRUE(child.ok()) << child.status();
    PopulateFiles(memory_ + "/" + name, {{"cgroup.procs", ""},
                                         {"memory.limit_in_bytes", "4096\n"},
                                         {"memory.memsw.limit_in_bytes", "4096\n"},
                                         {"memory.swappiness", ""}});
    PopulateFiles(cpu_ + "/" + name,
                  {{"cgroup.procs", ""}, {"cpu.cfs_period_us", ""}, {"cpu.cfs_quota_us", ""}});
    PopulateFiles(pids_ + "/" + name, {{"cgroup.procs", ""}, {"pids.max", ""}});
    return child.ok() ? std::move(*child) : nullptr;
  }

  std::string root_, memory_, cpu_, pids_;
};

TEST_F(CgroupV1Test, CreatesParentInEachHierarchyBelowOwnCgroup) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(manager->version(), CgroupVersion::kV1);
  // cpu and cpuacct share one directory: it is listed once.
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(memory_, cpu_, pids_));
  for (const std::string& dir : manager->ParentPaths()) {
    EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  }
  EXPECT_FALSE(Exists(root_ + "/freezer/sbx"));
  EXPECT_FALSE(Exists(root_ + "/systemd"));
}

TEST_F(CgroupV1Test, FindsCoMountedHierarchyThroughSymlinks) {
  // Some hosts mount "cpu,cpuacct" under another name and link both names.
  std::filesystem::remove_all(root_ + "/cpu,cpuacct");
  std::filesystem::create_directories(root_ + "/cpu");
  std::filesystem::create_directory_symlink("cpu", root_ + "/cpuacct");
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(memory_, root_ + "/cpu/sbx", pids_));
}

TEST_F(CgroupV1Test, SeparateCpuAndCpuacctHierarchies) {
  PutFile(options_.self_cgroup_file, "8:pids:/\n4:memory:/\n2:cpuacct:/\n1:cpu:/\n");
  for (const char* c : {"memory", "cpu", "cpuacct", "pids"}) {
    std::filesystem::create_directories(root_ + "/" + c);
  }
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(root_ + "/memory/sbx", root_ + "/cpu/sbx",
                                                  root_ + "/cpuacct/sbx", root_ + "/pids/sbx"));
}

TEST_F(CgroupV1Test, MissingControllerIsAnError) {
  PutFile(options_.self_cgroup_file, "4:memory:/process_api/abc\n3:cpu,cpuacct:/\n");
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options_);
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(manager.status().message(), HasSubstr("pids"));
}

TEST_F(CgroupV1Test, UnmountedHierarchyIsAnError) {
  std::filesystem::remove_all(root_ + "/pids");
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options_);
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(manager.status().message(), HasSubstr(root_ + "/pids"));
}

TEST_F(CgroupV1Test, MalformedSelfCgroupIsAnError) {
  PutFile(options_.self_cgroup_file, "memory:/x\n");
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options_);
  EXPECT_FALSE(manager.ok());
  EXPECT_THAT(manager.status().message(), HasSubstr(options_.self_cgroup_file));
}

TEST_F(CgroupV1Test, SetLimitsWritesV1Files) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  ASSERT_TRUE(box_->SetLimits({64 << 20, 0.5, 16}).ok());
  EXPECT_EQ(ReadFile(memory_ + "/box/memory.limit_in_bytes"), "67108864");
  EXPECT_EQ(ReadFile(memory_ + "/box/memory.memsw.limit_in_bytes"), "67108864");
  EXPECT_EQ(ReadFile(memory_ + "/box/memory.swappiness"), "0");
  EXPECT_EQ(ReadFile(cpu_ + "/box/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(ReadFile(cpu_ + "/box/cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(ReadFile(pids_ + "/box/pids.max"), "16");
}

TEST_F(CgroupV1Test, WithoutMemswOnlyTheLimitIsWritten) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  std::filesystem::remove(memory_ + "/box/memory.memsw.limit_in_bytes");
  Limits limits;
  limits.memory_bytes = 1 << 20;
  ASSERT_TRUE(box_->SetLimits(limits).ok());
  EXPECT_EQ(ReadFile(memory_ + "/box/memory.limit_in_bytes"), "1048576");
  EXPECT_FALSE(Exists(memory_ + "/box/memory.memsw.limit_in_bytes"));
}

TEST(V1MemoryLimitWritesTest, LoweringWritesLimitBeforeMemsw) {
  EXPECT_THAT(V1MemoryLimitWrites("/m", 1000, 500, true),
              ElementsAre(FileWrite{"/m/memory.limit_in_bytes", "500"},
                          FileWrite{"/m/memory.memsw.limit_in_bytes", "500"}));
}

TEST(V1MemoryLimitWritesTest, RaisingWritesMemswBeforeLimit) {
  EXPECT_THAT(V1MemoryLimitWrites("/m", 500, 1000, true),
              ElementsAre(FileWrite{"/m/memory.memsw.limit_in_bytes", "1000"},
                          FileWrite{"/m/memory.limit_in_bytes", "1000"}));
}

TEST(V1MemoryLimitWritesTest, WithoutMemswOnlyLimit) {
  EXPECT_THAT(V1MemoryLimitWrites("/m", 500, 1000, false),
              ElementsAre(FileWrite{"/m/memory.limit_in_bytes", "1000"}));
}

TEST_F(CgroupV1Test, GetLimitsRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  ASSERT_TRUE(box_->SetLimits({256 << 20, 1.5, 64}).ok());
  absl::StatusOr<Limits> limits = box_->GetLimits();
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->memory_bytes, 256 << 20);
  EXPECT_DOUBLE_EQ(limits->cpus.value_or(0), 1.5);
  EXPECT_EQ(limits->pids, 64);
}

TEST_F(CgroupV1Test, UnlimitedReadsBackAsUnset) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PopulateFiles(memory_ + "/box", {{"memory.limit_in_bytes", kUnlimited}});
  PopulateFiles(cpu_ + "/box", {{"cpu.cfs_quota_us", "-1\n"}, {"cpu.cfs_period_us", "100000\n"}});
  PopulateFiles(pids_ + "/box", {{"pids.max", "max\n"}});
  absl::StatusOr<Limits> limits = box_->GetLimits();
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_FALSE(limits->memory_bytes.has_value());
  EXPECT_FALSE(limits->cpus.has_value());
  EXPECT_FALSE(limits->pids.has_value());
}

TEST_F(CgroupV1Test, GetUsageParsesKernelFiles) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PopulateFiles(memory_ + "/box",
                {{"memory.usage_in_bytes", "1000\n"},
                 {"memory.max_usage_in_bytes", "2000\n"},
                 {"memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"}});
  PopulateFiles(cpu_ + "/box", {{"cpuacct.usage", "5000999\n"}});
  PopulateFiles(pids_ + "/box", {{"pids.current", "2\n"}});
  absl::StatusOr<Usage> usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->memory_bytes, 1000);
  EXPECT_EQ(usage->memory_peak_bytes, 2000);
  EXPECT_EQ(usage->cpu_usec, 5000);
  EXPECT_EQ(usage->pids, 2);
  EXPECT_EQ(usage->oom_kills, 3);

  // Kernels before 4.13 have no oom_kill line.
  PutFile(memory_ + "/box/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\n");
  usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->oom_kills, 0);
}

// A command's leaf reads its usage through files it opened once: each read
// must see what the file says now, not what it said when opened.
TEST_F(CgroupV1Test, UsageFilesKeptOpenAreReadAnew) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  PopulateFiles(memory_ + "/box", {{"memory.usage_in_bytes", "1000\n"},
                                   {"memory.max_usage_in_bytes", "2000\n"},
                                   {"memory.oom_control", "oom_kill 0\n"}});
  PopulateFiles(cpu_ + "/box", {{"cpuacct.usage", "5000\n"}});
  PopulateFiles(pids_ + "/box", {{"pids.current", "1\n"}});
  ASSERT_TRUE(box_->KeepUsageFilesOpen().ok());

  // Longer than before, and shorter again: nothing of the old text stays.
  PutFile(memory_ + "/box/memory.usage_in_bytes", "123456789\n");
  PutFile(memory_ + "/box/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
  PutFile(pids_ + "/box/pids.current", "7\n");
  absl::StatusOr<Usage> usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->memory_bytes, 123456789);
  EXPECT_EQ(usage->memory_peak_bytes, 2000);
  EXPECT_EQ(usage->cpu_usec, 5);
  EXPECT_EQ(usage->pids, 7);
  EXPECT_EQ(usage->oom_kills, 4);

  PutFile(memory_ + "/box/memory.usage_in_bytes", "9\n");
  usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->memory_bytes, 9);

  // A text longer than one read (4 KiB) is read to its end: the line
  // wanted comes after 9,500 bytes of others, past two full reads.
  std::string long_text;
  for (int i = 0; i < 500; ++i) absl::StrAppend(&long_text, "padding_", 1000 + i, " 12345\n");
  ASSERT_GT(long_text.size(), 2u * 4096);
  PutFile(memory_ + "/box/memory.oom_control", long_text + "oom_kill 6\n");
  usage = box_->GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->oom_kills, 6);

  // Garbage is still an error, not a stale value.
  PutFile(pids_ + "/box/pids.current", "many\n");
  EXPECT_EQ(box_->GetUsage().status().code(), absl::StatusCode::kInternal);
}

// Without the files there is nothing to keep open: the leaf says so.
TEST_F(CgroupV1Test, KeepingMissingUsageFilesOpenFails) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  EXPECT_EQ(box_->KeepUsageFilesOpen().code(), absl::StatusCode::kNotFound);
}

TEST_F(CgroupV1Test, RejectsBadLimitsAndChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  EXPECT_EQ(box_->SetLimits({0, 1.0, 10}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(box_->SetLimits({1 << 20, 0.0, 10}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(box_->SetLimits({1 << 20, 1.0, 0}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadFile(memory_ + "/box/memory.limit_in_bytes"), "4096\n");
  EXPECT_EQ(ReadFile(cpu_ + "/box/cpu.cfs_quota_us"), "");
  EXPECT_EQ(ReadFile(pids_ + "/box/pids.max"), "");
}

TEST_F(CgroupV1Test, AddProcessJoinsEveryHierarchyAndProcessesUnions) {
  ASSERT_NO_FATAL_FAILURE(MakeBox());
  ASSERT_TRUE(box_->AddProcess(4242).ok());
  for (const std::string& dir : box_->Paths()) {
    EXPECT_EQ(ReadFile(dir + "/cgroup.procs"), "4242") << dir;
  }
  PutFile(memory_ + "/box/cgroup.procs", "1\n2\n");
  PutFile(pids_ + "/box/cgroup.procs", "2\n3\n");
  absl::StatusOr<std::vector<pid_t>> pids = box_->Processes();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre(1, 2, 3, 4242));
}

TEST_F(CgroupV1Test, CreateChildLeavesNothingWhenOneHierarchyHasIt) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  std::filesystem::create_directories(pids_ + "/box");
  absl::StatusOr<std::unique_ptr<Cgroup>> child = manager->CreateChild("box");
  EXPECT_EQ(child.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_FALSE(Exists(memory_ + "/box"));
  EXPECT_FALSE(Exists(cpu_ + "/box"));
}

TEST_F(CgroupV1Test, OpenListAndRemove) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  EXPECT_EQ(manager->OpenChild("box").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(manager->CreateChild("box").ok());
  // A half-made cgroup (here only in memory) is listed and opens, to be removed.
  std::filesystem::create_directories(memory_ + "/half");
  absl::StatusOr<std::vector<std::string>> children = manager->ListChildren();
  ASSERT_TRUE(children.ok()) << children.status();
  EXPECT_THAT(*children, ElementsAre("box", "half"));
  for (const char* name : {"box", "half"}) {
    absl::StatusOr<std::unique_ptr<Cgroup>> cgroup = manager->OpenChild(name);
    ASSERT_TRUE(cgroup.ok()) << cgroup.status();
    EXPECT_TRUE((*cgroup)->Remove().ok());
    EXPECT_TRUE((*cgroup)->Remove().ok()) << "a second Remove finds nothing to do";
  }
  children = manager->ListChildren();
  ASSERT_TRUE(children.ok());
  EXPECT_TRUE(children->empty());
  EXPECT_TRUE(manager->RemoveParentIfEmpty().ok());
  for (const std::string& dir : {memory_, cpu_, pids_}) EXPECT_FALSE(Exists(dir)) << dir;
}

TEST_F(CgroupV1Test, ValidatesChildNames) {
  std::unique_ptr<CgroupManager> manager = MakeManager();
  ASSERT_NE(manager, nullptr);
  for (const char* name : {"", ".", "..", "a/b", "-/..", "new\nline"}) {
    EXPECT_EQ(manager->CreateChild(name).status().code(), absl::StatusCode::kInvalidArgument)
        << name;
  }
  EXPECT_TRUE(manager->CreateChild("sbx-1.a_B").ok());
}

// ---- The real v1 hierarchies of this host ---------------------------------

// Why the real test cannot run here, or "" if it can.
std::string RealV1Unavailable() {
  if (::geteuid() != 0) return "needs root to create cgroups";
  struct statfs fs;
  if (::statfs("/sys/fs/cgroup", &fs) != 0) return "/sys/fs/cgroup is not there";
  if (fs.f_type == CGROUP2_SUPER_MAGIC) return "the host is cgroup v2 only";
  for (const char* c : {"memory", "cpuacct", "pids"}) {
    if (!Exists(absl::StrCat("/sys/fs/cgroup/", c))) {
      return absl::StrCat("no v1 ", c, " hierarchy under /sys/fs/cgroup");
    }
  }
  return "";
}

// A child process that, once told through a pipe, touches `touch_bytes` of
// memory and burns some cpu, reports back and then sleeps until killed.
class Worker {
 public:
  explicit Worker(size_t touch_bytes) {
    if (::pipe(go_) != 0 || ::pipe(ready_) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      char c;
      if (::read(go_[0], &c, 1) != 1) ::_exit(1);
      char* mem = static_cast<char*>(::malloc(touch_bytes));
      if (mem == nullptr) ::_exit(2);
      std::memset(mem, 1, touch_bytes);
      // The memory is never read: without this the compiler may drop the
      // allocation and the fill altogether.
      asm volatile("" : : "r"(mem) : "memory");
      volatile uint64_t spin = 0;
      for (uint64_t i = 0; i < 30'000'000; ++i) spin = spin + i;
      if (::write(ready_[1], "r", 1) != 1) ::_exit(3);
      for (;;) ::pause();
    }
  }
  ~Worker() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {go_[0], go_[1], ready_[0], ready_[1]}) {
      if (fd >= 0) ::close(fd);
    }
  }

  pid_t pid() const { return pid_; }

  // Lets it run and waits until it has touched its memory.
  bool Start() {
    char c;
    return ::write(go_[1], "g", 1) == 1 && ::read(ready_[0], &c, 1) == 1;
  }

  int Reap() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int go_[2] = {-1, -1};
  int ready_[2] = {-1, -1};
};

// On the host's own v1 hierarchies, below a parent of the test's own.
class CgroupV1RealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = RealV1Unavailable(); !why.empty()) GTEST_SKIP() << why;
    CgroupOptions options;
    options.version = "auto";
    options.parent = parent_name_;
    absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
    parents_ = manager_->ParentPaths();
    ASSERT_EQ(manager_->version(), CgroupVersion::kV1);
    ASSERT_GE(parents_.size(), 3u);
  }
  // Whatever happened, leave no cgroup behind.
  void TearDown() override {
    for (const std::string& dir : parents_) ::rmdir(dir.c_str());
  }

  const std::string parent_name_ = absl::StrCat("sbx-unit-", ::getpid());
  std::unique_ptr<CgroupManager> manager_;
  std::vector<std::string> parents_;
};

TEST_F(CgroupV1RealTest, LimitsUsageKillAndRemoveOnThisHost) {
  absl::StatusOr<std::unique_ptr<Cgroup>> created = manager_->CreateChild("box");
  ASSERT_TRUE(created.ok()) << created.status();
  Cgroup& cgroup = **created;
  const std::vector<std::string> paths = cgroup.Paths();
  absl::Cleanup remove_child = [&] {
    (void)cgroup.KillAll(1000);
    for (const std::string& dir : paths) ::rmdir(dir.c_str());
  };

  constexpr size_t kTouched = 24 << 20;
  Worker worker(kTouched);
  ASSERT_GT(worker.pid(), 0);
  ASSERT_TRUE(cgroup.AddProcess(worker.pid()).ok());
  ASSERT_TRUE(worker.Start());

  // From unlimited down (limit, then memsw), then up (memsw, then limit):
  // the kernel refuses either order done wrong.
  ASSERT_TRUE(cgroup.SetLimits({64 << 20, 0.5, 16}).ok());
  ASSERT_TRUE(cgroup.SetLimits({128 << 20, std::nullopt, std::nullopt}).ok());
  ASSERT_TRUE(cgroup.SetLimits({64 << 20, std::nullopt, std::nullopt}).ok());
  absl::StatusOr<Limits> limits = cgroup.GetLimits();
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->memory_bytes, 64 << 20);
  EXPECT_DOUBLE_EQ(limits->cpus.value_or(0), 0.5);
  EXPECT_EQ(limits->pids, 16);

  absl::StatusOr<Usage> usage = cgroup.GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->memory_bytes, static_cast<int64_t>(kTouched));
  EXPECT_GE(usage->memory_peak_bytes, usage->memory_bytes);
  EXPECT_GT(usage->cpu_usec, 0);
  EXPECT_EQ(usage->pids, 1);
  EXPECT_EQ(usage->oom_kills, 0);

  // Below what the worker holds, with swap off: the kernel cannot reclaim.
  absl::Status below = cgroup.SetLimits({4 << 20, std::nullopt, std::nullopt});
  EXPECT_EQ(below.code(), absl::StatusCode::kFailedPrecondition) << below;
  EXPECT_THAT(below.message(), HasSubstr("below the sandbox's current usage"));

  absl::StatusOr<std::vector<pid_t>> pids = cgroup.Processes();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre(worker.pid()));

  ASSERT_TRUE(cgroup.KillAll(5000).ok());
  // The killed worker is a zombie until reaped; that must not keep the
  // cgroup busy (a sandbox's init is not sbxd's child to reap).
  EXPECT_TRUE(cgroup.Remove().ok());
  const int status = worker.Reap();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  EXPECT_TRUE(manager_->RemoveParentIfEmpty().ok());
  for (const std::string& dir : paths) EXPECT_FALSE(Exists(dir)) << dir;
  for (const std::string& dir : parents_) EXPECT_FALSE(Exists(dir)) << dir;
}

// A command (or spare) joins its leaf itself, by writing "0" to the
// cgroup.procs files sbxd opened, one per hierarchy.
TEST_F(CgroupV1RealTest, ProcessJoinsLeafThroughProcsFilesOnThisHost) {
  absl::StatusOr<std::unique_ptr<Cgroup>> box = manager_->CreateChild("box");
  ASSERT_TRUE(box.ok()) << box.status();
  absl::StatusOr<std::unique_ptr<Cgroup>> leaf = (*box)->CreateSub("x1");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  const std::vector<std::string> box_paths = (*box)->Paths();
  absl::Cleanup remove_box = [&] {
    (void)(*box)->KillAll(1000);
    (void)(*box)->Remove();
  };
  absl::StatusOr<std::vector<UniqueFd>> fds = (*leaf)->OpenProcsFiles();
  ASSERT_TRUE(fds.ok()) << fds.status();
  // memory, cpu and cpuacct (co-mounted here or not), pids.
  ASSERT_EQ(fds->size(), (*leaf)->Paths().size());
  ASSERT_GE(fds->size(), 3u);
  // cgroup.procs, not `tasks`: a thread-wise join left fork bombs
  // unkillable for seconds under load (see Cgroup::OpenProcsFiles).
  for (const UniqueFd& fd : *fds) {
    char target[PATH_MAX] = {};
    const std::string link = absl::StrCat("/proc/self/fd/", fd.get());
    ASSERT_GT(::readlink(link.c_str(), target, sizeof(target) - 1), 0) << link;
    EXPECT_TRUE(absl::EndsWith(target, "/box/x1/cgroup.procs")) << target;
  }

  int done[2];
  ASSERT_EQ(::pipe2(done, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    for (const UniqueFd& fd : *fds) {
      if (::write(fd.get(), "0", 1) != 1) ::_exit(2);
    }
    if (::write(done[1], "d", 1) != 1) ::_exit(3);
    for (;;) ::pause();
  }
  ASSERT_GT(child, 0);
  ::close(done[1]);
  char c;
  const bool joined = ::read(done[0], &c, 1) == 1;
  ::close(done[0]);
  absl::StatusOr<std::vector<pid_t>> in_leaf = (*leaf)->Processes();
  const std::string where = ReadFile(absl::StrCat("/proc/", child, "/cgroup"));
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);

  EXPECT_TRUE(joined);
  ASSERT_TRUE(in_leaf.ok()) << in_leaf.status();
  EXPECT_THAT(*in_leaf, ElementsAre(child));
  for (const char* controller : {":memory:", ":pids:", "cpuacct"}) {
    bool found = false;
    for (absl::string_view line : absl::StrSplit(where, '\n')) {
      if (absl::StrContains(line, controller)) {
        found = true;
        EXPECT_TRUE(absl::EndsWith(line, absl::StrCat("/", parent_name_, "/box/x1")))
            << line;
      }
    }
    EXPECT_TRUE(found) << controller << " not in\n" << where;
  }
  std::move(remove_box).Invoke();
  for (const std::string& dir : box_paths) EXPECT_FALSE(Exists(dir)) << dir;
  EXPECT_TRUE(manager_->RemoveParentIfEmpty().ok());
}

// The number of threads of `pid` (/proc/PID/status), or -1.
int64_t ThreadsOf(pid_t pid) {
  const std::string status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    int64_t n;
    if (absl::ConsumePrefix(&line, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &n)) {
      return n;
    }
  }
  return -1;
}

// Usage read through files a leaf opened while it was empty follows what
// joins it later, and the open files do not keep the leaf from going.
TEST_F(CgroupV1RealTest, UsageFilesKeptOpenFollowTheLeafOnThisHost) {
  absl::StatusOr<std::unique_ptr<Cgroup>> box = manager_->CreateChild("box");
  ASSERT_TRUE(box.ok()) << box.status();
  absl::StatusOr<std::unique_ptr<Cgroup>> leaf = (*box)->CreateSub("x1");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  const std::vector<std::string> leaf_paths = (*leaf)->Paths();
  absl::Cleanup remove_box = [&] {
    (void)(*box)->KillAll(1000);
    (void)(*box)->Remove();
  };
  ASSERT_TRUE((*leaf)->KeepUsageFilesOpen().ok());
  absl::StatusOr<Usage> empty = (*leaf)->GetUsage();
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->pids, 0);

  constexpr size_t kTouched = 16 << 20;
  Worker worker(kTouched);
  ASSERT_GT(worker.pid(), 0);
  ASSERT_TRUE((*leaf)->AddProcess(worker.pid()).ok());
  ASSERT_TRUE(worker.Start());
  absl::StatusOr<Usage> busy = (*leaf)->GetUsage();
  ASSERT_TRUE(busy.ok()) << busy.status();
  // pids.current counts tasks: the worker's threads (one, or two under
  // ThreadSanitizer, whose runtime starts a thread in the forked child).
  EXPECT_EQ(busy->pids, ThreadsOf(worker.pid()));
  EXPECT_GE(busy->memory_bytes, static_cast<int64_t>(kTouched));
  EXPECT_GT(busy->cpu_usec, empty->cpu_usec);

  ASSERT_TRUE((*leaf)->KillAll(5000).ok());
  EXPECT_TRUE((*leaf)->Remove().ok());
  for (const std::string& dir : leaf_paths) EXPECT_FALSE(Exists(dir)) << dir;
  worker.Reap();
}

TEST_F(CgroupV1RealTest, DetectsV1OnHybridHost) {
  // Auto-detection on a hybrid host (v1 hierarchies plus cgroup2 at
  // /sys/fs/cgroup/unified) picks v1; the empty parents are then removed.
  CgroupOptions options;
  options.parent = absl::StrCat("sbx-unit-detect-", ::getpid());
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options);
  ASSERT_TRUE(manager.ok()) << manager.status();
  EXPECT_EQ((*manager)->version(), CgroupVersion::kV1);
  EXPECT_TRUE((*manager)->RemoveParentIfEmpty().ok());
  for (const std::string& dir : (*manager)->ParentPaths()) EXPECT_FALSE(Exists(dir)) << dir;
}

// favordynmods on any cgroup hierarchy, v1 or v2, and only there.
TEST(CgroupMountsTest, FavoredMovesAreReadFromTheMountOptions) {
  const std::string plain =
      "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
      "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n";
  EXPECT_FALSE(CgroupMovesFavored(plain));
  EXPECT_FALSE(CgroupMovesFavored(""));
  EXPECT_TRUE(CgroupMovesFavored(
      "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,favordynmods 0 0"));
  EXPECT_TRUE(CgroupMovesFavored(plain +
                                 "cgroup /sys/fs/cgroup/pids cgroup rw,favordynmods,pids 0 0\n"));
  // The word elsewhere (a mount point, another file system) does not count.
  EXPECT_FALSE(CgroupMovesFavored("tmpfs /favordynmods tmpfs rw,favordynmods 0 0\n"));
  EXPECT_FALSE(CgroupMovesFavored(
      "cgroup /sys/fs/cgroup/favordynmods cgroup rw,relatime,cpu,favordynmodsx 0 0\n"));
}

}  // namespace
}  // namespace sbx::engine
