// The ordering gRPC gives a callback reactor, made visible to
// ThreadSanitizer.
//
// gRPC runs a reaction (OnReadDone, OnWriteDone, OnCancel, OnDone) on one of
// its own threads, only after the operation it answers was started
// (StartRead, StartWrite, Finish), so whatever the reactor did before it
// started the operation happened before the reaction. That ordering is made
// inside gRPC's core, which Debian does not build with TSan: part of it
// (lock-free hand-offs between gRPC's threads) is invisible to TSan, which
// then reports the reaction's first look at the reactor (e.g. a member the
// constructor set) as a race. These two calls state the ordering at the
// points sbx relies on it: BeforeGrpcOp just before starting an operation,
// InReaction first thing in a reaction. Without TSan they compile to nothing.
// RefusingReactor, below, is the reactor of every streaming call turned away
// before it starts (by authentication, or during shutdown), marked so.
#ifndef SBX_SERVER_API_REACTOR_ORDER_H_
#define SBX_SERVER_API_REACTOR_ORDER_H_

#if defined(__SANITIZE_THREAD__)
#define SBX_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SBX_TSAN 1
#endif
#endif

#include <grpcpp/grpcpp.h>

#ifdef SBX_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace sbx::api {

// Everything this thread did so far happens before the reaction that
// answers the operation it is about to start on `reactor`.
inline void BeforeGrpcOp(const void* reactor) {
#ifdef SBX_TSAN
  __tsan_release(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

// First thing in a reaction of `reactor`.
inline void InReaction(const void* reactor) {
#ifdef SBX_TSAN
  __tsan_acquire(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

// A streaming call refused before it starts: the reactor only finishes it
// with `status` (gRPC holds the Finish until the reactor is bound) and
// deletes itself when gRPC is done with it. `Base` is one of gRPC's server
// reactor types, e.g. grpc::ServerReadReactor<Request>.
template <typename Base>
class RefusingReactor final : public Base {
 public:
  explicit RefusingReactor(const grpc::Status& status) {
    BeforeGrpcOp(this);
    this->Finish(status);
  }
  void OnDone() override {
    InReaction(this);
    delete this;
  }
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_REACTOR_ORDER_H_
