// Version detection and the helpers both cgroup backends share.
#include "server/engine/cgroup.h"

#include <dirent.h>
#include <linux/magic.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/common/unique_fd.h"
#include "server/engine/cgroup_internal.h"

namespace sbx::engine {
namespace cgroup_internal {
namespace {

constexpr size_t kMaxNameLength = 128;
// The kernel refuses a CFS quota below 1 ms.
constexpr int64_t kMinCpuQuotaUsec = 1000;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

// pidfd_open/pidfd_send_signal through syscall(2): glibc wrappers are newer
// than some of the libcs we build with.
int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

int PidfdKill(int pidfd) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0));
}

// SIGKILLs those of `pids` that are still listed by `list` after a pidfd to
// them is held: a pid that is listed after its pidfd was opened is that very
// process (or its pidfd is dead and signalling it fails with ESRCH).
absl::Status KillListed(const std::vector<pid_t>& pids, const PidLister& list) {
  std::vector<std::pair<pid_t, UniqueFd>> pidfds;
  pidfds.reserve(pids.size());
  for (pid_t pid : pids) {
    UniqueFd fd(PidfdOpen(pid));
    if (!fd) {
      if (errno == ESRCH) continue;  // already gone
      return ErrnoStatus(errno, absl::StrCat("opening a pidfd for pid ", pid));
    }
    pidfds.emplace_back(pid, std::move(fd));
  }
  ASSIGN_OR_RETURN(std::vector<pid_t> listed, list());
  const std::set<pid_t> still_in(listed.begin(), listed.end());
  for (const auto& [pid, fd] : pidfds) {
    if (still_in.count(pid) == 0) continue;
    if (PidfdKill(fd.get()) != 0 && errno != ESRCH) {
      return ErrnoStatus(errno, absl::StrCat("sending SIGKILL to pid ", pid));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<SelfCgroupEntry>> ParseSelfCgroup(absl::string_view text,
                                                             absl::string_view source) {
  std::vector<SelfCgroupEntry> entries;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    // The path itself may contain ':', so split only twice.
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    SelfCgroupEntry entry;
    if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &entry.hierarchy_id) ||
        fields[2].empty() || fields[2][0] != '/') {
      return absl::InternalError(absl::StrCat("unexpected line in ", source, ": '", line, "'"));
    }
    for (absl::string_view c : absl::StrSplit(fields[1], ',', absl::SkipEmpty())) {
      entry.controllers.emplace_back(c);
    }
    entry.path = std::string(fields[2]);
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) {
    return absl::InternalError(absl::StrCat(source, " lists no cgroup"));
  }
  return entries;
}

absl::Status ValidateCgroupName(absl::string_view name, absl::string_view what) {
  if (name.empty() || name.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", name, "' must be 1 to ", kMaxNameLength, " characters long"));
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(what, " may not be '", name, "'"));
  }
  if (!std::all_of(name.begin(), name.end(), IsNameChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", name, "' may only contain letters, digits, '_', '.' and '-'"));
  }
  return absl::OkStatus();
}

absl::Status ValidateLimits(const Limits& limits) {
  if (limits.memory_bytes && *limits.memory_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory limit must be positive, got ", *limits.memory_bytes));
  }
  if (limits.cpus && !(std::isfinite(*limits.cpus) && *limits.cpus > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cpus must be a positive number, got ", *limits.cpus));
  }
  if (limits.pids && *limits.pids < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("pids limit must be at least 1, got ", *limits.pids));
  }
  return absl::OkStatus();
}

int64_t CpuQuotaUsec(double cpus) {
  const double quota = std::round(cpus * static_cast<double>(kCpuPeriodUsec));
  // Clamp before converting: an absurd cpus must not overflow int64_t.
  constexpr double kMaxQuota = 1e15;
  return std::max<int64_t>(kMinCpuQuotaUsec, static_cast<int64_t>(std::min(quota, kMaxQuota)));
}

std::string JoinPath(absl::string_view a, absl::string_view b) {
  while (!a.empty() && a.back() == '/') a.remove_suffix(1);
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  if (b.empty()) return std::string(a.empty() ? "/" : a);
  return absl::StrCat(a, "/", b);
}

absl::Status MakeDirIfMissing(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("creating cgroup directory ", path));
  }
  return absl::OkStatus();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<std::vector<pid_t>> ReadPidsFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    pid_t pid;
    if (!absl::SimpleAtoi(line, &pid) || pid <= 0) {
      return absl::InternalError(absl::StrCat("unexpected line in ", path, ": '", line, "'"));
    }
    pids.push_back(pid);
  }
  return pids;
}

absl::Status RemoveCgroupDir(const std::string& dir) {
  if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return absl::OkStatus();
  const int err = errno;
  if (err != EBUSY && err != ENOTEMPTY) {
    return ErrnoStatus(err, absl::StrCat("removing cgroup ", dir));
  }
  // Say what keeps it busy: processes, or child cgroups.
  std::string why = "it is busy";
  absl::StatusOr<std::vector<pid_t>> pids = ReadPidsFile(JoinPath(dir, "cgroup.procs"));
  absl::StatusOr<std::vector<std::string>> children = ListSubdirs(dir);
  if (pids.ok() && !pids->empty()) {
    why = absl::StrCat("processes remain in it: ", absl::StrJoin(*pids, " "));
  } else if (children.ok() && !children->empty()) {
    why = absl::StrCat("it has child cgroups: ", absl::StrJoin(*children, " "));
  }
  return absl::FailedPreconditionError(absl::StrCat("cannot remove cgroup ", dir, ": ", why));
}

