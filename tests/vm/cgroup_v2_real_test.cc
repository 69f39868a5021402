// The cgroup v2 backend against a real cgroup v2 kernel (the fake-tree tests
// are tests/unit/cgroup_v2_test.cc). It needs a pure v2 host and to run in
// its root cgroup: only there can a test hand controllers to a cgroup it
// creates, as a service manager does for sbxd (systemd's Delegate=yes). The
// v2 VM of tests/vm runs it so, with SBX_REQUIRE_REAL_CGROUP_V2=1, which
// turns the skip on any other host into a failure.
//
// Each test puts this process into a "service" cgroup of its own,
// /sys/fs/cgroup/sbx-unit-v2-<pid>-<n>, as if it were sbxd started by a
// service manager, and moves it back to the root and removes everything
// afterwards.
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/engine/cgroup.h"

namespace sbx::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;

constexpr char kRoot[] = "/sys/fs/cgroup";
constexpr int64_t kMiB = 1 << 20;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trimmed(const std::string& path) {
  return std::string(absl::StripAsciiWhitespace(Slurp(path)));
}

std::set<std::string> Words(const std::string& path) {
  std::set<std::string> words;
  for (absl::string_view w : absl::StrSplit(Slurp(path), absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    words.emplace(w);
  }
  return words;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool WriteFile(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ::close(fd);
  return ok;
}

// The v2 line of /proc/<pid>/cgroup, e.g. "/sbx-unit-v2-1-0/sbx.daemon".
std::string CgroupOf(pid_t pid) {
  for (absl::string_view line :
       absl::StrSplit(Slurp(absl::StrCat("/proc/", pid, "/cgroup")), '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return "";
}

// Why the test cannot run here, or "" if it can.
std::string RealV2Unavailable() {
  if (::geteuid() != 0) return "needs root to create cgroups";
  struct statfs fs;
  if (::statfs(kRoot, &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
    return "/sys/fs/cgroup is not a cgroup2 mount (a v1 or hybrid host); the v2 VM of tests/vm "
           "runs this test";
  }
  if (CgroupOf(::getpid()) != "/" || Exists(absl::StrCat(kRoot, "/cgroup.type"))) {
    return "needs to run in the true root cgroup, the only one that can hand controllers to a "
           "cgroup the test makes while processes live in it; the v2 VM of tests/vm runs it so";
  }
  const std::set<std::string> enabled = Words(absl::StrCat(kRoot, "/cgroup.subtree_control"));
  for (const char* c : {"cpu", "memory", "pids"}) {
    if (enabled.count(c) == 0) return absl::StrCat("the root does not enable ", c, " for children");
  }
  return "";
}

// Skips where the real test cannot run, or fails where it must
// (SBX_REQUIRE_REAL_CGROUP_V2=1, as in the v2 VM).
#define REQUIRE_REAL_V2()                                               \
  if (const std::string why = RealV2Unavailable(); !why.empty()) {      \
    if (std::getenv("SBX_REQUIRE_REAL_CGROUP_V2") != nullptr) FAIL() << why; \
    GTEST_SKIP() << why;                                                \
  }

// rmdir of `dir` and everything below it, deepest first (cgroupfs refuses a
// recursive unlink of the interface files, so only directories go).
void RemoveCgroupDirs(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> subdirs;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec)) subdirs.push_back(entry.path());
  }
  for (const std::string& sub : subdirs) RemoveCgroupDirs(sub);
  ::rmdir(dir.c_str());
}

// A cgroup of this process's own, below the root, as a service manager makes
// for a service. The process moves into it on construction and back to the
// root, after which the cgroup is removed, on destruction.
class ServiceCgroup {
 public:
  ServiceCgroup() {
    static int n = 0;
    name_ = absl::StrCat("sbx-unit-v2-", ::getpid(), "-", n++);
    dir_ = absl::StrCat(kRoot, "/", name_);
    ok_ = ::mkdir(dir_.c_str(), 0755) == 0 &&
          WriteFile(dir_ + "/cgroup.procs", absl::StrCat(::getpid()));
  }
  ~ServiceCgroup() {
    WriteFile(absl::StrCat(kRoot, "/cgroup.procs"), absl::StrCat(::getpid()));
    RemoveCgroupDirs(dir_);
    EXPECT_FALSE(Exists(dir_)) << "left behind: " << dir_;
  }
  ServiceCgroup(const ServiceCgroup&) = delete;
  ServiceCgroup& operator=(const ServiceCgroup&) = delete;

  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }  // relative to the root
  const std::string& dir() const { return dir_; }

 private:
  std::string name_, dir_;
  bool ok_ = false;
};

// A child that, once told, touches `bytes` of memory, burns some cpu,
// reports back and sleeps until killed.
class Worker {
 public:
  explicit Worker(size_t bytes) {
    if (::pipe2(go_, O_CLOEXEC) != 0 || ::pipe2(ready_, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      char c;
      if (::read(go_[0], &c, 1) != 1) ::_exit(1);
      // volatile: the compiler may not drop stores to memory never read.
      volatile char* mem = static_cast<char*>(::malloc(bytes));
      if (mem == nullptr && bytes != 0) ::_exit(2);
      for (size_t i = 0; i < bytes; i += 4096) mem[i] = 1;
      volatile uint64_t spin = 0;
      for (uint64_t i = 0; i < 20'000'000; ++i) spin = spin + i;
      if (::write(ready_[1], "r", 1) != 1) ::_exit(3);
      for (;;) ::pause();
    }
    ::close(go_[0]);
    ::close(ready_[1]);
    go_[0] = ready_[1] = -1;
  }
  ~Worker() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : {go_[1], ready_[0]}) {
      if (fd >= 0) ::close(fd);
    }
  }
  pid_t pid() const { return pid_; }
  // Lets it run; true once it has touched its memory, false if it died.
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

std::unique_ptr<CgroupManager> MakeManager(const std::string& parent) {
  CgroupOptions options;
  options.parent = parent;
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options);
  EXPECT_TRUE(manager.ok()) << manager.status();
  if (!manager.ok()) return nullptr;
  EXPECT_EQ((*manager)->version(), CgroupVersion::kV2);
  return std::move(*manager);
}

