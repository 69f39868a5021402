// sbx_bench: the benchmark suite of issue 5. Starts a private sbxd, runs
// the measurements with their baselines side by side, prints one table and
// writes the same as JSON. Needs root (sbxd does). See docs/benchmarks.md.
//
//   sbx_bench [--quick] [--json PATH] [--only oneshot,exec,...] [--idle N] ...
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/daemon.h"
#include "bench/host.h"
#include "bench/scenarios.h"

namespace sbx::bench {

std::atomic<bool> g_interrupted{false};

namespace {

using Scenario = std::vector<Row> (*)(const Context&);

// In the order they run. The scale rows come last: the 1000 sandboxes of
// `idle` and the 64 of `load` go with seconds of the kernel's work behind
// them (their network namespaces' cleanup, most likely), which slowed the
// rows run after them, sbx and baselines alike: in the `sbx run` row that
// followed them, bwrap's first 28 samples had a median of 15.7 ms against
// 6.4 ms for the rest of the row, sbx's 45.4 ms against 10.9 ms.
const std::vector<std::pair<std::string, Scenario>>& Scenarios() {
  static const std::vector<std::pair<std::string, Scenario>> all = {
      {"oneshot", RunOneShot}, {"create", RunCreateDestroy}, {"exec", RunExecLatency},
      {"cli", RunCli},         {"stdout", RunStdout},        {"stdin", RunStdin},
      {"idle", RunIdle},       {"load", RunLoad}};
  return all;
}

std::string Beside(const std::string& name) {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (self.parent_path() / name).string();
}

void OnSignal(int) { g_interrupted = true; }

void ApplyQuick(Options& o) {
  o.iterations = 10;
  o.warmup = 2;
  o.cli_iterations = 10;
  o.stdout_bytes = int64_t{64} << 20;
  o.stdin_bytes = int64_t{32} << 20;
  o.reps = 1;
  o.idle = 20;
  o.clients = 16;
  o.load_seconds = 2;
}

std::string LoadAverage() {
  std::optional<std::string> text = ReadFile("/proc/loadavg");
  if (!text) return "?";
  std::vector<std::string> f = absl::StrSplit(*text, ' ');
  return f.size() >= 3 ? absl::StrCat(f[0], " ", f[1], " ", f[2]) : "?";
}

// `load_before` is /proc/loadavg when the run started: other work on the
// machine skews every figure, so the results say how busy it was.
std::string Meta(const Options& o, const Context& ctx, const std::string& load_before) {
  utsname u{};
  uname(&u);
  char date[64];
  const time_t now = time(nullptr);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  nlohmann::json meta = {
      {"date", date},
      {"kernel", u.release},
      {"loadavg_before", load_before},
      {"loadavg_after", LoadAverage()},
      {"cpus", std::thread::hardware_concurrency()},
      {"cgroup", access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0 ? "v2" : "v1"},
      {"quick", o.quick},
      {"iterations", o.iterations},
      {"warmup", o.warmup},
      {"cli_iterations", o.cli_iterations},
      {"stdout_bytes", o.stdout_bytes},
      {"stdin_bytes", o.stdin_bytes},
      {"throughput_reps", o.reps},
      {"idle", o.idle},
      {"idle_threads", o.idle_threads},
      {"clients", o.clients},
      {"load_seconds", o.load_seconds},
      {"unshare_argv", absl::StrJoin(UnshareArgv(ctx), " ")},
      {"bwrap_argv", absl::StrJoin(BwrapArgv(ctx), " ")}};
  return meta.dump();
}

int Main(int argc, char** argv) {
  // The client side of every gRPC row: without this, Debian's abseil (built
  // without NDEBUG) records the order of each absl::Mutex lock, gRPC's own
  // included, in a process-wide graph, a cost no release build of a client
  // has. sbxd and the sbx CLI turn it off the same way.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Options o;
  // --quick sets the defaults; explicit options given with it still win.
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") ApplyQuick(o);
  }
  std::string only;
  CLI::App app{
      "sbx_bench: sbx against fork+exec, unshare, bwrap, plain pipes and a no-isolation floor"};
  app.add_flag("--quick", o.quick, "smoke run: a few iterations of each (< 30 s)");
  app.add_option("--json", o.json_path, "where to write the results")->capture_default_str();
  app.add_option("--only", only, "comma-separated: oneshot,create,exec,cli,stdout,stdin,idle,load");
  app.add_option("--iterations", o.iterations, "latency samples per series")->capture_default_str();
  app.add_option("--warmup", o.warmup, "warm-up rounds per series")->capture_default_str();
  app.add_option("--cli-iterations", o.cli_iterations, "`sbx exec` processes")
      ->capture_default_str();
  app.add_option("--stdout-mib", o.stdout_bytes, "stdout bytes (MiB)")
      ->transform([](std::string s) { return std::to_string(std::stoll(s) << 20); });
  app.add_option("--stdin-mib", o.stdin_bytes, "stdin bytes (MiB)")
      ->transform([](std::string s) { return std::to_string(std::stoll(s) << 20); });
  app.add_option("--reps", o.reps, "throughput repetitions")->capture_default_str();
  app.add_option("--idle", o.idle, "idle sandboxes at once")->capture_default_str();
  app.add_option("--idle-threads", o.idle_threads, "client threads creating them")
      ->capture_default_str();
  app.add_option("--clients", o.clients, "concurrent exec clients")->capture_default_str();
  app.add_option("--load-seconds", o.load_seconds, "length of the load run")
      ->capture_default_str();
  app.add_option("--sbxd", o.sbxd_path, "sbxd binary (default: beside sbx_bench)");
  app.add_option("--sbx", o.sbx_path, "sbx CLI binary (default: beside sbx_bench)");
  app.add_option("--floor", o.floor_path,
                 "sbx_bench_floor binary, the no-isolation baseline (default: beside sbx_bench)");
  CLI11_PARSE(app, argc, argv);
  if (!only.empty()) o.only = absl::StrSplit(only, ',');
  if (o.sbxd_path.empty()) o.sbxd_path = Beside("sbxd");
  if (o.sbx_path.empty()) o.sbx_path = Beside("sbx");
  if (o.floor_path.empty()) o.floor_path = Beside("sbx_bench_floor");
  if (geteuid() != 0) {
    std::fprintf(stderr, "sbx_bench: must run as root (sbxd needs it)\n");
    return 2;
  }
  for (const std::string& name : o.only) {
    bool known = false;
    for (const auto& [n, fn] : Scenarios()) known |= n == name;
    if (!known) {
      std::fprintf(stderr, "sbx_bench: unknown scenario '%s'\n", name.c_str());
      return 2;
    }
  }

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  DaemonConfig config;
  config.sbxd_path = o.sbxd_path;
  config.max_sandboxes = std::max(1024, o.idle + o.clients + 16);
  const std::string load_before = LoadAverage();
  BenchDaemon daemon(config);
  std::string error;
  if (!daemon.Start(&error)) {
    std::fprintf(stderr, "sbx_bench: %s\n", error.c_str());
    daemon.Stop();
    return 1;
  }
  std::string true_path = FindInPath("true");
  Context ctx{o, daemon, true_path.empty() ? "/bin/true" : true_path, FindInPath("unshare"),
              FindInPath("bwrap"), nullptr, ""};
  FloorServer floor(o.floor_path);
  if (floor.Start(&ctx.floor_problem)) {
    ctx.floor = &floor;
  } else {
    std::fprintf(stderr, "sbx_bench: no floor rows: %s\n", ctx.floor_problem.c_str());
  }
  std::fprintf(stderr, "sbx_bench: sbxd pid %d, cgroup parent %s%s\n", daemon.pid(),
               daemon.cgroup_parent().c_str(), o.quick ? " (quick)" : "");

