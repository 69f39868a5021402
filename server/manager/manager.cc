#include "server/manager/manager.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <limits>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/manager/log.h"
#include "server/manager/record.h"
#include "server/manager/state_file.h"

namespace sbx::manager {
namespace {

// The watcher's retries of a Destroy that failed (see DestroySandbox).
constexpr absl::Duration kDestroyRetry = absl::Seconds(1);
constexpr absl::Duration kDestroyRetryMax = absl::Minutes(1);

absl::Status MakeDir(const std::string& path, bool exist_ok) {
  if (::mkdir(path.c_str(), 0700) == 0) return absl::OkStatus();
  if (errno == EEXIST && exist_ok) return absl::OkStatus();
  return ErrnoStatus(errno, absl::StrCat("creating directory ", path));
}

// Joins the messages of every failed step into one status (the first code).
class StatusCollector {
 public:
  void Add(const absl::Status& status) {
    if (status.ok()) return;
    if (first_.ok()) first_ = status;
    messages_.push_back(std::string(status.message()));
  }
  absl::Status Get(absl::string_view context) const {
    if (first_.ok()) return first_;
    return absl::Status(first_.code(),
                        absl::StrCat(context, ": ", absl::StrJoin(messages_, "; ")));
  }

 private:
  absl::Status first_;
  std::vector<std::string> messages_;
};

}  // namespace

spdlog::logger& Log() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    if (auto existing = spdlog::get("manager")) return existing;
    auto created = spdlog::default_logger()->clone("manager");
    spdlog::register_logger(created);
    return created;
  }();
  return *logger;
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return ErrnoStatus(ec.value(), absl::StrCat("removing ", path));
  return absl::OkStatus();
}

Manager::Manager(const ManagerOptions& options)
    : options_(options),
      host_(HostResources::Detect()),
      sandboxes_dir_(absl::StrCat(options.state_dir, "/sandboxes")) {}

absl::StatusOr<std::unique_ptr<Manager>> Manager::Create(const ManagerOptions& options) {
  std::unique_ptr<Manager> manager(new Manager(options));
  RETURN_IF_ERROR(manager->Init());
  return manager;
}

absl::Status Manager::Init() {
  if (options_.max_sandboxes < 1) {
    return absl::InvalidArgumentError("max sandboxes must be at least 1");
  }
  if (options_.pool_size < 0) return absl::InvalidArgumentError("pool size must be >= 0");
  if (!options_.node_name.empty() && !IsNodeName(options_.node_name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "node name '", absl::CHexEscape(options_.node_name),
        "': use 1 to 44 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"));
  }
  const uint64_t slots = uint64_t{static_cast<uint32_t>(options_.max_sandboxes)} +
                         uint64_t{static_cast<uint32_t>(options_.pool_size)};
  const uint64_t last_id = uint64_t{options_.uid_base} + slots * engine::kIdsPerSandbox;
  if (options_.uid_base == 0 || last_id >= std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "uid base ", options_.uid_base, " with ", slots,
        " sandboxes (max plus pool) of 65536 ids does not fit below 2^32-1 (and must not be 0)"));
  }
  engine::Limits defaults = WithDefaults({}, options_);
  if (auto s = ValidateLimits(defaults, host_); !s.ok()) {
    return Annotate(s, "default limits");
  }
  RETURN_IF_ERROR(MakeDir(options_.state_dir, /*exist_ok=*/true));
  // One sbxd per state directory: a second one would take the first's
  // sandboxes for leftovers of a crash and tear them down. The lock goes
  // with the process, however it ends.
  const std::string lock_path = options_.state_dir + "/sbxd.lock";
  state_lock_.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!state_lock_) return ErrnoStatus(errno, absl::StrCat("opening ", lock_path));
  if (::flock(state_lock_.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another sbxd uses the state directory ", options_.state_dir, " (", lock_path,
          " is locked)"));
    }
    return ErrnoStatus(errno, absl::StrCat("locking ", lock_path));
  }
  RETURN_IF_ERROR(MakeDir(sandboxes_dir_, /*exist_ok=*/true));

  absl::StatusOr<std::unique_ptr<engine::CgroupManager>> cgroups =
      engine::CgroupManager::Create(options_.cgroup);
  if (!cgroups.ok()) return Annotate(cgroups.status(), "setting up cgroups");
  cgroups_ = std::move(*cgroups);
  if (absl::StatusOr<std::string> mounts = ReadFileToString("/proc/self/mounts");
      mounts.ok() && !engine::CgroupMovesFavored(*mounts)) {
    Log().info("no cgroup hierarchy is mounted with favordynmods: a command that joins its "
               "cgroup after a pause waits for an RCU grace period (see docs/architecture.md)");
  }

  can_raise_task_limits_ = engine::HasEffectiveCapability(CAP_SYS_RESOURCE);
  if (!can_raise_task_limits_) {
    Log().info("without CAP_SYS_RESOURCE, a raised pids limit reaches the task limits of the "
               "commands started after it, not of those running (see docs/operations.md)");
  }

  absl::StatusOr<std::unique_ptr<engine::Spawner>> spawner =
      engine::Spawner::Start(options_.init_path);
  if (!spawner.ok()) {
    return Annotate(spawner.status(), absl::StrCat("starting ", options_.init_path));
  }
  spawner_ = std::move(*spawner);

  RETURN_IF_ERROR(StartWatcher());
  Recover();
  return absl::OkStatus();
}

