#include "server/api/stream_heap.h"

#include <malloc.h>
#include <signal.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/common/thread_name.h"

namespace sbx::api {
namespace {

using Clock = std::chrono::steady_clock;

// How long the heap stays as it is after the last stream ended: a client
// that runs command after command keeps its buffers warm, and an idle sbxd
// gives them back within a second. The trim walks every arena, so it runs
// on a thread of its own, not on the thread that ended the stream.
constexpr auto kTrimDelay = std::chrono::seconds(1);

struct Trimmer {
  std::mutex mu;
  std::condition_variable cv;
  int streams = 0;
  bool owed = false;  // streams ended since the last trim
  Clock::time_point last_end;
};

// Never destroyed: its thread runs until the process ends.
Trimmer& TheTrimmer() {
  static Trimmer* trimmer = new Trimmer;
  return *trimmer;
}

[[noreturn]] void TrimWhenIdle(Trimmer& t) {
  // sbxd takes SIGTERM and SIGINT with sigwait on its main thread; a thread
  // that left them unblocked could be handed them, and die of them.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  std::unique_lock<std::mutex> lock(t.mu);
  for (;;) {
    t.cv.wait(lock, [&] { return t.owed && t.streams == 0; });
    const Clock::time_point due = t.last_end + kTrimDelay;
    if (Clock::now() < due) {
      t.cv.wait_until(lock, due);  // a stream that starts meanwhile wakes it
      continue;
    }
    t.owed = false;
    lock.unlock();
    ::malloc_trim(0);
    lock.lock();
  }
}

}  // namespace

void TuneHeapForStreams() {
  // Messages stay below the mmap threshold (a fixed one: glibc's adaptive
  // threshold would otherwise rise with them), on the heaps kept below.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 16 << 20);
  std::thread trimmer(TrimWhenIdle, std::ref(TheTrimmer()));
  NameThread(trimmer, "sbxd-trim");
  trimmer.detach();
}

StreamHeapUse::StreamHeapUse() {
  Trimmer& t = TheTrimmer();
  std::lock_guard<std::mutex> lock(t.mu);
  ++t.streams;
}

StreamHeapUse::~StreamHeapUse() {
  Trimmer& t = TheTrimmer();
  std::lock_guard<std::mutex> lock(t.mu);
  if (--t.streams > 0) return;
  t.owed = true;
  t.last_end = Clock::now();
  t.cv.notify_one();
}

}  // namespace sbx::api
