// Per-command limits and exact per-command figures: each command runs in a
// cgroup leaf of its own, so its cpu time, peak memory and OOM kills are its
// own, and its own cpu / memory / pids / output / rlimit limits hold.
#include <dirent.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int64_t kMiB = 1 << 20;

class ExecLimitsTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }
};

int64_t Micros(const google::protobuf::Duration& d) {
  return d.seconds() * 1000000 + d.nanos() / 1000;
}

v1::ExecStart WithLimits(v1::ExecStart start, const v1::ExecLimits& limits) {
  *start.mutable_limits() = limits;
  return start;
}

// Sub-directories of every hierarchy's cgroup of sandbox `id`.
std::vector<std::string> Leaves(const Daemon& daemon, const std::string& id) {
  std::vector<std::string> leaves;
  for (const std::string& parent : daemon.CgroupParentDirs()) {
    const std::string dir = parent + "/" + id;
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) continue;
    while (const struct dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (e->d_type == DT_DIR && name != "." && name != "..") leaves.push_back(dir + "/" + name);
    }
    ::closedir(d);
  }
  return leaves;
}

TEST_F(ExecLimitsTest, CpuTimeLimitKillsPromptlyWithTheTrueTime) {
  SBX_SANDBOX(sb);
  v1::ExecLimits limits;
  limits.mutable_cpu_time()->set_nanos(300 * 1000 * 1000);
  ExecResult r = RunExec(
      stub(), WithLimits(MakeStart(sb.id(), {"sh", "-c", "while :; do :; done"}), limits), "",
      seconds(30));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.exit->verdict(), v1::VERDICT_TIME_LIMIT) << r.Describe();
  EXPECT_TRUE(r.exit->cpu_time_exceeded());
  EXPECT_EQ(r.exit->signal(), 9);
  const int64_t cpu = Micros(r.exit->cpu_time());
  EXPECT_GE(cpu, 300000) << r.Describe();
  // Killed within ~100 ms of crossing the limit (poll interval 10 ms).
  EXPECT_LT(cpu, 300000 + 150000) << r.Describe();
}

TEST_F(ExecLimitsTest, CpuTimeCountsEveryProcessOfTheCommand) {
  SBX_SANDBOX(sb);
  // The shell never waits for the spinner, so rusage of what it waited for
  // would miss its cpu time; the command's cgroup sees it.
  // The spinner stops after 0.2 s of its own cpu time, however loaded the
  // machine is, and the shell polls for its marker without waiting for it.
  ExecResult r = RunExec(
      stub(),
      MakeStart(sb.id(), {"sh", "-c",
                          "(python3 -c 'import time\n"
                          "while time.process_time() < 0.2: pass\n"
                          "open(\"/tmp/spun\", \"w\")' &); "
                          "while [ ! -e /tmp/spun ]; do sleep 0.05; done"}),
      "", seconds(30));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.exit->verdict(), v1::VERDICT_OK) << r.Describe();
  EXPECT_GE(Micros(r.exit->cpu_time()), 200000) << r.Describe();  // rusage: ~0
}

TEST_F(ExecLimitsTest, MemoryLimitOfOneCommandIsItsOwn) {
  SBX_SANDBOX(sb);
  v1::ExecLimits limits;
  limits.set_memory_bytes(32 * kMiB);
  ExecResult r = RunExec(
      stub(),
      WithLimits(MakeStart(sb.id(), {"python3", "-c", "b = bytearray(200 << 20); print(len(b))"}),
                 limits),
      "", seconds(60));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.exit->verdict(), v1::VERDICT_MEMORY_LIMIT) << r.Describe();
  EXPECT_EQ(r.out, "");
  EXPECT_LE(r.exit->memory_peak_bytes(), 33 * kMiB) << r.Describe();
  // The sandbox's own limit (512 MiB default) is untouched: 100 MiB works.
  ExecResult ok = RunExec(
      stub(), MakeStart(sb.id(), {"python3", "-c", "b = bytearray(100 << 20); print(len(b))"}),
      "", seconds(60));
  ASSERT_TRUE(ok.Ok()) << ok.Describe();
  EXPECT_EQ(ok.exit->verdict(), v1::VERDICT_OK) << ok.Describe();
  EXPECT_EQ(ok.out, std::to_string(100 << 20) + "\n");
}

TEST_F(ExecLimitsTest, PeakMemoryIsThatOfTheCommandAlone) {
  SBX_SANDBOX(sb);
  ExecResult big = RunExec(
      stub(),
      MakeStart(sb.id(), {"python3", "-c", "b = bytearray(80 << 20); b[::4096] = b'x' * len(b[::4096])"}),
      "", seconds(60));
  ASSERT_TRUE(big.Ok()) << big.Describe();
  EXPECT_EQ(big.exit->verdict(), v1::VERDICT_OK) << big.Describe();
  EXPECT_GE(big.exit->memory_peak_bytes(), 80 * kMiB) << big.Describe();
  EXPECT_LT(big.exit->memory_peak_bytes(), 160 * kMiB) << big.Describe();
  // The next command's figures start from zero.
  ExecResult small = RunExec(stub(), MakeStart(sb.id(), {"true"}), "", seconds(30));
  ASSERT_TRUE(small.Ok()) << small.Describe();
  EXPECT_LT(small.exit->memory_peak_bytes(), 16 * kMiB) << small.Describe();
  EXPECT_LT(Micros(small.exit->cpu_time()), 200000) << small.Describe();
}