void Manager::StartBackgroundWork() {
  StartWorker();
  StartPool();
}

Manager::~Manager() { Shutdown(); }

void Manager::Shutdown() {
  if (stopping_.exchange(true)) return;
  StopPool();
  StopWorker();
  WakeWatcher();
  if (watcher_.joinable()) watcher_.join();
  // Sandboxes outlive sbxd; with none left, its parent cgroup goes too.
  bool empty;
  {
    absl::MutexLock lock(&mu_);
    empty = registry_.empty();
  }
  if (empty && cgroups_) {
    absl::Status removed = cgroups_->RemoveParentIfEmpty();
    if (!removed.ok()) Log().info("keeping the parent cgroup: {}", removed.ToString());
  }
}

std::string Manager::SandboxDir(const std::string& id) const {
  return absl::StrCat(sandboxes_dir_, "/", id);
}

absl::Status Manager::SaveState(Record& record, const engine::Limits& limits, bool pooled) {
  PersistedSandbox p;
  p.id = record.id;
  p.slot = record.slot;
  p.limits = limits;
  p.labels = record.labels;
  p.env = record.env;
  p.image = record.image;
  p.tenant = record.tenant;
  p.created_at = record.created_at;
  p.expires_at = record.expires_at;
  p.pooled = pooled;
  p.pid = record.process.pid;
  p.start_time = record.process.start_time;
  // One more than the last write that succeeded: a failed one is retried
  // in the same slot, never over the only valid one.
  p.seq = record.state_seq + 1;
  p.init_takes_nproc = record.init_takes_nproc.load(std::memory_order_relaxed);
  RETURN_IF_ERROR(WriteStateFile(record.dir, p));
  record.state_seq = p.seq;
  return absl::OkStatus();
}

// ---- create -----------------------------------------------------------------


absl::StatusOr<SandboxInfo> Manager::CreateSandbox(const CreateParams& params) {
  RETURN_IF_ERROR(ValidateCreateParams(params, host_));
  const engine::Limits limits = WithDefaults(params.limits, options_);
  // Every valid request can be served from the pool: it differs from a
  // pooled sandbox only in what HandOut sets.
  while (true) {
    ASSIGN_OR_RETURN(std::shared_ptr<Record> pooled, TakePooled(params.tenant, limits));
    if (!pooled) break;
    absl::StatusOr<SandboxInfo> info = HandOut(pooled, params, limits);
    if (info.ok()) return info;
    Log().warn("sandbox {}: hand-out from the pool failed, trying another: {}", pooled->id,
               info.status().ToString());
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Record> record, Reserve(params, limits, /*pooled=*/false));
  const absl::Time start = absl::Now();
  if (absl::Status s = Build(*record); !s.ok()) {
    Log().error("sandbox {}: create failed: {}", record->id, s.ToString());
    Unreserve(record);
    return Annotate(s, absl::StrCat("creating sandbox ", record->id));
  }
  Log().info("sandbox {}: created in {} (pid {}, memory {} B, cpus {}, pids {})",
             record->id, absl::FormatDuration(absl::Now() - start), record->pid,
             *limits.memory_bytes, *limits.cpus, *limits.pids);
  if (record->expires_at) WakeWatcher();  // the next expiry may be sooner now
  ScheduleSpare(record);
  return Snapshot(record, /*with_usage=*/false);
}