TEST(CgroupV2RealTest, DelegatedServiceCgroupMovesDaemonIntoLeaf) {
  REQUIRE_REAL_V2();
  ServiceCgroup service;
  ASSERT_TRUE(service.ok()) << service.dir() << ": " << std::strerror(errno);
  const std::set<std::string> wanted = {"cpu", "memory", "pids"};
  ASSERT_THAT(Words(service.dir() + "/cgroup.controllers"), IsSupersetOf(wanted));
  ASSERT_TRUE(Words(service.dir() + "/cgroup.subtree_control").empty());

  std::unique_ptr<CgroupManager> manager = MakeManager("sbx");
  ASSERT_NE(manager, nullptr);
  const std::string parent = service.dir() + "/sbx";
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(parent));
  // The kernel allows controllers for children only above no processes: sbxd
  // left the service cgroup for a leaf before enabling them there.
  EXPECT_EQ(CgroupOf(::getpid()), absl::StrCat("/", service.name(), "/sbx.daemon"));
  EXPECT_THAT(Words(service.dir() + "/cgroup.subtree_control"), IsSupersetOf(wanted));
  EXPECT_THAT(Words(parent + "/cgroup.controllers"), IsSupersetOf(wanted));
  EXPECT_THAT(Words(parent + "/cgroup.subtree_control"), IsSupersetOf(wanted));

  // A restarted sbxd starts inside the leaf and finds the same parent.
  std::unique_ptr<CgroupManager> again = MakeManager("sbx");
  ASSERT_NE(again, nullptr);
  EXPECT_THAT(again->ParentPaths(), ElementsAre(parent));
  EXPECT_FALSE(Exists(service.dir() + "/sbx.daemon/sbx"));
  EXPECT_EQ(CgroupOf(::getpid()), absl::StrCat("/", service.name(), "/sbx.daemon"));

  absl::StatusOr<std::unique_ptr<Cgroup>> box = again->CreateChild("box");
  ASSERT_TRUE(box.ok()) << box.status();
  EXPECT_THAT(Words(parent + "/box/cgroup.controllers"), IsSupersetOf(wanted));
  EXPECT_EQ(manager->RemoveParentIfEmpty().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*box)->Remove().ok());
  EXPECT_TRUE(manager->RemoveParentIfEmpty().ok());
  EXPECT_FALSE(Exists(parent));
}

TEST(CgroupV2RealTest, RootCgroupNeedsNoLeaf) {
  REQUIRE_REAL_V2();
  const std::string parent_name = absl::StrCat("sbx-unit-v2-root-", ::getpid());
  std::unique_ptr<CgroupManager> manager = MakeManager(parent_name);
  ASSERT_NE(manager, nullptr);
  const std::string parent = absl::StrCat(kRoot, "/", parent_name);
  EXPECT_THAT(manager->ParentPaths(), ElementsAre(parent));
  EXPECT_EQ(CgroupOf(::getpid()), "/");
  EXPECT_FALSE(Exists(parent + ".daemon"));
  EXPECT_THAT(Words(parent + "/cgroup.subtree_control"),
              IsSupersetOf(std::set<std::string>{"cpu", "memory", "pids"}));
  EXPECT_TRUE(manager->RemoveParentIfEmpty().ok());
  EXPECT_FALSE(Exists(parent));
}

