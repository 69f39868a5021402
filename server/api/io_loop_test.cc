#include "server/api/io_loop.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>

#include "absl/synchronization/notification.h"

namespace sbx::api {
namespace {

TEST(IoLoopTest, RunsPostedTasksOnItsThread) {
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  absl::Notification done;
  bool on_loop = false;
  (*loop)->Post([&] {
    on_loop = (*loop)->InLoopThread();
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_TRUE(on_loop);
}

TEST(IoLoopTest, OneShotUntilRearmed) {
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  std::atomic<int> calls{0};
  absl::Notification first, second;
  uint64_t id = 0;
  (*loop)->Post([&] {
    auto added = (*loop)->Add(p[0], EPOLLIN, [&](uint32_t events) {
      int n = ++calls;
      if (n == 1) {
        first.Notify();  // not drained, not re-armed: no second call yet
      } else if (n == 2) {
        char buf[8];
        (void)!read(p[0], buf, sizeof(buf));
        (*loop)->Remove(id);
        second.Notify();
      }
    });
    ASSERT_TRUE(added.ok());
    id = *added;
  });
  ASSERT_EQ(write(p[1], "x", 1), 1);
  ASSERT_TRUE(first.WaitForNotificationWithTimeout(absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(calls.load(), 1);
  (*loop)->Post([&] { ASSERT_TRUE((*loop)->Modify(id, EPOLLIN).ok()); });
  ASSERT_TRUE(second.WaitForNotificationWithTimeout(absl::Seconds(5)));
  close(p[0]);
  close(p[1]);
}

TEST(IoLoopTest, TimersFireInOrderAndCancel) {
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  std::vector<int> order;
  absl::Notification done;
  (*loop)->Post([&] {
    const absl::Time now = absl::Now();
    (*loop)->AddTimer(now + absl::Milliseconds(30), [&] {
      order.push_back(2);
      done.Notify();
    });
    (*loop)->AddTimer(now + absl::Milliseconds(10), [&] { order.push_back(1); });
    uint64_t cancelled = (*loop)->AddTimer(now + absl::Milliseconds(20), [&] {
      order.push_back(99);
    });
    (*loop)->CancelTimer(cancelled);
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// A pipe whose writer is gone reports EPOLLHUP whatever the mask; a
// registration disabled with 0 (output paused for a slow client) must stay
// quiet until re-armed, not spin the loop.
TEST(IoLoopTest, DisabledHungUpPipeStaysQuiet) {
  auto loop = IoLoop::Start();
  ASSERT_TRUE(loop.ok());
  int p[2];
  ASSERT_EQ(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  std::atomic<int> calls{0};
  absl::Notification first, rearmed;
  uint64_t id = 0;
  (*loop)->Post([&] {
    auto added = (*loop)->Add(p[0], EPOLLIN, [&](uint32_t events) {
      if (++calls == 1) {
        EXPECT_TRUE((*loop)->Modify(id, 0).ok());
        first.Notify();
      } else {
        rearmed.Notify();
      }
    });
    ASSERT_TRUE(added.ok());
    id = *added;
  });
  close(p[1]);  // hang up
  ASSERT_TRUE(first.WaitForNotificationWithTimeout(absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(calls.load(), 1) << "a disabled registration fired again";
  (*loop)->Post([&] { ASSERT_TRUE((*loop)->Modify(id, EPOLLIN).ok()); });
  ASSERT_TRUE(rearmed.WaitForNotificationWithTimeout(absl::Seconds(5)));
  // Closed only once the loop has let go of it: a sleep orders nothing.
  absl::Notification removed;
  (*loop)->Post([&] {
    (*loop)->Remove(id);
    removed.Notify();
  });
  ASSERT_TRUE(removed.WaitForNotificationWithTimeout(absl::Seconds(5)));
  close(p[0]);
}

}  // namespace
}  // namespace sbx::api
