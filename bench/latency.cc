// Latency rows: one-shot, create / destroy, exec in a sandbox, and the CLI
// as a whole process. Each sbx sample is interleaved with its baseline's so
// that both see the same machine state.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/daemon.h"
#include "bench/host.h"
#include "bench/rpc.h"
#include "bench/scenarios.h"

namespace sbx::bench {

namespace {

using Clock = std::chrono::steady_clock;

// One timed run; false when it failed (the sample is then dropped).
using Probe = std::function<bool(double* ms)>;

struct Variant {
  Variant(std::string n, Probe p) : name(std::move(n)), probe(std::move(p)) {}
  std::string name;
  Probe probe;
  std::vector<double> samples;
  int failures = 0;
};

// Runs every variant once per round, warm-up rounds first, `settle` apart.
void RunInterleaved(std::vector<Variant>& variants, int warmup, int iterations,
                    std::chrono::milliseconds settle = std::chrono::milliseconds(0)) {
  for (int round = 0; round < warmup + iterations && !g_interrupted; ++round) {
    for (Variant& v : variants) {
      if (settle.count() > 0) std::this_thread::sleep_for(settle);
      double ms = 0;
      const bool ok = v.probe(&ms);
      if (round < warmup) continue;
      if (ok) {
        v.samples.push_back(ms);
      } else {
        ++v.failures;
      }
    }
  }
}

Probe ProcessProbe(std::vector<std::string> argv) {
  return [argv = std::move(argv)](double* ms) {
    const auto start = Clock::now();
    const int status = SpawnAndWait(argv);
    *ms = MsSince(start);
    return status == 0;
  };
}

// A row for one variant; `what` defaults to its name.
Row SeriesRow(const std::string& key, const Variant& v, const std::string& what) {
  Row row;
  row.key = key;
  row.what = what;
  if (!v.samples.empty()) row.value = MakeSeries(v.name, "ms", v.samples);
  if (v.failures > 0) row.note = absl::StrCat(v.failures, " failed runs dropped");
  row.latency = true;
  return row;
}

void Compare(Row& row, const Variant& baseline) {
  if (baseline.samples.empty()) return;
  row.baseline = MakeSeries(baseline.name, "ms", baseline.samples);
  if (row.value) row.ratio = row.value->summary.median / row.baseline->summary.median;
}

std::string YesNo(bool b) { return b ? "yes" : "no"; }

// Checks a baseline command once; "" when it works, else why not.
std::string Unusable(const std::vector<std::string>& argv) {
  if (argv.empty() || argv[0].empty()) return "not installed";
  const int status = SpawnAndWait(argv);
  if (status == 0) return "";
  return absl::StrCat("exits with wait status ", status, " here");
}

}  // namespace

std::vector<std::string> UnshareArgv(const Context& ctx) {
  return {ctx.unshare_path, "--user", "--map-root-user", "--pid", "--fork", "--mount",
          "--net", "--ipc", "--uts", "--cgroup", ctx.true_path};
}

std::vector<std::string> BwrapArgv(const Context& ctx) {
  return {ctx.bwrap_path, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
          "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
          "--symlink", "usr/lib64", "/lib64", "--proc", "/proc", "--dev", "/dev",
          "--tmpfs", "/tmp", "/bin/true"};
}

namespace {

// The steps of one-shots, each's time kept for the row's note.
struct OneShotSteps {
  std::vector<double> create_ms, exec_ms, destroy_ms;
  std::string last_error;

