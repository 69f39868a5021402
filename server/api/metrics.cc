#include "server/api/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <exception>

#include "absl/synchronization/mutex.h"

#include "absl/strings/str_cat.h"
#include "server/api/log.h"

namespace sbx::api {
namespace {

// The limit a verdict says was hit, "" for verdicts that are no limit.
const char* LimitKind(v1::Verdict verdict) {
  switch (verdict) {
    case v1::VERDICT_TIME_LIMIT: return "cpu_time";
    case v1::VERDICT_WALL_TIME_LIMIT: return "wall_time";
    case v1::VERDICT_MEMORY_LIMIT: return "memory";
    case v1::VERDICT_OUTPUT_LIMIT: return "output";
    default: return "";
  }
}

// sbx_sandboxes{state} and sbx_pool_ready, read from the manager per scrape.
class StateCollector final : public prometheus::Collectable {
 public:
  explicit StateCollector(manager::Manager& manager) : manager_(&manager) {}

  // After this no scrape touches the manager (it may be destroyed).
  void Detach() {
    absl::MutexLock lock(&mu_);
    manager_ = nullptr;
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    if (manager_ == nullptr) return {};
    prometheus::MetricFamily sandboxes{"sbx_sandboxes", "Sandboxes by state (all tenants)",
                                       prometheus::MetricType::Gauge, {}};
    const std::map<manager::SandboxState, int> counts = manager_->CountByState();
    for (manager::SandboxState state :
         {manager::SandboxState::kCreating, manager::SandboxState::kRunning,
          manager::SandboxState::kDead, manager::SandboxState::kDestroying}) {
      prometheus::ClientMetric m;
      m.label.push_back({"state", manager::SandboxStateName(state)});
      auto it = counts.find(state);
      m.gauge.value = it == counts.end() ? 0 : it->second;
      sandboxes.metric.push_back(std::move(m));
    }
    prometheus::MetricFamily pool{"sbx_pool_ready", "Ready sandboxes in the warm pool",
                                  prometheus::MetricType::Gauge, {}};
    prometheus::ClientMetric level;
    level.gauge.value = manager_->PoolLevel();
    pool.metric.push_back(std::move(level));
    return {std::move(sandboxes), std::move(pool)};
  }

 private:
  mutable absl::Mutex mu_;
  manager::Manager* manager_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

Metrics& Metrics::Global() {
  static Metrics* metrics = new Metrics();  // never destroyed: used until exit
  return *metrics;
}

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      created_(prometheus::BuildCounter()
                   .Name("sbx_sandboxes_created_total")
                   .Help("Sandboxes created (CreateSandbox and Run)")
                   .Register(*registry_)
                   .Add({})),
      destroyed_(prometheus::BuildCounter()
                     .Name("sbx_sandboxes_destroyed_total")
                     .Help("Sandboxes destroyed by DestroySandbox and Run")
                     .Register(*registry_)
                     .Add({})),
      execs_(prometheus::BuildCounter()
                 .Name("sbx_execs_total")
                 .Help("Commands run to their exit by Exec")
                 .Register(*registry_)
                 .Add({})),
      exec_seconds_(prometheus::BuildHistogram()
                        .Name("sbx_exec_duration_seconds")
                        .Help("Wall time of a command from its start to its exit")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{
                                     0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                     30, 60, 300})),
      oom_kills_(prometheus::BuildCounter()
                     .Name("sbx_oom_kills_total")
                     .Help("Processes killed by the OOM killer in commands' cgroups")
                     .Register(*registry_)
                     .Add({})),
      limit_hits_(prometheus::BuildCounter()
                      .Name("sbx_limit_hits_total")
                      .Help("Commands stopped by a limit, by kind (verdict)")
                      .Register(*registry_)),
      rpc_errors_(prometheus::BuildCounter()
                      .Name("sbx_rpc_errors_total")
                      .Help("RPCs that ended with a non-OK status, by method and code")
                      .Register(*registry_)) {}

absl::Status Metrics::Serve(const std::string& address, manager::Manager& manager) {
  state_collector_ = std::make_shared<StateCollector>(manager);
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics_listen: cannot serve on ", address, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(state_collector_);
  return absl::OkStatus();
}

void Metrics::StopServing() {
  if (state_collector_) static_cast<StateCollector&>(*state_collector_).Detach();
  // The exposer is deliberately not destroyed: civetweb takes ~2 s to join
  // its threads, which would hold up every SIGTERM, and sbxd exits right
  // after this. It stays owned by this object, which lives (reachable, not
  // leaked) for the whole process, as does the registry (Global()).
}

void Metrics::ExecFinished(v1::Verdict verdict, int64_t wall_us, int64_t oom_kills) {
  execs_.Increment();
  exec_seconds_.Observe(static_cast<double>(wall_us) / 1e6);
  if (oom_kills > 0) oom_kills_.Increment(static_cast<double>(oom_kills));
  if (const char* kind = LimitKind(verdict); *kind != '\0') {
    limit_hits_.Add({{"kind", kind}}).Increment();
  }
}

void Metrics::RpcError(const std::string& method, const std::string& code) {
  rpc_errors_.Add({{"method", method}, {"code", code}}).Increment();
}

}  // namespace sbx::api
