// The registry and lifecycle of sandboxes: create, destroy, limits, exec
// start, TTL, liveness, and re-attaching after a restart of sbxd.
//
// A Manager owns the cgroup manager, the engine's spawner, one record per
// sandbox and the state files under <state-dir>/sandboxes/<id>/. One watcher
// thread serves the whole daemon: it epoll-waits on every init's pidfd (an
// init that dies marks its sandbox DEAD) and destroys sandboxes whose TTL has
// expired. Sandboxes are not destroyed when the Manager goes away: they
// outlive sbxd and the next Manager re-attaches to them.
//
// Thread-safety: every public method may be called from any thread.
// Create, Destroy and StartExec block for the time the engine needs
// (milliseconds; Destroy up to the kill timeout).
#ifndef SBX_SERVER_MANAGER_MANAGER_H_
#define SBX_SERVER_MANAGER_MANAGER_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"
#include "server/engine/cgroup.h"
#include "server/engine/files.h"
#include "server/engine/limits.h"
#include "server/engine/sandbox.h"
#include "server/manager/options.h"
#include "server/manager/state_file.h"
#include "server/manager/task_queue.h"
#include "server/manager/types.h"
#include "server/manager/validation.h"

namespace sbx::manager {

class Manager {
 public:
  // Sets up the cgroup parent and the state directory, starts the spawner,
  // recovers the sandboxes a previous sbxd left (cleaning up whatever is
  // inconsistent) and starts the watcher thread.
  static absl::StatusOr<std::unique_ptr<Manager>> Create(const ManagerOptions& options);

  // Starts the threads that build sandboxes ahead of time: spare processes
  // and the warm pool. Separate from Create because they create files and
  // directories, which must not happen while the caller has the process
  // umask changed (sbxd narrows it to bind its socket). Call once.
  void StartBackgroundWork();

  // Stops the watcher; leaves the sandboxes running.
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  // Every sandbox belongs to the tenant that created it
  // (CreateParams::tenant). The calls below that name a sandbox take the
  // caller's tenant: another tenant's sandbox is NOT_FOUND to it (Destroy:
  // did not exist) and never listed.

  // Creates and starts a sandbox. INVALID_ARGUMENT for bad params,
  // RESOURCE_EXHAUSTED when the daemon is full or the tenant's quota
  // (ManagerOptions::quotas) would be exceeded. A failure leaves nothing
  // behind.
  absl::StatusOr<SandboxInfo> CreateSandbox(const CreateParams& params);

  // Kills every process and removes the cgroup and the directory. Returns
  // whether the sandbox existed. On a failed step the sandbox stays, as DEAD,
  // so that Destroy can be retried.
  absl::StatusOr<bool> DestroySandbox(const std::string& tenant, const std::string& id);

  // NOT_FOUND for an unknown id.
  absl::StatusOr<SandboxInfo> GetSandbox(const std::string& tenant, const std::string& id);
  std::vector<SandboxInfo> ListSandboxes(const std::string& tenant, const ListFilter& filter);

  // Applies the fields set in `limits` at once and persists them.
  // FAILED_PRECONDITION unless the sandbox is RUNNING; RESOURCE_EXHAUSTED
  // beyond the tenant's memory / cpu quota.
  absl::StatusOr<SandboxInfo> SetLimits(const std::string& tenant, const std::string& id,
                                        const engine::Limits& limits);

  // Validates `params` and starts a command in a RUNNING sandbox.
  absl::StatusOr<engine::ExecChannel> StartExec(const std::string& tenant, const std::string& id,
                                                const ExecParams& params);

  // Opens the root file system of a RUNNING sandbox for file transfer, as
  // `uid` inside it. Done under the sandbox's operation lock, so it cannot
  // race with Destroy; the handle then notices by itself (pidfd) when the
  // sandbox goes away. NOT_FOUND for an unknown id, FAILED_PRECONDITION
  // unless RUNNING.
  absl::StatusOr<std::shared_ptr<engine::SandboxFs>> OpenSandboxFs(const std::string& tenant,
                                                                   const std::string& id,
                                                                   uint32_t uid);

  // Ready sandboxes in the warm pool now.
  int PoolLevel();
  // Sandboxes of every tenant by state, the pool's excluded (for metrics).
  std::map<SandboxState, int> CountByState();

  // Adds OOM kills seen in a finished command's cgroup leaf to the
  // sandbox's count (see Record::leaf_oom_kills). Unknown ids are ignored.
  void NoteCommandOomKills(const std::string& id, int64_t kills);

  // A command of the sandbox still runs kCommandRunsOn after its start:
  // the sandbox gets its next spare process now, in the background, rather
  // than when the command ends (see worker.cc).
  static constexpr absl::Duration kCommandRunsOn = absl::Milliseconds(20);
  void CommandRunsOn(const std::string& sandbox_id);

