#include "server/api/stream_heap.h"

#include <malloc.h>

#include <atomic>

namespace sbx::api {
namespace {

std::atomic<int> g_streams{0};

}  // namespace

void TuneHeapForStreams() {
  // Messages stay below the mmap threshold (a fixed one: glibc's adaptive
  // threshold would otherwise rise with them), on the heaps kept below.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 16 << 20);
}

StreamHeapUse::StreamHeapUse() { g_streams.fetch_add(1, std::memory_order_relaxed); }

StreamHeapUse::~StreamHeapUse() {
  // A stream starting meanwhile only finds its first buffers to fault in.
  if (g_streams.fetch_sub(1, std::memory_order_acq_rel) == 1) ::malloc_trim(0);
}

}  // namespace sbx::api