absl::StatusOr<std::shared_ptr<Manager::Record>> Manager::Reserve(
    const CreateParams& params, const engine::Limits& limits, bool pooled) {
  auto record = std::make_shared<Record>();
  record->image = params.image.empty() ? "host" : params.image;
  if (!pooled) record->tenant = params.tenant;
  record->labels = params.labels;
  record->env = params.env;
  record->limits = limits;
  record->created_at = absl::Now();
  if (params.ttl > absl::ZeroDuration()) record->expires_at = record->created_at + params.ttl;

  absl::MutexLock lock(&mu_);
  if (!pooled && OwnedCountLocked() >= static_cast<size_t>(options_.max_sandboxes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "this daemon already runs ", OwnedCountLocked(), " sandboxes, its maximum"));
  }
  if (!pooled) RETURN_IF_ERROR(CheckQuotaLocked(params.tenant, limits, nullptr));
  ASSIGN_OR_RETURN(record->slot, AllocateSlotLocked());
  do {
    record->id = NewSandboxId(options_.node_name);
  } while (registry_.count(record->id) != 0);
  record->dir = SandboxDir(record->id);
  record->pooled = pooled;
  if (pooled) ++pool_building_;
  used_slots_.insert(record->slot);
  registry_[record->id] = record;
  return record;
}

absl::StatusOr<uint32_t> Manager::AllocateSlotLocked() {
  uint32_t slot = 0;
  for (uint32_t used : used_slots_) {  // ordered: the first gap is the lowest free
    if (used != slot) break;
    ++slot;
  }
  const uint64_t last = uint64_t{options_.uid_base} +
                        (uint64_t{slot} + 1) * engine::kIdsPerSandbox;
  if (last >= std::numeric_limits<uint32_t>::max()) {
    return absl::ResourceExhaustedError("no host uid range left for another sandbox");
  }
  return slot;
}

uint32_t Manager::HostIdBase(const Record& record) const {
  return options_.uid_base + record.slot * engine::kIdsPerSandbox;
}

absl::Status Manager::Build(Record& record) {
  absl::MutexLock op_lock(&record.op_mu);
  RETURN_IF_ERROR(MakeDir(record.dir, /*exist_ok=*/false));

  absl::StatusOr<std::unique_ptr<engine::Cgroup>> cgroup = cgroups_->CreateChild(record.id);
  if (!cgroup.ok()) return Annotate(cgroup.status(), "creating cgroup");
  record.cgroup = std::move(*cgroup);
  RETURN_IF_ERROR(Annotate(record.cgroup->SetLimits(record.limits), "applying limits"));

  engine::SandboxConfig config;
  config.id = record.id;
  config.dir = record.dir;
  config.host_id_base = HostIdBase(record);
  // On v2 the init starts its spares in their leaves: its own credentials
  // must then be allowed to put processes into the sandbox's cgroup tree.
  if (cgroups_->version() == engine::CgroupVersion::kV2) {
    absl::Status delegated = record.cgroup->DelegateProcs(config.host_id_base);
    if (delegated.ok()) {
      config.keep_cgroup_ns = true;
      record.spares_start_in_leaf.store(true, std::memory_order_relaxed);
    } else {
      Log().warn("sandbox {}: its spares and commands join their leaves: {}", record.id,
                 delegated.ToString());
    }
  }
  config.tmp_bytes = options_.tmp_bytes;
  config.work_bytes = options_.work_bytes;
  config.shm_bytes = options_.shm_bytes;
  absl::StatusOr<engine::SandboxProcess> process = spawner_->Spawn(config, *record.cgroup);
  if (!process.ok()) return Annotate(process.status(), "starting its init");
  record.process = std::move(*process);
  record.init_takes_nproc.store(true, std::memory_order_relaxed);

  RETURN_IF_ERROR(
      Annotate(SaveState(record, record.limits, record.pooled), "saving its state"));

  // A pooled sandbox is handed out with its spare ready; the others get
  // theirs in the background, off the caller's path.
  if (record.pooled) {
    if (absl::Status s = PrepareSpareLocked(record); !s.ok()) {
      Log().warn("sandbox {}: no spare process: {}", record.id, s.ToString());
    }
  }

  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Annotate(WatchLocked(record), "watching its init"));
  record.pid = record.process.pid;
  record.state = SandboxState::kRunning;
  return absl::OkStatus();
}

