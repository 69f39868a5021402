// cgroup management behind one interface, with a v1 and a v2 backend chosen
// once at start-up (Detect). Each sandbox gets one cgroup (one directory per
// hierarchy on v1) named after the sandbox, below a parent that sbxd owns.
//
// Layout:
//   v2: <root>/<parent>/<name>
//   v1: <root>/<controller>/<parent>/<name> for memory, cpu, cpuacct, pids
//       (a controller co-mounted with another, e.g. "cpu,cpuacct", is handled)
// `parent` is relative to the cgroup sbxd itself runs in (from
// /proc/self/cgroup), so sbxd only ever creates cgroups below its own.
//
// v2 and the "no internal processes" rule: controllers can be enabled in a
// cgroup's cgroup.subtree_control only while it holds no processes (the root
// cgroup excepted). So when sbxd's own cgroup <own> is not the root, Create
// first moves sbxd (getpid()) into a leaf <own>/<parent>.daemon, then enables
// memory, pids and cpu in <own>/cgroup.subtree_control and then in
// <own>/<parent>/cgroup.subtree_control. Other processes sharing <own> make
// this fail with FAILED_PRECONDITION naming them: run sbxd in a cgroup of its
// own (e.g. a systemd service with Delegate=yes). A restarted sbxd that
// finds itself in <parent>.daemon already uses that leaf's parent as <own>.
// When <own> is the true root cgroup, the parent is simply <root>/<parent>
// (the root of a cgroup namespace also reads "/", but is not the true root
// and is handled like any other cgroup).
//
// Thread-safety: a CgroupManager may be used from any thread. A Cgroup is
// used by one owner at a time.
#ifndef SBX_SERVER_ENGINE_CGROUP_H_
#define SBX_SERVER_ENGINE_CGROUP_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/common/unique_fd.h"
#include "server/engine/limits.h"

namespace sbx::engine {

enum class CgroupVersion { kV1, kV2 };

struct CgroupOptions {
  // Where cgroupfs is mounted. Tests point this at a fake tree.
  std::string root = "/sys/fs/cgroup";
  // "auto" (detect from `root`), "v1" or "v2".
  std::string version = "auto";
  // Name of sbxd's parent cgroup, created below sbxd's own cgroup.
  std::string parent = "sbx";
  // Where to read sbxd's own cgroup membership; tests override it.
  std::string self_cgroup_file = "/proc/self/cgroup";
};

// One sandbox's cgroup. Destruction does not remove it: call Remove().
class Cgroup {
 public:
  virtual ~Cgroup() = default;

  virtual const std::string& name() const = 0;

  // Moves a process (all of it, on v1: every hierarchy) into this cgroup.
  virtual absl::Status AddProcess(pid_t pid) = 0;

  // Applies the limits that are set; unset ones keep their current value.
  // memory also caps swap at zero. cpus becomes a CFS quota over a 100 ms
  // period (cpus=0.5 -> 50 ms per 100 ms).
  virtual absl::Status SetLimits(const Limits& limits) = 0;

  // Effective limits read back from the kernel; unlimited values are unset.
  virtual absl::StatusOr<Limits> GetLimits() = 0;

  virtual absl::StatusOr<Usage> GetUsage() = 0;

  // From now on GetUsage reads through files opened once (now), not opened
  // for every read: a command's leaf is read at its exit, on the exec I/O
  // loop, where opening five files by their long kernfs paths cost more
  // than reading them. Each open file is a descriptor held until
  // destruction, so only short-lived leaves do this; past a quarter of the
  // limit on open files, reads go back to opening each time.
  virtual absl::Status KeepUsageFilesOpen() = 0;

  // Pids of every process in the cgroup and its sub-cgroups (all
  // hierarchies, deduplicated).
  virtual absl::StatusOr<std::vector<pid_t>> Processes() = 0;

  // SIGKILLs every process in it (cgroup.kill on v2 when available) and waits
  // up to `timeout_ms` for it to empty.
  virtual absl::Status KillAll(int timeout_ms) = 0;

  // Removes the directories (every hierarchy), sub-cgroups first. Fails with
  // FAILED_PRECONDITION if processes remain; a directory already gone is not
  // an error.
  virtual absl::Status Remove() = 0;

  // The directories that make up this cgroup, for diagnostics and leak tests.
  virtual std::vector<std::string> Paths() const = 0;

