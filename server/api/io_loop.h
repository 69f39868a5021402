// One event-loop thread shared by every Exec stream of the daemon: it pumps
// the commands' pipes, pty masters and control sockets, and runs work posted
// by gRPC reactions, so that no thread exists per sandbox or per exec.
//
// Registrations are one-shot (EPOLLONESHOT, level-triggered): after an
// event the fd stays disabled until Modify re-arms it, so a handler decides
// when it wants more. Handlers, timers and posted tasks run on the loop
// thread, one at a time.
//
// Thread-safety: Post may be called from any thread. Everything else must be
// called on the loop thread (from a handler, a timer or a posted task).
#ifndef SBX_SERVER_API_IO_LOOP_H_
#define SBX_SERVER_API_IO_LOOP_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/unique_fd.h"

namespace sbx::api {

class IoLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;
  using Task = absl::AnyInvocable<void()>;

  // Starts the loop thread.
  static absl::StatusOr<std::unique_ptr<IoLoop>> Start();

  // Stops the thread and drops tasks not run yet. Owners of registrations
  // must have removed them (or be gone with the tasks) by then.
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  // Runs `task` on the loop thread soon. Any thread.
  void Post(Task task);

  // Watches `fd` (not owned; keep it open until Remove) for `events`
  // (EPOLLIN / EPOLLOUT; 0 = registered but disabled). Returns an id, never 0.
  absl::StatusOr<uint64_t> Add(int fd, uint32_t events, Handler handler);
  // Re-arms a registration with `events` (0 disables it).
  absl::Status Modify(uint64_t id, uint32_t events);
  // Forgets a registration; its handler is not called again, even for an
  // event already taken from the kernel.
  void Remove(uint64_t id);

  // Runs `task` once at `deadline` unless cancelled. Returns an id, never 0.
  uint64_t AddTimer(absl::Time deadline, Task task);
  void CancelTimer(uint64_t id);

  bool InLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct Registration {
    int fd;
    std::shared_ptr<Handler> handler;
    // Whether the fd is in the epoll set. A disabled registration is kept
    // out of it: epoll reports EPOLLHUP and EPOLLERR whatever the mask, so a
    // hung-up pipe "disabled" with an empty mask would fire forever.
    bool in_epoll;
  };
  absl::Status Arm(Registration& registration, uint64_t id, uint32_t events);

  IoLoop() = default;
  void Run();
  void Wake();
  int TimeoutMs() const;
  void RunTasks();
  void RunTimers();

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<Task> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Loop thread only.
  uint64_t next_id_ = 1;
  std::map<uint64_t, Registration> registrations_;
  std::set<std::pair<absl::Time, uint64_t>> timer_order_;
  std::map<uint64_t, std::pair<absl::Time, Task>> timers_;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_IO_LOOP_H_