void Manager::Unreserve(const std::shared_ptr<Record>& record) {
  bool init_alive = false;
  {
    absl::MutexLock op_lock(&record->op_mu);
    absl::Status s = TearDown(*record);
    if (!s.ok()) Log().error("sandbox {}: cleanup after failed create: {}", record->id, s.ToString());
    init_alive = record->process.pidfd.valid();  // StopProcesses keeps an init that did not die
  }
  absl::MutexLock lock(&mu_);
  if (record->pooled) --pool_building_;
  registry_.erase(record->id);
  // Its uid range stays taken (until the next start) while a process of it
  // may still run: another sandbox must never share its ids.
  if (!init_alive) used_slots_.erase(record->slot);
  destroyed_.SignalAll();
  pool_wake_.Signal();
}

absl::Status Manager::TearDown(Record& record) {
  StatusCollector errors;
  errors.Add(StopProcesses(record));
  // The spare's leaf is part of the cgroup removed below.
  record.spare_leaf.reset();
  record.spare_pid = 0;
  if (record.cgroup) {
    absl::Status removed = RemoveCgroup(*record.cgroup);
    errors.Add(removed);
    if (removed.ok()) record.cgroup.reset();
  }
  errors.Add(RemoveTree(record.dir));
  return errors.Get("tearing down");
}

absl::Status Manager::StopProcesses(Record& record, UniqueFd* mount_ns) {
  StatusCollector errors;
  Unwatch(record);
  if (record.process.pidfd.valid()) {
    if (mount_ns != nullptr) *mount_ns = engine::HoldMountNamespace(record.process);
    absl::Status killed = engine::KillSandboxProcess(record.process);
    // NOT_FOUND: it died on its own in the meantime, which is what we want.
    if (!absl::IsNotFound(killed)) errors.Add(Annotate(killed, "killing its init"));
    // When the init of a pid namespace has exited, the kernel has killed and
    // reaped every other process in it: waiting on its pidfd is the exact
    // moment the sandbox is empty, where polling the cgroup would oversleep.
    absl::Status exited = engine::WaitSandboxProcessExit(record.process, options_.kill_timeout_ms);
    errors.Add(Annotate(exited, "waiting for its init to exit"));
    // An init still alive is kept, so that the next try waits for it again:
    // forgotten, it would let that try succeed at once, and free the
    // sandbox's uid range for another while its processes still run.
    if (exited.ok()) {
      engine::ReapSandboxProcess(record.process);  // if it is our child
      record.process = engine::SandboxProcess();
    }
  }
  return errors.Get("stopping its processes");
}

absl::Status Manager::RemoveCgroup(engine::Cgroup& cgroup) {
  // Normally empty by now; this catches anything that is not.
  RETURN_IF_ERROR(Annotate(cgroup.KillAll(options_.kill_timeout_ms), "killing its processes"));
  return Annotate(cgroup.Remove(), "removing its cgroup");
}

// ---- destroy ------------------------------------------------------------------

absl::Duration Manager::ScheduleDestroyRetryLocked(Record& record) {
  const absl::Duration backoff = std::min(
      kDestroyRetryMax, kDestroyRetry * (int64_t{1} << std::min(record.failed_destroys, 6)));
  ++record.failed_destroys;
  const absl::Time retry = absl::Now() + backoff;
  if (!record.expires_at || *record.expires_at > retry) record.expires_at = retry;
  WakeWatcher();
  return backoff;
}