TEST(CgroupV2RealTest, LimitsUsageKillAndRemove) {
  REQUIRE_REAL_V2();
  ServiceCgroup service;
  ASSERT_TRUE(service.ok()) << service.dir() << ": " << std::strerror(errno);
  std::unique_ptr<CgroupManager> manager = MakeManager("sbx");
  ASSERT_NE(manager, nullptr);
  absl::StatusOr<std::unique_ptr<Cgroup>> created = manager->CreateChild("box");
  ASSERT_TRUE(created.ok()) << created.status();
  Cgroup& box = **created;
  const std::string dir = box.Paths().at(0);

  ASSERT_TRUE(box.SetLimits({64 * kMiB, 0.5, 16}).ok());
  EXPECT_EQ(Trimmed(dir + "/memory.max"), absl::StrCat(64 * kMiB));
  EXPECT_EQ(Trimmed(dir + "/memory.swap.max"), "0");
  EXPECT_EQ(Trimmed(dir + "/cpu.max"), "50000 100000");
  EXPECT_EQ(Trimmed(dir + "/pids.max"), "16");
  absl::StatusOr<Limits> limits = box.GetLimits();
  ASSERT_TRUE(limits.ok()) << limits.status();
  EXPECT_EQ(limits->memory_bytes, 64 * kMiB);
  EXPECT_DOUBLE_EQ(limits->cpus.value_or(0), 0.5);
  EXPECT_EQ(limits->pids, 16);

  // Processes live in leaves only: the sandbox's init in "init".
  absl::StatusOr<std::unique_ptr<Cgroup>> init = box.CreateSub("init");
  ASSERT_TRUE(init.ok()) << init.status();
  constexpr size_t kTouched = 24 * kMiB;
  Worker worker(kTouched);
  ASSERT_GT(worker.pid(), 0);
  ASSERT_TRUE((*init)->AddProcess(worker.pid()).ok());
  EXPECT_EQ(CgroupOf(worker.pid()), absl::StrCat("/", service.name(), "/sbx/box/init"));
  ASSERT_TRUE(worker.Start());

  absl::StatusOr<Usage> usage = box.GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->memory_bytes, static_cast<int64_t>(kTouched));
  EXPECT_GE(usage->memory_peak_bytes, usage->memory_bytes);
  EXPECT_LE(usage->memory_peak_bytes, 64 * kMiB);
  EXPECT_GT(usage->cpu_usec, 0);
  EXPECT_EQ(usage->pids, 1);
  EXPECT_EQ(usage->oom_kills, 0);
  absl::StatusOr<std::vector<pid_t>> pids = box.Processes();
  ASSERT_TRUE(pids.ok()) << pids.status();
  EXPECT_THAT(*pids, ElementsAre(worker.pid()));

  // Below what the worker holds, with swap off: refused as on v1 (where the
  // kernel says EBUSY), not an OOM kill of the sandbox (v2 would reclaim,
  // then kill), and nothing changes.
  absl::Status below = box.SetLimits({4 * kMiB, std::nullopt, std::nullopt});
  EXPECT_EQ(below.code(), absl::StatusCode::kFailedPrecondition) << below;
  EXPECT_THAT(below.message(), HasSubstr("below the sandbox's current usage"));
  EXPECT_EQ(Trimmed(dir + "/memory.max"), absl::StrCat(64 * kMiB));
  EXPECT_EQ(::kill(worker.pid(), 0), 0);
  usage = box.GetUsage();
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->oom_kills, 0);
  // Raising and lowering above the usage both apply.
  ASSERT_TRUE(box.SetLimits({128 * kMiB, 1.5, 32}).ok());
  ASSERT_TRUE(box.SetLimits({48 * kMiB, std::nullopt, std::nullopt}).ok());
  EXPECT_EQ(Trimmed(dir + "/memory.max"), absl::StrCat(48 * kMiB));
  EXPECT_EQ(Trimmed(dir + "/cpu.max"), "150000 100000");
  EXPECT_EQ(Trimmed(dir + "/pids.max"), "32");

  ASSERT_TRUE(box.KillAll(5000).ok());
  // The killed worker is a zombie until reaped; that must not keep the
  // cgroup busy (a sandbox's init is not sbxd's child to reap).
  EXPECT_TRUE(box.Remove().ok());
  const int status = worker.Reap();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_FALSE(Exists(dir));
  EXPECT_TRUE(manager->RemoveParentIfEmpty().ok());
}

