// The cgroup v2 backend: one directory per sandbox in the unified hierarchy.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/engine/cgroup.h"
#include "server/engine/cgroup_internal.h"

namespace sbx::engine::cgroup_internal {
namespace {

// The controllers sbx uses, in the order they are enabled.
constexpr const char* kWantedControllers[] = {"memory", "pids", "cpu"};

// Which controllers the sandboxes' cgroups have.
struct V2Controllers {
  bool memory = false;
  bool pids = false;
  bool cpu = false;
};

absl::StatusOr<std::set<std::string>> ReadControllerList(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::set<std::string> names;
  for (absl::string_view c : absl::StrSplit(text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
    names.emplace(c);
  }
  return names;
}

absl::StatusOr<std::vector<std::string>> ControllersToEnable(const std::string& dir);
absl::Status WriteSubtreeControl(const std::string& dir,
                                 const std::vector<std::string>& controllers);

class CgroupV2 : public Cgroup {
 public:
  CgroupV2(std::string name, std::string dir, V2Controllers controllers)
      : name_(std::move(name)), dir_(std::move(dir)), controllers_(controllers) {}

  const std::string& name() const override { return name_; }

  absl::Status AddProcess(pid_t pid) override {
    return Annotate(WriteStringToFile(File("cgroup.procs"), absl::StrCat(pid)),
                    absl::StrCat("moving pid ", pid, " into cgroup ", dir_));
  }

  absl::Status SetLimits(const Limits& limits) override {
    RETURN_IF_ERROR(ValidateLimits(limits));
    // Refuse before writing anything, so a bad request changes nothing.
    if (limits.memory_bytes) RETURN_IF_ERROR(Require(controllers_.memory, "memory"));
    if (limits.cpus) RETURN_IF_ERROR(Require(controllers_.cpu, "cpu"));
    if (limits.pids) RETURN_IF_ERROR(Require(controllers_.pids, "pids"));
    if (limits.memory_bytes) RETURN_IF_ERROR(SetMemory(*limits.memory_bytes));
    if (limits.cpus) {
      RETURN_IF_ERROR(WriteStringToFile(
          File("cpu.max"), absl::StrCat(CpuQuotaUsec(*limits.cpus), " ", kCpuPeriodUsec)));
    }
    if (limits.pids) {
      RETURN_IF_ERROR(WriteStringToFile(File("pids.max"), absl::StrCat(*limits.pids)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Limits> GetLimits() override {
    Limits limits;
    if (controllers_.memory) {
      ASSIGN_OR_RETURN(limits.memory_bytes, ReadMaxOrNumber(File("memory.max")));
    }
    if (controllers_.cpu) {
      ASSIGN_OR_RETURN(limits.cpus, ReadCpuMax());
    }
    if (controllers_.pids) {
      ASSIGN_OR_RETURN(limits.pids, ReadMaxOrNumber(File("pids.max")));
    }
    return limits;
  }

  absl::StatusOr<Usage> GetUsage() override {
    Usage usage;
    if (controllers_.memory) {
      ASSIGN_OR_RETURN(usage.memory_bytes, usage_files_.Int64(File("memory.current")));
      ASSIGN_OR_RETURN(usage.memory_peak_bytes, ReadPeak(usage.memory_bytes));
      ASSIGN_OR_RETURN(usage.oom_kills,
                       usage_files_.RequiredKeyedValue(File("memory.events"), "oom_kill"));
    }
    // cpu.stat is a core file: it exists without the cpu controller.
    ASSIGN_OR_RETURN(usage.cpu_usec,
                     usage_files_.RequiredKeyedValue(File("cpu.stat"), "usage_usec"));
    if (controllers_.pids) {
      ASSIGN_OR_RETURN(usage.pids, usage_files_.Int64(File("pids.current")));
    }
    return usage;
  }

  absl::Status KeepUsageFilesOpen() override {
    if (!usage_files_.Keep()) return absl::OkStatus();  // opened per read, then
    std::vector<std::string> files = {File("cpu.stat")};
    if (controllers_.memory) {
      for (const char* name : {"memory.current", "memory.events"}) files.push_back(File(name));
      // Older kernels have no memory.peak; ReadPeak copes.
      absl::Status peak = usage_files_.Open(File("memory.peak"));
      if (!peak.ok() && peak.code() != absl::StatusCode::kNotFound) return peak;
    }
    if (controllers_.pids) files.push_back(File("pids.current"));
    for (const std::string& path : files) RETURN_IF_ERROR(usage_files_.Open(path));
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<pid_t>> Processes() override { return ReadPidsRecursive(dir_); }

  absl::StatusOr<std::unique_ptr<Cgroup>> CreateSub(std::string_view name_view) override {
    const std::string name(name_view);
    RETURN_IF_ERROR(ValidateCgroupName(name));
    // Children get the controllers only once this cgroup enables them; it
    // holds no processes itself (they live in its leaves), so it may.
    ASSIGN_OR_RETURN(std::vector<std::string> missing, ControllersToEnable(dir_));
    if (!missing.empty()) RETURN_IF_ERROR(WriteSubtreeControl(dir_, missing));
    const std::string dir = JoinPath(dir_, name);
    RETURN_IF_ERROR(MakeDirIfMissing(dir));
    return std::make_unique<CgroupV2>(absl::StrCat(name_, "/", name), dir, controllers_);
  }

  absl::StatusOr<std::vector<UniqueFd>> OpenProcsFiles() override {
    ASSIGN_OR_RETURN(UniqueFd fd, OpenProcsFile(dir_));
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(fd));
    return fds;
  }

  absl::StatusOr<UniqueFd> OpenDirectory() override {
    UniqueFd fd(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", dir_));
    return fd;
  }

  absl::Status DelegateProcs(uint32_t host_id) override {
    const std::string path = File("cgroup.procs");
    if (::chown(path.c_str(), host_id, host_id) != 0) {
      return ErrnoStatus(errno, absl::StrCat("giving ", path, " to uid ", host_id));
    }
    return absl::OkStatus();
  }

  absl::Status KillAll(int timeout_ms) override {
    const PidLister list = [this] { return Processes(); };
    // cgroup.kill (5.14+) kills the whole tree atomically, forks included.
    if (PathExists(File("cgroup.kill"))) {
      RETURN_IF_ERROR(WriteStringToFile(File("cgroup.kill"), "1"));
      return KillAndWaitUntilEmpty(list, timeout_ms, dir_, /*kill_first=*/false);
    }
    // Without it, freeze first so nothing forks while we kill; SIGKILL still
    // reaches frozen tasks on v2. Thaw afterwards whatever happened.
    const bool freeze = PathExists(File("cgroup.freeze"));
    if (freeze) RETURN_IF_ERROR(WriteStringToFile(File("cgroup.freeze"), "1"));
    absl::Status status = KillAndWaitUntilEmpty(list, timeout_ms, dir_);
    if (freeze) {
      absl::Status thaw = WriteStringToFile(File("cgroup.freeze"), "0");
      if (status.ok()) status = thaw;
    }
    return status;
  }

  absl::Status Remove() override { return RemoveCgroupTree(dir_); }

  std::vector<std::string> Paths() const override { return {dir_}; }

 private:
  std::string File(absl::string_view name) const { return JoinPath(dir_, name); }

  absl::Status Require(bool present, absl::string_view controller) const {
    if (present) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat("the ", controller,
                                                      " controller is not enabled for ", dir_,
                                                      " (it is not delegated to sbxd's cgroup)"));
  }

  absl::Status SetMemory(int64_t bytes) {
    RETURN_IF_ERROR(RefuseBelowUsage(bytes));
    absl::Status status = WriteStringToFile(File("memory.max"), absl::StrCat(bytes));
    if (status.code() == absl::StatusCode::kFailedPrecondition) {  // EBUSY
      return MemoryBelowUsageError(bytes, File("memory.current"));
    }
    RETURN_IF_ERROR(status);
    // Swap is always off. memory.swap.max is absent without swap accounting,
    // and then there is no swap to turn off.
    status = WriteStringToFile(File("memory.swap.max"), "0");
    if (status.code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return status;
  }

  // v1 refuses a memory limit below what the cgroup uses and cannot reclaim
  // (EBUSY). v2 takes it, then reclaims and OOM-kills whatever does not fit,
  // so a mistaken SetLimits would kill the sandbox's commands. Both backends
  // keep v1's contract: reclaim what can go (page cache; swap is off), and
  // refuse, changing nothing, if the usage stays above the limit. A command
  // that grows between the check and the write meets the new limit as it
  // would any other.
  absl::Status RefuseBelowUsage(int64_t bytes) {
    absl::StatusOr<int64_t> usage = ReadInt64File(File("memory.current"));
    // The kernel always has it beside memory.max; a hand-made tree may not.
    if (usage.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    if (!usage.ok()) return usage.status();
    int64_t current = *usage;
    if (current <= bytes) return absl::OkStatus();
    // memory.reclaim (Linux 5.19+) answers EAGAIN when it fell short; the
    // figure read afterwards decides either way.
    if (PathExists(File("memory.reclaim"))) {
      (void)WriteStringToFile(File("memory.reclaim"), absl::StrCat(current - bytes));
      ASSIGN_OR_RETURN(current, ReadInt64File(File("memory.current")));
    }
    if (current <= bytes) return absl::OkStatus();
    return MemoryBelowUsageError(bytes, File("memory.current"));
  }

  // cpu.max is "<quota> <period>" or "max <period>".
  absl::StatusOr<std::optional<double>> ReadCpuMax() {
    const std::string path = File("cpu.max");
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    std::vector<absl::string_view> fields =
        absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
    int64_t quota = 0;
    int64_t period = 0;
    if (fields.size() != 2 || !absl::SimpleAtoi(fields[1], &period) || period <= 0 ||
        (fields[0] != "max" && !absl::SimpleAtoi(fields[0], &quota))) {
      return absl::InternalError(absl::StrCat("unexpected content in ", path, ": '",
                                              absl::StripAsciiWhitespace(text), "'"));
    }
    if (fields[0] == "max") return std::nullopt;
    return static_cast<double>(quota) / static_cast<double>(period);
  }

  // memory.peak exists from Linux 5.19; before, the best we have is the
  // highest figure seen by this object.
  absl::StatusOr<int64_t> ReadPeak(int64_t current) {
    peak_seen_ = std::max(peak_seen_, current);
    absl::StatusOr<int64_t> peak = usage_files_.Int64(File("memory.peak"));
    if (peak.status().code() == absl::StatusCode::kNotFound) return peak_seen_;
    return peak;
  }

  const std::string name_;
  const std::string dir_;
  const V2Controllers controllers_;
  int64_t peak_seen_ = 0;
  UsageFiles usage_files_;
};

class CgroupManagerV2 : public CgroupManager {
 public:
  CgroupManagerV2(std::string parent_dir, V2Controllers controllers)
      : parent_dir_(std::move(parent_dir)), controllers_(controllers) {}

  CgroupVersion version() const override { return CgroupVersion::kV2; }

  absl::StatusOr<std::unique_ptr<Cgroup>> CreateChild(std::string_view name_view) override {
    const std::string name(name_view);
    RETURN_IF_ERROR(ValidateCgroupName(name));
    const std::string dir = JoinPath(parent_dir_, name);
    if (::mkdir(dir.c_str(), 0755) != 0) {
      if (errno == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat("cgroup ", dir, " already exists"));
      }
      return ErrnoStatus(errno, absl::StrCat("creating cgroup ", dir));
    }
    return std::make_unique<CgroupV2>(name, dir, controllers_);
  }

  absl::StatusOr<std::unique_ptr<Cgroup>> OpenChild(std::string_view name_view) override {
    const std::string name(name_view);
    RETURN_IF_ERROR(ValidateCgroupName(name));
    const std::string dir = JoinPath(parent_dir_, name);
    if (!PathExists(dir)) {
      return absl::NotFoundError(absl::StrCat("cgroup ", dir, " does not exist"));
    }
    return std::make_unique<CgroupV2>(name, dir, controllers_);
  }

  absl::StatusOr<std::vector<std::string>> ListChildren() override {
    return ListSubdirs(parent_dir_);
  }

  std::vector<std::string> ParentPaths() const override { return {parent_dir_}; }

  absl::Status RemoveParentIfEmpty() override { return RemoveCgroupDir(parent_dir_); }

 private:
  const std::string parent_dir_;
  const V2Controllers controllers_;
};

// The wanted controllers available in `dir` but not yet enabled for its
// children.
absl::StatusOr<std::vector<std::string>> ControllersToEnable(const std::string& dir) {
  ASSIGN_OR_RETURN(std::set<std::string> available,
                   ReadControllerList(JoinPath(dir, "cgroup.controllers")));
  ASSIGN_OR_RETURN(std::set<std::string> enabled,
                   ReadControllerList(JoinPath(dir, "cgroup.subtree_control")));
  std::vector<std::string> missing;
  for (const char* c : kWantedControllers) {
    if (available.count(c) != 0 && enabled.count(c) == 0) missing.emplace_back(c);
  }
  return missing;
}

absl::Status WriteSubtreeControl(const std::string& dir,
                                 const std::vector<std::string>& controllers) {
  std::vector<std::string> plus;
  for (const std::string& c : controllers) plus.push_back(absl::StrCat("+", c));
  const std::string file = JoinPath(dir, "cgroup.subtree_control");
  const std::string value = absl::StrJoin(plus, " ");
  absl::Status status = WriteStringToFile(file, value);
  if (status.code() != absl::StatusCode::kFailedPrecondition) return status;  // not EBUSY
  absl::StatusOr<std::vector<pid_t>> pids = ReadPidsFile(JoinPath(dir, "cgroup.procs"));
  return absl::FailedPreconditionError(absl::StrCat(
      "cannot write '", value, "' to ", file, ": other processes share sbxd's cgroup (pids ",
      pids.ok() ? absl::StrJoin(*pids, " ") : "unknown",
      "), and cgroup v2 allows no controllers above processes; run sbxd in a cgroup of "
      "its own"));
}

// Enables the wanted controllers for the children of sbxd's own cgroup
// `own_dir`, moving sbxd into `leaf_dir` first when `own_dir` may not hold
// processes itself (see cgroup.h).
absl::Status EnableInOwnCgroup(const std::string& own_dir,
                               const std::optional<std::string>& leaf_dir) {
  ASSIGN_OR_RETURN(std::vector<std::string> missing, ControllersToEnable(own_dir));
  if (missing.empty()) return absl::OkStatus();
  if (leaf_dir) {
    RETURN_IF_ERROR(MakeDirIfMissing(*leaf_dir));
    RETURN_IF_ERROR(
        Annotate(WriteStringToFile(JoinPath(*leaf_dir, "cgroup.procs"), absl::StrCat(::getpid())),
                 "moving sbxd into its own leaf cgroup"));
  }
  return WriteSubtreeControl(own_dir, missing);
}

// The "0::/path" line of /proc/self/cgroup.
absl::StatusOr<std::string> OwnV2Path(const CgroupOptions& options,
                                      const std::vector<SelfCgroupEntry>& self) {
  for (const SelfCgroupEntry& e : self) {
    if (e.hierarchy_id == 0 && e.controllers.empty()) return e.path;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no cgroup v2 line ('0::/path') in ", options.self_cgroup_file));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CgroupManager>> CreateV2Manager(
    const CgroupOptions& options, const std::vector<SelfCgroupEntry>& self) {
  ASSIGN_OR_RETURN(std::string own_path, OwnV2Path(options, self));
  const std::string leaf_name = absl::StrCat(options.parent, ".daemon");
  // A restarted sbxd may have been started from within the leaf: the layout
  // is then the same as if it ran in the leaf's parent.
  if (const size_t slash = own_path.rfind('/'); own_path.substr(slash + 1) == leaf_name) {
    own_path = slash == 0 ? "/" : own_path.substr(0, slash);
  }
  const std::string own_dir = JoinPath(options.root, own_path);
  // Only the true root cgroup may hold processes and enable controllers at
  // once. The root of a cgroup namespace reads as "/" too, but, not being the
  // true root, has a cgroup.type file.
  std::optional<std::string> leaf_dir;
  if (own_path != "/" || PathExists(JoinPath(own_dir, "cgroup.type"))) {
    leaf_dir = JoinPath(own_dir, leaf_name);
  }
  RETURN_IF_ERROR(EnableInOwnCgroup(own_dir, leaf_dir));

  const std::string parent_dir = JoinPath(own_dir, options.parent);
  RETURN_IF_ERROR(MakeDirIfMissing(parent_dir));
  ASSIGN_OR_RETURN(std::vector<std::string> missing, ControllersToEnable(parent_dir));
  if (!missing.empty()) RETURN_IF_ERROR(WriteSubtreeControl(parent_dir, missing));
  // Now every wanted controller that is available here is enabled.
  ASSIGN_OR_RETURN(std::set<std::string> available,
                   ReadControllerList(JoinPath(parent_dir, "cgroup.controllers")));
  V2Controllers controllers;
  controllers.memory = available.count("memory") != 0;
  controllers.pids = available.count("pids") != 0;
  controllers.cpu = available.count("cpu") != 0;
  return std::make_unique<CgroupManagerV2>(parent_dir, controllers);
}

}  // namespace sbx::engine::cgroup_internal
