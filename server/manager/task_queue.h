// Threads that run tasks at or after their due time, earliest first (in
// the order posted among equal times; with more than one thread, side by
// side). The manager keeps two: the worker, one thread for the work that
// keeps sandboxes fast (spares, command leaves), and the teardown, four
// threads for what a Destroy leaves: releasing a sandbox's mounts waits for
// an RCU grace period, and releases that overlap share one.
#ifndef SBX_SERVER_MANAGER_TASK_QUEUE_H_
#define SBX_SERVER_MANAGER_TASK_QUEUE_H_

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sbx::manager {

class TaskQueue {
 public:
  // `name` names the threads (15 characters at most are kept); `threads`
  // run tasks side by side (one runs them in due order).
  explicit TaskQueue(std::string name, int threads = 1)
      : name_(std::move(name)), thread_count_(threads) {}
  ~TaskQueue() { Stop(); }
  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  void Start();
  // Runs what is left once, due or not, and stops; later tasks run inline,
  // on the caller's thread.
  void Stop();
  // Runs `task` on one of the queue's threads at `when` or later.
  void Post(std::function<void()> task, absl::Time when = absl::InfinitePast());
  bool stopping();

 private:
  void Loop();

  const std::string name_;
  const int thread_count_;
  absl::Mutex mu_;
  absl::CondVar wake_;  // a task posted, or stop
  std::multimap<absl::Time, std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_TASK_QUEUE_H_
