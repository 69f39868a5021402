#include "bench/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/host.h"

namespace sbx::bench {

namespace {

constexpr uint64_t kIdsPerSandbox = 65536;

// A uid base that leaves room for `max` ranges below 2^32, near the top of
// the id space (the integration tests use lower ranges), varied by pid so
// that two benches rarely share ranges.
uint32_t ChooseUidBase(int max) {
  const uint64_t span = (static_cast<uint64_t>(max) + 1) * kIdsPerSandbox;
  const uint64_t top = 4294967295ull - span;
  return static_cast<uint32_t>(top - (static_cast<uint64_t>(getpid()) % 8) * span);
}

}  // namespace

std::string WaitForServer(pid_t& pid, const std::string& socket_path,
                          std::chrono::seconds timeout,
                          std::shared_ptr<grpc::Channel>* channel, std::unique_ptr<Stub>* stub) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      pid = -1;
      return "exited during start-up";
    }
    if (access(socket_path.c_str(), F_OK) == 0) {
      // A fresh channel per attempt: a failed one waits out a back-off.
      *channel = MakeChannel("unix://" + socket_path, false);
      *stub = v1::SandboxService::NewStub(*channel);
      std::vector<std::string> ids;
      if (ListSandboxIds(**stub, &ids).ok()) return "";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::StrCat("did not answer within ", timeout.count(), " s");
}

BenchDaemon::BenchDaemon(DaemonConfig config) : config_(std::move(config)) {
  if (config_.uid_base == 0) {
    config_.uid_base = ChooseUidBase(config_.max_sandboxes + config_.pool_size);
  }
  cgroup_parent_ = absl::StrCat("sbx-bench-", getpid(), config_.name_suffix);
}

BenchDaemon::~BenchDaemon() { Stop(); }

bool BenchDaemon::Start(std::string* error) {
  char tmpl[] = "/tmp/sbx-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    *error = absl::StrCat("mkdtemp: ", strerror(errno));
    return false;
  }
  temp_dir_ = tmpl;
  socket_path_ = temp_dir_ + "/sbxd.sock";
  state_dir_ = temp_dir_ + "/state";
  log_path_ = temp_dir_ + "/sbxd.log";
  const std::vector<std::string> argv = {
      config_.sbxd_path,        "--socket",        socket_path_,
      "--state-dir",            state_dir_,        "--cgroup-parent",
      cgroup_parent_,           "--uid-base",      std::to_string(config_.uid_base),
      "--max-sandboxes",        std::to_string(config_.max_sandboxes),
      "--pool-size",            std::to_string(config_.pool_size),
      "--log-level",            "warn"};
  const int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    *error = absl::StrCat("open ", log_path_, ": ", strerror(errno));
    return false;
  }
  // Its own process group: a ^C on the terminal reaches the bench, which
  // then cleans up, not sbxd behind its back.
  pid_ = Spawn(argv, -1, log_fd, /*own_process_group=*/true, log_fd);
  const int spawn_errno = errno;
  close(log_fd);
  if (pid_ < 0) {
    *error = absl::StrCat("starting ", config_.sbxd_path, ": ", strerror(spawn_errno));
    return false;
  }
  const std::string why =
      WaitForServer(pid_, socket_path_, std::chrono::seconds(20), &channel_, &stub_);
  if (why.empty()) return true;
  *error = absl::StrCat("sbxd ", why, "; log:\n", LogTail());
  return false;
}

bool BenchDaemon::Stop(std::string* report) {
  if (temp_dir_.empty()) return true;
  bool clean = true;
  std::string notes;
  if (pid_ > 0) {
    std::vector<std::string> ids;
    if (stub_ != nullptr && ListSandboxIds(*stub_, &ids).ok()) {
      for (const std::string& id : ids) {
        grpc::Status s = DestroySandbox(*stub_, id);
        if (!s.ok()) absl::StrAppend(&notes, "destroy ", id, ": ", StatusText(s), "\n");
      }
    }
    stub_.reset();
    channel_.reset();
    kill(pid_, SIGTERM);
    const int status = WaitOrKill(pid_, 10000);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      clean = false;
      absl::StrAppend(&notes, "sbxd ignored SIGTERM for 10 s; killed\n");
    }
    pid_ = -1;
  }
  stub_.reset();
  channel_.reset();
  for (const std::string& dir : CgroupParentDirs(cgroup_parent_)) {
    const std::vector<std::string> cgroups = CgroupDescendants(dir);
    const std::vector<pid_t> procs = CgroupProcs(dir);
    if (!cgroups.empty() || !procs.empty()) {
      clean = false;
      // What was left, so that a leak can be told from the next run's noise.
      absl::StrAppend(&notes, "leftovers in ", dir, " removed by force: ", cgroups.size(),
                      " cgroups (", absl::StrJoin(cgroups, " "), "), ", procs.size(),
                      " processes (", absl::StrJoin(procs, " "), ")\n");
    }
    RemoveCgroupTree(dir);
    RemoveCgroupTree(dir + ".daemon");  // v2: sbxd's own leaf
  }
  std::vector<std::string> mounts = MountsBelow(temp_dir_);
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
    clean = false;
    absl::StrAppend(&notes, "mount left at ", *it, "\n");
    umount2(it->c_str(), MNT_DETACH);
  }
  if (!clean) {
    // sbxd's own account of it, from the log that goes with the directory.
    std::string problems;
    for (absl::string_view line : absl::StrSplit(LogTail(1 << 20), '\n')) {
      if (absl::StrContains(line, " error ") || absl::StrContains(line, " warn ")) {
        absl::StrAppend(&problems, "  ", line, "\n");
      }
    }
    absl::StrAppend(&notes, "sbxd's errors and warnings:\n",
                    problems.empty() ? "  none\n" : problems);
  }
  std::error_code ec;
  std::filesystem::remove_all(temp_dir_, ec);
  if (ec) absl::StrAppend(&notes, "removing ", temp_dir_, ": ", ec.message(), "\n");
  temp_dir_.clear();
  if (report != nullptr) *report = notes;
  return clean && notes.empty();
}

bool BenchDaemon::Alive() {
  if (pid_ <= 0) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) != pid_) return true;
  pid_ = -1;
  exit_description_ = WIFSIGNALED(status) ? absl::StrCat("signal ", WTERMSIG(status))
                                          : absl::StrCat("exit ", WEXITSTATUS(status));
  return false;
}

std::string BenchDaemon::MemoryCgroupDir() const {
  std::vector<std::string> dirs = CgroupParentDirs(cgroup_parent_);
  return dirs.empty() ? "" : dirs.front();
}

std::string BenchDaemon::LogTail(size_t bytes) const {
  std::optional<std::string> log = ReadFile(log_path_);
  if (!log) return "<no log>";
  return log->size() > bytes ? log->substr(log->size() - bytes) : *log;
}

}  // namespace sbx::bench