TEST(CgroupV2RealTest, OomKillInALeafIsCountedForTheSandbox) {
  REQUIRE_REAL_V2();
  ServiceCgroup service;
  ASSERT_TRUE(service.ok()) << service.dir() << ": " << std::strerror(errno);
  std::unique_ptr<CgroupManager> manager = MakeManager("sbx");
  ASSERT_NE(manager, nullptr);
  absl::StatusOr<std::unique_ptr<Cgroup>> box = manager->CreateChild("box");
  ASSERT_TRUE(box.ok()) << box.status();
  ASSERT_TRUE((*box)->SetLimits({32 * kMiB, std::nullopt, std::nullopt}).ok());
  absl::StatusOr<std::unique_ptr<Cgroup>> leaf = (*box)->CreateSub("x1");
  ASSERT_TRUE(leaf.ok()) << leaf.status();

  Worker hog(96 * kMiB);
  ASSERT_GT(hog.pid(), 0);
  ASSERT_TRUE((*leaf)->AddProcess(hog.pid()).ok());
  if (hog.Start()) {
    ::kill(hog.pid(), SIGKILL);
    ADD_FAILURE() << "96 MiB fit under a 32 MiB limit without swap";
  }
  const int status = hog.Reap();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  for (Cgroup* cgroup : {box->get(), leaf->get()}) {
    absl::StatusOr<Usage> usage = cgroup->GetUsage();
    ASSERT_TRUE(usage.ok()) << usage.status();
    EXPECT_EQ(usage->oom_kills, 1) << cgroup->name();
    EXPECT_GT(usage->memory_peak_bytes, 16 * kMiB) << cgroup->name();
    // A task being OOM-killed may charge past the limit on its way out.
    EXPECT_LE(usage->memory_peak_bytes, 34 * kMiB) << cgroup->name();
  }
  EXPECT_TRUE((*box)->KillAll(5000).ok());
  EXPECT_TRUE((*box)->Remove().ok());
  EXPECT_TRUE(manager->RemoveParentIfEmpty().ok());
}

TEST(CgroupV2RealTest, ProcessJoinsLeafThroughProcsFileOpenedByDaemon) {
  REQUIRE_REAL_V2();
  ServiceCgroup service;
  ASSERT_TRUE(service.ok()) << service.dir() << ": " << std::strerror(errno);
  std::unique_ptr<CgroupManager> manager = MakeManager("sbx");
  ASSERT_NE(manager, nullptr);
  absl::StatusOr<std::unique_ptr<Cgroup>> box = manager->CreateChild("box");
  ASSERT_TRUE(box.ok()) << box.status();
  absl::StatusOr<std::unique_ptr<Cgroup>> init = (*box)->CreateSub("init");
  ASSERT_TRUE(init.ok()) << init.status();
  absl::StatusOr<std::unique_ptr<Cgroup>> leaf = (*box)->CreateSub("x1");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  absl::StatusOr<std::vector<UniqueFd>> fds = (*leaf)->OpenProcsFiles();
  ASSERT_TRUE(fds.ok()) << fds.status();
  ASSERT_EQ(fds->size(), 1u);

  // As a sandbox's init forks a command: the child starts in "init" and
  // joins its own leaf by writing "0" to the fd sbxd opened.
  int go[2], done[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(done, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    char c;
    if (::read(go[0], &c, 1) != 1) ::_exit(1);
    if (::write((*fds)[0].get(), "0", 1) != 1) ::_exit(2);
    if (::write(done[1], "d", 1) != 1) ::_exit(3);
    for (;;) ::pause();
  }
  ASSERT_GT(child, 0);
  ::close(go[0]);
  ::close(done[1]);
  ASSERT_TRUE((*init)->AddProcess(child).ok());
  char c;
  ASSERT_EQ(::write(go[1], "g", 1), 1);
  const bool joined = ::read(done[0], &c, 1) == 1;
  const std::string where = CgroupOf(child);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(go[1]);
  ::close(done[0]);
  EXPECT_TRUE(joined);
  EXPECT_EQ(where, absl::StrCat("/", service.name(), "/sbx/box/x1"));
  EXPECT_TRUE((*box)->KillAll(5000).ok());
  EXPECT_TRUE((*box)->Remove().ok());
  EXPECT_TRUE(manager->RemoveParentIfEmpty().ok());
}

TEST(CgroupV2RealTest, SharedCgroupIsRefusedNamingTheOtherProcesses) {
  REQUIRE_REAL_V2();
  ServiceCgroup service;
  ASSERT_TRUE(service.ok()) << service.dir() << ": " << std::strerror(errno);
  // Another process in the service cgroup: sbxd may not move it, so it
  // cannot enable controllers there, and says why.
  Worker other(0);
  ASSERT_GT(other.pid(), 0);
  CgroupOptions options;
  options.parent = "sbx";
  absl::StatusOr<std::unique_ptr<CgroupManager>> manager = CgroupManager::Create(options);
  EXPECT_EQ(manager.status().code(), absl::StatusCode::kFailedPrecondition) << manager.status();
  EXPECT_THAT(manager.status().message(), HasSubstr(absl::StrCat(other.pid())));
  EXPECT_EQ(CgroupOf(other.pid()), absl::StrCat("/", service.name()));
}

}  // namespace
}  // namespace sbx::engine
