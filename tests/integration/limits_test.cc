// Limits: SetLimits takes effect at once (OOM kill, fork failure); a fork
// bomb is contained; Get/List report limits, labels and live usage.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using google::protobuf::util::TimeUtil;
using std::chrono::milliseconds;
using std::chrono::seconds;

class LimitsTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }
};

constexpr int64_t kMiB = 1 << 20;

TEST_F(LimitsTest, SetLimitsMemoryThenOomKill) {
  SBX_SANDBOX(sb);
  // Works before the change: 200 MiB fit in the default limit is not assumed,
  // so only check the change itself and its effect.
  v1::Limits limits;
  limits.set_memory_bytes(64 * kMiB);
  v1::Sandbox updated;
  grpc::Status s = SetLimits(stub(), sb.id(), limits, &updated);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(updated.limits().memory_bytes(), 64 * kMiB);
  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
  EXPECT_EQ(got.limits().memory_bytes(), 64 * kMiB);

  const bool have_python = PathExists("/usr/bin/python3");
  const std::vector<std::string> argv =
      have_python ? std::vector<std::string>{"python3", "-c",
                                             "s = 'x' * (200 * 1024 * 1024); print(len(s))"}
                  : std::vector<std::string>{"sh", "-c", "head -c 200M /dev/zero | tail"};
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), argv), "", seconds(60));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "") << "the 200 MiB allocation succeeded under a 64 MiB limit";
  if (have_python) {
    EXPECT_EQ(r.exit->signal(), 9) << r.Describe();
  } else {
    EXPECT_NE(r.exit->exit_code(), 0) << r.Describe();  // tail was killed
  }
  EXPECT_TRUE(r.exit->oom_killed() || r.exit->verdict() == v1::VERDICT_MEMORY_LIMIT)
      << "exit does not report the OOM kill: " << r.Describe();
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
  EXPECT_GT(got.usage().oom_kills(), 0) << got.usage().DebugString();
  EXPECT_LE(got.usage().memory_peak_bytes(), 64 * kMiB + kMiB) << got.usage().DebugString();

  // The sandbox is still usable after the OOM kill.
  ExecResult after = RunExec(stub(), MakeStart(sb.id(), {"echo", "alive"}));
  ASSERT_TRUE(after.Ok()) << after.Describe();
  EXPECT_EQ(after.out, "alive\n");
}

TEST_F(LimitsTest, SetLimitsPidsThenForkFails) {
  SBX_SANDBOX(sb);
  v1::Limits limits;
  limits.set_pids(16);
  v1::Sandbox updated;
  grpc::Status s = SetLimits(stub(), sb.id(), limits, &updated);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(updated.limits().pids(), 16);

  std::atomic<bool> done{false};
  ExecResult r;
  std::thread runner([&] {
    r = Sh(stub(), sb.id(), "for i in $(seq 40); do sleep 3 & done; wait", {}, seconds(60));
    done = true;
  });
  int64_t max_pids = 0;
  while (!done) {
    v1::Sandbox got;
    if (Get(stub(), sb.id(), &got).ok()) max_pids = std::max(max_pids, got.usage().pids());
    std::this_thread::sleep_for(milliseconds(100));
  }
  runner.join();
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_TRUE(r.exit->exit_code() != 0 || !r.err.empty()) << r.Describe();
  EXPECT_TRUE(r.err.find("fork") != std::string::npos ||
              r.err.find("Resource temporarily unavailable") != std::string::npos)
      << "no fork failure reported: " << r.Describe();
  EXPECT_LE(max_pids, 16);
  EXPECT_GE(max_pids, 8) << "usage.pids never showed the running sleeps";
}

