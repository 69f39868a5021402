// The judge's one-shot Run: a fresh sandbox, the request's files, one
// compile, N cases, an optional checker; the sandbox is destroyed after,
// whatever happened.
//
// Threading: a Run lasts as long as its commands do, so it never runs on a
// gRPC callback thread. The handler checks the request's shape there and
// hands the job to a RunPool: a small fixed set of worker threads, each
// running one job at a time (run_exec.h pumps each command on the worker).
// A full queue is RESOURCE_EXHAUSTED at once rather than an unbounded wait.
#ifndef SBX_SERVER_API_RUN_H_
#define SBX_SERVER_API_RUN_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "sbx/v1/sandbox.pb.h"
#include "server/manager/manager.h"

namespace sbx::api {

// A fixed pool of worker threads with a bounded queue. Thread-safe.
class RunPool {
 public:
  using Job = absl::AnyInvocable<void() &&>;

  // `threads` workers (at least 1); at most `max_queued` jobs wait. `what`
  // names the jobs in errors ("runs": "too many runs waiting").
  // `thread_name` names the workers (15 characters at most are kept).
  RunPool(int threads, size_t max_queued, std::string what = "runs",
          const std::string& thread_name = "sbxd-run");
  // Runs the jobs already queued, then joins the workers.
  ~RunPool();
  RunPool(const RunPool&) = delete;
  RunPool& operator=(const RunPool&) = delete;

  // Queues `job`; RESOURCE_EXHAUSTED (the job is dropped) when the queue is
  // full.
  absl::Status Submit(Job job);

  // The default size: 2..8 workers by the number of cpus.
  static int DefaultThreads();

 private:
  void Work();

  const size_t max_queued_;
  const std::string what_;
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

// Serves one Run call: checks the request, queues the job on `pool`; the
// job fills `response` and finishes the returned reactor. The ephemeral
// sandbox belongs to `tenant`.
grpc::ServerUnaryReactor* StartRun(manager::Manager& manager, RunPool& pool,
                                   const std::string& tenant,
                                   grpc::CallbackServerContext* context,
                                   const v1::RunRequest* request, v1::RunResponse* response);

// Compares a program's output with the expected one under `mode`.
bool OutputMatches(const std::string& actual, const std::string& expected,
                   v1::CompareMode mode);

}  // namespace sbx::api

#endif  // SBX_SERVER_API_RUN_H_