  // A command of the sandbox ended (exited, or its stream went away): its
  // cgroup leaf is removed and the sandbox gets its next spare process, both
  // in the background (see StartWorker); after the sandbox's first command,
  // the spare comes 20 ms later (see worker.cc). A leaf that still holds processes
  // (the command left some in the background) stays for the sandbox's
  // removal, unless `kill_rest`: then they are killed and the removal
  // retried until the leaf is empty.
  void CommandEnded(const std::string& sandbox_id, std::unique_ptr<engine::Cgroup> leaf,
                    bool kill_rest);

  // Stops the watcher thread and, when no sandbox is left, removes the
  // (then empty) parent cgroup. Sandboxes keep running. Idempotent.
  void Shutdown();

 private:
  struct Record;

  explicit Manager(const ManagerOptions& options);

  absl::Status Init();
  std::string SandboxDir(const std::string& id) const;

  // Create helpers. `pooled`: a sandbox for the warm pool.
  absl::StatusOr<std::shared_ptr<Record>> Reserve(const CreateParams& params,
                                                  const engine::Limits& limits, bool pooled);
  absl::Status Build(Record& record);
  void Unreserve(const std::shared_ptr<Record>& record);
  absl::StatusOr<uint32_t> AllocateSlotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Kills what is in the record's cgroup and removes it and the directory;
  // every step is attempted. REQUIRES: record.op_mu held.
  absl::Status TearDown(Record& record);
  // The first half of TearDown: kills the init and waits until it (and with
  // it every process in the sandbox) is gone. With `mount_ns`, the sandbox's
  // mount namespace is kept there, so that its teardown waits until the
  // caller closes it (engine::HoldMountNamespace). REQUIRES: record.op_mu held.
  absl::Status StopProcesses(Record& record, UniqueFd* mount_ns = nullptr);
  // Kills what is left in a sandbox's cgroup and removes it.
  absl::Status RemoveCgroup(engine::Cgroup& cgroup);