absl::StatusOr<bool> Manager::DestroySandbox(const std::string& tenant, const std::string& id) {
  std::shared_ptr<Record> record;
  {
    absl::MutexLock lock(&mu_);
    auto it = registry_.find(id);
    if (it == registry_.end() || it->second->pooled || it->second->tenant != tenant) return false;
    record = it->second;
    switch (record->state) {
      case SandboxState::kCreating:
        return absl::FailedPreconditionError(
            absl::StrCat("sandbox ", id, " is still being created"));
      case SandboxState::kDestroying:
        // Another caller is at it; the sandbox is gone once it returns.
        while (true) {
          auto again = registry_.find(id);
          if (again == registry_.end() || again->second != record ||
              record->state != SandboxState::kDestroying) {
            break;
          }
          destroyed_.Wait(&mu_);
        }
        return true;
      case SandboxState::kRunning:
      case SandboxState::kDead:
        break;
    }
    record->state = SandboxState::kDestroying;
  }

  // Once its init is gone, so is every process of the sandbox: Destroy
  // returns then. Removing its cgroups and files is left to the worker,
  // because on cgroup v1 an rmdir can wait milliseconds for the cgroup
  // mutex; the sandbox's uid range stays taken until that is done.
  absl::Status status;
  std::unique_ptr<engine::Cgroup> cgroup;
  UniqueFd mount_ns;
  {
    absl::MutexLock op_lock(&record->op_mu);
    status = StopProcesses(*record, &mount_ns);
    if (status.ok()) {
      record->spare_leaf.reset();
      record->spare_pid = 0;
      cgroup = std::move(record->cgroup);
    }
  }

  absl::MutexLock lock(&mu_);
  if (status.ok()) {
    registry_.erase(id);
    Log().info("sandbox {}: destroyed", id);
    teardown_.Post([this, id, record, dir = record->dir, slot = record->slot,
                    cgroup = std::shared_ptr<engine::Cgroup>(std::move(cgroup)),
                    mount_ns = std::make_shared<UniqueFd>(std::move(mount_ns))] {
      // The sandbox's mounts go first, then its files: once the cgroups are
      // gone, nothing of it is left.
      mount_ns->reset();
      StatusCollector errors;
      errors.Add(RemoveTree(dir));
      if (cgroup) {
        // A spare the worker is making (it saw the sandbox running before
        // this Destroy) gets a leaf below this cgroup: made between the
        // removal's listing of the leaves and its rmdir, that leaf would
        // keep the cgroup. Its making ends first; any later one sees the
        // sandbox destroyed and makes nothing.
        absl::MutexLock spare_lock(&record->spare_mu);
        errors.Add(RemoveCgroup(*cgroup));
      }
      absl::Status removed = errors.Get("removing what it left");
      // A cgroup that could not be removed is cleaned up at the next start.
      if (!removed.ok()) Log().error("sandbox {}: {}", id, removed.ToString());
      absl::MutexLock lock(&mu_);
      used_slots_.erase(slot);
      pool_wake_.Signal();  // room for the pool again, if it was full
    });
  } else {
    // Keep it, so that a retry can finish the job: the caller's, or the
    // watcher's, which destroys a sandbox once it expires. A Destroy asked
    // for is not forgotten: a sandbox nobody will ask about again (a Run's)
    // would otherwise stay, DEAD and counted in its tenant's quota, until
    // its TTL. Retries back off from 1 s to a minute.
    record->state = SandboxState::kDead;
    const absl::Duration backoff = ScheduleDestroyRetryLocked(*record);
    Log().error("sandbox {}: destroy failed (tried again in {}): {}", id,
                absl::FormatDuration(backoff), status.ToString());
  }
  destroyed_.SignalAll();
  if (!status.ok()) return Annotate(status, absl::StrCat("destroying sandbox ", id));
  return true;
}

// ---- queries ------------------------------------------------------------------

size_t Manager::OwnedCountLocked() const {
  // Pooled records are the ready ones and the ones being built.
  return registry_.size() - pool_.size() - static_cast<size_t>(pool_building_);
}

