// One sandbox in the manager's registry. Internal to the manager.
#ifndef SBX_SERVER_MANAGER_RECORD_H_
#define SBX_SERVER_MANAGER_RECORD_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/engine/cgroup.h"
#include "server/engine/limits.h"
#include "server/engine/sandbox.h"
#include "server/manager/manager.h"

namespace sbx::manager {

// Lock order: Record::spare_mu, then Record::op_mu, then Manager::mu_;
// never the other way.
struct Manager::Record {
  // Set at creation (or recovery), immutable afterwards.
  std::string id;
  std::string dir;
  uint32_t slot = 0;
  std::string image;
  std::string tenant;  // owner; "" while pooled
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> env;
  absl::Time created_at;
  std::optional<absl::Time> expires_at;

  // Guarded by Manager::mu_ (the annotation cannot name it from here).
  SandboxState state = SandboxState::kCreating;
  // In the warm pool: invisible to the API until handed out, exactly once.
  bool pooled = false;
  engine::Limits limits;    // effective, every field set
  // OOM kills counted in commands' cgroup leaves. On cgroup v1 the
  // sandbox's own counter does not include its children's, and a leaf's
  // counter goes with the leaf.
  int64_t leaf_oom_kills = 0;
  pid_t pid = 0;            // of the init, for display
  int failed_destroys = 0;  // in a row; their retries back off
  // Commands of the Exec API that have ended (see Manager::CommandEnded).
  std::atomic<int64_t> commands_ended{0};
  // cgroup v2, an init this sbxd spawned: spares and commands start in
  // their leaf (engine::PrepareSpare's leaf_dir, ExecOptions::cgroup_dir).
  // Cleared if the init had a spare join it after all (a kernel that
  // refuses that).
  std::atomic<bool> spares_start_in_leaf{false};
  // Its init takes a command's RLIMIT_NPROC (ExecOptions::nproc): one this
  // version spawned, or one recovered whose state file says so (an init
  // from before it would refuse the field). Set before the sandbox runs.
  std::atomic<bool> init_takes_nproc{false};
  uint64_t watch_token = 0; // 0 when its pidfd is not watched

  // Held while a spare process is made outside op_mu (the worker's
  // MakeSpareFor), until it has joined its leaf: before that it counts
  // among the sandbox's own processes, so usage, which leaves out a spare
  // in its leaf, waits for it. Exec may take it meanwhile (spare_leaf).
  // A destroyed sandbox's cgroup is removed under it, after any spare in
  // the making, whose leaf it would otherwise miss.
  absl::Mutex spare_mu;
  // Serializes the operations that touch the kernel objects below: create,
  // destroy, set limits, usage, reclaiming a dead init.
  absl::Mutex op_mu;
  std::unique_ptr<engine::Cgroup> cgroup ABSL_GUARDED_BY(op_mu);
  engine::SandboxProcess process ABSL_GUARDED_BY(op_mu);
  // The leaf (below `cgroup`) where the init's spare process waits for the
  // next command; null when there is none. See engine::PrepareSpare.
  std::unique_ptr<engine::Cgroup> spare_leaf ABSL_GUARDED_BY(op_mu);
  pid_t spare_pid ABSL_GUARDED_BY(op_mu) = 0;  // inside the sandbox
  // The number of the last write of its state file (see state_file.h).
  uint64_t state_seq ABSL_GUARDED_BY(op_mu) = 0;
};

// Removes a directory tree; a missing one is not an error.
absl::Status RemoveTree(const std::string& path);

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_RECORD_H_
