// The warm pool: sandboxes built ahead of time with the default limits, so
// that CreateSandbox only has to hand one out. One filler thread keeps the
// pool full; a pooled sandbox is in the registry (it holds a uid slot and is
// watched like any other) but marked `pooled`, which hides it from every
// caller until HandOut publishes it. It is handed out at most once: TakePooled
// removes it from pool_ under mu_.
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/common/thread_name.h"
#include "server/manager/log.h"
#include "server/manager/manager.h"
#include "server/manager/record.h"
#include "server/manager/state_file.h"

namespace sbx::manager {
namespace {

// After a failed build the filler waits this long before the next, so that a
// persistent failure (no memory, a broken init) does not spin.
constexpr absl::Duration kFailureBackoff = absl::Seconds(1);
// A refill waits this long after the last hand-out while the pool still has
// a sandbox to give: building one (namespaces, mounts, cgroups) would
// otherwise compete for the cpus with the caller's next steps, typically an
// Exec and a Destroy a few milliseconds later. An empty pool is refilled at
// once.
constexpr absl::Duration kRefillQuiet = absl::Milliseconds(10);

bool SameLimits(const engine::Limits& a, const engine::Limits& b) {
  return a.memory_bytes == b.memory_bytes && a.cpus == b.cpus && a.pids == b.pids;
}

// Whether the process behind a pidfd has exited (the pidfd is readable).
bool Exited(const engine::SandboxProcess& process) {
  struct pollfd pfd = {process.pidfd.get(), POLLIN, 0};
  return ::poll(&pfd, 1, 0) != 0;
}

}  // namespace

void Manager::StartPool() {
  if (options_.pool_size <= 0) return;
  pool_filler_ = std::thread([this] { PoolLoop(); });
  NameThread(pool_filler_, "sbxd-pool");
}

void Manager::StopPool() {
  {
    absl::MutexLock lock(&mu_);
    pool_wake_.SignalAll();
  }
  if (pool_filler_.joinable()) pool_filler_.join();
  std::deque<std::shared_ptr<Record>> members;
  {
    absl::MutexLock lock(&mu_);
    members.swap(pool_);
  }
  // Nobody owns them, so they do not outlive sbxd as handed-out ones do.
  for (const auto& record : members) DiscardUnowned(record);
}

void Manager::PoolLoop() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals are the main thread's

  const engine::Limits defaults = WithDefaults({}, options_);
  const size_t target = static_cast<size_t>(options_.pool_size);
  const size_t max_owned = static_cast<size_t>(options_.max_sandboxes);
  while (true) {
    std::vector<std::shared_ptr<Record>> dead;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_.load()) {
        // Members whose init died wait here to be discarded.
        for (auto it = pool_.begin(); it != pool_.end();) {
          if ((*it)->state == SandboxState::kRunning) {
            ++it;
          } else {
            dead.push_back(*it);
            it = pool_.erase(it);
          }
        }
        if (!dead.empty()) break;
        if (pool_.size() + static_cast<size_t>(pool_building_) < target &&
            OwnedCountLocked() < max_owned) {
          const absl::Time quiet_from = last_handout_ + kRefillQuiet;
          if (pool_.empty() || absl::Now() >= quiet_from) break;
          pool_wake_.WaitWithDeadline(&mu_, quiet_from);
          continue;
        }
        pool_wake_.Wait(&mu_);
      }
      if (stopping_.load() && dead.empty()) return;
    }
    for (const auto& record : dead) {
      Log().warn("sandbox {}: pooled sandbox died; discarding it", record->id);
      DiscardUnowned(record);
    }
    if (!dead.empty()) continue;

    absl::StatusOr<std::shared_ptr<Record>> record =
        Reserve(CreateParams{}, defaults, /*pooled=*/true);
    absl::Status built = record.status();
    if (record.ok()) {
      built = Build(**record);
      if (built.ok()) {
        absl::MutexLock lock(&mu_);
        --pool_building_;
        pool_.push_back(*record);
        Log().debug("sandbox {}: ready in the pool ({} of {})", (*record)->id, pool_.size(),
                    target);
        continue;
      }
      Unreserve(*record);
    }
    Log().error("pool: building a sandbox failed: {}", built.ToString());
    absl::MutexLock lock(&mu_);
    if (!stopping_.load()) pool_wake_.WaitWithTimeout(&mu_, kFailureBackoff);
  }
}