// A command's task limit (RLIMIT_NPROC, the pids limit less the pids of the
// init and the spare; all of it for root) follows SetLimits while it runs,
// unless the command lowered its own. Down always; up only where sbxd has
// CAP_SYS_RESOURCE (raising a hard limit needs it): without, the running
// commands keep theirs.
TEST_F(LimitsTest, SetLimitsPidsMovesTheTaskLimitOfRunningCommands) {
  CreateOptions o;
  o.pids = 20;
  SBX_SANDBOX(sb, o);
  const bool can_raise = ProcHasCapability(daemon().pid(), CAP_SYS_RESOURCE);
  struct Command {
    std::string script;
    ExecOptions options;
    std::vector<std::string> seen;  // at 20, at 12, at 40
    std::unique_ptr<ExecSession> session;
  };
  ExecOptions as_root;
  as_root.user = "root";
  const std::string report = "ulimit -Hu; read; ulimit -Hu; read; ulimit -Su; ulimit -Hu";
  Command commands[] = {
      {report, {}, {"18\n", "10\n", can_raise ? "38\n38\n" : "10\n10\n"}, nullptr},
      {report, as_root, {"20\n", "12\n", can_raise ? "40\n40\n" : "12\n12\n"}, nullptr},
      {"ulimit -u 5; " + report, {}, {"5\n", "5\n", "5\n5\n"}, nullptr},
  };
  for (Command& c : commands) {
    c.session = std::make_unique<ExecSession>(stub(), seconds(30));
    ASSERT_TRUE(c.session->Start(MakeStart(sb.id(), {"bash", "-c", c.script}, c.options)));
    ASSERT_TRUE(c.session->WaitStarted());
  }
  std::string expected[3];
  for (int step = 0; step < 3; ++step) {
    if (step > 0) {
      v1::Limits limits;
      limits.set_pids(step == 1 ? 12 : 40);
      v1::Sandbox updated;
      grpc::Status s = SetLimits(stub(), sb.id(), limits, &updated);
      ASSERT_TRUE(s.ok()) << StatusText(s);
    }
    for (int i = 0; i < 3; ++i) {
      Command& c = commands[i];
      if (step > 0) {
        ASSERT_TRUE(c.session->SendStdin("go\n"));
      }
      expected[i] += c.seen[step];
      ASSERT_TRUE(c.session->ReadStdoutAtLeast(expected[i].size())) << c.script;
      EXPECT_EQ(c.session->out, expected[i])
          << c.script << (c.options.user.empty() ? "" : " as root") << ", step " << step << "\n"
          << c.session->err;
    }
  }
  // Each has read its last line and exited.
  for (Command& c : commands) {
    grpc::Status done = c.session->Finish();
    ASSERT_TRUE(done.ok() && c.session->exit.has_value()) << StatusText(done);
    EXPECT_EQ(c.session->exit->exit_code(), 0) << c.session->err;
  }
}

TEST_F(LimitsTest, ForkBombIsContained) {
  CreateOptions o;
  o.pids = 64;
  SBX_SANDBOX(sb, o);
  const pid_t init_pid = sb.sandbox().init_pid();
  ASSERT_GT(init_pid, 0);
  const uint64_t init_start = ProcStartTime(init_pid);

  ExecOptions eo;
  eo.timeout = seconds(3);
  std::atomic<bool> done{false};
  ExecResult r;
  std::thread runner([&] {
    r = RunExec(stub(), MakeStart(sb.id(), {"bash", "-c", ":(){ :|:& };:; sleep 10"}, eo), "",
                seconds(30));
    done = true;
  });
  // The host stays responsive: fork+exec of /bin/true while the bomb runs.
  double worst_ms = 0;
  int spawns = 0;
  int64_t max_pids = 0;
  while (!done) {
    const auto t0 = std::chrono::steady_clock::now();
    pid_t child;
    char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
    ASSERT_EQ(posix_spawn(&child, "/bin/true", nullptr, nullptr, argv, environ), 0);
    int status;
    waitpid(child, &status, 0);
    worst_ms = std::max(
        worst_ms,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ++spawns;
    v1::Sandbox got;
    if (Get(stub(), sb.id(), &got).ok()) max_pids = std::max(max_pids, got.usage().pids());
    std::this_thread::sleep_for(milliseconds(50));
  }
  runner.join();
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_TRUE(r.exit->timed_out()) << r.Describe();
  EXPECT_LT(r.seconds, 10.0) << r.Describe();
  EXPECT_GT(spawns, 5);
  EXPECT_LT(worst_ms, 1000.0) << "fork+exec of /bin/true took " << worst_ms
                              << " ms during the bomb";
  EXPECT_LE(max_pids, 64);

  // The sandbox still answers, then Destroy removes everything.
  ExecResult after = RunExec(stub(), MakeStart(sb.id(), {"echo", "alive"}), "", seconds(30));
  EXPECT_TRUE(after.Ok() && after.out == "alive\n") << after.Describe();
  bool existed = false;
  grpc::Status s = Destroy(stub(), sb.id(), &existed);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_TRUE(existed);
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(init_pid, init_start); }, seconds(5)));
  EXPECT_TRUE(WaitFor([&] { return daemon().CgroupChildren().empty(); }, seconds(5)))
      << "cgroups left: " << daemon().CgroupChildren().size();
  EXPECT_TRUE(daemon().CgroupProcesses().empty());
}

