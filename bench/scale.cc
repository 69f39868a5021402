// Scale rows: many idle sandboxes at once (errors, host memory per sandbox,
// time to destroy them), and sbxd's responsiveness to a health check while
// many clients run execs.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include <grpcpp/generic/generic_stub.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/host.h"
#include "bench/rpc.h"
#include "bench/scenarios.h"

namespace sbx::bench {

namespace {

using Clock = std::chrono::steady_clock;

// Runs `work(i)` for i in [0, n) on `threads` threads.
void ParallelFor(int n, int threads, const std::function<void(int)>& work) {
  std::atomic<int> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      for (int i = next++; i < n && !g_interrupted; i = next++) work(i);
    });
  }
  for (std::thread& t : pool) t.join();
}

// Latency samples and failures collected from several threads.
struct Collector {
  std::mutex mu;
  std::vector<double> ms;
  int failures = 0;
  std::string last_error;
  void Add(bool ok, double sample, const std::string& error) {
    std::lock_guard<std::mutex> lock(mu);
    if (ok) {
      ms.push_back(sample);
    } else {
      ++failures;
      last_error = error;
    }
  }
};

// Creates `n` sandboxes on `threads` threads; ids of those created.
std::vector<std::string> CreateMany(Stub& stub, int n, int threads, Collector& latency) {
  std::vector<std::string> ids(n);
  ParallelFor(n, threads, [&](int i) {
    v1::Sandbox box;
    const auto start = Clock::now();
    grpc::Status s = CreateSandbox(stub, &box);
    latency.Add(s.ok(), MsSince(start), StatusText(s));
    if (s.ok()) ids[i] = box.id();
  });
  ids.erase(std::remove(ids.begin(), ids.end(), ""), ids.end());
  return ids;
}

void DestroyMany(Stub& stub, const std::vector<std::string>& ids, int threads,
                 Collector& latency) {
  ParallelFor(static_cast<int>(ids.size()), threads, [&](int i) {
    const auto start = Clock::now();
    grpc::Status s = DestroySandbox(stub, ids[i]);
    latency.Add(s.ok(), MsSince(start), StatusText(s));
  });
}

// RSS of sbxd plus its direct children that are not sandbox processes (the
// spawner helper), in KiB.
int64_t DaemonSideRssKb(pid_t sbxd, const std::set<pid_t>& sandbox_pids) {
  int64_t kb = RssKb(sbxd);
  for (pid_t child : Children(sbxd)) {
    if (sandbox_pids.count(child) == 0) kb += RssKb(child);
  }
  return kb;
}

std::set<pid_t> SandboxPids(const std::string& memory_dir) {
  std::vector<pid_t> pids = CgroupProcs(memory_dir);
  return std::set<pid_t>(pids.begin(), pids.end());
}

Row Single(const std::string& key, const std::string& what, const std::string& unit, double v) {
  Row row(key, what);
  row.value = MakeSeries(what, unit, {v});
  return row;
}

}  // namespace

std::vector<Row> RunIdle(const Context& ctx) {
  const int n = ctx.options.idle;
  const int threads = ctx.options.idle_threads;
  Stub& stub = ctx.daemon.stub();
  const pid_t sbxd = ctx.daemon.pid();
  const std::string memory_dir = ctx.daemon.MemoryCgroupDir();
  const int64_t daemon_before = DaemonSideRssKb(sbxd, SandboxPids(memory_dir));

  Collector create;
  const auto t0 = Clock::now();
  std::vector<std::string> ids = CreateMany(stub, n, threads, create);
  const double create_s = MsSince(t0) / 1000;

  const std::set<pid_t> pids = SandboxPids(memory_dir);
  int64_t pss_kb = 0;
  for (pid_t p : pids) pss_kb += PssKb(p);
  const int64_t daemon_growth = DaemonSideRssKb(sbxd, pids) - daemon_before;
  const size_t created = ids.size();

  Collector destroy;
  const auto t1 = Clock::now();
  DestroyMany(stub, ids, threads, destroy);
  const double destroy_s = MsSince(t1) / 1000;

  std::vector<Row> rows;
  Row c("idle_create", absl::StrCat(n, " idle: CreateSandbox each (", threads, " threads)"));
  if (!create.ms.empty()) c.value = MakeSeries("CreateSandbox under concurrency", "ms", create.ms);
  c.goal = "0 errors";
  c.met = create.failures == 0 && static_cast<int>(created) == n ? "yes" : "no";
  c.note = absl::StrFormat("%zu of %d created in %.2f s (%.0f/s), %d errors%s", created, n,
                           create_s, created / std::max(create_s, 1e-9), create.failures,
                           create.failures ? ", last: " + create.last_error : "");
  rows.push_back(std::move(c));

  if (created > 0) {
    const double per_kib =
        static_cast<double>(pss_kb + std::max<int64_t>(daemon_growth, 0)) / created;
    Row m = Single("idle_memory", absl::StrCat(n, " idle: added host memory per sandbox"), "KiB",
                   per_kib);
    m.goal = "<=512 KiB";
    m.met = per_kib <= 512 ? "yes" : "no";
    m.note = absl::StrFormat(
        "PSS of %zu sandbox processes %.1f MiB (%.1f per sandbox) + sbxd/spawner RSS growth "
        "%.1f MiB, over %zu sandboxes",
        pids.size(), pss_kb / 1024.0, static_cast<double>(pids.size()) / created,
        daemon_growth / 1024.0, created);
    rows.push_back(std::move(m));
  }
  Row d = Single("idle_destroy", absl::StrCat(n, " idle: destroy all (", threads, " threads)"),
                 "s", destroy_s);
  d.note = absl::StrFormat("%zu destroyed, %d errors; per call p50 %.1f ms, p99 %.1f ms",
                           destroy.ms.size(), destroy.failures,
                           destroy.ms.empty() ? 0 : Summarize(destroy.ms).median,
                           destroy.ms.empty() ? 0 : Summarize(destroy.ms).p99);
  rows.push_back(std::move(d));
  return rows;
}

