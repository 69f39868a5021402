// The cgroup v1 backend: one directory per sandbox in each of the memory,
// cpu, cpuacct and pids hierarchies (cpu and cpuacct are often one).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/engine/cgroup.h"
#include "server/engine/cgroup_internal.h"

namespace sbx::engine::cgroup_internal {
namespace {

// v1 shows "no limit" as LONG_MAX rounded down to a page; anything this
// large cannot be a limit someone set.
constexpr int64_t kV1UnlimitedThreshold = int64_t{1} << 62;

// One directory per controller; cpu and cpuacct may share one.
struct V1Dirs {
  std::string memory;
  std::string cpu;
  std::string cpuacct;
  std::string pids;

  // Each distinct directory once, in a stable order.
  std::vector<std::string> Unique() const {
    std::vector<std::string> out;
    for (const std::string* d : {&memory, &cpu, &cpuacct, &pids}) {
      if (std::find(out.begin(), out.end(), *d) == out.end()) out.push_back(*d);
    }
    return out;
  }

  V1Dirs Child(absl::string_view name) const {
    return V1Dirs{JoinPath(memory, name), JoinPath(cpu, name), JoinPath(cpuacct, name),
                  JoinPath(pids, name)};
  }
};

class CgroupV1 : public Cgroup {
  // The files GetUsage reads.
  static constexpr char kMemoryUsage[] = "memory.usage_in_bytes";
  static constexpr char kMemoryPeak[] = "memory.max_usage_in_bytes";
  static constexpr char kOomControl[] = "memory.oom_control";
  static constexpr char kCpuUsage[] = "cpuacct.usage";
  static constexpr char kPids[] = "pids.current";

 public:
  CgroupV1(std::string name, V1Dirs dirs) : name_(std::move(name)), dirs_(std::move(dirs)) {}

  const std::string& name() const override { return name_; }

  absl::Status AddProcess(pid_t pid) override {
    for (const std::string& dir : dirs_.Unique()) {
      RETURN_IF_ERROR(Annotate(WriteStringToFile(JoinPath(dir, "cgroup.procs"), absl::StrCat(pid)),
                               absl::StrCat("moving pid ", pid, " into cgroup ", dir)));
    }
    return absl::OkStatus();
  }

