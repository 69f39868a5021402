// The manager's one watcher thread: init deaths (pidfds) and TTL expiry.
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/common/thread_name.h"
#include "server/manager/log.h"
#include "server/manager/manager.h"
#include "server/manager/record.h"

namespace sbx::manager {
namespace {

constexpr uint64_t kWakeToken = 0;
constexpr int kMaxEvents = 64;

}  // namespace

absl::Status Manager::StartWatcher() {
  epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd_) return ErrnoStatus(errno, "creating the watcher's epoll");
  wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_) return ErrnoStatus(errno, "creating the watcher's eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeToken;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev) != 0) {
    return ErrnoStatus(errno, "watching the eventfd");
  }
  watcher_ = std::thread([this] { WatchLoop(); });
  NameThread(watcher_, "sbxd-watch");
  return absl::OkStatus();
}

absl::Status Manager::WatchLocked(Record& record) {
  const uint64_t token = next_token_++;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = token;
  if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, record.process.pidfd.get(), &ev) != 0) {
    return ErrnoStatus(errno, "adding a pidfd to epoll");
  }
  record.watch_token = token;
  watch_tokens_[token] = record.id;
  return absl::OkStatus();
}

void Manager::Unwatch(Record& record) {
  {
    absl::MutexLock lock(&mu_);
    if (record.watch_token == 0) return;
    watch_tokens_.erase(record.watch_token);
    record.watch_token = 0;
  }
  if (record.process.pidfd.valid()) {
    // A pidfd is closed later, so remove it explicitly; an event already
    // taken from epoll finds no token and is dropped.
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, record.process.pidfd.get(), nullptr);
  }
}

void Manager::WakeWatcher() {
  if (!wake_fd_) return;
  uint64_t one = 1;
  // Only EAGAIN (counter saturated) can fail here, and then a wake-up is pending.
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

int Manager::NextTimeoutMs() {
  std::optional<absl::Time> next;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, record] : registry_) {
      if (!record->expires_at) continue;
      if (record->state != SandboxState::kRunning && record->state != SandboxState::kDead) {
        continue;
      }
      if (!next || *record->expires_at < *next) next = record->expires_at;
    }
  }
  if (!next) return -1;
  absl::Duration wait = *next - absl::Now();
  if (wait <= absl::ZeroDuration()) return 0;
  // Round up so that we never wake just before the deadline and spin.
  int64_t ms = absl::ToInt64Milliseconds(wait) + 1;
  return static_cast<int>(std::min<int64_t>(ms, INT_MAX));
}

void Manager::WatchLoop() {
  // Signals are sbxd's main thread's business.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);

  epoll_event events[kMaxEvents];
  while (!stopping_.load()) {
    int n = ::epoll_wait(epoll_fd_.get(), events, kMaxEvents, NextTimeoutMs());
    if (n < 0) {
      const int err = errno;  // before Log(), whose first use may change errno
      if (err == EINTR) continue;
      Log().critical("watcher: epoll_wait: {}", ErrnoStatus(err, "epoll_wait").ToString());
      return;
    }
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kWakeToken) {
        uint64_t count;
        (void)!::read(wake_fd_.get(), &count, sizeof(count));
        continue;
      }
      HandleInitExit(events[i].data.u64);
    }
    if (stopping_.load()) break;
    ExpireDue();
  }
}

void Manager::HandleInitExit(uint64_t token) {
  std::shared_ptr<Record> record;
  {
    absl::MutexLock lock(&mu_);
    auto it = watch_tokens_.find(token);
    if (it == watch_tokens_.end()) return;  // destroyed in the meantime
    auto rec = registry_.find(it->second);
    watch_tokens_.erase(it);
    if (rec == registry_.end()) return;
    record = rec->second;
    record->watch_token = 0;
    if (record->state != SandboxState::kRunning) return;
    record->state = SandboxState::kDead;
    if (record->pooled) pool_wake_.Signal();  // the filler discards it
  }
  Log().warn("sandbox {}: its init (pid {}) died; sandbox is DEAD until destroyed",
             record->id, record->pid);
  absl::MutexLock op_lock(&record->op_mu);
  if (record->process.pidfd.valid()) {
    ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, record->process.pidfd.get(), nullptr);
    engine::ReapSandboxProcess(record->process);
    record->process = engine::SandboxProcess();
  }
  // The kernel killed its pid namespace with the init; processes that
  // escaped it (none should) are reclaimed here.
  if (record->cgroup) {
    absl::Status s = record->cgroup->KillAll(options_.kill_timeout_ms);
    if (!s.ok()) {
      Log().error("sandbox {}: reclaiming processes of a dead sandbox: {}", record->id,
                  s.ToString());
    }
  }
}

void Manager::ExpireDue() {
  std::vector<std::pair<std::string, std::string>> expired;  // tenant, id
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, record] : registry_) {
      if (record->expires_at && *record->expires_at <= now &&
          (record->state == SandboxState::kRunning || record->state == SandboxState::kDead)) {
        expired.emplace_back(record->tenant, id);
      }
    }
  }
  for (const auto& [tenant, id] : expired) {
    Log().info("sandbox {}: TTL expired, destroying", id);
    absl::StatusOr<bool> destroyed = DestroySandbox(tenant, id);
    if (!destroyed.ok()) {
      // Destroy logged it; the record is DEAD and expired, so we retry on
      // the next wake-up. Avoid spinning on a persistent failure.
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
}

}  // namespace sbx::manager
