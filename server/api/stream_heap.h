// sbxd's heap while streams run.
//
// Exec and file streams move messages of up to 256 KiB through gRPC's
// buffers. With glibc's defaults each one freed at the top of a heap is
// handed back to the kernel (trim threshold 128 KiB) and the next is faulted
// in, zeroed: about a third of the cpu of a stdin stream. So sbxd keeps up
// to 16 MiB of free memory per heap, and hands what is free back a second
// after the last stream has ended, so that an idle sbxd holds no more than
// before.
#ifndef SBX_SERVER_API_STREAM_HEAP_H_
#define SBX_SERVER_API_STREAM_HEAP_H_

namespace sbx::api {

// Sets the heap's thresholds and starts the thread that trims it. Call
// once, first thing in main(); without it, the heap is never trimmed.
void TuneHeapForStreams();

// Held for the life of every streaming call.
class StreamHeapUse {
 public:
  StreamHeapUse();
  ~StreamHeapUse();  // the last one out has the heap trimmed a second later
  StreamHeapUse(const StreamHeapUse&) = delete;
  StreamHeapUse& operator=(const StreamHeapUse&) = delete;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_STREAM_HEAP_H_