  absl::Status SetLimits(const Limits& limits) override {
    RETURN_IF_ERROR(ValidateLimits(limits));
    if (limits.memory_bytes) RETURN_IF_ERROR(SetMemory(*limits.memory_bytes));
    if (limits.cpus) {
      RETURN_IF_ERROR(WriteStringToFile(Cpu("cpu.cfs_period_us"), absl::StrCat(kCpuPeriodUsec)));
      RETURN_IF_ERROR(
          WriteStringToFile(Cpu("cpu.cfs_quota_us"), absl::StrCat(CpuQuotaUsec(*limits.cpus))));
    }
    if (limits.pids) {
      RETURN_IF_ERROR(WriteStringToFile(Pids("pids.max"), absl::StrCat(*limits.pids)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Limits> GetLimits() override {
    Limits limits;
    ASSIGN_OR_RETURN(int64_t memory, ReadInt64File(Memory("memory.limit_in_bytes")));
    if (memory < kV1UnlimitedThreshold) limits.memory_bytes = memory;
    ASSIGN_OR_RETURN(int64_t quota, ReadInt64File(Cpu("cpu.cfs_quota_us")));
    if (quota > 0) {  // -1 is unlimited
      ASSIGN_OR_RETURN(int64_t period, ReadInt64File(Cpu("cpu.cfs_period_us")));
      if (period <= 0) {
        return absl::InternalError(
            absl::StrCat("unexpected period ", period, " in ", Cpu("cpu.cfs_period_us")));
      }
      limits.cpus = static_cast<double>(quota) / static_cast<double>(period);
    }
    ASSIGN_OR_RETURN(limits.pids, ReadMaxOrNumber(Pids("pids.max")));
    return limits;
  }

  absl::StatusOr<Usage> GetUsage() override {
    Usage usage;
    ASSIGN_OR_RETURN(usage.memory_bytes, usage_files_.Int64(Memory(kMemoryUsage)));
    ASSIGN_OR_RETURN(usage.memory_peak_bytes, usage_files_.Int64(Memory(kMemoryPeak)));
    ASSIGN_OR_RETURN(int64_t cpu_ns, usage_files_.Int64(Cpuacct(kCpuUsage)));
    usage.cpu_usec = cpu_ns / 1000;
    ASSIGN_OR_RETURN(usage.pids, usage_files_.Int64(Pids(kPids)));
    // The oom_kill counter appeared in Linux 4.13; before it, report none.
    ASSIGN_OR_RETURN(std::optional<int64_t> oom_kills,
                     usage_files_.KeyedValue(Memory(kOomControl), "oom_kill"));
    usage.oom_kills = oom_kills.value_or(0);
    return usage;
  }

  absl::Status KeepUsageFilesOpen() override {
    if (!usage_files_.Keep()) return absl::OkStatus();  // opened per read, then
    for (const std::string& path : {Memory(kMemoryUsage), Memory(kMemoryPeak), Cpuacct(kCpuUsage),
                                    Pids(kPids), Memory(kOomControl)}) {
      RETURN_IF_ERROR(usage_files_.Open(path));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<pid_t>> Processes() override {
    std::set<pid_t> all;
    for (const std::string& dir : dirs_.Unique()) {
      // A hierarchy whose directory is gone (a half-removed cgroup) is empty.
      ASSIGN_OR_RETURN(std::vector<pid_t> pids, ReadPidsRecursive(dir));
      all.insert(pids.begin(), pids.end());
    }
    return std::vector<pid_t>(all.begin(), all.end());
  }

  absl::StatusOr<std::unique_ptr<Cgroup>> CreateSub(std::string_view name_view) override {
    const std::string name(name_view);
    RETURN_IF_ERROR(ValidateCgroupName(name));
    V1Dirs dirs = dirs_.Child(name);
    for (const std::string& dir : dirs.Unique()) RETURN_IF_ERROR(MakeDirIfMissing(dir));
    return std::make_unique<CgroupV1>(absl::StrCat(name_, "/", name), std::move(dirs));
  }

  absl::StatusOr<std::vector<UniqueFd>> OpenProcsFiles() override {
    std::vector<UniqueFd> fds;
    for (const std::string& dir : dirs_.Unique()) {
      ASSIGN_OR_RETURN(UniqueFd fd, OpenProcsFile(dir));
      fds.push_back(std::move(fd));
    }
    return fds;
  }

  // v1 has no cgroup.kill, and its freezer would need a hierarchy of its
  // own; killing until every hierarchy is empty also catches late forks,
  // which the pids limit bounds.
  absl::Status KillAll(int timeout_ms) override {
    return KillAndWaitUntilEmpty([this] { return Processes(); }, timeout_ms,
                                 absl::StrCat("cgroup ", name_));
  }

  absl::Status Remove() override {
    // Try every hierarchy even if one fails, so as little as possible leaks.
    absl::Status first;
    for (const std::string& dir : dirs_.Unique()) {
      absl::Status status = RemoveCgroupTree(dir);
      if (first.ok()) first = status;
    }
    return first;
  }

  std::vector<std::string> Paths() const override { return dirs_.Unique(); }

 private:
  std::string Memory(absl::string_view file) const { return JoinPath(dirs_.memory, file); }
  std::string Cpu(absl::string_view file) const { return JoinPath(dirs_.cpu, file); }
  std::string Cpuacct(absl::string_view file) const { return JoinPath(dirs_.cpuacct, file); }
  std::string Pids(absl::string_view file) const { return JoinPath(dirs_.pids, file); }

  absl::Status SetMemory(int64_t bytes) {
    ASSIGN_OR_RETURN(int64_t current, ReadInt64File(Memory("memory.limit_in_bytes")));
    const bool has_memsw = PathExists(Memory("memory.memsw.limit_in_bytes"));
    for (const FileWrite& write : V1MemoryLimitWrites(dirs_.memory, current, bytes, has_memsw)) {
      absl::Status status = WriteStringToFile(write.first, write.second);
      // The kernel answers EBUSY when it cannot reclaim down to the limit.
      if (status.code() == absl::StatusCode::kFailedPrecondition) {
        return MemoryBelowUsageError(bytes, Memory("memory.usage_in_bytes"));
      }
      RETURN_IF_ERROR(status);
    }
    // Without memsw accounting this is what keeps the sandbox off swap.
    return WriteStringToFile(Memory("memory.swappiness"), "0");
  }

  const std::string name_;
  const V1Dirs dirs_;
  UsageFiles usage_files_;
};

class CgroupManagerV1 : public CgroupManager {
 public:
  explicit CgroupManagerV1(V1Dirs parents) : parents_(std::move(parents)) {}

  CgroupVersion version() const override { return CgroupVersion::kV1; }

  absl::StatusOr<std::unique_ptr<Cgroup>> CreateChild(std::string_view name_view) override {
    const std::string name(name_view);
    RETURN_IF_ERROR(ValidateCgroupName(name));
    V1Dirs dirs = parents_.Child(name);
    std::vector<std::string> made;
    for (const std::string& dir : dirs.Unique()) {
      if (::mkdir(dir.c_str(), 0755) == 0) {
        made.push_back(dir);
        continue;
      }
      const int err = errno;
      // Leave no half-made cgroup behind.
      for (const std::string& m : made) ::rmdir(m.c_str());
      if (err == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat("cgroup ", dir, " already exists"));
      }
      return ErrnoStatus(err, absl::StrCat("creating cgroup ", dir));
    }
    return std::make_unique<CgroupV1>(name, std::move(dirs));
  }

  // A cgroup present in only some hierarchies (sbxd died while creating or
  // removing it) still opens, so that it can be removed.
  absl::StatusOr<std::unique_ptr<Cgroup>> OpenChild(std::string_view name_view) override {
    const std::string name(name_view);
    RETURN_IF_ERROR(ValidateCgroupName(name));
    V1Dirs dirs = parents_.Child(name);
    const std::vector<std::string> unique = dirs.Unique();
    if (std::none_of(unique.begin(), unique.end(), PathExists)) {
      return absl::NotFoundError(absl::StrCat("cgroup ", name, " does not exist in any of ",
                                              absl::StrJoin(parents_.Unique(), ", ")));
    }
    return std::make_unique<CgroupV1>(name, std::move(dirs));
  }

  absl::StatusOr<std::vector<std::string>> ListChildren() override {
    std::set<std::string> names;
    for (const std::string& dir : parents_.Unique()) {
      ASSIGN_OR_RETURN(std::vector<std::string> children, ListSubdirs(dir));
      names.insert(children.begin(), children.end());
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

  std::vector<std::string> ParentPaths() const override { return parents_.Unique(); }

  absl::Status RemoveParentIfEmpty() override {
    absl::Status first;
    for (const std::string& dir : parents_.Unique()) {
      absl::Status status = RemoveCgroupDir(dir);
      if (first.ok()) first = status;
    }
    return first;
  }

 private:
  const V1Dirs parents_;
};

// Where sbxd's cgroup is in the hierarchy holding `controller`: the mount
// directory (named after the co-mounted list, e.g. "cpu,cpuacct", or after
// one of them, e.g. a "cpu" symlink) joined with sbxd's path in it.
absl::StatusOr<std::string> OwnV1Dir(const CgroupOptions& options,
                                     const std::vector<SelfCgroupEntry>& self,
                                     const std::string& controller) {
  for (const SelfCgroupEntry& e : self) {
    if (std::find(e.controllers.begin(), e.controllers.end(), controller) == e.controllers.end()) {
      continue;
    }
    std::vector<std::string> candidates = {
        JoinPath(options.root, absl::StrJoin(e.controllers, ","))};
    for (const std::string& c : e.controllers) candidates.push_back(JoinPath(options.root, c));
    for (const std::string& mount : candidates) {
      if (PathExists(mount)) return JoinPath(mount, e.path);
    }
    return absl::FailedPreconditionError(
        absl::StrCat("the cgroup v1 hierarchy of ", controller, " is not mounted under ",
                     options.root, " (tried ", absl::StrJoin(candidates, ", "), ")"));
  }
  return absl::FailedPreconditionError(absl::StrCat("the cgroup v1 controller ", controller,
                                                    " is not available: no line for it in ",
                                                    options.self_cgroup_file));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CgroupManager>> CreateV1Manager(
    const CgroupOptions& options, const std::vector<SelfCgroupEntry>& self) {
  V1Dirs parents;
  for (auto [controller, dir] :
       {std::pair{"memory", &parents.memory}, std::pair{"cpu", &parents.cpu},
        std::pair{"cpuacct", &parents.cpuacct}, std::pair{"pids", &parents.pids}}) {
    ASSIGN_OR_RETURN(std::string own, OwnV1Dir(options, self, controller));
    *dir = JoinPath(own, options.parent);
  }
  for (const std::string& dir : parents.Unique()) RETURN_IF_ERROR(MakeDirIfMissing(dir));
  return std::make_unique<CgroupManagerV1>(std::move(parents));
}

}  // namespace sbx::engine::cgroup_internal