SandboxInfo Manager::Snapshot(const std::shared_ptr<Record>& record, bool with_usage) {
  SandboxInfo info;
  info.id = record->id;
  info.image = record->image;
  info.tenant = record->tenant;
  info.labels = record->labels;
  info.created_at = record->created_at;
  info.expires_at = record->expires_at;
  int64_t leaf_oom_kills = 0;
  {
    absl::MutexLock lock(&mu_);
    info.state = record->state;
    info.limits = record->limits;
    info.init_pid = record->pid;
    leaf_oom_kills = record->leaf_oom_kills;
  }
  if (with_usage && (info.state == SandboxState::kRunning || info.state == SandboxState::kDead)) {
    absl::MutexLock spare_lock(&record->spare_mu);  // a spare in the making is known after
    absl::MutexLock op_lock(&record->op_mu);
    if (record->cgroup) {
      absl::StatusOr<engine::Usage> usage = record->cgroup->GetUsage();
      if (usage.ok()) {
        info.usage = *usage;
        // The spare is sbx's, not the caller's (it exists only while the
        // sandbox has no command running in it, or runs the next command).
        if (record->spare_leaf) {
          absl::StatusOr<std::vector<pid_t>> spare = record->spare_leaf->Processes();
          if (spare.ok()) {
            info.usage->pids = std::max<int64_t>(
                0, info.usage->pids - static_cast<int64_t>(spare->size()));
          }
        }
        // v2 counts the leaves' kills in the sandbox's own counter, v1 does not.
        info.usage->oom_kills = std::max(info.usage->oom_kills, leaf_oom_kills);
      } else {
        Log().warn("sandbox {}: reading usage: {}", record->id, usage.status().ToString());
      }
    }
  }
  return info;
}

absl::StatusOr<SandboxInfo> Manager::GetSandbox(const std::string& tenant,
                                                const std::string& id) {
  std::shared_ptr<Record> record;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(record, FindLocked(tenant, id));
  }
  return Snapshot(record);
}

std::vector<SandboxInfo> Manager::ListSandboxes(const std::string& tenant,
                                                const ListFilter& filter) {
  std::vector<std::shared_ptr<Record>> records;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, record] : registry_) {
      if (record->pooled || record->tenant != tenant) continue;
      if (filter.state && record->state != *filter.state) continue;
      if (!MatchesSelector(record->labels, filter.label_selector)) continue;
      records.push_back(record);
    }
  }
  std::vector<SandboxInfo> out;
  out.reserve(records.size());
  for (const auto& record : records) out.push_back(Snapshot(record));
  return out;
}

std::shared_ptr<Manager::Record> Manager::RecordOf(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = registry_.find(id);
  return it == registry_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<Manager::Record>> Manager::FindLocked(const std::string& tenant,
                                                                    const std::string& id) {
  auto it = registry_.find(id);
  // Another tenant's sandbox looks exactly like a missing one.
  if (it == registry_.end() || it->second->pooled || it->second->tenant != tenant) {
    return absl::NotFoundError(absl::StrCat("sandbox ", id, " does not exist"));
  }
  return it->second;
}

absl::Status Manager::CheckQuotaLocked(const std::string& tenant, const engine::Limits& limits,
                                       const Record* replacing) {
  auto q = options_.quotas.find(tenant);
  if (q == options_.quotas.end()) return absl::OkStatus();
  const TenantQuota& quota = q->second;
  int count = 0;
  int64_t memory = limits.memory_bytes.value_or(0);
  double cpus = limits.cpus.value_or(0);
  for (const auto& [id, record] : registry_) {
    if (record->tenant != tenant || record.get() == replacing) continue;
    ++count;
    memory += record->limits.memory_bytes.value_or(0);
    cpus += record->limits.cpus.value_or(0);
  }
  if (replacing == nullptr && quota.max_sandboxes > 0 && count >= quota.max_sandboxes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant ", tenant, " quota: at most ", quota.max_sandboxes,
                     " sandboxes at once, and it has ", count));
  }
  if (quota.max_memory_bytes > 0 && memory > quota.max_memory_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "tenant ", tenant, " quota: the memory limits of its sandboxes would total ", memory,
        " bytes, over its quota of ", quota.max_memory_bytes));
  }
  if (quota.max_cpus > 0 && cpus > quota.max_cpus + 1e-9) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant ", tenant, " quota: the cpu limits of its sandboxes would total ",
                     cpus, ", over its quota of ", quota.max_cpus));
  }
  return absl::OkStatus();
}

std::map<SandboxState, int> Manager::CountByState() {
  std::map<SandboxState, int> counts;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, record] : registry_) {
    if (!record->pooled) ++counts[record->state];
  }
  return counts;
}

int Manager::PoolLevel() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(pool_.size());
}

absl::Status Manager::RequireRunningLocked(const Record& record) {
  if (record.state == SandboxState::kRunning) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "sandbox ", record.id, " is ", SandboxStateName(record.state), ", not RUNNING"));
}

// ---- limits -------------------------------------------------------------------