absl::StatusOr<std::vector<pid_t>> ReadPidsRecursive(const std::string& dir) {
  absl::StatusOr<std::vector<pid_t>> pids = ReadPidsFile(JoinPath(dir, "cgroup.procs"));
  // Removed, or being removed (its open files answer ENODEV before its
  // directory is gone; a sandbox's teardown can meet a command's leaf that
  // the worker removes): it holds no process, rmdir succeeds only then.
  if (pids.status().code() == absl::StatusCode::kNotFound) return std::vector<pid_t>();
  if (!pids.ok()) return pids.status();
  absl::StatusOr<std::vector<std::string>> subs = ListSubdirs(dir);
  if (subs.status().code() == absl::StatusCode::kNotFound) return pids;
  if (!subs.ok()) return subs.status();
  for (const std::string& sub : *subs) {
    ASSIGN_OR_RETURN(std::vector<pid_t> more, ReadPidsRecursive(JoinPath(dir, sub)));
    pids->insert(pids->end(), more.begin(), more.end());
  }
  return pids;
}

absl::Status RemoveCgroupTree(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> subs = ListSubdirs(dir);
  if (subs.status().code() == absl::StatusCode::kNotFound) return absl::OkStatus();
  if (!subs.ok()) return subs.status();
  for (const std::string& sub : *subs) RETURN_IF_ERROR(RemoveCgroupTree(JoinPath(dir, sub)));
  return RemoveCgroupDir(dir);
}

absl::StatusOr<UniqueFd> OpenProcsFile(const std::string& dir) {
  const std::string path = JoinPath(dir, "cgroup.procs");
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  return fd;
}

absl::StatusOr<std::vector<std::string>> ListSubdirs(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, absl::StrCat("listing ", dir));
  std::vector<std::string> names;
  errno = 0;
  while (const struct dirent* e = ::readdir(d)) {
    const absl::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {  // filesystems without d_type
      struct stat st;
      is_dir = ::stat(JoinPath(dir, name).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (is_dir) names.emplace_back(name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return ErrnoStatus(err, absl::StrCat("reading directory ", dir));
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status KillAndWaitUntilEmpty(const PidLister& list, int timeout_ms, absl::string_view what,
                                   bool kill_first) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  // Start polling fast (an exit is usually immediate), back off to 20 ms.
  std::chrono::microseconds pause(500);
  for (;;) {
    ASSIGN_OR_RETURN(std::vector<pid_t> pids, list());
    if (pids.empty()) return absl::OkStatus();
    if (Clock::now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "processes remain in ", what, " after ", timeout_ms, " ms: ", absl::StrJoin(pids, " ")));
    }
    if (kill_first) RETURN_IF_ERROR(KillListed(pids, list));
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(20));
  }
}

// Reads a limit file holding either "max" (unset) or a number.
absl::StatusOr<std::optional<int64_t>> ReadMaxOrNumber(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  const absl::string_view value = absl::StripAsciiWhitespace(text);
  if (value == "max") return std::nullopt;
  int64_t n;
  if (!absl::SimpleAtoi(value, &n)) {
    return absl::InternalError(absl::StrCat("unexpected content in ", path, ": '", value, "'"));
  }
  return n;
}

// The value of `key` in a flat keyed file ("key value" per line), as
// cpu.stat and memory.events are.
absl::StatusOr<std::optional<int64_t>> ReadKeyedValue(const std::string& path,
                                                      absl::string_view key) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseKeyedValue(text, key, path);
}

absl::StatusOr<std::optional<int64_t>> ParseKeyedValue(absl::string_view text,
                                                       absl::string_view key,
                                                       const std::string& path) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(line, absl::MaxSplits(' ', 1));
    if (kv.first != key) continue;
    int64_t value;
    if (!absl::SimpleAtoi(kv.second, &value)) {
      return absl::InternalError(absl::StrCat("unexpected line in ", path, ": '", line, "'"));
    }
    return value;
  }
  return std::nullopt;
}

absl::StatusOr<int64_t> ReadRequiredKeyedValue(const std::string& path, absl::string_view key) {
  ASSIGN_OR_RETURN(std::optional<int64_t> value, ReadKeyedValue(path, key));
  return RequireKey(value, key, path);
}

absl::StatusOr<int64_t> RequireKey(std::optional<int64_t> value, absl::string_view key,
                                   const std::string& path) {
  if (!value) return absl::InternalError(absl::StrCat("no '", key, "' in ", path));
  return *value;
}

namespace {

// Descriptors held open by every UsageFiles of the process.
std::atomic<int64_t> g_usage_fds{0};

int64_t UsageFdBudget() {
  struct rlimit limit = {};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1 << 16;
  return static_cast<int64_t>(limit.rlim_cur / 4);
}

}  // namespace

