// sbxd's Prometheus metrics, served over HTTP at /metrics on
// metrics_listen (prometheus-cpp's pull exposer) when that is set.
//
// One process-wide Metrics (Global()): the handlers, the Exec sessions and
// the RPC interceptor count into it from any thread (prometheus-cpp's
// metrics are atomic). Gauges that describe the manager's state (sandboxes
// by state, warm pool level) are read from the manager at scrape time.
#ifndef SBX_SERVER_API_METRICS_H_
#define SBX_SERVER_API_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "sbx/v1/sandbox.pb.h"
#include "server/manager/manager.h"

namespace prometheus {
class Exposer;
}

namespace sbx::api {

class Metrics {
 public:
  static Metrics& Global();

  // Serves /metrics on `address` (HOST:PORT), reading the state gauges from
  // `manager` until StopServing, which must come before the manager goes
  // (and is for process exit: the HTTP server is left to die with sbxd).
  // UNAVAILABLE when the address cannot be bound.
  absl::Status Serve(const std::string& address, manager::Manager& manager);
  void StopServing();

  void SandboxCreated() { created_.Increment(); }
  void SandboxDestroyed() { destroyed_.Increment(); }
  // A command ran to its exit (Exec): its verdict, wall time and OOM kills.
  void ExecFinished(v1::Verdict verdict, int64_t wall_us, int64_t oom_kills);
  // An RPC ended with a non-OK code.
  void RpcError(const std::string& method, const std::string& code);

 private:
  Metrics();

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& created_;
  prometheus::Counter& destroyed_;
  prometheus::Counter& execs_;
  prometheus::Histogram& exec_seconds_;
  prometheus::Counter& oom_kills_;
  prometheus::Family<prometheus::Counter>& limit_hits_;
  prometheus::Family<prometheus::Counter>& rpc_errors_;
  std::shared_ptr<prometheus::Collectable> state_collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_METRICS_H_