TEST_F(ExecLimitsTest, OutputLimitTruncatesExactlyAndKills) {
  SBX_SANDBOX(sb);
  v1::ExecLimits limits;
  limits.set_output_bytes(1000);
  ExecResult r =
      RunExec(stub(), WithLimits(MakeStart(sb.id(), {"yes"}), limits), "", seconds(30));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.exit->verdict(), v1::VERDICT_OUTPUT_LIMIT) << r.Describe();
  EXPECT_TRUE(r.exit->output_truncated());
  EXPECT_EQ(r.out.size() + r.err.size(), 1000u);
  EXPECT_EQ(r.out.substr(0, 4), "y\ny\n");
}

// A command that writes past its limit and ends at once (the 1 MiB pipe
// holds all of it): sbxd's SIGKILL crosses the init's exit report, and the
// init closes with the signal unread. The exit is still the command's.
TEST_F(ExecLimitsTest, OutputLimitOfACommandThatEndsAtOnceKeepsItsExit) {
  SBX_SANDBOX(sb);
  v1::ExecLimits limits;
  limits.set_output_bytes(1000);
  for (int i = 0; i < 40; ++i) {
    ExecResult r = RunExec(
        stub(), WithLimits(MakeStart(sb.id(), {"head", "-c", "100000", "/dev/zero"}), limits),
        "", seconds(30));
    ASSERT_TRUE(r.Ok()) << "run " << i << ": " << r.Describe();
    EXPECT_EQ(r.exit->verdict(), v1::VERDICT_OUTPUT_LIMIT) << "run " << i << ": " << r.Describe();
    EXPECT_EQ(r.out.size(), 1000u) << "run " << i;
  }
}

TEST_F(ExecLimitsTest, PidsLimitOfOneCommand) {
  SBX_SANDBOX(sb);
  v1::ExecLimits limits;
  limits.set_pids(4);
  ExecResult r = RunExec(
      stub(),
      WithLimits(MakeStart(sb.id(), {"sh", "-c",
                                     "n=0; for i in 1 2 3 4 5 6 7 8; do sleep 2 & "
                                     "[ $? -eq 0 ] && n=$((n+1)); done; echo started"}),
                 limits),
      "", seconds(30));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_TRUE(r.err.find("fork") != std::string::npos ||
              r.err.find("Resource temporarily unavailable") != std::string::npos)
      << "no fork failure reported: " << r.Describe();
}

TEST_F(ExecLimitsTest, RlimitsOfOneCommand) {
  SBX_SANDBOX(sb);
  v1::ExecLimits limits;
  limits.set_file_size_bytes(1 * kMiB);
  limits.set_open_files(16);
  limits.set_stack_bytes(2 * kMiB);
  ExecResult r = RunExec(
      stub(),
      WithLimits(MakeStart(sb.id(), {"sh", "-c", "ulimit -f; ulimit -n; ulimit -s"}), limits),
      "", seconds(30));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "2048\n16\n2048\n") << r.Describe();  // -f in 512-byte blocks, -s in KiB
  ExecResult big = RunExec(
      stub(),
      WithLimits(MakeStart(sb.id(), {"sh", "-c", "exec head -c 2M /dev/zero > /tmp/f"}), limits),
      "", seconds(30));
  ASSERT_TRUE(big.Ok()) << big.Describe();
  EXPECT_EQ(big.exit->signal(), SIGXFSZ) << big.Describe();
  EXPECT_EQ(big.exit->verdict(), v1::VERDICT_SIGNALED);
}

TEST_F(ExecLimitsTest, LeavesAreRemovedAfterTheCommands) {
  SBX_SANDBOX(sb);
  for (int i = 0; i < 5; ++i) {
    ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"true"}), "", seconds(30));
    ASSERT_TRUE(r.Ok()) << r.Describe();
  }
  // Removed in the background right after each exit; what stays is the
  // init's leaf and the spare's, if the next command's spare is ready.
  std::string leftover;
  EXPECT_TRUE(WaitFor(
      [&] {
        leftover.clear();
        for (const std::string& leaf : Leaves(daemon(), sb.id())) {
          if (leaf.substr(leaf.rfind('/') + 1) != "init" && !IsSpareLeaf(leaf)) leftover = leaf;
        }
        return leftover.empty();
      },
      seconds(5)))
      << "leftover cgroup " << leftover;
}

TEST_F(ExecLimitsTest, BadLimitsAreRefused) {
  SBX_SANDBOX(sb);
  for (auto set : std::vector<void (*)(v1::ExecLimits*)>{
           [](v1::ExecLimits* l) { l->set_memory_bytes(1024); },
           [](v1::ExecLimits* l) { l->set_pids(0); },
           [](v1::ExecLimits* l) { l->set_output_bytes(-1); },
           [](v1::ExecLimits* l) { l->set_open_files(1); },
           [](v1::ExecLimits* l) { l->mutable_cpu_time()->set_seconds(-1); },
       }) {
    v1::ExecLimits limits;
    set(&limits);
    ExecResult r =
        RunExec(stub(), WithLimits(MakeStart(sb.id(), {"true"}), limits), "", seconds(30));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << limits.DebugString() << r.Describe();
  }
}

}  // namespace
}  // namespace sbx::it