  // A sandbox's cgroup is a small tree: its init lives in the leaf "init",
  // each command in a leaf of its own, so that one command's figures (cpu,
  // peak memory, OOM kills) are exact and its own limits can be set, and so
  // that cgroup v2's rule "no processes in a cgroup with controllers enabled
  // for children" holds. Limits of the sandbox's cgroup apply to the whole
  // tree; Processes, KillAll and Remove cover the whole tree.
  //
  // Creates (or opens, if it exists) the sub-cgroup `name`, enabling the
  // controllers for children first on v2.
  virtual absl::StatusOr<std::unique_ptr<Cgroup>> CreateSub(std::string_view name) = 0;

  // Opens this cgroup's cgroup.procs file(s) for writing (one per hierarchy
  // on v1). A process that writes "0" to each joins this cgroup; sbxd passes
  // them to a sandbox's init so that a command joins its leaf before exec.
  // The kernel checks permissions against the opener (sbxd), not the writer.
  //
  // Not v1's `tasks`, though a single-threaded writer would join all the
  // same, and more cheaply: moving the current thread alone skips the
  // kernel's global cgroup_threadgroup_rwsem, whose write side waits for an
  // RCU grace period after a pause (7 ms on average here, against 0.04 ms).
  // Tried: under the soak, sandboxes left with a running fork bomb then
  // took more than 5 s to die (processes in D state unmapping), dozens of
  // destroys per run failed, and none with cgroup.procs. Tried again with
  // the task limit in (2026-12-01): the same. The stuck processes, the
  // dying init among them, wait for the i_mmap lock of a file every
  // process maps (dup_mmap when forking, unlink_file_vma when exiting),
  // which the bombs' churn keeps taken; with cgroup.procs, each move's
  // grace period stalls every fork and exit on the host, which most likely
  // (not checked) throttles that churn enough.
  virtual absl::StatusOr<std::vector<UniqueFd>> OpenProcsFiles() = 0;

  // cgroup v2 only; UNIMPLEMENTED on v1, which has no such call. Opens this
  // cgroup's directory for clone3(CLONE_INTO_CGROUP), which starts a process
  // in it: no move, so no wait for the grace period above.
  virtual absl::StatusOr<UniqueFd> OpenDirectory() {
    return absl::UnimplementedError("only cgroup v2 starts processes in a cgroup");
  }

  // cgroup v2 only; UNIMPLEMENTED on v1. Gives host uid and gid `host_id`
  // this cgroup's cgroup.procs file. clone3(CLONE_INTO_CGROUP) checks the
  // caller's own credentials, not an opener's: write access to the target's
  // cgroup.procs and to that of the common ancestor of its own cgroup and
  // the target. A sandbox's init (root inside, `host_id` outside) gets the
  // files of its sandbox's cgroup and of each command leaf, and no other.
  // Nothing in the sandbox reaches them: no cgroup filesystem is mounted
  // there, and the syscall filter refuses mount and new namespaces.
  virtual absl::Status DelegateProcs(uint32_t host_id) {
    (void)host_id;
    return absl::UnimplementedError("only cgroup v2 starts processes in a cgroup");
  }
};

class CgroupManager {
 public:
  virtual ~CgroupManager() = default;

  // Detects the cgroup version (unless forced by options.version), resolves
  // sbxd's parent and creates it (enabling controllers for children on v2).
  static absl::StatusOr<std::unique_ptr<CgroupManager>> Create(
      const CgroupOptions& options);

  virtual CgroupVersion version() const = 0;

  // Creates a new child cgroup; ALREADY_EXISTS if it exists.
  virtual absl::StatusOr<std::unique_ptr<Cgroup>> CreateChild(std::string_view name) = 0;

  // Opens an existing child (e.g. after a restart of sbxd); NOT_FOUND if absent.
  virtual absl::StatusOr<std::unique_ptr<Cgroup>> OpenChild(std::string_view name) = 0;

  // Names of the children that exist now (in any hierarchy on v1).
  virtual absl::StatusOr<std::vector<std::string>> ListChildren() = 0;

  // The parent directories (one per hierarchy on v1).
  virtual std::vector<std::string> ParentPaths() const = 0;

  // Removes the parent directories at shutdown (a directory already gone is
  // fine). FAILED_PRECONDITION, naming them, while children or processes
  // remain. On v2 the <parent>.daemon leaf holding sbxd is left in place: it
  // cannot be removed while sbxd runs, and a restart reuses it.
  virtual absl::Status RemoveParentIfEmpty() = 0;
};

// Whether a cgroup hierarchy in `mounts` (the text of /proc/self/mounts) is
// mounted with favordynmods. The kernel then moves a process into a cgroup
// without first waiting for an RCU grace period, which otherwise costs the
// first move after a pause milliseconds (docs/architecture.md).
bool CgroupMovesFavored(std::string_view mounts);

}  // namespace sbx::engine

#endif  // SBX_SERVER_ENGINE_CGROUP_H_
