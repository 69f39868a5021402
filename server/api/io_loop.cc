#include "server/api/io_loop.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "server/api/log.h"
#include "server/common/status.h"
#include "server/common/thread_name.h"

namespace sbx::api {
namespace {

constexpr uint64_t kWakeId = 0;
constexpr int kMaxEvents = 128;

}  // namespace

absl::StatusOr<std::unique_ptr<IoLoop>> IoLoop::Start() {
  std::unique_ptr<IoLoop> loop(new IoLoop());
  loop->epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!loop->epoll_fd_) return ErrnoStatus(errno, "creating the exec loop's epoll");
  loop->wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!loop->wake_fd_) return ErrnoStatus(errno, "creating the exec loop's eventfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeId;
  if (::epoll_ctl(loop->epoll_fd_.get(), EPOLL_CTL_ADD, loop->wake_fd_.get(), &ev) != 0) {
    return ErrnoStatus(errno, "watching the exec loop's eventfd");
  }
  loop->thread_ = std::thread([l = loop.get()] { l->Run(); });
  NameThread(loop->thread_, "sbxd-io");
  return loop;
}

IoLoop::~IoLoop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  Wake();
  if (thread_.joinable()) thread_.join();
  // Tasks not run may own the last reference to a session, whose destructor
  // unregisters from this loop: drop them while the loop is still whole.
  std::vector<Task> tasks;
  {
    absl::MutexLock lock(&mu_);
    tasks.swap(tasks_);
  }
  tasks.clear();
  timers_.clear();
  timer_order_.clear();
}

void IoLoop::Post(Task task) {
  bool was_empty;
  {
    absl::MutexLock lock(&mu_);
    was_empty = tasks_.empty();
    tasks_.push_back(std::move(task));
  }
  if (was_empty) Wake();
}

void IoLoop::Wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is saturated: a wake-up is pending anyway.
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

absl::StatusOr<uint64_t> IoLoop::Add(int fd, uint32_t events, Handler handler) {
  const uint64_t id = next_id_++;
  Registration registration{fd, std::make_shared<Handler>(std::move(handler)), false};
  RETURN_IF_ERROR(Arm(registration, id, events));
  registrations_[id] = std::move(registration);
  return id;
}

absl::Status IoLoop::Modify(uint64_t id, uint32_t events) {
  auto it = registrations_.find(id);
  if (it == registrations_.end()) return absl::NotFoundError("no such registration");
  return Arm(it->second, id, events);
}

absl::Status IoLoop::Arm(Registration& registration, uint64_t id, uint32_t events) {
  if (events == 0) {
    if (registration.in_epoll &&
        ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, registration.fd, nullptr) != 0) {
      return ErrnoStatus(errno, "disabling an fd in the exec loop");
    }
    registration.in_epoll = false;
    return absl::OkStatus();
  }
  epoll_event ev{};
  ev.events = events | EPOLLONESHOT;
  ev.data.u64 = id;
  const int op = registration.in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (::epoll_ctl(epoll_fd_.get(), op, registration.fd, &ev) != 0) {
    return ErrnoStatus(errno, "arming an fd in the exec loop");
  }
  registration.in_epoll = true;
  return absl::OkStatus();
}

void IoLoop::Remove(uint64_t id) {
  auto it = registrations_.find(id);
  if (it == registrations_.end()) return;
  if (it->second.in_epoll) ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  registrations_.erase(it);
}

uint64_t IoLoop::AddTimer(absl::Time deadline, Task task) {
  const uint64_t id = next_id_++;
  timer_order_.emplace(deadline, id);
  timers_.emplace(id, std::make_pair(deadline, std::move(task)));
  return id;
}

void IoLoop::CancelTimer(uint64_t id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  timer_order_.erase({it->second.first, id});
  timers_.erase(it);
}

int IoLoop::TimeoutMs() const {
  if (timer_order_.empty()) return -1;
  absl::Duration wait = timer_order_.begin()->first - absl::Now();
  if (wait <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(wait) + 1, INT_MAX));
}

void IoLoop::RunTasks() {
  std::vector<Task> tasks;
  {
    absl::MutexLock lock(&mu_);
    tasks.swap(tasks_);
  }
  for (Task& task : tasks) task();
}

void IoLoop::RunTimers() {
  const absl::Time now = absl::Now();
  while (!timer_order_.empty() && timer_order_.begin()->first <= now) {
    const uint64_t id = timer_order_.begin()->second;
    timer_order_.erase(timer_order_.begin());
    auto it = timers_.find(id);
    Task task = std::move(it->second.second);
    timers_.erase(it);
    task();
  }
}

void IoLoop::Run() {
  // Signals are sbxd's main thread's business.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);

  epoll_event events[kMaxEvents];
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    int n = ::epoll_wait(epoll_fd_.get(), events, kMaxEvents, TimeoutMs());
    if (n < 0) {
      const int err = errno;  // before Log(), whose first use may change errno
      if (err == EINTR) continue;
      Log().critical("exec loop: {}", ErrnoStatus(err, "epoll_wait").ToString());
      std::abort();  // every exec stream would hang; better to restart sbxd
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t id = events[i].data.u64;
      if (id == kWakeId) {
        uint64_t count;
        (void)!::read(wake_fd_.get(), &count, sizeof(count));
        continue;
      }
      auto it = registrations_.find(id);
      if (it == registrations_.end()) continue;  // removed by an earlier handler
      std::shared_ptr<Handler> handler = it->second.handler;  // may remove itself
      (*handler)(events[i].events);
    }
    RunTimers();
    RunTasks();
  }
}

}  // namespace sbx::api