absl::StatusOr<SandboxInfo> Manager::SetLimits(const std::string& tenant, const std::string& id,
                                               const engine::Limits& limits) {
  RETURN_IF_ERROR(ValidateLimits(limits, host_));
  std::shared_ptr<Record> record;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(record, FindLocked(tenant, id));
  }
  {
    absl::MutexLock op_lock(&record->op_mu);
    engine::Limits merged;
    int64_t old_pids = 0;
    {
      absl::MutexLock lock(&mu_);
      RETURN_IF_ERROR(RequireRunningLocked(*record));
      merged = MergeLimits(record->limits, limits);
      RETURN_IF_ERROR(CheckQuotaLocked(tenant, merged, record.get()));
      // Lowering a hard limit needs no capability; raising one does.
      if (record->init_takes_nproc.load(std::memory_order_relaxed) &&
          merged.pids != record->limits.pids &&
          (can_raise_task_limits_ || merged.pids < record->limits.pids)) {
        old_pids = record->limits.pids.value_or(0);
      }
    }
    if (absl::Status s = record->cgroup->SetLimits(limits); !s.ok()) {
      return Annotate(s, absl::StrCat("setting limits of sandbox ", id));
    }
    if (old_pids > 0) {
      // The running commands' task limits follow (see TaskLimitFor): those
      // that still have the one their start gave them. The cgroup has the
      // new limit whatever happens here: a command left with its old task
      // limit is refused forks sooner, or later, than the pids limit says.
      const uint32_t base = HostIdBase(*record);
      const int64_t pids = merged.pids.value_or(0);
      absl::Status set = engine::SetTaskLimits(
          [&] { return record->cgroup->Processes(); },
          [&](uid_t host_uid, rlim_t hard_now) -> int64_t {
            if (host_uid < base || host_uid - base >= engine::kIdsPerSandbox) return 0;
            const uint32_t uid = host_uid - base;
            const int64_t before = TaskLimitFor(old_pids, uid);
            const int64_t after = TaskLimitFor(pids, uid);
            return hard_now == static_cast<rlim_t>(before) && after != before ? after : 0;
          });
      if (!set.ok()) {
        Log().warn("sandbox {}: its commands keep their task limit: {}", id, set.ToString());
      }
    }
    if (absl::Status s = SaveState(*record, merged, /*pooled=*/false); !s.ok()) {
      // The kernel has the new limits; a restart would bring back the old
      // ones in the record but not in the cgroup. Report it.
      Log().error("sandbox {}: saving new limits: {}", id, s.ToString());
      return Annotate(s, absl::StrCat("saving limits of sandbox ", id));
    }
    absl::MutexLock lock(&mu_);
    record->limits = merged;
  }
  Log().info("sandbox {}: limits set (memory {} B, cpus {}, pids {})", id,
             limits.memory_bytes.value_or(-1), limits.cpus.value_or(-1),
             limits.pids.value_or(-1));
  return Snapshot(record);
}

// ---- exec ---------------------------------------------------------------------


void Manager::NoteCommandOomKills(const std::string& id, int64_t kills) {
  if (kills <= 0) return;
  absl::MutexLock lock(&mu_);
  auto it = registry_.find(id);
  if (it != registry_.end()) it->second->leaf_oom_kills += kills;
}