  std::string Medians() const {
    if (create_ms.empty()) return "";
    return absl::StrCat("medians: create ", absl::SixDigits(Median(create_ms)), " ms, exec ",
                        absl::SixDigits(Median(exec_ms)), " ms, destroy ",
                        absl::SixDigits(Median(destroy_ms)), " ms");
  }
  static double Median(const std::vector<double>& ms) {
    return MakeSeries("step", "ms", ms).summary.median;
  }
};

// Create, Exec `true`, Destroy, through `stub`.
Probe OneShotProbe(Stub& stub, OneShotSteps& steps) {
  return [&stub, &steps](double* ms) {
    const auto start = Clock::now();
    v1::Sandbox box;
    grpc::Status s = CreateSandbox(stub, &box);
    if (!s.ok()) {
      steps.last_error = "create: " + StatusText(s);
      return false;
    }
    const double created = MsSince(start);
    ExecOutcome run = Exec(stub, box.id(), {"true"});
    const double executed = MsSince(start);
    s = DestroySandbox(stub, box.id());
    *ms = MsSince(start);
    steps.create_ms.push_back(created);
    steps.exec_ms.push_back(executed - created);
    steps.destroy_ms.push_back(*ms - executed);
    if (!run.status.ok()) steps.last_error = "exec: " + StatusText(run.status);
    if (!s.ok()) steps.last_error = "destroy: " + StatusText(s);
    return run.status.ok() && run.exit.exit_code() == 0 && s.ok();
  };
}

// The row of a floor variant (the same calls to sbx_bench_floor), with
// the ratio to `baseline`, the goal's own baseline.
Row FloorRow(const std::string& key, const Variant& floor, const std::string& what,
             const Variant* baseline) {
  Row row = SeriesRow(key, floor, what);
  if (baseline != nullptr) Compare(row, *baseline);
  return row;
}

Row NoFloorRow(const Context& ctx, const std::string& key, const std::string& what) {
  return Row::Unmeasured(key, what, "", "no floor server: " + ctx.floor_problem);
}

}  // namespace

std::vector<Row> RunOneShot(const Context& ctx) {
  Stub& stub = ctx.daemon.stub();
  std::string last_error;
  OneShotSteps steps, floor_steps;
  Variant sbx{"sbx one-shot", OneShotProbe(stub, steps)};
  // One Run call that must pass with all `cases` cases: with no compile
  // step, the same one-shot as one call (what a judge's client sees);
  // with one, a grader's submission.
  auto run_probe = [&](std::vector<std::string> compile_argv, int cases) -> Probe {
    return [&stub, &last_error, compile_argv = std::move(compile_argv), cases](double* ms) {
      const auto start = Clock::now();
      v1::RunResponse response;
      grpc::Status s = RunOnce(stub, {"true"}, &response, compile_argv, cases);
      *ms = MsSince(start);
      if (!s.ok()) last_error = "run: " + StatusText(s);
      return s.ok() && response.verdict() == v1::VERDICT_OK && response.cases_size() == cases;
    };
  };
  Variant run{"sbx Run", run_probe({}, 1)};
  Variant judge{"sbx Run, compile + 3 cases", run_probe({"true"}, 3)};
  std::vector<Variant> variants;
  variants.push_back(std::move(sbx));
  variants.push_back(std::move(run));
  variants.push_back(std::move(judge));
  variants.push_back({"fork+exec /bin/true", ProcessProbe({ctx.true_path})});
  const std::string unshare_problem = Unusable(UnshareArgv(ctx));
  if (unshare_problem.empty()) variants.push_back({"unshare", ProcessProbe(UnshareArgv(ctx))});
  const std::string bwrap_problem = Unusable(BwrapArgv(ctx));
  if (bwrap_problem.empty()) variants.push_back({"bwrap", ProcessProbe(BwrapArgv(ctx))});
  if (ctx.floor != nullptr) {
    variants.push_back({"floor one-shot", OneShotProbe(ctx.floor->stub(), floor_steps)});
  }

  // A one-shot leaves sbxd work to do after its answers: refilling the pool
  // (a new sandbox: namespaces, mounts, cgroups) and removing the destroyed
  // one's files and cgroups. On 2 cpus that would slow whichever run came
  // next, a baseline's as much as sbx's own, so every run starts on a
  // settled machine. (Settled also means idle cpus, slower to wake: every
  // variant is slower this way than back to back.)
  RunInterleaved(variants, ctx.options.warmup, ctx.options.iterations,
                 std::chrono::milliseconds(25));

  std::vector<Row> rows;
  Row main = SeriesRow("oneshot", variants[0], "one-shot create+exec true+destroy (gRPC)");
  absl::StrAppend(&main.note, steps.Medians());
  if (!steps.last_error.empty()) absl::StrAppend(&main.note, " last error: ", steps.last_error);
  if (!last_error.empty()) absl::StrAppend(&main.note, " last error: ", last_error);
  main.goal = "<=3 ms and <=0.5x bwrap";
  const Variant* bwrap = nullptr;
  const Variant* floor = nullptr;
  for (const Variant& v : variants) {
    if (v.name == "bwrap") bwrap = &v;
    if (v.name == "floor one-shot") floor = &v;
  }
  if (bwrap != nullptr) {
    Compare(main, *bwrap);
  } else {
    absl::StrAppend(&main.note, " bwrap baseline missing: ", bwrap_problem);
  }
  main.met = main.value && main.ratio
                 ? YesNo(main.value->summary.median <= 3 && *main.ratio <= 0.5)
                 : "n/a";
  CheckTail(main);
  rows.push_back(std::move(main));
  Row run_row = SeriesRow("oneshot_run", variants[1], "one-shot as one Run call (judge API)");
  if (bwrap != nullptr) Compare(run_row, *bwrap);
  rows.push_back(std::move(run_row));  // no goal of its own: shown for the judge API
  Row judge_row =
      SeriesRow("oneshot_run_judge", variants[2], "  Run: compile, then 3 cases (judge API)");
  if (bwrap != nullptr) Compare(judge_row, *bwrap);
  rows.push_back(std::move(judge_row));
  for (size_t i = 3; i < variants.size(); ++i) {
    if (&variants[i] == floor) continue;
    const std::string key = variants[i].name == "bwrap"     ? "baseline_bwrap"
                            : variants[i].name == "unshare" ? "baseline_unshare"
                                                            : "baseline_fork_exec";
    const std::string what = variants[i].name == "bwrap" ? "  baseline: bwrap --unshare-all ..."
                             : variants[i].name == "unshare"
                                 ? "  baseline: unshare (7 namespaces) true"
                                 : "  baseline: fork+exec /bin/true";
    rows.push_back(SeriesRow(key, variants[i], what));
  }
  if (!unshare_problem.empty()) {
    rows.push_back(Row::Unmeasured("baseline_unshare", "  baseline: unshare", "",
                                   "unshare " + unshare_problem));
  }
  const std::string floor_what = "  floor: the same 3 calls, nothing isolated";
  if (floor != nullptr) {
    Row row = FloorRow("floor_oneshot", *floor, floor_what, bwrap);
    row.note = floor_steps.Medians();
    if (!floor_steps.last_error.empty()) {
      absl::StrAppend(&row.note, " last error: ", floor_steps.last_error);
    }
    rows.push_back(std::move(row));
  } else {
    rows.push_back(NoFloorRow(ctx, "floor_oneshot", floor_what));
  }
  return rows;
}

namespace {

struct CreateSeries {
  std::vector<double> create_ms, destroy_ms;
  std::vector<double> floor_ms;  // a call that does nothing, after the same pause
  int failures = 0;
  std::string last_error;
};

// Creates one sandbox at a time, `pause` apart (untimed), then destroys
// them all, so each series is measured with a steady number of live
// sandboxes. The pause lets a warm pool refill between creates. With
// `floor`, each measured create is followed, after the same pause, by a
// GetSandbox of an id no sandbox has: a round trip through sbxd that does
// no work, woken from the same quiet, the least a create could cost.
CreateSeries MeasureCreates(Stub& stub, const Options& options, absl::Duration pause,
                            bool floor) {
  CreateSeries out;
  std::vector<std::string> ids;
  const int total = options.warmup + options.iterations;
  for (int i = 0; i < total && !g_interrupted; ++i) {
    absl::SleepFor(pause);
    v1::Sandbox box;
    const auto start = Clock::now();
    grpc::Status s = CreateSandbox(stub, &box);
    const double ms = MsSince(start);
    if (!s.ok()) {
      ++out.failures;
      out.last_error = StatusText(s);
      continue;
    }
    if (i < options.warmup) {
      DestroySandbox(stub, box.id());
      continue;
    }
    out.create_ms.push_back(ms);
    ids.push_back(box.id());
    if (!floor) continue;
    absl::SleepFor(pause);
    const auto get_start = Clock::now();
    grpc::Status g = GetSandbox(stub, "sb-0000000000000000");
    const double get_ms = MsSince(get_start);
    if (g.error_code() == grpc::StatusCode::NOT_FOUND) {
      out.floor_ms.push_back(get_ms);
    } else {
      ++out.failures;
      out.last_error = "GetSandbox of an unknown id: " + StatusText(g);
    }
  }
  for (const std::string& id : ids) {
    const auto start = Clock::now();
    grpc::Status s = DestroySandbox(stub, id);
    const double ms = MsSince(start);
    if (s.ok()) {
      out.destroy_ms.push_back(ms);
    } else {
      ++out.failures;
      out.last_error = StatusText(s);
    }
  }
  return out;
}

}  // namespace

std::vector<Row> RunCreateDestroy(const Context& ctx) {
  // Warm: the bench's daemon (pool of 4), 30 ms between creates, which is
  // more than a refill takes.
  CreateSeries warm =
      MeasureCreates(ctx.daemon.stub(), ctx.options, absl::Milliseconds(30), /*floor=*/true);
  Row create("create", "CreateSandbox from the warm pool");
  create.latency = true;
  if (!warm.create_ms.empty()) create.value = MakeSeries("CreateSandbox", "ms", warm.create_ms);
  if (!warm.floor_ms.empty()) {
    create.baseline = MakeSeries("GetSandbox, unknown id", "ms", warm.floor_ms);
    if (create.value) {
      create.ratio = create.value->summary.median / create.baseline->summary.median;
    }
  }
  create.goal = "<=0.5 ms (warm pool)";
  create.met = create.value ? YesNo(create.value->summary.median <= 0.5) : "n/a";
  CheckTail(create);
  create.note =
      "pool of 4, refilled in the background; 30 ms between creates; baseline: GetSandbox of "
      "an unknown id (a round trip that does nothing) after the same pause";
  if (warm.failures > 0) {
    absl::StrAppend(&create.note, "; ", warm.failures, " failures, last: ", warm.last_error);
  }
  Row destroy("destroy", "DestroySandbox alone");
  destroy.latency = true;
  if (!warm.destroy_ms.empty()) destroy.value = MakeSeries("DestroySandbox", "ms", warm.destroy_ms);

  // Cold: a second daemon without a pool, creates back to back.
  DaemonConfig config;
  config.sbxd_path = ctx.options.sbxd_path;
  config.max_sandboxes = ctx.options.warmup + ctx.options.iterations + 8;
  config.pool_size = 0;
  config.uid_base =
      ctx.daemon.uid_base() - static_cast<uint32_t>(config.max_sandboxes + 8) * 65536u;
  config.name_suffix = "-cold";
  BenchDaemon cold_daemon(config);
  std::string error;
  Row cold("create_cold", "CreateSandbox, cold path (no pool)");
  cold.latency = true;
  if (!cold_daemon.Start(&error)) {
    cold = Row::Unmeasured("create_cold", "CreateSandbox, cold path (no pool)", "", error);
  } else {
    CreateSeries series =
        MeasureCreates(cold_daemon.stub(), ctx.options, absl::ZeroDuration(), /*floor=*/false);
    if (!series.create_ms.empty()) {
      cold.value = MakeSeries("CreateSandbox cold", "ms", series.create_ms);
    }
    cold.note = "sbxd --pool-size 0; creates back to back";
    if (series.failures > 0) {
      absl::StrAppend(&cold.note, "; ", series.failures, " failures, last: ", series.last_error);
    }
  }
  cold_daemon.Stop();
  return {create, cold, destroy};
}

namespace {

// The first two commands of a sandbox just taken from the pool, as a
// grader's compile-then-run issues them: each round starts on a settled
// machine, takes a sandbox (untimed), runs `first` and then `true` right
// after it, and destroys the sandbox. The first command finds the
// sandbox's spare process in its cgroup leaf already; whether the second
// finds the next one ready depends on how long the first ran (see
// docs/benchmarks.md, "Where the time goes"). Only the second is timed when
// `first` is not `true`.
struct FreshSeries {
  std::vector<double> first_ms, second_ms;
  int failures = 0;
  std::string last_error;
};

FreshSeries MeasureFreshSandboxExecs(const Context& ctx, const std::vector<std::string>& first) {
  Stub& stub = ctx.daemon.stub();
  const int rounds = std::min(ctx.options.iterations, 100);
  FreshSeries out;
  for (int i = 0; i < ctx.options.warmup / 3 + rounds && !g_interrupted; ++i) {
    absl::SleepFor(absl::Milliseconds(25));
    v1::Sandbox box;
    grpc::Status s = CreateSandbox(stub, &box);
    if (!s.ok()) {
      ++out.failures;
      out.last_error = "create: " + StatusText(s);
      continue;
    }
    const ExecOutcome one = Exec(stub, box.id(), first);
    const ExecOutcome two = Exec(stub, box.id(), {"true"});
    DestroySandbox(stub, box.id());
    const bool ok = one.status.ok() && two.status.ok() && one.exit.exit_code() == 0 &&
                    two.exit.exit_code() == 0;
    if (!ok) {
      ++out.failures;
      out.last_error = StatusText(one.status.ok() ? two.status : one.status);
      continue;
    }
    if (i < ctx.options.warmup / 3) continue;
    out.first_ms.push_back(one.exit_ms);
    out.second_ms.push_back(two.exit_ms);
  }
  return out;
}

std::vector<Row> FreshSandboxRows(const Context& ctx) {
  FreshSeries quick = MeasureFreshSandboxExecs(ctx, {"true"});
  Row first("exec_fresh_first", "  first Exec in a sandbox from the pool");
  Row second("exec_fresh_second", "  a second Exec right after it");
  first.latency = second.latency = true;
  first.note = "25 ms settle, then a sandbox from the pool, true twice, destroy";
  if (quick.failures > 0) {
    absl::StrAppend(&first.note, "; ", quick.failures, " failed rounds, last: ", quick.last_error);
  }
  if (!quick.first_ms.empty()) first.value = MakeSeries("first exec", "ms", quick.first_ms);
  if (!quick.second_ms.empty()) second.value = MakeSeries("second exec", "ms", quick.second_ms);

  FreshSeries compile = MeasureFreshSandboxExecs(ctx, {"sleep", "0.1"});
  Row after("exec_after_100ms", "  an Exec right after a 100 ms one");
  after.latency = true;
  after.note = "25 ms settle, then a sandbox from the pool, sleep 0.1, true (timed), destroy";
  if (compile.failures > 0) {
    absl::StrAppend(&after.note, "; ", compile.failures, " failed rounds, last: ",
                    compile.last_error);
  }
  if (!compile.second_ms.empty()) {
    after.value = MakeSeries("exec after 100 ms", "ms", compile.second_ms);
  }
  return {first, second, after};
}

}  // namespace

std::vector<Row> RunExecLatency(const Context& ctx) {
  Stub& stub = ctx.daemon.stub();
  v1::Sandbox box;
  grpc::Status s = CreateSandbox(stub, &box);
  if (!s.ok()) {
    return {Row::Unmeasured("exec", "Exec true in a live sandbox", "<=1.5 ms",
                            "create failed: " + StatusText(s))};
  }
  std::string last_error;
  std::vector<Variant> variants;
  variants.push_back({"sbx exec true", [&](double* ms) {
                        ExecOutcome run = Exec(stub, box.id(), {"true"});
                        *ms = run.exit_ms;
                        if (!run.status.ok()) last_error = StatusText(run.status);
                        return run.status.ok() && run.exit.exit_code() == 0;
                      }});
  variants.push_back({"fork+exec /bin/true", ProcessProbe({ctx.true_path})});
  RunInterleaved(variants, ctx.options.warmup, ctx.options.iterations);
  DestroySandbox(stub, box.id());
  // The floor in a pass of its own, with fork+exec again, so that sbx's
  // Execs come as far apart as in the runs before the floor: how soon the
  // next one comes decides whether the sandbox's next spare is ready.
  std::string floor_error;
  std::vector<Variant> floor_variants;
  if (ctx.floor != nullptr) {
    Stub& floor_stub = ctx.floor->stub();
    floor_variants.push_back({"floor exec true", [&](double* ms) {
                                ExecOutcome run = Exec(floor_stub, "floor", {"true"});
                                *ms = run.exit_ms;
                                if (!run.status.ok()) floor_error = StatusText(run.status);
                                return run.status.ok() && run.exit.exit_code() == 0;
                              }});
    floor_variants.push_back({"fork+exec /bin/true", ProcessProbe({ctx.true_path})});
    RunInterleaved(floor_variants, ctx.options.warmup, ctx.options.iterations);
  }

  Row row = SeriesRow("exec", variants[0], "Exec true in a live sandbox (to exit msg)");
  Compare(row, variants[1]);
  row.goal = "<=1.5 ms";
  row.met = row.value ? YesNo(row.value->summary.median <= 1.5) : "n/a";
  CheckTail(row);
  if (!last_error.empty()) absl::StrAppend(&row.note, " last error: ", last_error);
  std::vector<Row> rows = {row};
  const std::string floor_what = "  floor: the same Exec, nothing isolated";
  if (ctx.floor != nullptr) {
    Row floor_row = FloorRow("floor_exec", floor_variants[0], floor_what, &floor_variants[1]);
    if (!floor_error.empty()) floor_row.note = "last error: " + floor_error;
    rows.push_back(std::move(floor_row));
  } else {
    rows.push_back(NoFloorRow(ctx, "floor_exec", floor_what));
  }
  for (Row& fresh : FreshSandboxRows(ctx)) rows.push_back(std::move(fresh));
  return rows;
}

// `sbx run -- true` as a whole process (ephemeral sandbox, CLI start-up
// included) against bwrap run the same way, and the same CLI against the
// floor server.
std::vector<Row> RunCliOneShot(const Context& ctx) {
  const std::string bwrap_problem = Unusable(BwrapArgv(ctx));
  std::vector<Variant> variants;
  variants.push_back({"sbx run -- true", ProcessProbe({ctx.options.sbx_path, "--server",
                                                       ctx.daemon.target(), "run", "--", "true"})});
  if (ctx.floor != nullptr) {
    variants.push_back({"sbx run -- true, floor server",
                        ProcessProbe({ctx.options.sbx_path, "--server", ctx.floor->target(),
                                      "run", "--", "true"})});
  }
  if (bwrap_problem.empty()) variants.push_back({"bwrap", ProcessProbe(BwrapArgv(ctx))});
  RunInterleaved(variants, std::min(ctx.options.warmup, 10), ctx.options.cli_iterations);
  const Variant* bwrap = bwrap_problem.empty() ? &variants.back() : nullptr;
  Row row = SeriesRow("cli_run", variants[0], "sbx run -- true (process)");
  row.goal = "<= bwrap";
  if (bwrap != nullptr) {
    Compare(row, *bwrap);
    row.met = row.ratio ? YesNo(*row.ratio <= 1.0) : "n/a";
  } else {
    row.met = "n/a";
    absl::StrAppend(&row.note, " bwrap baseline missing: ", bwrap_problem);
  }
  CheckTail(row);
  const std::string floor_what = "  floor: the same CLI, nothing isolated";
  if (ctx.floor == nullptr) return {row, NoFloorRow(ctx, "floor_cli_run", floor_what)};
  return {row, FloorRow("floor_cli_run", variants[1], floor_what, bwrap)};
}

std::vector<Row> RunCli(const Context& ctx) {
  Stub& stub = ctx.daemon.stub();
  std::vector<Row> run = RunCliOneShot(ctx);
  v1::Sandbox box;
  grpc::Status s = CreateSandbox(stub, &box);
  if (!s.ok()) {
    run.insert(run.begin(), Row::Unmeasured("cli_exec", "sbx exec ID -- true (process)",
                                            "<=8x /bin/true", "create failed: " + StatusText(s)));
    return run;
  }
  std::vector<Variant> variants;
  variants.push_back({"sbx exec ID -- true",
                      ProcessProbe({ctx.options.sbx_path, "--server", ctx.daemon.target(),
                                    "exec", box.id(), "--", "true"})});
  variants.push_back({"/bin/true process", ProcessProbe({ctx.true_path})});
  RunInterleaved(variants, std::min(ctx.options.warmup, 10), ctx.options.cli_iterations);
  DestroySandbox(stub, box.id());

  Row row = SeriesRow("cli_exec", variants[0], "sbx exec ID -- true (process)");
  Compare(row, variants[1]);
  row.goal = "<=8x /bin/true";
  row.met = row.ratio ? YesNo(*row.ratio <= 8) : "n/a";
  CheckTail(row);
  run.insert(run.begin(), std::move(row));
  return run;
}

}  // namespace sbx::bench