  std::vector<Row> rows;
  bool failed = false;
  for (const auto& [name, run] : Scenarios()) {
    if (g_interrupted) break;
    if (!o.only.empty() && std::find(o.only.begin(), o.only.end(), name) == o.only.end()) {
      continue;
    }
    std::fprintf(stderr, "sbx_bench: %s ...\n", name.c_str());
    const auto start = std::chrono::steady_clock::now();
    for (Row& r : run(ctx)) rows.push_back(std::move(r));
    if (!daemon.Alive()) {
      std::fprintf(stderr, "sbx_bench: sbxd died (%s) during %s; stopping. Its log:\n%s\n",
                   daemon.exit_description().c_str(), name.c_str(), daemon.LogTail().c_str());
      failed = true;
      break;
    }
    std::fprintf(stderr, "sbx_bench: %s done in %.1f s\n", name.c_str(),
                 MsSince(start) / 1000);
  }
  const std::string meta = Meta(o, ctx, load_before);
  std::string cleanup;
  const bool clean = daemon.Stop(&cleanup);
  floor.Stop();
  if (!clean) std::fprintf(stderr, "sbx_bench: cleanup: %s", cleanup.c_str());

  const nlohmann::json m = nlohmann::json::parse(meta);
  PrintTable(rows, absl::StrCat("sbx bench ", m["date"].get<std::string>(), ", ",
                                m["cpus"].get<unsigned>(), " cpus, cgroup ",
                                m["cgroup"].get<std::string>(), ", kernel ",
                                m["kernel"].get<std::string>(), ", loadavg ",
                                load_before, " -> ", m["loadavg_after"].get<std::string>(),
                                o.quick ? " (QUICK: smoke figures only)" : ""));
  if (!WriteJson(rows, meta, o.json_path)) {
    std::fprintf(stderr, "sbx_bench: could not write %s\n", o.json_path.c_str());
    return 1;
  }
  std::printf("\nwrote %s\n", o.json_path.c_str());
  if (g_interrupted) return 130;
  return clean && !failed ? 0 : 1;
}

}  // namespace
}  // namespace sbx::bench

int main(int argc, char** argv) { return sbx::bench::Main(argc, argv); }