  SandboxInfo Snapshot(const std::shared_ptr<Record>& record, bool with_usage = true);
  // Sandboxes that belong to callers (all but the pool's).
  size_t OwnedCountLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The record of sandbox `id`, whoever owns it (pooled ones too); null if
  // there is none. Takes mu_.
  std::shared_ptr<Record> RecordOf(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_);
  // NOT_FOUND for an unknown id or one of another tenant.
  absl::StatusOr<std::shared_ptr<Record>> FindLocked(const std::string& tenant,
                                                     const std::string& id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // RESOURCE_EXHAUSTED if `tenant` holding `limits` more (in place of
  // `replacing`'s, if given) would exceed its quota.
  absl::Status CheckQuotaLocked(const std::string& tenant, const engine::Limits& limits,
                                const Record* replacing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // FAILED_PRECONDITION unless the sandbox is RUNNING.
  absl::Status RequireRunningLocked(const Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the record's state file (state_file.h) with `limits` as its
  // limits, marked pooled or not. REQUIRES: record.op_mu held.
  absl::Status SaveState(Record& record, const engine::Limits& limits, bool pooled);

  // Warm pool (pool.cc).
  void StartPool();
  void StopPool();
  void PoolLoop();
  // A ready sandbox out of the pool, no longer pooled; null when the pool
  // is empty. RESOURCE_EXHAUSTED when callers own max_sandboxes already.
  absl::StatusOr<std::shared_ptr<Record>> TakePooled(const std::string& tenant,
                                                     const engine::Limits& limits);
  // Gives a sandbox taken from the pool the caller's limits, labels, env and
  // TTL and makes it RUNNING. On failure the sandbox is destroyed.
  absl::StatusOr<SandboxInfo> HandOut(const std::shared_ptr<Record>& record,
                                      const CreateParams& params, const engine::Limits& limits);
  // Destroys a sandbox that no caller has seen (pooled, or failed hand-out).
  void DiscardUnowned(const std::shared_ptr<Record>& record);

  // The worker thread (worker.cc) runs cgroup work that no caller should
  // wait for: on cgroup v1, mkdir and rmdir wait for the cgroup mutex, which
  // a process being moved between cgroups holds for an RCU grace period.
  // What a Destroy leaves (mounts, files, cgroups) is removed on four
  // teardown threads of its own (see task_queue.h).
  void StartWorker();
  // Both run what is left once (due or not) and stop; later tasks run
  // inline.
  void StopWorker();
  // Runs `task` on the worker thread at `when` or later.
  void Defer(std::function<void()> task, absl::Time when = absl::InfinitePast());
  struct LeafRemoval;
  void RemoveCommandLeaf(std::string sandbox_id, std::unique_ptr<engine::Cgroup> leaf,
                         bool kill_rest);
  void RemoveLeafAttempt(const std::shared_ptr<LeafRemoval>& removal);

  // Spare processes (worker.cc): each running sandbox keeps one in the
  // cgroup leaf of its next command. Gives the sandbox a spare, on the
  // worker (at `when` or later), if it has none.
  void ScheduleSpare(const std::shared_ptr<Record>& record,
                     absl::Time when = absl::InfinitePast());
  // Creates the leaf and has the init fork the spare into it; OK when the
  // sandbox has a spare already. REQUIRES: record.op_mu held.
  absl::Status PrepareSpareLocked(Record& record);
  // ScheduleSpare's task.
  void MakeSpareFor(const std::shared_ptr<Record>& record);
  struct Spare {
    std::unique_ptr<engine::Cgroup> leaf;
    engine::PendingSpare pending;  // its pid inside the sandbox, and whether it joined
  };
  // A new leaf below `sandbox_cgroup` and the init (of `record`'s sandbox)
  // forking its spare into it.
  absl::StatusOr<Spare> MakeSpare(engine::Cgroup& sandbox_cgroup, Record& record);
  // Says at debug level where a spare went (after its hand-over point, so
  // that an Exec need not wait for the line).
  void LogSpare(const Record& record, const engine::PendingSpare& spare,
                const std::string& leaf_name);
  // The host uid and gid that root in `record`'s sandbox maps to.
  uint32_t HostIdBase(const Record& record) const;
  // Where the init starts processes in their leaves (record's
  // spares_start_in_leaf): `leaf`'s directory, its cgroup.procs given to the
  // sandbox's root; otherwise, or if that fails, an invalid descriptor (the
  // process joins its leaf instead).
  UniqueFd LeafDirectoryForInit(Record& record, engine::Cgroup& leaf);
  // At start-up: adopts the spare a previous sbxd left in the sandbox, if
  // any (its only sbx-init process in a command leaf). REQUIRES: op_mu held.
  void AdoptSpareLocked(Record& record);

  // Recovery (recovery.cc).
  void Recover();
  void RecoverDir(const std::string& name);
  void CleanUpOrphan(const std::string& name, const std::string& why);
  void RemoveOrphanCgroups();

  // Watcher (watcher.cc).
  absl::Status StartWatcher();
  // Adds the init's pidfd to the watcher. Done in the same critical section
  // that makes the sandbox RUNNING, so that no death goes unnoticed.
  // REQUIRES: record.op_mu held and record.process.pidfd valid.
  absl::Status WatchLocked(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // REQUIRES: record.op_mu held.
  void Unwatch(Record& record) ABSL_LOCKS_EXCLUDED(mu_);
  void WakeWatcher();
  // After a failed destroy: the record, DEAD, expires (and so is destroyed by
  // the watcher) after a backoff of 1 s, doubling to a minute; returns it.
  absl::Duration ScheduleDestroyRetryLocked(Record& record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WatchLoop();
  int NextTimeoutMs();
  void HandleInitExit(uint64_t token);
  void ExpireDue();

  const ManagerOptions options_;
  const HostResources host_;
  const std::string sandboxes_dir_;
  std::unique_ptr<engine::CgroupManager> cgroups_;
  // sbxd may raise the task limit of a running command (SetLimits).
  bool can_raise_task_limits_ = false;
  std::unique_ptr<engine::Spawner> spawner_;

  absl::Mutex mu_;
  absl::CondVar destroyed_;  // signalled whenever a record leaves registry_
  std::map<std::string, std::shared_ptr<Record>> registry_ ABSL_GUARDED_BY(mu_);
  std::set<uint32_t> used_slots_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::string> watch_tokens_ ABSL_GUARDED_BY(mu_);  // token -> id
  // The warm pool: ready sandboxes (in registry_ too, marked pooled), oldest
  // first, and how many are being built for it.
  std::deque<std::shared_ptr<Record>> pool_ ABSL_GUARDED_BY(mu_);
  int pool_building_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_handout_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::CondVar pool_wake_;  // the pool lost a member, or stop
  std::thread pool_filler_;
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;

  TaskQueue worker_{"sbxd-worker"};
  TaskQueue teardown_{"sbxd-teardown", 4};

  UniqueFd state_lock_;  // flock'ed: one sbxd per state directory
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;  // eventfd; epoll token 0
  std::atomic<bool> stopping_{false};
  // Names the commands' cgroup leaves; starts from the clock so that a leaf
  // left by a previous sbxd is never reused.
  std::atomic<uint64_t> exec_seq_{static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch() / std::chrono::microseconds(1))};
  std::thread watcher_;
};

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_MANAGER_H_