TEST_F(LimitsTest, GetAndListShowLimitsLabelsAndUsage) {
  CreateOptions o;
  o.memory = 128 * kMiB;
  o.cpus = 0.5;
  o.pids = 50;
  o.labels = {{"team", "a"}, {"case", "get-list"}};
  SBX_SANDBOX(a, o);
  CreateOptions o2;
  o2.labels = {{"team", "b"}};
  SBX_SANDBOX(b, o2);

  EXPECT_EQ(a.sandbox().state(), v1::SANDBOX_STATE_RUNNING);
  ExecResult busy = Sh(stub(), a.id(),
                       "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; sleep 30 & echo started");
  ASSERT_TRUE(busy.Ok()) << busy.Describe();

  v1::Sandbox got;
  grpc::Status s = Get(stub(), a.id(), &got);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(got.id(), a.id());
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);
  EXPECT_EQ(got.limits().memory_bytes(), 128 * kMiB);
  EXPECT_DOUBLE_EQ(got.limits().cpus(), 0.5);
  EXPECT_EQ(got.limits().pids(), 50);
  EXPECT_EQ(got.labels().size(), 2u);
  EXPECT_EQ(got.labels().at("team"), "a");
  EXPECT_EQ(got.labels().at("case"), "get-list");
  EXPECT_GT(got.usage().memory_bytes(), 0) << got.usage().DebugString();
  EXPECT_GE(got.usage().memory_peak_bytes(), got.usage().memory_bytes());
  EXPECT_GE(got.usage().pids(), 1);
  EXPECT_GT(TimeUtil::DurationToMilliseconds(got.usage().cpu_time()), 0)
      << got.usage().DebugString();
  EXPECT_GT(got.init_pid(), 0);
  EXPECT_TRUE(got.has_created_at());
  // Defaults are filled in for b: every limit field set.
  v1::Sandbox gb;
  ASSERT_TRUE(Get(stub(), b.id(), &gb).ok());
  EXPECT_TRUE(gb.limits().has_memory_bytes() && gb.limits().has_cpus() && gb.limits().has_pids())
      << gb.limits().DebugString();

  v1::ListSandboxesResponse all;
  ASSERT_TRUE(List(stub(), &all).ok());
  EXPECT_EQ(all.sandboxes_size(), 2);
  v1::ListSandboxesResponse team_a;
  ASSERT_TRUE(List(stub(), &team_a, {{"team", "a"}}).ok());
  ASSERT_EQ(team_a.sandboxes_size(), 1);
  EXPECT_EQ(team_a.sandboxes(0).id(), a.id());
  EXPECT_EQ(team_a.sandboxes(0).limits().memory_bytes(), 128 * kMiB);
  v1::ListSandboxesResponse both;
  ASSERT_TRUE(List(stub(), &both, {{"team", "a"}, {"case", "other"}}).ok());
  EXPECT_EQ(both.sandboxes_size(), 0);
  v1::ListSandboxesResponse running;
  ASSERT_TRUE(List(stub(), &running, {}, v1::SANDBOX_STATE_RUNNING).ok());
  EXPECT_EQ(running.sandboxes_size(), 2);
  v1::ListSandboxesResponse dead;
  ASSERT_TRUE(List(stub(), &dead, {}, v1::SANDBOX_STATE_DEAD).ok());
  EXPECT_EQ(dead.sandboxes_size(), 0);
}

TEST_F(LimitsTest, CpuQuotaIsEnforced) {
  CreateOptions o;
  o.cpus = 0.2;
  SBX_SANDBOX(sb, o);
  // A busy loop for 1.5 s of wall time gets about 0.3 s of cpu at 0.2 cpus.
  ExecOptions eo;
  eo.timeout = milliseconds(1500);
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"sh", "-c", "while :; do :; done"}, eo));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_TRUE(r.exit->timed_out());
  const int64_t cpu_ms = TimeUtil::DurationToMilliseconds(r.exit->cpu_time());
  EXPECT_GT(cpu_ms, 0) << r.Describe();
  EXPECT_LT(cpu_ms, 700) << "0.2 cpus over 1.5 s allowed " << cpu_ms << " ms of cpu";
}

}  // namespace
}  // namespace sbx::it