UsageFiles::~UsageFiles() {
  g_usage_fds.fetch_sub(static_cast<int64_t>(fds_.size()), std::memory_order_relaxed);
}

bool UsageFiles::Keep() {
  keep_ = g_usage_fds.load(std::memory_order_relaxed) < UsageFdBudget();
  return keep_;
}

absl::Status UsageFiles::Open(const std::string& path) {
  if (!keep_ || fds_.count(path) > 0) return absl::OkStatus();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  fds_.emplace(path, std::move(fd));
  g_usage_fds.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<std::string> UsageFiles::Read(const std::string& path) {
  if (!keep_) return ReadFileToString(path);
  RETURN_IF_ERROR(Open(path));
  auto it = fds_.find(path);
  // A read from offset 0 has the kernel make the file's text anew. A cgroup
  // file is a seq_file, which fills a read until its text ends: a read
  // shorter than the buffer is the end, and needs no second read for the
  // 0 that would say so (this runs before every exit message).
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::pread(it->second.get(), buf, sizeof(buf), static_cast<off_t>(out.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("reading ", path));
    }
    out.append(buf, static_cast<size_t>(n));
    if (static_cast<size_t>(n) < sizeof(buf)) return out;
  }
}

absl::StatusOr<int64_t> UsageFiles::Int64(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, Read(path));
  return ParseInt64(text, path);
}

absl::StatusOr<std::optional<int64_t>> UsageFiles::KeyedValue(const std::string& path,
                                                               absl::string_view key) {
  ASSIGN_OR_RETURN(std::string text, Read(path));
  return ParseKeyedValue(text, key, path);
}

absl::StatusOr<int64_t> UsageFiles::RequiredKeyedValue(const std::string& path,
                                                       absl::string_view key) {
  ASSIGN_OR_RETURN(std::optional<int64_t> value, KeyedValue(path, key));
  return RequireKey(value, key, path);
}

absl::Status MemoryBelowUsageError(int64_t limit, const std::string& usage_file) {
  absl::StatusOr<int64_t> usage = ReadInt64File(usage_file);
  return absl::FailedPreconditionError(
      absl::StrCat("memory limit ", limit, " is below the sandbox's current usage ",
                   usage.ok() ? absl::StrCat(*usage) : "(unknown)"));
}

std::vector<FileWrite> V1MemoryLimitWrites(const std::string& dir, int64_t current_limit,
                                           int64_t new_limit, bool has_memsw) {
  FileWrite limit{JoinPath(dir, "memory.limit_in_bytes"), absl::StrCat(new_limit)};
  if (!has_memsw) return {limit};
  FileWrite memsw{JoinPath(dir, "memory.memsw.limit_in_bytes"), absl::StrCat(new_limit)};
  if (new_limit <= current_limit) return {limit, memsw};
  return {memsw, limit};
}

}  // namespace cgroup_internal

namespace {

absl::StatusOr<CgroupVersion> DetectVersion(const CgroupOptions& options) {
  if (options.version == "v1") return CgroupVersion::kV1;
  if (options.version == "v2") return CgroupVersion::kV2;
  if (options.version != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroup version must be 'auto', 'v1' or 'v2', got '", options.version, "'"));
  }
  struct statfs fs;
  if (::statfs(options.root.c_str(), &fs) != 0) {
    return ErrnoStatus(errno, absl::StrCat("detecting the cgroup version of ", options.root));
  }
  // Only a cgroup2 mount at the root itself is a pure v2 host; a hybrid host
  // (tmpfs with v1 hierarchies and a cgroup2 at root/unified) is run as v1,
  // because its controllers are bound to the v1 hierarchies.
  return fs.f_type == CGROUP2_SUPER_MAGIC ? CgroupVersion::kV2 : CgroupVersion::kV1;
}

}  // namespace

bool CgroupMovesFavored(std::string_view mounts) {
  const absl::string_view text(mounts.data(), mounts.size());
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    // device mount-point type options dump pass
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
    if (fields.size() < 4 || (fields[2] != "cgroup" && fields[2] != "cgroup2")) continue;
    for (absl::string_view option : absl::StrSplit(fields[3], ',')) {
      if (option == "favordynmods") return true;
    }
  }
  return false;
}

absl::StatusOr<std::unique_ptr<CgroupManager>> CgroupManager::Create(const CgroupOptions& options) {
  RETURN_IF_ERROR(cgroup_internal::ValidateCgroupName(options.parent, "parent cgroup name"));
  ASSIGN_OR_RETURN(CgroupVersion version, DetectVersion(options));
  ASSIGN_OR_RETURN(std::string self_text, ReadFileToString(options.self_cgroup_file));
  ASSIGN_OR_RETURN(std::vector<cgroup_internal::SelfCgroupEntry> self,
                   cgroup_internal::ParseSelfCgroup(self_text, options.self_cgroup_file));
  if (version == CgroupVersion::kV2) return cgroup_internal::CreateV2Manager(options, self);
  return cgroup_internal::CreateV1Manager(options, self);
}

}  // namespace sbx::engine
