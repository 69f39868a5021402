// Host-side helpers of the benchmark: spawning baseline processes with
// posix_spawn (vfork-style, cheap from this multi-threaded process), reading
// /proc, and the cgroup directories of the bench's own sbxd. Nothing here
// touches a process, cgroup or mount the bench did not create.
#ifndef SBX_BENCH_HOST_H_
#define SBX_BENCH_HOST_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sbx::bench {

// The absolute path of `name` found in $PATH; "" when absent.
std::string FindInPath(const std::string& name);

// Starts `argv` (argv[0] an absolute path) with stdin, stdout and stderr on
// /dev/null (or on `stdin_fd` / `stdout_fd` when >= 0). Returns the pid, or
// -1 with errno set.
pid_t Spawn(const std::vector<std::string>& argv, int stdin_fd = -1, int stdout_fd = -1,
            bool own_process_group = false, int stderr_fd = -1);

// Spawns `argv` and waits for it. Returns the wait status, or -1 when it
// could not be started.
int SpawnAndWait(const std::vector<std::string>& argv);

// Waits for `pid` up to `timeout_ms`; SIGKILLs it (by pid) after that.
// Returns the wait status.
int WaitOrKill(pid_t pid, int timeout_ms);

std::optional<std::string> ReadFile(const std::string& path);
// "Pss:" of /proc/<pid>/smaps_rollup in KiB; 0 when the process is gone.
int64_t PssKb(pid_t pid);
// "VmRSS:" of /proc/<pid>/status in KiB; 0 when the process is gone.
int64_t RssKb(pid_t pid);
// Direct children of `pid`.
std::vector<pid_t> Children(pid_t pid);

// The directories <mount>/<own cgroup>/<parent> of sbxd's parent cgroup for
// the hierarchies it uses (memory, pids, cpu, cpuacct on v1; the unified
// one on v2), deduplicated. The memory (or unified) one comes first.
std::vector<std::string> CgroupParentDirs(const std::string& parent);
// Child cgroups (recursive) below `dir`, deepest last.
std::vector<std::string> CgroupDescendants(const std::string& dir);
// Pids in `dir` and below.
std::vector<pid_t> CgroupProcs(const std::string& dir);
// SIGKILLs (by pid) what is left in `dir` and below, then removes the
// directories bottom-up. Only for the bench's own sbxd parent cgroup.
void RemoveCgroupTree(const std::string& dir);

// Mount points at or below `dir` (deepest last), from /proc/self/mountinfo.
std::vector<std::string> MountsBelow(const std::string& dir);

}  // namespace sbx::bench

#endif  // SBX_BENCH_HOST_H_
