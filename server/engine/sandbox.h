// Starting a sandbox's init in fresh namespaces, and talking to it.
//
// Process model:
//   sbxd ──(socketpair)── sbx-init spawner   small single-threaded helper,
//                               │             started once by sbxd; clones
//                               └─ clone ──► sandbox init (pid 1 inside)
//                                              └─ fork+exec ──► commands
// sbxd never fork()s itself. The spawner clones each sandbox's init with
// CLONE_NEWUSER|NEWPID|NEWNS|NEWNET|NEWIPC|NEWUTS; sbxd then writes the id
// maps and moves the init into its cgroup ("from parent" steps) and lets it
// go; the init enters a new cgroup namespace, builds its root, pivot_roots
// and serves exec requests on a Unix socket in the sandbox's host directory.
// The init is not sbxd's child, so sandboxes outlive a crash of sbxd; a new
// sbxd re-attaches through the socket and a pidfd.
#ifndef SBX_SERVER_ENGINE_SANDBOX_H_
#define SBX_SERVER_ENGINE_SANDBOX_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/common/unique_fd.h"
#include "server/engine/cgroup.h"

namespace sbx::engine {

// Ids inside every sandbox.
inline constexpr uint32_t kSandboxUid = 1000;  // the default, unprivileged user
inline constexpr uint32_t kIdsPerSandbox = 65536;
inline constexpr const char* kWorkDir = "/work";
// The leaf of a sandbox's cgroup that holds its init.
inline constexpr const char* kInitCgroup = "init";

struct SandboxConfig {
  std::string id;   // [a-z0-9-]{1,63}; also the hostname
  std::string dir;  // host directory of this sandbox, exists, mode 0700
  uint32_t host_id_base = 0;  // host uid/gid that root inside maps to
  int64_t tmp_bytes = 64 << 20;    // size cap of /tmp
  int64_t work_bytes = 256 << 20;  // size cap of /work
  int64_t shm_bytes = 64 << 20;    // size cap of /dev/shm
  // cgroup v2: the init keeps sbxd's cgroup namespace, so that it may start
  // spares in their leaves (see PrepareSpare and wire::SpawnRequest).
  bool keep_cgroup_ns = false;
};

// A live sandbox init, seen from the host.
struct SandboxProcess {
  pid_t pid = 0;
  UniqueFd pidfd;               // readable once the init has exited
  uint64_t start_time = 0;      // /proc/<pid>/stat field 22, guards pid reuse
};

// Path of the init's control socket inside a sandbox's host directory.
std::string ControlSocketPath(const std::string& sandbox_dir);

// Owns the spawner helper. Thread-safe; spawns are serialized.
class Spawner {
 public:
  // `init_path` is the sbx-init binary.
  static absl::StatusOr<std::unique_ptr<Spawner>> Start(const std::string& init_path);
  ~Spawner();

  // Creates a sandbox: namespaces, id maps, cgroup, root filesystem. Returns
  // once the init serves requests, or an error naming the failed step (the
  // half-made init is killed; the caller still owns and removes `cgroup`).
  absl::StatusOr<SandboxProcess> Spawn(const SandboxConfig& config, Cgroup& cgroup);

