#include "server/manager/task_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"

namespace sbx::manager {
namespace {

TEST(TaskQueueTest, RunsTasksInDueOrderThenPostedOrder) {
  TaskQueue queue("test-queue");
  absl::Mutex mu;
  std::vector<int> ran;
  auto record = [&](int n) {
    return [&, n] {
      absl::MutexLock lock(&mu);
      ran.push_back(n);
    };
  };
  const absl::Time now = absl::Now();
  // Posted before the thread starts, so that none has run yet.
  queue.Post(record(3), now + absl::Milliseconds(60));
  queue.Post(record(1));
  queue.Post(record(2));
  queue.Post(record(4), now + absl::Milliseconds(90));
  queue.Start();
  absl::Notification done;
  queue.Post([&] { done.Notify(); }, now + absl::Milliseconds(120));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now(), now + absl::Milliseconds(120)) << "a task ran before it was due";
  absl::MutexLock lock(&mu);
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3, 4}));
}

TEST(TaskQueueTest, StopRunsWhatIsLeftAndLaterTasksInline) {
  TaskQueue queue("test-queue");
  queue.Start();
  int due_later = 0;
  queue.Post([&] { ++due_later; }, absl::Now() + absl::Hours(1));
  queue.Stop();
  EXPECT_EQ(due_later, 1) << "Stop left a task behind";
  EXPECT_TRUE(queue.stopping());
  const std::thread::id caller = std::this_thread::get_id();
  std::thread::id ran_on;
  queue.Post([&] { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, caller);
}

// Two tasks that each wait for the other finish only when they run side by
// side: with one thread this would time out.
TEST(TaskQueueTest, ThreadsRunTasksSideBySide) {
  TaskQueue queue("test-queue", 2);
  queue.Start();
  absl::Notification first_running, second_running;
  std::atomic<int> met{0};
  queue.Post([&] {
    first_running.Notify();
    if (second_running.WaitForNotificationWithTimeout(absl::Seconds(10))) ++met;
  });
  queue.Post([&] {
    second_running.Notify();
    if (first_running.WaitForNotificationWithTimeout(absl::Seconds(10))) ++met;
  });
  queue.Stop();
  EXPECT_EQ(met.load(), 2);
}

}  // namespace
}  // namespace sbx::manager
