#include "server/manager/task_queue.h"

#include <pthread.h>
#include <signal.h>

#include <utility>

#include "server/common/thread_name.h"

namespace sbx::manager {

void TaskQueue::Start() {
  for (int i = 0; i < thread_count_; ++i) {
    threads_.emplace_back([this] { Loop(); });
    NameThread(threads_.back(), name_);
  }
}

void TaskQueue::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    wake_.SignalAll();
  }
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

bool TaskQueue::stopping() {
  absl::MutexLock lock(&mu_);
  return stop_;
}

void TaskQueue::Post(std::function<void()> task, absl::Time when) {
  {
    absl::MutexLock lock(&mu_);
    if (!stop_) {
      tasks_.emplace(when, std::move(task));
      wake_.Signal();
      return;
    }
  }
  task();  // stopping (or stopped): nobody else will run it
}

void TaskQueue::Loop() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);  // signals are the main thread's
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      while (!stop_ && (tasks_.empty() || tasks_.begin()->first > absl::Now())) {
        if (tasks_.empty()) {
          wake_.Wait(&mu_);
        } else {
          wake_.WaitWithDeadline(&mu_, tasks_.begin()->first);
        }
      }
      if (stop_ && tasks_.empty()) return;
      task = std::move(tasks_.begin()->second);
      tasks_.erase(tasks_.begin());
    }
    task();
  }
}

}  // namespace sbx::manager
