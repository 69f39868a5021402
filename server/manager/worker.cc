// The manager's worker thread: cgroup work nobody should wait for.
//
// On cgroup v1 a process moved into a cgroup (writing cgroup.procs) holds
// the kernel's cgroup mutex while the move waits for an RCU grace period,
// 5-20 ms on an idle host; every mkdir and rmdir of a cgroup waits for that
// mutex meanwhile. So the work that makes or removes cgroups off a caller's
// path runs here: spare processes for the next command, and removing
// finished commands' leaves (not on the exec I/O loop, which serves every
// stream).
//
// Spare processes: every running sandbox keeps one, forked by its init into
// the cgroup leaf of its next command, so that Exec neither creates a cgroup
// nor moves a process (see engine::PrepareSpare). Pooled sandboxes get
// theirs while they are built; the others after their create and whenever
// a command ends. None is made while a command runs, so that the spare
// never takes one of the sandbox's pids from a running command.
#include <signal.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/manager/log.h"
#include "server/manager/manager.h"
#include "server/manager/record.h"

namespace sbx::manager {

namespace {

// A cut-off command's leaf is retried this often, this many times (about
// 5 s), before it is left to the sandbox's removal.
constexpr absl::Duration kLeafRetry = absl::Milliseconds(20);
constexpr int kLeafAttempts = 250;
// How long after a sandbox's first command its next spare is made; see
// CommandEnded.
constexpr absl::Duration kFirstSpareDelay = absl::Milliseconds(20);

}  // namespace

void Manager::StartWorker() {
  worker_.Start();
  teardown_.Start();
}

void Manager::StopWorker() {
  worker_.Stop();
  teardown_.Stop();
}

void Manager::Defer(std::function<void()> task, absl::Time when) {
  worker_.Post(std::move(task), when);
}

struct Manager::LeafRemoval {
  std::string sandbox_id;
  std::unique_ptr<engine::Cgroup> leaf;
  bool kill_rest = false;
  int attempts_left = kLeafAttempts;
};

void Manager::CommandEnded(const std::string& sandbox_id, std::unique_ptr<engine::Cgroup> leaf,
                           bool kill_rest) {
  if (std::shared_ptr<Record> record = RecordOf(sandbox_id)) {
    // A sandbox's first command is often its last: create, exec, destroy. A
    // spare made at once would still be joining its leaf when the Destroy
    // comes, in the kernel's uninterruptible wait for the cgroup move (an RCU
    // grace period, milliseconds after a pause), and the init's death waits
    // for every process of its pid namespace. So that spare comes a little
    // later. A command that comes sooner joins a leaf of its own, which costs
    // it the same wait the spare's join would have. A spare started in its
    // leaf (v2) waits for nothing, and comes at once.
    const bool first = record->commands_ended.fetch_add(1, std::memory_order_relaxed) == 0;
    const bool delay = first && !record->spares_start_in_leaf.load(std::memory_order_relaxed);
    ScheduleSpare(record, delay ? absl::Now() + kFirstSpareDelay : absl::InfinitePast());
  }
  // After the spare: the next command may wait for that, nobody for this.
  if (leaf) RemoveCommandLeaf(sandbox_id, std::move(leaf), kill_rest);
}

void Manager::CommandRunsOn(const std::string& sandbox_id) {
  // A command that runs a while (a compile) is often followed at once by
  // the next (the program it built). Made only when the first ends, the
  // spare would on v1 still be joining its leaf when the next comes, which
  // would then wait as long (a grace period) joining a leaf of its own.
  // Made while the first runs, it is ready by then. Not from the start: a
  // command over within milliseconds (a one-shot's) leaves it to
  // CommandEnded, and no spare competes with a command's start for the cpu.
  if (std::shared_ptr<Record> record = RecordOf(sandbox_id)) ScheduleSpare(record);
}

void Manager::RemoveCommandLeaf(std::string sandbox_id, std::unique_ptr<engine::Cgroup> leaf,
                                bool kill_rest) {
  auto removal = std::make_shared<LeafRemoval>();
  removal->sandbox_id = std::move(sandbox_id);
  removal->leaf = std::move(leaf);
  removal->kill_rest = kill_rest;
  Defer([this, removal] { RemoveLeafAttempt(removal); });
}

void Manager::RemoveLeafAttempt(const std::shared_ptr<LeafRemoval>& removal) {
  while (true) {
    absl::Status removed = removal->leaf->Remove();
    if (removed.ok()) return;
    const bool busy = removed.code() == absl::StatusCode::kFailedPrecondition;
    if (busy && !removal->kill_rest) return;  // background processes: left to Destroy
    if (!busy || --removal->attempts_left <= 0) {
      Log().warn("sandbox {}: removing the cgroup of a command: {}", removal->sandbox_id,
                 removed.ToString());
      return;
    }
    absl::StatusOr<std::vector<pid_t>> pids = removal->leaf->Processes();
    if (pids.ok()) {
      for (pid_t pid : *pids) ::kill(pid, SIGKILL);
    }
    if (!worker_.stopping()) {
      // Deferred again rather than slept on: the worker serves other sandboxes.
      Defer([this, removal] { RemoveLeafAttempt(removal); }, absl::Now() + kLeafRetry);
      return;
    }
    // sbxd is stopping and runs what is queued now, once: the killed
    // processes take a moment to go, and nobody would remove their leaf
    // after sbxd has gone (a cut-off command's, above all).
    absl::SleepFor(kLeafRetry);
  }
}

void Manager::ScheduleSpare(const std::shared_ptr<Record>& record, absl::Time when) {
  Defer([this, weak = std::weak_ptr<Record>(record)] { MakeSpareFor(weak.lock()); }, when);
}

void Manager::MakeSpareFor(const std::shared_ptr<Record>& record) {
  if (!record || stopping_.load()) return;  // destroyed meanwhile, or shutting down
  absl::MutexLock spare_lock(&record->spare_mu);
  auto running = [&] {
    absl::MutexLock lock(&mu_);
    return record->state == SandboxState::kRunning;
  };
  {
    absl::MutexLock op_lock(&record->op_mu);
    if (!running() || record->spare_leaf || !record->cgroup) return;
  }
  // The slow part (a mkdir that may wait for the cgroup mutex, the init's
  // fork) without the record's lock, which Get, List and Exec take; on a
  // handle of our own to the sandbox's cgroup. A Destroy meanwhile removes
  // that cgroup on a teardown thread once this is done (spare_mu), sub-
  // cgroups first, the leaf made here included.
  absl::StatusOr<std::unique_ptr<engine::Cgroup>> cgroup = cgroups_->OpenChild(record->id);
  absl::StatusOr<Spare> spare =
      cgroup.ok() ? MakeSpare(**cgroup, *record) : absl::StatusOr<Spare>(cgroup.status());
  if (!spare.ok()) {
    // Without a spare the next command joins its leaf itself: slower, not
    // wrong. A sandbox that cannot make one is usually dying.
    Log().debug("sandbox {}: no spare process: {}", record->id, spare.status().ToString());
    return;
  }
  const pid_t pid = spare->pending.pid;
  const std::string leaf_name = spare->leaf->name();
  bool installed = false;
  {
    absl::MutexLock op_lock(&record->op_mu);
    if (running() && record->cgroup && !record->spare_leaf) {
      record->spare_leaf = std::move(spare->leaf);
      record->spare_pid = pid;
      installed = true;
    }
  }
  if (!installed) {
    // Closing the connection on which it is pending has the init kill it
    // first; the removal kills whatever is in the leaf all the same.
    spare->pending.settle.reset();
    RemoveCommandLeaf(record->id, std::move(spare->leaf), /*kill_rest=*/true);
    return;
  }
  // Exec can hand the next command to the spare from now on; Get waits
  // (spare_mu) until it has joined its leaf, where usage leaves it out.
  LogSpare(*record, spare->pending, leaf_name);
  absl::Status settled = engine::WaitSpareSettled(spare->pending);
  if (settled.ok()) return;
  Log().debug("sandbox {}: spare process died: {}", record->id, settled.ToString());
  std::unique_ptr<engine::Cgroup> leaf;
  {
    absl::MutexLock op_lock(&record->op_mu);
    if (record->spare_pid == pid && record->spare_leaf) {  // not handed out meanwhile
      leaf = std::move(record->spare_leaf);
      record->spare_pid = 0;
    }
  }
  if (leaf) RemoveCommandLeaf(record->id, std::move(leaf), /*kill_rest=*/true);
}

absl::StatusOr<Manager::Spare> Manager::MakeSpare(engine::Cgroup& sandbox_cgroup,
                                                  Record& record) {
  Spare spare;
  ASSIGN_OR_RETURN(spare.leaf, sandbox_cgroup.CreateSub(absl::StrCat(
                                   "x", exec_seq_.fetch_add(1, std::memory_order_relaxed))));
  // Started in the leaf where the init may (v2), joining it otherwise.
  const bool in_leaf = record.spares_start_in_leaf.load(std::memory_order_relaxed);
  UniqueFd leaf_dir = LeafDirectoryForInit(record, *spare.leaf);
  absl::StatusOr<std::vector<UniqueFd>> files = spare.leaf->OpenProcsFiles();
  absl::StatusOr<engine::PendingSpare> pending = absl::UnknownError("no cgroup.procs files");
  if (files.ok()) {
    std::vector<int> fds;
    for (const UniqueFd& fd : *files) fds.push_back(fd.get());
    pending = engine::PrepareSpare(engine::ControlSocketPath(record.dir), fds,
                                   leaf_dir ? leaf_dir.get() : -1);
  } else {
    pending = files.status();
  }
  if (!pending.ok()) {
    spare.leaf->Remove().IgnoreError();
    return pending.status();
  }
  spare.pending = std::move(*pending);
  // The kernel would not start it there: the next ones join too, and a
  // sandbox's first command waits for its spare as on v1 (CommandEnded).
  if (in_leaf && !spare.pending.born_in_leaf) {
    record.spares_start_in_leaf.store(false, std::memory_order_relaxed);
  }
  // While the spare joins: its command's exit is read on the exec I/O loop.
  // A failure is not the spare's: GetUsage reports it where it matters.
  if (absl::Status kept = spare.leaf->KeepUsageFilesOpen(); !kept.ok()) {
    Log().debug("cgroup {}: keeping its usage files open: {}", spare.leaf->name(), kept.ToString());
  }
  return spare;
}

UniqueFd Manager::LeafDirectoryForInit(Record& record, engine::Cgroup& leaf) {
  if (!record.spares_start_in_leaf.load(std::memory_order_relaxed)) return UniqueFd();
  absl::Status delegated = leaf.DelegateProcs(HostIdBase(record));
  absl::StatusOr<UniqueFd> dir =
      delegated.ok() ? leaf.OpenDirectory() : absl::StatusOr<UniqueFd>(delegated);
  if (dir.ok()) return std::move(*dir);
  Log().debug("sandbox {}: a process joins its leaf {}: {}", record.id, leaf.name(),
              dir.status().ToString());
  return UniqueFd();
}

absl::Status Manager::PrepareSpareLocked(Record& record) {
  if (record.spare_leaf) return absl::OkStatus();
  if (!record.cgroup) return absl::FailedPreconditionError("the sandbox has no cgroup");
  ASSIGN_OR_RETURN(Spare spare, MakeSpare(*record.cgroup, record));
  // Handed out in its leaf: the caller's first Get sees the usage of its
  // own processes alone.
  if (absl::Status settled = engine::WaitSpareSettled(spare.pending); !settled.ok()) {
    spare.leaf->Remove().IgnoreError();
    return settled;
  }
  LogSpare(record, spare.pending, spare.leaf->name());
  record.spare_leaf = std::move(spare.leaf);
  record.spare_pid = spare.pending.pid;
  return absl::OkStatus();
}

void Manager::LogSpare(const Record& record, const engine::PendingSpare& spare,
                       const std::string& leaf_name) {
  Log().debug("sandbox {}: spare {} {} leaf {}", record.id, spare.pid,
              spare.born_in_leaf ? "started in its" : "joining its", leaf_name);
}

}  // namespace sbx::manager