std::vector<Row> RunLoad(const Context& ctx) {
  const int clients = ctx.options.clients;
  Stub& stub = ctx.daemon.stub();
  Collector setup;
  std::vector<std::string> ids = CreateMany(stub, clients, 4, setup);

  auto health_channel = MakeChannel(ctx.daemon.target(), true);
  grpc::GenericStub health(health_channel);
  grpc::CompletionQueue cq;
  auto check_loop = [&](std::vector<double>& out, int* failures, auto keep_going) {
    while (keep_going() && !g_interrupted) {
      double ms = 0;
      if (HealthCheck(health, cq, &ms)) {
        out.push_back(ms);
      } else {
        ++*failures;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  std::vector<double> idle_ms, load_ms;
  int health_failures = 0;
  // Bounded by attempts, not successes: a dead sbxd must not hang the run.
  const int idle_checks = ctx.options.quick ? 50 : 200;
  int attempts = 0;
  check_loop(idle_ms, &health_failures, [&] { return attempts++ < idle_checks; });

  std::atomic<bool> stop{false};
  Collector execs;
  std::vector<std::thread> pool;
  for (size_t i = 0; i < ids.size(); ++i) {
    pool.emplace_back([&, id = ids[i]] {
      auto channel = MakeChannel(ctx.daemon.target(), true);
      auto client = v1::SandboxService::NewStub(channel);
      while (!stop && !g_interrupted) {
        ExecOutcome run = Exec(*client, id, {"true"});
        execs.Add(run.status.ok() && run.exit.exit_code() == 0, run.exit_ms,
                  StatusText(run.status));
      }
    });
  }
  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration<double>(ctx.options.load_seconds);
  check_loop(load_ms, &health_failures, [&] { return Clock::now() < end; });
  stop = true;
  for (std::thread& t : pool) t.join();
  const double seconds = MsSince(t0) / 1000;
  cq.Shutdown();
  DestroyMany(stub, ids, 4, setup);

  std::vector<Row> rows;
  Row h("load_health", absl::StrCat("health check under ", ids.size(), " exec clients"));
  if (!load_ms.empty()) h.value = MakeSeries("Health/Check under load", "ms", load_ms);
  if (!idle_ms.empty()) h.baseline = MakeSeries("Health/Check idle", "ms", idle_ms);
  if (h.value && h.baseline) h.ratio = h.value->summary.median / h.baseline->summary.median;
  h.goal = "p99 <=10 ms";
  h.met = h.value ? (h.value->summary.p99 <= 10 ? "yes" : "no") : "n/a";
  h.note = absl::StrFormat("baseline = the same check on an idle sbxd; %d failed checks%s",
                           health_failures,
                           setup.failures ? absl::StrCat("; setup errors: ", setup.failures,
                                                         ", last: ", setup.last_error)
                                          : "");
  rows.push_back(std::move(h));

  Row e("load_exec", absl::StrCat("  exec true latency, ", ids.size(), " clients"));
  if (!execs.ms.empty()) e.value = MakeSeries("exec under load", "ms", execs.ms);
  e.note = absl::StrFormat("%zu execs in %.1f s = %.0f execs/s, %d errors%s", execs.ms.size(),
                           seconds, execs.ms.size() / seconds, execs.failures,
                           execs.failures ? ", last: " + execs.last_error : "");
  rows.push_back(std::move(e));
  rows.push_back(Single("load_exec_rate", absl::StrCat("  exec throughput, ", ids.size(),
                                                       " clients (execs/s)"),
                        "exec/s", execs.ms.size() / seconds));
  return rows;
}

}  // namespace sbx::bench
