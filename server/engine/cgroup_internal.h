// Private to the cgroup layer (cgroup.cc, cgroup_v1.cc, cgroup_v2.cc) and its
// unit tests. Everything here is an implementation detail of cgroup.h.
#ifndef SBX_SERVER_ENGINE_CGROUP_INTERNAL_H_
#define SBX_SERVER_ENGINE_CGROUP_INTERNAL_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/unique_fd.h"
#include "server/engine/cgroup.h"
#include "server/engine/limits.h"

namespace sbx::engine::cgroup_internal {

// Every CFS quota is expressed over this period (100 ms), on v1 and v2.
inline constexpr int64_t kCpuPeriodUsec = 100000;

// One line of /proc/<pid>/cgroup: "hierarchy-id:controller,list:/path".
// On v2 (and the v2 line of a hybrid host) the id is 0 and the list empty.
struct SelfCgroupEntry {
  int hierarchy_id = 0;
  std::vector<std::string> controllers;
  std::string path;  // always starts with '/'
};

// Parses the content of /proc/self/cgroup; `source` names it in errors.
absl::StatusOr<std::vector<SelfCgroupEntry>> ParseSelfCgroup(absl::string_view text,
                                                             absl::string_view source);

// A child (or parent) cgroup name: [a-zA-Z0-9_.-]{1,128}, not "." or "..".
// INVALID_ARGUMENT otherwise; `what` says which name it is in the message.
absl::Status ValidateCgroupName(absl::string_view name, absl::string_view what = "cgroup name");

// Rejects limits the kernel would misread or that make no sense (memory <= 0,
// cpus <= 0 or not finite, pids < 1): INVALID_ARGUMENT.
absl::Status ValidateLimits(const Limits& limits);

// The CFS quota for `cpus` over kCpuPeriodUsec, at least 1000 us (the
// kernel's minimum).
int64_t CpuQuotaUsec(double cpus);

// "<a>/<b>", without doubling a slash; `b` may start with '/'.
std::string JoinPath(absl::string_view a, absl::string_view b);

// mkdir(path, 0755); an existing directory is fine.
absl::Status MakeDirIfMissing(const std::string& path);

bool PathExists(const std::string& path);

// The pids listed in a cgroup.procs file.
absl::StatusOr<std::vector<pid_t>> ReadPidsFile(const std::string& path);

// rmdir(dir) of a cgroup directory. A directory already gone is fine; one
// still holding processes or children is FAILED_PRECONDITION naming them.
absl::Status RemoveCgroupDir(const std::string& dir);

// The pids in the cgroup `dir` and every cgroup below it. A directory that
// disappears while being read (a leaf removed meanwhile) counts as empty.
absl::StatusOr<std::vector<pid_t>> ReadPidsRecursive(const std::string& dir);

// Removes the cgroup `dir` and every cgroup below it, deepest first.
absl::Status RemoveCgroupTree(const std::string& dir);

// Opens `dir`/cgroup.procs for writing (close-on-exec).
absl::StatusOr<UniqueFd> OpenProcsFile(const std::string& dir);

// Names of the sub-directories of `dir` (the child cgroups), sorted.
absl::StatusOr<std::vector<std::string>> ListSubdirs(const std::string& dir);

// Lists the pids currently in a cgroup (every hierarchy on v1).
using PidLister = std::function<absl::StatusOr<std::vector<pid_t>>()>;

// SIGKILLs what `list` returns, again and again, until it returns nothing or
// `timeout_ms` passes (DEADLINE_EXCEEDED naming `what` and the survivors).
// Signals go through pidfds opened before re-checking membership, so a pid
// that exits and is reused by a process outside the cgroup is never hit.
// With `kill_first == false` nothing is signalled: it only waits (used after
// v2's cgroup.kill).
absl::Status KillAndWaitUntilEmpty(const PidLister& list, int timeout_ms, absl::string_view what,
                                   bool kill_first = true);

// Reads a limit file holding either "max" (unset) or a number.
absl::StatusOr<std::optional<int64_t>> ReadMaxOrNumber(const std::string& path);

// The value of `key` in a flat keyed file ("key value" per line), as
// cpu.stat, memory.events and memory.oom_control are; nullopt if absent.
absl::StatusOr<std::optional<int64_t>> ReadKeyedValue(const std::string& path,
                                                      absl::string_view key);

// As ReadKeyedValue, on text read from `path` already.
absl::StatusOr<std::optional<int64_t>> ParseKeyedValue(absl::string_view text,
                                                       absl::string_view key,
                                                       const std::string& path);

// As ReadKeyedValue, but a missing key is an INTERNAL error.
absl::StatusOr<int64_t> ReadRequiredKeyedValue(const std::string& path, absl::string_view key);

// `value` of `key` in `path`; a missing one is an INTERNAL error.
absl::StatusOr<int64_t> RequireKey(std::optional<int64_t> value, absl::string_view key,
                                   const std::string& path);

// How a cgroup reads its usage files: opened for each read, or, once Keep()
// is called, opened once and read again from offset 0 (see
// Cgroup::KeepUsageFilesOpen). Not thread-safe, as Cgroup is not.
//
// All of them together keep at most a quarter of the process's soft limit
// on open files: past that, Keep() declines and files are opened per read.
class UsageFiles {
 public:
  UsageFiles() = default;
  ~UsageFiles();
  UsageFiles(const UsageFiles&) = delete;
  UsageFiles& operator=(const UsageFiles&) = delete;

  // False when the budget above is spent.
  bool Keep();
  // Opens `path` to be kept, without reading it yet: the kernel gives an
  // open cgroup file its page of buffer at the first read, until closed.
  absl::Status Open(const std::string& path);
  absl::StatusOr<std::string> Read(const std::string& path);
  absl::StatusOr<int64_t> Int64(const std::string& path);
  absl::StatusOr<std::optional<int64_t>> KeyedValue(const std::string& path,
                                                    absl::string_view key);
  absl::StatusOr<int64_t> RequiredKeyedValue(const std::string& path, absl::string_view key);

 private:
  bool keep_ = false;
  std::map<std::string, UniqueFd> fds_;
};

// The error for a memory limit the kernel refused (EBUSY) because the cgroup
// already uses more: FAILED_PRECONDITION with the usage read from
// `usage_file` when it can be read.
absl::Status MemoryBelowUsageError(int64_t limit, const std::string& usage_file);

// One (file, value) write of a v1 memory limit change.
using FileWrite = std::pair<std::string, std::string>;

// The ordered writes that set a v1 memory limit to `new_limit` in `dir`.
// memory.memsw.limit_in_bytes (mem+swap) must never be below
// memory.limit_in_bytes, so when lowering the limit goes first and memsw
// second, and when raising memsw goes first.
std::vector<FileWrite> V1MemoryLimitWrites(const std::string& dir, int64_t current_limit,
                                           int64_t new_limit, bool has_memsw);

// Backend factories, called by CgroupManager::Create once the version is known.
absl::StatusOr<std::unique_ptr<CgroupManager>> CreateV1Manager(
    const CgroupOptions& options, const std::vector<SelfCgroupEntry>& self);
absl::StatusOr<std::unique_ptr<CgroupManager>> CreateV2Manager(
    const CgroupOptions& options, const std::vector<SelfCgroupEntry>& self);

}  // namespace sbx::engine::cgroup_internal

#endif  // SBX_SERVER_ENGINE_CGROUP_INTERNAL_H_
