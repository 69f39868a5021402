// Re-attaching, at start-up, to the sandboxes a previous sbxd left running,
// and cleaning up whatever it left inconsistent.
#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/engine/proc_status.h"
#include "server/manager/log.h"
#include "server/manager/manager.h"
#include "server/manager/record.h"
#include "server/manager/state_file.h"

namespace sbx::manager {

namespace {

constexpr int kPingTimeoutMs = 1000;

}  // namespace

void Manager::Recover() {
  std::error_code ec;
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(sandboxes_dir_, ec)) {
    names.push_back(entry.path().filename().string());
  }
  if (ec) {
    Log().error("recovery: listing {}: {}", sandboxes_dir_, ec.message());
  }
  for (const std::string& name : names) RecoverDir(name);
  RemoveOrphanCgroups();
  WakeWatcher();  // recovered TTLs
  absl::MutexLock lock(&mu_);
  Log().info("recovery: {} sandbox(es) re-attached", registry_.size());
}

void Manager::RecoverDir(const std::string& name) {
  const std::string dir = absl::StrCat(sandboxes_dir_, "/", name);
  if (!IsSandboxId(name)) {
    CleanUpOrphan(name, "not a sandbox id");
    return;
  }
  absl::StatusOr<PersistedSandbox> state = ReadStateFile(dir);
  if (!state.ok()) {
    CleanUpOrphan(name, state.status().ToString());
    return;
  }
  if (state->id != name) {
    CleanUpOrphan(name, absl::StrCat("state file names ", state->id));
    return;
  }
  if (state->pooled) {
    // Never handed out, so nobody can miss it; the new pool is built afresh.
    CleanUpOrphan(name, "an unused sandbox of the warm pool");
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (used_slots_.count(state->slot) != 0) {
      CleanUpOrphan(name, absl::StrCat("its uid slot ", state->slot, " is taken"));
      return;
    }
  }
  absl::StatusOr<engine::SandboxProcess> process =
      engine::AttachSandboxProcess(state->pid, state->start_time);
  if (!process.ok()) {
    CleanUpOrphan(name, absl::StrCat("init is gone: ", process.status().ToString()));
    return;
  }
  if (absl::Status s = engine::PingInit(engine::ControlSocketPath(dir), kPingTimeoutMs);
      !s.ok()) {
    absl::Status killed = engine::KillSandboxProcess(*process);
    if (!killed.ok() && !absl::IsNotFound(killed)) {
      Log().error("sandbox {}: killing an unresponsive init: {}", name, killed.ToString());
    }
    CleanUpOrphan(name, absl::StrCat("init does not answer: ", s.ToString()));
    return;
  }
  absl::StatusOr<std::unique_ptr<engine::Cgroup>> cgroup = cgroups_->OpenChild(name);
  if (!cgroup.ok()) {
    absl::Status killed = engine::KillSandboxProcess(*process);
    if (!killed.ok() && !absl::IsNotFound(killed)) {
      Log().error("sandbox {}: killing an init without cgroup: {}", name, killed.ToString());
    }
    CleanUpOrphan(name, absl::StrCat("its cgroup: ", cgroup.status().ToString()));
    return;
  }

  auto record = std::make_shared<Record>();
  record->id = state->id;
  record->dir = dir;
  record->slot = state->slot;
  record->image = state->image;
  record->tenant = state->tenant.empty() ? options_.default_tenant : state->tenant;
  record->labels = std::move(state->labels);
  record->env = std::move(state->env);
  record->created_at = state->created_at;
  record->expires_at = state->expires_at;
  record->limits = state->limits;
  record->init_takes_nproc.store(state->init_takes_nproc, std::memory_order_relaxed);

  absl::MutexLock op_lock(&record->op_mu);
  record->cgroup = std::move(*cgroup);
  record->process = std::move(*process);
  record->state_seq = state->seq;
  AdoptSpareLocked(*record);
  absl::MutexLock lock(&mu_);
  if (absl::Status s = WatchLocked(*record); !s.ok()) {
    // Keep it: it works, only its death would go unnoticed until Destroy.
    Log().error("sandbox {}: watching its init: {}", name, s.ToString());
  }
  record->pid = record->process.pid;
  record->state = SandboxState::kRunning;
  used_slots_.insert(record->slot);
  registry_[record->id] = record;
  Log().info("sandbox {}: re-attached (init pid {})", name, record->pid);
}

void Manager::AdoptSpareLocked(Record& record) {
  const std::vector<std::string> paths = record.cgroup->Paths();
  if (paths.empty()) return;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(paths[0], ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.empty() || name[0] != 'x') continue;
    absl::StatusOr<std::unique_ptr<engine::Cgroup>> leaf = record.cgroup->CreateSub(name);
    if (!leaf.ok()) continue;
    absl::StatusOr<std::vector<pid_t>> pids = (*leaf)->Processes();
    if (!pids.ok() || pids->size() != 1) continue;
    // The spare: the init's child, still sbx-init (a command has exec'd).
    std::optional<engine::ProcStatus> status = engine::ReadProcStatus((*pids)[0]);
    if (!status || status->ppid != record.process.pid || status->name != "sbx-init" ||
        status->ns_pid <= 0) {
      continue;
    }
    record.spare_leaf = std::move(*leaf);
    record.spare_pid = status->ns_pid;
    Log().debug("sandbox {}: adopted spare pid {} in {}", record.id, record.spare_pid, name);
    return;
  }
}

void Manager::CleanUpOrphan(const std::string& name, const std::string& why) {
  Log().warn("sandbox {}: cleaning up at start-up: {}", name, why);
  if (IsSandboxId(name)) {
    absl::StatusOr<std::unique_ptr<engine::Cgroup>> cgroup = cgroups_->OpenChild(name);
    if (cgroup.ok()) {
      absl::Status s = (*cgroup)->KillAll(options_.kill_timeout_ms);
      if (s.ok()) s = (*cgroup)->Remove();
      if (!s.ok()) Log().error("sandbox {}: removing its cgroup: {}", name, s.ToString());
    } else if (!absl::IsNotFound(cgroup.status())) {
      Log().error("sandbox {}: opening its cgroup: {}", name, cgroup.status().ToString());
    }
  }
  absl::Status s = RemoveTree(absl::StrCat(sandboxes_dir_, "/", name));
  if (!s.ok()) Log().error("sandbox {}: {}", name, s.ToString());
}

void Manager::RemoveOrphanCgroups() {
  absl::StatusOr<std::vector<std::string>> children = cgroups_->ListChildren();
  if (!children.ok()) {
    Log().error("recovery: listing cgroups: {}", children.status().ToString());
    return;
  }
  for (const std::string& name : *children) {
    {
      absl::MutexLock lock(&mu_);
      if (registry_.count(name) != 0) continue;
    }
    Log().warn("cgroup {}: no sandbox owns it; killing its processes and removing it", name);
    absl::StatusOr<std::unique_ptr<engine::Cgroup>> cgroup = cgroups_->OpenChild(name);
    if (!cgroup.ok()) {
      Log().error("cgroup {}: {}", name, cgroup.status().ToString());
      continue;
    }
    absl::Status s = (*cgroup)->KillAll(options_.kill_timeout_ms);
    if (s.ok()) s = (*cgroup)->Remove();
    if (!s.ok()) Log().error("cgroup {}: {}", name, s.ToString());
  }
}

}  // namespace sbx::manager