absl::StatusOr<std::shared_ptr<Manager::Record>> Manager::TakePooled(
    const std::string& tenant, const engine::Limits& limits) {
  std::vector<std::shared_ptr<Record>> dead;
  std::shared_ptr<Record> taken;
  {
    absl::MutexLock lock(&mu_);
    if (OwnedCountLocked() >= static_cast<size_t>(options_.max_sandboxes)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "this daemon already runs ", OwnedCountLocked(), " sandboxes, its maximum"));
    }
    if (pool_.empty()) {  // Reserve checks the quota
      pool_wake_.Signal();
      return nullptr;
    }
    RETURN_IF_ERROR(CheckQuotaLocked(tenant, limits, nullptr));
    while (!pool_.empty() && !taken) {
      std::shared_ptr<Record> front = std::move(pool_.front());
      pool_.pop_front();
      if (front->state == SandboxState::kRunning) {
        taken = std::move(front);
        last_handout_ = absl::Now();
        // Counts against the tenant's max_sandboxes from here on (its
        // limits become the caller's in HandOut).
        taken->tenant = tenant;
      } else {
        dead.push_back(std::move(front));
      }
    }
    pool_wake_.Signal();  // refill
  }
  for (const auto& record : dead) DiscardUnowned(record);
  return taken;
}

absl::StatusOr<SandboxInfo> Manager::HandOut(const std::shared_ptr<Record>& record,
                                             const CreateParams& params,
                                             const engine::Limits& limits) {
  const absl::Time now = absl::Now();
  absl::Status status;
  {
    absl::MutexLock op_lock(&record->op_mu);
    // Still hidden (pooled), so nobody reads these while they change.
    record->image = params.image.empty() ? "host" : params.image;
    record->labels = params.labels;
    record->env = params.env;
    record->created_at = now;
    record->expires_at.reset();
    if (params.ttl > absl::ZeroDuration()) record->expires_at = now + params.ttl;

    engine::Limits current;
    {
      absl::MutexLock lock(&mu_);
      current = record->limits;
    }
    if (!SameLimits(current, limits)) {
      status = Annotate(record->cgroup->SetLimits(limits), "applying limits");
    }
    if (status.ok() && Exited(record->process)) {
      status = absl::UnavailableError("its init has exited");
    }
    if (status.ok()) {
      status = Annotate(SaveState(*record, limits, /*pooled=*/false), "saving its state");
    }
    if (status.ok()) {
      absl::MutexLock lock(&mu_);
      if (record->state != SandboxState::kRunning) {
        status = absl::UnavailableError("its init has exited");
      } else {
        record->limits = limits;
        record->pooled = false;  // published: from here on it is the caller's
      }
    }
  }
  if (!status.ok()) {
    DiscardUnowned(record);
    return status;
  }
  Log().info("sandbox {}: handed out from the pool (memory {} B, cpus {}, pids {})", record->id,
             *limits.memory_bytes, *limits.cpus, *limits.pids);
  if (record->expires_at) WakeWatcher();
  return Snapshot(record, /*with_usage=*/false);
}

void Manager::DiscardUnowned(const std::shared_ptr<Record>& record) {
  {
    absl::MutexLock lock(&mu_);
    record->state = SandboxState::kDestroying;
  }
  absl::Status status;
  {
    absl::MutexLock op_lock(&record->op_mu);
    status = TearDown(*record);
  }
  absl::MutexLock lock(&mu_);
  if (!status.ok()) {
    // Make it visible, DEAD, so that an operator sees it; the watcher
    // tries again as for a failed Destroy.
    record->pooled = false;
    record->state = SandboxState::kDead;
    const absl::Duration backoff = ScheduleDestroyRetryLocked(*record);
    Log().error("sandbox {}: discarding an unused sandbox (tried again in {}): {}", record->id,
                absl::FormatDuration(backoff), status.ToString());
    return;
  }
  registry_.erase(record->id);
  used_slots_.erase(record->slot);
  destroyed_.SignalAll();
  pool_wake_.Signal();
}

}  // namespace sbx::manager
