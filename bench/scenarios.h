// The measurements of issue 5. Each returns its table rows (the sbx figure
// with the baseline it is compared to, plus rows for extra baselines) and
// leaves no sandbox behind. They run against the bench's own sbxd.
#ifndef SBX_BENCH_SCENARIOS_H_
#define SBX_BENCH_SCENARIOS_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/daemon.h"
#include "bench/floor.h"
#include "bench/report.h"

namespace sbx::bench {

struct Options {
  bool quick = false;
  int iterations = 300;      // latency samples per series, after warm-up
  int warmup = 30;
  int cli_iterations = 100;  // `sbx exec` processes
  int64_t stdout_bytes = int64_t{1} << 30;
  int64_t stdin_bytes = int64_t{256} << 20;
  int reps = 3;  // throughput repetitions
  int idle = 1000;
  int idle_threads = 4;
  int clients = 64;
  double load_seconds = 10;
  std::string json_path = "bench-results.json";
  std::string sbxd_path;
  std::string sbx_path;
  std::string floor_path;
  std::vector<std::string> only;  // scenario names; empty = all
};

struct Context {
  const Options& options;
  BenchDaemon& daemon;
  std::string true_path;     // /bin/true (or as found)
  std::string unshare_path;  // "" when not installed
  std::string bwrap_path;    // "" when not installed
  // sbx's API with nothing isolated (bench/floor.h); null when it did not
  // start, and `floor_problem` says why.
  FloorServer* floor = nullptr;
  std::string floor_problem;
};

// Set by SIGINT / SIGTERM; scenarios stop early and clean up.
extern std::atomic<bool> g_interrupted;

// The baseline command lines, shared by the rows and the docs.
std::vector<std::string> UnshareArgv(const Context& ctx);
std::vector<std::string> BwrapArgv(const Context& ctx);

std::vector<Row> RunOneShot(const Context& ctx);        // "oneshot"
std::vector<Row> RunCreateDestroy(const Context& ctx);  // "create"
std::vector<Row> RunExecLatency(const Context& ctx);    // "exec"
std::vector<Row> RunStdout(const Context& ctx);         // "stdout"
std::vector<Row> RunStdin(const Context& ctx);          // "stdin"
std::vector<Row> RunIdle(const Context& ctx);           // "idle"
std::vector<Row> RunLoad(const Context& ctx);           // "load"
std::vector<Row> RunCli(const Context& ctx);            // "cli"

}  // namespace sbx::bench

#endif  // SBX_BENCH_SCENARIOS_H_
