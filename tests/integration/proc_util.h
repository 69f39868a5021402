// Host-side helpers for the integration tests: /proc, cgroupfs, mountinfo,
// files, and running a child program with captured output. Nothing here
// touches anything the test did not create.
#ifndef SBX_TESTS_INTEGRATION_PROC_UTIL_H_
#define SBX_TESTS_INTEGRATION_PROC_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sbx::it {

// Polls `condition` every `step` until it is true or `timeout` passed.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds step = std::chrono::milliseconds(20));

std::optional<std::string> ReadFile(const std::string& path);
bool PathExists(const std::string& path);
// Names in a directory (no "." / ".."); empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& dir);
std::vector<std::string> ListSubdirs(const std::string& dir);
// Every path below `dir` (recursive, not following symlinks or mounts).
std::vector<std::string> ListTree(const std::string& dir);
// rm -rf that stays on one file system.
void RemoveTree(const std::string& dir);

// ---- processes -----------------------------------------------------------
// /proc/<pid>/stat field 22; 0 if the process does not exist.
uint64_t ProcStartTime(pid_t pid);
// True once `pid` no longer names the process that had `start_time` (or
// kill(pid, 0) fails with ESRCH); zombies count as alive.
bool ProcessGone(pid_t pid, uint64_t start_time);
// Real, effective, saved, fs uid from /proc/<pid>/status.
std::vector<int64_t> ProcUids(pid_t pid);
// The pid of `pid` in its innermost pid namespace (the last "NSpid" field);
// -1 if it cannot be read.
pid_t ProcNsPid(pid_t pid);
int64_t ProcVmRssKb(pid_t pid);
// Peak resident set (VmHWM), since the start or since ResetPeakRss.
int64_t ProcVmHwmKb(pid_t pid);
// Sets the peak resident set of `pid` to its current one (clear_refs "5").
bool ResetPeakRss(pid_t pid);
int ProcFdCount(pid_t pid);
// What each open descriptor of `pid` names (readlink of /proc/<pid>/fd/*):
// a path, or "mnt:[4026532...]" and the like for a namespace.
std::vector<std::string> ProcFdTargets(pid_t pid);
// readlink of /proc/<pid>/ns/<name>, e.g. "mnt:[4026532...]"; "" if unreadable.
std::string ProcNamespace(pid_t pid, const std::string& name);
int ProcThreadCount(pid_t pid);
// The system call `pid` is blocked in (the first field of /proc/<pid>/syscall);
// -1 if it is running, or the file cannot be read.
long ProcBlockedSyscall(pid_t pid);
// Whether capability `cap` is in effect for `pid` (its "CapEff" mask).
bool ProcHasCapability(pid_t pid, int cap);
std::vector<pid_t> AllPids();
// Direct children of `pid` (from /proc/<pid>/task/*/children).
std::vector<pid_t> ProcChildren(pid_t pid);

// ---- cgroups (v1 on this machine; v2 handled too) --------------------------
// The cgroup directory this process lives in, for each of memory, pids, cpu,
// cpuacct (deduplicated when co-mounted; one entry on v2).
std::vector<std::string> OwnCgroupDirs();
// This process's directory in the v1 hierarchy of `controller`; "" if no v1
// hierarchy has it.
std::string OwnV1CgroupDir(const std::string& controller);
// <own dir>/<parent> for each hierarchy.
std::vector<std::string> CgroupParentDirs(const std::string& parent);
// Pids in cgroup.procs of `dir` and all its descendants.
std::vector<pid_t> CgroupProcsRecursive(const std::string& dir);
// A sandbox's spare leaf (docs/architecture.md): its only process is an
// sbx-init (a command has exec'd something else).
bool IsSpareLeaf(const std::string& leaf_dir);
// SIGKILLs every process in `dir` (recursively) by pid, waits, and removes the
// directories bottom-up. Only for cgroups the project created.
void RemoveCgroupTree(const std::string& dir);

// Lines of /proc/self/mountinfo that contain `needle`.
std::vector<std::string> MountinfoLinesContaining(const std::string& needle);
// Mount points (from /proc/self/mountinfo) at or below `dir`.
std::vector<std::string> MountsBelow(const std::string& dir);

// ---- child programs --------------------------------------------------------
struct ProcessResult {
  bool started = false;
  bool timed_out = false;
  int exit_code = -1;  // valid if signal == 0
  int signal = 0;
  std::string out;
  std::string err;
  std::string Describe() const;
};
// fork+exec `argv` (no shell), feed `stdin_data` then close stdin, capture
// stdout/stderr; SIGKILL after `timeout`.
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& stdin_data,
                         std::chrono::milliseconds timeout,
                         const std::vector<std::string>& extra_env = {});

std::string Sha256Hex(const std::string& data);
std::string RandomBytes(size_t n, uint64_t seed);
std::string Trim(const std::string& s);
std::vector<std::string> SplitLines(const std::string& s);

}  // namespace sbx::it

#endif  // SBX_TESTS_INTEGRATION_PROC_UTIL_H_