 private:
  Spawner(pid_t pid, UniqueFd channel) : pid_(pid), channel_(std::move(channel)) {}
  absl::StatusOr<SandboxProcess> SpawnLocked(const SandboxConfig& config, Cgroup& cgroup)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RestartLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::mutex mu_;
  std::string init_path_;
  pid_t pid_ ABSL_GUARDED_BY(mu_);
  UniqueFd channel_ ABSL_GUARDED_BY(mu_);
};

// Re-attaches to an init after a restart of sbxd. NOT_FOUND if it is gone or
// the pid now names another process.
absl::StatusOr<SandboxProcess> AttachSandboxProcess(pid_t pid, uint64_t start_time);

// SIGKILLs the init; the kernel then kills everything in its pid namespace.
absl::Status KillSandboxProcess(const SandboxProcess& process);

// A descriptor of the live init's mount namespace, or an invalid one if it
// cannot be had (the init has exited, say). Held over the init's death, it
// keeps the sandbox's mounts: their teardown, which waits for an RCU grace
// period, then happens when the descriptor is closed, not in the init's
// exit, which Destroy waits for.
UniqueFd HoldMountNamespace(const SandboxProcess& process);

// Waits until the init has exited. A pid namespace's init exits only after
// every other process of the namespace is gone and reaped, so once this
// returns nothing of the sandbox runs any more (its cgroup may be empty
// earlier, while zombies still wait to be reaped).
absl::Status WaitSandboxProcessExit(const SandboxProcess& process, int timeout_ms);

// Reaps the init if it is sbxd's child (it is not after a restart). Call
// after the pidfd became readable.
void ReapSandboxProcess(const SandboxProcess& process);

// Asks the init whether it is alive and serving (a round trip on its socket).
absl::Status PingInit(const std::string& control_socket, int timeout_ms);

// Whether the calling thread has capability `cap` (CAP_*) in effect.
bool HasEffectiveCapability(int cap);

// Sets RLIMIT_NPROC (soft and hard) of the sandbox's commands to what
// limit_for(the process's real uid as the host sees it, its hard limit now)
// returns, unless that is 0: their task limit (ExecOptions::nproc) after
// the sandbox's pids limit changed. limit_for leaves alone (0) what is not
// the sandbox's or not a limit sbx gave: the init and a spare (none), a
// process that lowered its own, a pid reused meanwhile. Processes gone
// meanwhile are skipped. Repeats over `list` (the sandbox's processes now)
// until a pass changes nothing, so that children forked before their
// parent's change get it too. Raising a hard limit needs CAP_SYS_RESOURCE;
// the first failure ends it.
absl::Status SetTaskLimits(const std::function<absl::StatusOr<std::vector<pid_t>>()>& list,
                           const std::function<int64_t(uid_t, rlim_t)>& limit_for);

// ---- exec -------------------------------------------------------------------

struct ExecOptions {
  std::vector<std::string> argv;  // non-empty; argv[0] looked up in PATH
  std::vector<std::string> env;   // "K=V", complete environment
  std::string cwd = kWorkDir;
  uint32_t uid = kSandboxUid;     // inside the sandbox
  uint32_t gid = kSandboxUid;
  bool tty = false;
  uint16_t rows = 24, cols = 80;
  int64_t timeout_ms = 0;  // wall clock, 0 = none; init kills the group
  // Per-command rlimits; 0 keeps the sandbox default (fsize 1 GiB, stack
  // 8 MiB, 1024 open files).
  int64_t fsize_bytes = 0;
  int64_t stack_bytes = 0;
  int64_t open_files = 0;
  // Nonzero: RLIMIT_NPROC of the command (see wire::ExecRequest::nproc).
  // Only for an init spawned by this version: older ones refuse the field.
  int64_t nproc = 0;
  // The command's own cgroup (Cgroup::OpenProcsFiles of its leaf): it joins
  // it before exec. Not owned; may be empty.
  std::vector<int> cgroup_procs_fds;
  // cgroup v2, an init spawned with keep_cgroup_ns: the leaf's directory,
  // where the init starts the command (clone3 with CLONE_INTO_CGROUP), which
  // waits for no grace period; it joins through cgroup_procs_fds only if the
  // kernel refuses that. Not owned; -1 for none.
  int cgroup_dir = -1;
  // Nonzero: run in the sandbox's spare with this pid (see PrepareSpare),
  // which sits in the command's leaf already; cgroup_procs_fds must then be
  // empty.
  pid_t spare_pid = 0;
};

// The host side of one running command. All fds are non-blocking and
// close-on-exec, ready for an event loop.
struct ExecChannel {
  pid_t pid = 0;         // inside the sandbox
  UniqueFd control;      // seqpacket to init: events in, signals/resize out
  UniqueFd stdin_fd;     // write end (pipe mode)
  UniqueFd stdout_fd;    // read end (pipe mode)
  UniqueFd stderr_fd;    // read end (pipe mode)
  UniqueFd pty;          // master, read+write (tty mode)
  // The command's own cgroup leaf (see Cgroup::CreateSub), set by the
  // manager: its figures are the command's. The owner removes it after the
  // exit, or leaves it to the sandbox's removal while processes remain.
  std::unique_ptr<Cgroup> cgroup;
};

// Starts a command and returns once it runs. A command that cannot be
// started (missing binary, bad cwd) gives NOT_FOUND / INVALID_ARGUMENT /
// PERMISSION_DENIED with a message such as "exec 'foo': No such file or
// directory"; an init that does not answer gives UNAVAILABLE.
absl::StatusOr<ExecChannel> StartExec(const std::string& control_socket,
                                      const ExecOptions& options);

// Has the init fork its spare: a process that joins the cgroup whose
// cgroup.procs files are `cgroup_procs_fds` (not owned) ahead of time and
// waits there for the next command started with its spare_pid. Joining a
// cgroup may wait for an RCU grace period in the kernel (milliseconds on
// an idle host); the spare does it off the exec path. Replaces a spare the
// init may have. Returns as soon as the init has forked it: a command can
// be handed to it (spare_pid) while it joins.
//
// With `leaf_dir` (the leaf's directory, cgroup v2, an init spawned with
// keep_cgroup_ns) the init starts the spare in the leaf instead, which waits
// for nothing, and has it join only if the kernel refuses that.
struct PendingSpare {
  pid_t pid = 0;  // inside the sandbox
  bool born_in_leaf = false;  // started in its leaf, not joining it
  // Until the spare has settled (see WaitSpareSettled): the connection on
  // which the init tells. Not valid when it had settled already.
  UniqueFd settle;
};
absl::StatusOr<PendingSpare> PrepareSpare(const std::string& control_socket,
                                          const std::vector<int>& cgroup_procs_fds,
                                          int leaf_dir = -1);

// Waits until the spare of `pending` is in its cgroup or has been handed a
// command; until then the spare counts among the processes of the
// sandbox's own cgroup. An error: it died before (it is gone).
absl::Status WaitSpareSettled(PendingSpare& pending);

// True for the error of StartExec with spare_pid when the init has no such
// spare (none prepared, replaced, or dead): start the command without it.
bool IsNoSpare(const absl::Status& status);

struct ExecExit {
  int wait_status = 0;     // as from waitpid(2)
  int64_t wall_us = 0;
  int64_t user_us = 0;     // rusage of the command and its waited-for children
  int64_t system_us = 0;
  int64_t max_rss_kb = 0;
  bool timed_out = false;  // killed by the init for `timeout_ms`
};

// Reads the exit event once `control` is readable. Returns UNAVAILABLE if the
// init went away (sandbox killed), FAILED_PRECONDITION for EAGAIN (nothing
// there yet).
absl::StatusOr<ExecExit> ReadExecExit(int control_fd);

// Sends a signal to the command's process group.
absl::Status SendExecSignal(int control_fd, int signo);
// Resizes the command's terminal (tty mode): TIOCSWINSZ on the master.
absl::Status ResizePty(int pty_fd, uint16_t rows, uint16_t cols);

}  // namespace sbx::engine

#endif  // SBX_SERVER_ENGINE_SANDBOX_H_