absl::StatusOr<engine::ExecChannel> Manager::StartExec(const std::string& tenant,
                                                       const std::string& id,
                                                       const ExecParams& params) {
  std::string dir;
  std::map<std::string, std::string> env;
  int64_t pids_limit = 0;
  std::shared_ptr<Record> record;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(record, FindLocked(tenant, id));
    RETURN_IF_ERROR(RequireRunningLocked(*record));
    dir = record->dir;
    env = record->env;
    if (record->init_takes_nproc.load(std::memory_order_relaxed)) {
      pids_limit = record->limits.pids.value_or(0);
    }
  }
  ASSIGN_OR_RETURN(engine::ExecOptions options, BuildExecOptions(id, env, params));
  options.nproc = TaskLimitFor(pids_limit, options.uid);
  engine::Limits leaf_limits;
  leaf_limits.memory_bytes = params.limits.memory_bytes;
  leaf_limits.pids = params.limits.pids;
  const std::string control_socket = engine::ControlSocketPath(dir);
  // The command's own cgroup leaf, with its own limits: the spare's, whose
  // process is in it already, or a new one that the command joins.
  std::unique_ptr<engine::Cgroup> spare_leaf;
  {
    absl::MutexLock op_lock(&record->op_mu);
    if (!record->cgroup) {
      return absl::FailedPreconditionError(absl::StrCat("sandbox ", id, " is being torn down"));
    }
    spare_leaf = std::move(record->spare_leaf);
    options.spare_pid = record->spare_pid;
    record->spare_pid = 0;
  }
  const bool had_spare = spare_leaf != nullptr;
  absl::StatusOr<engine::ExecChannel> channel = absl::UnavailableError("no spare");
  if (had_spare) {
    absl::Status limited = spare_leaf->SetLimits(leaf_limits);
    if (!limited.ok()) {
      spare_leaf->Remove().IgnoreError();
      return Annotate(limited, "preparing the command's cgroup");
    }
    channel = engine::StartExec(control_socket, options);
    if (channel.ok()) {
      channel->cgroup = std::move(spare_leaf);
    } else {
      // Whatever the reason, that spare is gone (or was never ours).
      RemoveCommandLeaf(id, std::move(spare_leaf), /*kill_rest=*/true);
    }
    options.spare_pid = 0;
  }
  if (!had_spare || (!channel.ok() && engine::IsNoSpare(channel.status()))) {
    std::unique_ptr<engine::Cgroup> leaf;
    {
      absl::MutexLock op_lock(&record->op_mu);
      if (!record->cgroup) {
        return absl::FailedPreconditionError(
            absl::StrCat("sandbox ", id, " is being torn down"));
      }
      ASSIGN_OR_RETURN(leaf, record->cgroup->CreateSub(absl::StrCat(
                                 "x", exec_seq_.fetch_add(1, std::memory_order_relaxed))));
    }
    std::vector<UniqueFd> procs_files;
    absl::Status prepared = leaf->SetLimits(leaf_limits);
    if (prepared.ok()) {
      absl::StatusOr<std::vector<UniqueFd>> files = leaf->OpenProcsFiles();
      if (files.ok()) procs_files = std::move(*files);
      prepared = files.status();
    }
    if (!prepared.ok()) {
      leaf->Remove().IgnoreError();
      return Annotate(prepared, "preparing the command's cgroup");
    }
    for (const UniqueFd& fd : procs_files) options.cgroup_procs_fds.push_back(fd.get());
    // Where the init starts spares in their leaves (v2), it starts this
    // command in its leaf too: a command that comes before the next spare
    // (a Run's next case, say) then waits for no cgroup move either.
    UniqueFd leaf_dir = LeafDirectoryForInit(*record, *leaf);
    if (leaf_dir) options.cgroup_dir = leaf_dir.get();
    channel = engine::StartExec(control_socket, options);
    if (channel.ok()) {
      channel->cgroup = std::move(leaf);
    } else {
      leaf->Remove().IgnoreError();
    }
  }
  if (!channel.ok()) {
    // A spare that failed to start the command is gone too. Otherwise the
    // next spare is made when this command ends (CommandEnded), or while it
    // runs if it runs long (CommandRunsOn).
    ScheduleSpare(record);
    Log().debug("sandbox {}: exec {} failed: {}", id, options.argv[0],
                channel.status().ToString());
    return channel.status();
  }
  Log().debug("sandbox {}: exec {} started, pid {}", id, options.argv[0], channel->pid);
  return channel;
}

// ---- files ------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<engine::SandboxFs>> Manager::OpenSandboxFs(
    const std::string& tenant, const std::string& id, uint32_t uid) {
  std::shared_ptr<Record> record;
  {
    absl::MutexLock lock(&mu_);
    ASSIGN_OR_RETURN(record, FindLocked(tenant, id));
  }
  absl::MutexLock op_lock(&record->op_mu);
  {
    absl::MutexLock lock(&mu_);
    RETURN_IF_ERROR(RequireRunningLocked(*record));
  }
  engine::SandboxFsTarget target;
  target.sandbox_id = id;
  target.init_pid = record->process.pid;
  target.init_pidfd = record->process.pidfd.get();
  target.host_id_base = HostIdBase(*record);
  target.uid = uid;
  return engine::SandboxFs::Open(target);
}

}  // namespace sbx::manager
