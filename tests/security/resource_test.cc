// Hostile code that tries to exhaust the host: fork and thread bombs, memory,
// disk space, inodes, descriptors, cpu, and never-ending commands. Each case
// checks the exact safe outcome inside and that the host, sbxd and a
// neighbouring sandbox are unaffected.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <functional>
#include <future>
#include <regex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "hostile_util.h"

namespace sbx::sec {
namespace {

using google::protobuf::util::TimeUtil;
using it::ExecSession;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int64_t kMiB = int64_t{1} << 20;

class ResourceTest : public it::DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }

  v1::Usage UsageOf(const std::string& id) {
    v1::Sandbox sb;
    grpc::Status s = it::Get(stub(), id, &sb);
    EXPECT_TRUE(s.ok()) << it::StatusText(s);
    return sb.usage();
  }

  // The neighbour, the host and sbxd are all fine.
  void ExpectOthersUnaffected(const std::string& neighbour) {
    EXPECT_TRUE(SandboxAnswers(stub(), neighbour, seconds(3)));
    EXPECT_TRUE(HostCanForkExec(seconds(2)));
    EXPECT_TRUE(DaemonAlive(daemon()));
  }
};

// "pid/tid comm state wchan" and the kernel stack of every task of `pids`
// that is not running or sleeping in an ordinary wait.
std::string BlockedTasks(const std::vector<pid_t>& pids) {
  std::string out;
  for (pid_t pid : pids) {
    const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
    for (const auto& tid : it::ListDir(task_dir)) {
      const std::string t = task_dir + "/" + tid;
      const std::string stat = it::ReadFile(t + "/stat").value_or("");
      const size_t paren = stat.rfind(')');
      const char state = paren == std::string::npos || paren + 2 >= stat.size() ? '?'
                                                                                 : stat[paren + 2];
      const std::string wchan = it::ReadFile(t + "/wchan").value_or("?");
      if (wchan == "do_epoll_wait" || wchan == "futex_do_wait" || wchan == "do_sys_poll") continue;
      out += std::to_string(pid) + "/" + tid + " " + it::Trim(it::ReadFile(t + "/comm").value_or("")) +
             " " + state + " " + wchan + "\n" + it::ReadFile(t + "/stack").value_or("");
    }
  }
  return out;
}

// How many forks the pids cgroups of sandbox `id` refused (`max` in
// pids.events, summed over its cgroup and every leaf below: cgroup v1
// counts a refusal in the cgroup of the process that forked, v2 in the one
// whose limit was hit); -1 if no pids.events file was found. A command's
// leaf goes when the command ends: read it while it runs.
int64_t ForksRefusedByPidsCgroup(const it::Daemon& daemon, const std::string& id) {
  int64_t total = -1;
  std::function<void(const std::string&)> add = [&](const std::string& dir) {
    if (std::optional<std::string> events = it::ReadFile(dir + "/pids.events")) {
      std::smatch m;
      if (std::regex_search(*events, m, std::regex(R"((^|\n)max (\d+))"))) {
        total = std::max<int64_t>(total, 0) + std::stoll(m[2]);
      }
    }
    for (const std::string& sub : it::ListSubdirs(dir)) add(dir + "/" + sub);
  };
  for (const std::string& dir : daemon.CgroupParentDirs()) add(dir + "/" + id);
  return total;
}

double Seconds(const google::protobuf::Duration& d) {
  return TimeUtil::DurationToMilliseconds(d) / 1000.0;
}

TEST_F(ResourceTest, ForkBombIsContained) {
  SBX_SANDBOX(sb);
  SBX_SANDBOX(neighbour);
  const int64_t pid_limit = sb.sandbox().limits().pids();
  ASSERT_GT(pid_limit, 0);

  ExecSession bomb(stub(), seconds(60));
  ASSERT_TRUE(bomb.Start(HelperStart(sb.id(), "forkbomb", {}, AsUser(seconds(5)))));
  ASSERT_TRUE(bomb.SendStdin(HelperBytes("forkbomb")));
  ASSERT_TRUE(bomb.CloseStdin());
  ASSERT_TRUE(bomb.WaitStarted());
  int64_t max_pids = 0;
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(milliseconds(200));
    max_pids = std::max(max_pids, UsageOf(sb.id()).pids());
  }
  // Its forks past the limit fail at RLIMIT_NPROC (the pids limit less the
  // pids of the init and of a spare), which the kernel checks before it
  // copies the parent's memory map, and never get as far as the pids
  // cgroup, which it checks after (they would hold host-wide locks
  // meanwhile). Without the task limit: 32543 by this point, on this
  // test's v1 host.
  const int64_t refused_by_cgroup = ForksRefusedByPidsCgroup(daemon(), sb.id());
  EXPECT_EQ(refused_by_cgroup, 0) << "forks that copied memory before the pids cgroup refused them";
  // While the bomb is at its limit. Should the neighbour stall, say where.
  auto echo = std::async(std::launch::async,
                         [&] { return SandboxAnswers(stub(), neighbour.id(), seconds(3)); });
  std::string where;
  if (echo.wait_for(seconds(1)) != std::future_status::ready) {
    std::vector<pid_t> watch = {neighbour.sandbox().init_pid(), daemon().pid()};
    for (pid_t c : it::ProcChildren(neighbour.sandbox().init_pid())) watch.push_back(c);
    where = "\nstalled after 1 s; blocked tasks:\n" + BlockedTasks(watch);
  }
  const auto during = echo.get();
  EXPECT_TRUE(during) << "during the fork bomb" << where;
  EXPECT_TRUE(HostCanForkExec(seconds(2))) << "during the fork bomb";
  EXPECT_TRUE(DaemonAlive(daemon()));
  grpc::Status s = bomb.Finish();
  ASSERT_TRUE(s.ok() && bomb.exit.has_value()) << it::StatusText(s);
  EXPECT_EQ(bomb.out, "fork: EAGAIN (Resource temporarily unavailable)\n") << bomb.err;
  EXPECT_TRUE(bomb.exit->timed_out());
  EXPECT_EQ(bomb.exit->signal(), 9);
  EXPECT_EQ(bomb.exit->verdict(), v1::VERDICT_WALL_TIME_LIMIT);
  EXPECT_GT(max_pids, pid_limit / 2) << "the bomb never got going";
  EXPECT_LE(max_pids, pid_limit);
  // Every bomb process died with the command's process group.
  int64_t pids_after = -1;
  EXPECT_TRUE(it::WaitFor([&] { return (pids_after = UsageOf(sb.id()).pids()) <= 1; },
                          seconds(10)))
      << "tasks left in the sandbox after the bomb was killed: " << pids_after;
  EXPECT_TRUE(SandboxAnswers(stub(), sb.id(), seconds(5)));
  ExpectOthersUnaffected(neighbour.id());
  RecordOutcome("fork EAGAIN at " + std::to_string(max_pids) + "/" + std::to_string(pid_limit) +
                " tasks (" + std::to_string(refused_by_cgroup) +
                " refused by the pids cgroup), killed at wall limit, " +
                std::to_string(pids_after) +
                " task(s) after; neighbour " + during.message());
}

// A command's RLIMIT_NPROC is the sandbox's pids limit less the pids of
// the init and of the spare process, both uid 0 (root's count includes
// them), soft and hard, so that it cannot be raised.
TEST_F(ResourceTest, TaskLimitIsThePidsLimitLessTheInitAndTheSpare) {
  SBX_SANDBOX(sb);
  const int64_t pid_limit = sb.sandbox().limits().pids();
  ASSERT_GT(pid_limit, 2);
  const std::string script =
      "ulimit -Su; ulimit -Hu; ulimit -u unlimited 2>/dev/null || echo fixed";
  ExecResult user = it::RunExec(stub(), it::MakeStart(sb.id(), {"bash", "-c", script}, AsUser()));
  ASSERT_TRUE(user.Ok()) << user.Describe();
  EXPECT_EQ(user.out, absl::StrCat(pid_limit - 2, "\n", pid_limit - 2, "\nfixed\n"));
  ExecResult root = it::RunExec(stub(), it::MakeStart(sb.id(), {"bash", "-c", script}, AsRoot()));
  ASSERT_TRUE(root.Ok()) << root.Describe();
  EXPECT_EQ(root.out, absl::StrCat(pid_limit, "\n", pid_limit, "\nfixed\n"));
  // As many tasks as that, whether the spare for the next command exists
  // yet or not.
  ExecResult fill = Py(stub(), sb.id(), R"(
import os, signal, time
children = []
while True:
    try:
        pid = os.fork()
    except OSError as e:
        failure = e.errno
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
for c in children:
    os.kill(c, signal.SIGKILL)
    os.waitpid(c, 0)
print(len(children), 'EAGAIN' if failure == errno.EAGAIN else failure)
)", AsUser(seconds(20)));
  ASSERT_TRUE(fill.Ok()) << fill.Describe();
  // python itself holds one of the user's tasks.
  EXPECT_EQ(fill.out, absl::StrCat(pid_limit - 3, " EAGAIN\n")) << fill.err;
  RecordOutcome(absl::StrCat("nproc ", pid_limit - 2, " (root ", pid_limit, ") at pids ",
                             pid_limit, "; ", it::Trim(fill.out), " background tasks fit"));
}

TEST_F(ResourceTest, ThreadBombIsContained) {
  SBX_SANDBOX(sb);
  SBX_SANDBOX(neighbour);
  const int64_t pid_limit = sb.sandbox().limits().pids();
  ExecResult r = RunHelper(stub(), sb.id(), "threadbomb", {}, AsUser(seconds(20)));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(r.out, m, std::regex(R"(threads=(\d+) (\w+) \((.*)\)\n)")))
      << r.Describe();
  const int threads = std::stoi(m[1]);
  EXPECT_EQ(m[2], "EAGAIN") << r.Describe();
  EXPECT_EQ(m[3], "Resource temporarily unavailable");
  EXPECT_LT(threads, pid_limit);
  EXPECT_GT(threads, pid_limit / 2) << "failed long before the pids limit: " << r.Describe();
  EXPECT_EQ(r.exit->exit_code(), 0);
  ExpectOthersUnaffected(neighbour.id());
  RecordOutcome("pthread_create EAGAIN after " + std::to_string(threads) + " threads (pids " +
                std::to_string(pid_limit) + ")");
}

TEST_F(ResourceTest, MemoryHogIsOomKilledAlone) {
  it::CreateOptions small;
  small.memory = 64 * kMiB;
  SBX_SANDBOX(sb, small);
  SBX_SANDBOX(neighbour);
  const pid_t init_pid = sb.sandbox().init_pid();
  const uint64_t init_start = it::ProcStartTime(init_pid);
  ASSERT_NE(init_start, 0u);

  ExecResult r = RunHelper(stub(), sb.id(), "memhog", {"1024"}, AsUser(seconds(30)));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "") << "1 GiB was allocated under a 64 MiB limit";
  EXPECT_EQ(r.exit->signal(), 9) << r.Describe();
  EXPECT_TRUE(r.exit->oom_killed()) << r.Describe();
  EXPECT_EQ(r.exit->verdict(), v1::VERDICT_MEMORY_LIMIT) << r.Describe();
  EXPECT_FALSE(r.exit->timed_out());
  const v1::Usage usage = UsageOf(sb.id());
  EXPECT_GT(usage.oom_kills(), 0) << usage.DebugString();
  EXPECT_LE(usage.memory_peak_bytes(), 65 * kMiB) << usage.DebugString();
  EXPECT_FALSE(it::ProcessGone(init_pid, init_start)) << "the sandbox's init died too";
  EXPECT_TRUE(SandboxAnswers(stub(), sb.id(), seconds(3)));
  ExpectOthersUnaffected(neighbour.id());
  RecordOutcome("signal " + std::to_string(r.exit->signal()) + ", oom_killed=" +
                (r.exit->oom_killed() ? "true" : "false") + ", verdict " +
                v1::Verdict_Name(r.exit->verdict()) + ", oom_kills " +
                std::to_string(usage.oom_kills()) + ", init alive");
}

// Writes zeros into `dir` until the file system is full.
void FillUntilEnospc(Stub& stub, const std::string& id, const std::string& dir,
                     int64_t cap_bytes) {
  const std::string file = dir + "/fill";
  ExecResult r = it::Sh(stub, id,
                        "dd if=/dev/zero of=" + file + " bs=1M 2>&1 >/dev/null | grep '^dd:'; "
                        "stat -c %s " + file + "; rm -f " + file +
                        " && echo again > " + file + " && cat " + file,
                        AsUser(seconds(30)), seconds(60));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  auto lines = it::SplitLines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.Describe();
  EXPECT_EQ(lines[0], "dd: error writing '" + file + "': No space left on device");
  const int64_t size = std::stoll(lines[1]);
  EXPECT_LE(size, cap_bytes) << dir;
  EXPECT_GE(size, cap_bytes - 2 * kMiB) << dir;
  EXPECT_EQ(lines[2], "again") << "space was not freed by rm";
  RecordOutcome(dir + ": ENOSPC at " + std::to_string(size / kMiB) + " MiB");
}

TEST_F(ResourceTest, FillingTmpShmAndWorkEndsInEnospc) {
  SBX_SANDBOX(sb);
  SBX_SANDBOX(neighbour);
  FillUntilEnospc(stub(), sb.id(), "/tmp", 64 * kMiB);
  FillUntilEnospc(stub(), sb.id(), "/dev/shm", 64 * kMiB);
  FillUntilEnospc(stub(), sb.id(), "/work", 256 * kMiB);
  ExpectOthersUnaffected(neighbour.id());
}

// Creates empty files in `dir` until creation fails.
void CreateUntilNoInodes(Stub& stub, const std::string& id, const std::string& dir) {
  ExecResult r = Py(stub, id,
                    "d = '" + dir + "'\n"
                    "total = os.statvfs(d).f_files\n"
                    "n = 0\n"
                    "try:\n"
                    "    while True:\n"
                    "        os.close(os.open('%s/i%d' % (d, n), os.O_CREAT | os.O_WRONLY, 0o600))\n"
                    "        n += 1\n"
                    "except OSError as e:\n"
                    "    print(n, total, errno.errorcode[e.errno], e.strerror)\n",
                    AsUser(seconds(30)), seconds(60));
  ASSERT_TRUE(r.Ok()) << dir << ": " << r.Describe();
  ASSERT_FALSE(r.exit->timed_out()) << dir << ": no inode cap, still creating after 30 s";
  std::smatch m;
  ASSERT_TRUE(std::regex_match(r.out, m, std::regex(R"((\d+) (\d+) (\w+) (.*)\n)")))
      << dir << ": " << r.Describe();
  const int64_t created = std::stoll(m[1]), total = std::stoll(m[2]);
  EXPECT_EQ(m[3], "ENOSPC") << dir << ": " << r.out;
  EXPECT_EQ(m[4], "No space left on device") << dir;
  EXPECT_LE(created, total) << dir;
  EXPECT_LE(total, int64_t{1} << 20) << dir << ": inode cap is not set (nr_inodes)";
  RecordOutcome(dir + ": ENOSPC after " + std::to_string(created) + " files (inodes " +
                std::to_string(total) + ")");
}

TEST_F(ResourceTest, CreatingFilesUntilInodesRunOutEndsInEnospc) {
  SBX_SANDBOX(sb);
  SBX_SANDBOX(neighbour);
  CreateUntilNoInodes(stub(), sb.id(), "/tmp");
  CreateUntilNoInodes(stub(), sb.id(), "/dev/shm");
  CreateUntilNoInodes(stub(), sb.id(), "/work");
  ExpectOthersUnaffected(neighbour.id());
}

TEST_F(ResourceTest, OpeningFdsEndsInEmfileAt1021) {
  SBX_SANDBOX(sb);
  ExecResult r = RunHelper(stub(), sb.id(), "fdbomb", {}, AsUser(seconds(20)));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  // 1024 (RLIMIT_NOFILE) minus the three standard descriptors: nothing else
  // is open in a command.
  EXPECT_EQ(r.out, "opened=1021 EMFILE (Too many open files)\n") << r.Describe();
  EXPECT_TRUE(HostCanForkExec());
  RecordOutcome(it::Trim(r.out));
}

TEST_F(ResourceTest, CpuSpinIsKilledAtWallLimit) {
  SBX_SANDBOX(sb);
  SBX_SANDBOX(neighbour);
  ExecSession spin(stub(), seconds(30));
  ASSERT_TRUE(spin.Start(it::MakeStart(sb.id(), {"sh", "-c", "while :; do :; done"},
                                       AsUser(seconds(2)))));
  ASSERT_TRUE(spin.CloseStdin());
  ASSERT_TRUE(spin.WaitStarted());
  std::this_thread::sleep_for(milliseconds(500));
  ExpectOthersUnaffected(neighbour.id());
  grpc::Status s = spin.Finish();
  ASSERT_TRUE(s.ok() && spin.exit.has_value()) << it::StatusText(s);
  EXPECT_TRUE(spin.exit->timed_out());
  EXPECT_EQ(spin.exit->signal(), 9);
  EXPECT_EQ(spin.exit->verdict(), v1::VERDICT_WALL_TIME_LIMIT);
  const double wall = Seconds(spin.exit->wall_time());
  EXPECT_GE(wall, 2.0);
  EXPECT_LT(wall, 3.5);
  EXPECT_GT(Seconds(spin.exit->cpu_time()), 0.5) << "it did not spin";
  RecordOutcome("timed_out, SIGKILL after " + std::to_string(wall).substr(0, 4) + " s wall, " +
                std::to_string(Seconds(spin.exit->cpu_time())).substr(0, 4) + " s cpu");
}

TEST_F(ResourceTest, ParallelSpinnersStayWithinCpuQuota) {
  it::CreateOptions half;
  half.cpus = 0.5;
  SBX_SANDBOX(sb, half);
  SBX_SANDBOX(neighbour);
  ExecSession spin(stub(), seconds(30));
  ASSERT_TRUE(spin.Start(it::MakeStart(
      sb.id(),
      {"sh", "-c", "for i in 1 2 3 4; do (while :; do :; done) & done; wait"},
      AsUser(seconds(5)))));
  ASSERT_TRUE(spin.CloseStdin());
  ASSERT_TRUE(spin.WaitStarted());
  std::this_thread::sleep_for(seconds(1));
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = Seconds(UsageOf(sb.id()).cpu_time());
  std::this_thread::sleep_for(seconds(2));
  const double c1 = Seconds(UsageOf(sb.id()).cpu_time());
  const double dt =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double rate = (c1 - c0) / dt;
  ExpectOthersUnaffected(neighbour.id());
  grpc::Status s = spin.Finish();
  ASSERT_TRUE(s.ok() && spin.exit.has_value()) << it::StatusText(s);
  EXPECT_TRUE(spin.exit->timed_out());
  EXPECT_LE(rate, 0.6) << "4 spinners used " << rate << " cpu-s/s under --cpus 0.5";
  // Only that they ran in the window, so that the bound above means
  // something: on a quiet host they get the whole 0.5, but beside heavy
  // tests on 2 cpus (the soak, before it ran alone) they got 0.03-0.18.
  EXPECT_GT(rate, 0.01) << "the spinners did not run: " << rate;
  int64_t pids_after = -1;
  EXPECT_TRUE(it::WaitFor([&] { return (pids_after = UsageOf(sb.id()).pids()) <= 1; },
                          seconds(5)))
      << "spinners left after the wall limit: " << pids_after << " tasks";
  RecordOutcome(std::to_string(rate).substr(0, 4) + " cpu-s/s for 4 spinners under cpus=0.5");
}

TEST_F(ResourceTest, SleepForeverIsKilledAtWallLimit) {
  SBX_SANDBOX(sb);
  ExecResult r = it::RunExec(stub(), it::MakeStart(sb.id(), {"sleep", "infinity"},
                                                   AsUser(seconds(1))),
                             "", seconds(20));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_TRUE(r.exit->timed_out());
  EXPECT_EQ(r.exit->signal(), 9);
  EXPECT_EQ(r.exit->verdict(), v1::VERDICT_WALL_TIME_LIMIT);
  const double wall = Seconds(r.exit->wall_time());
  EXPECT_GE(wall, 1.0);
  EXPECT_LT(wall, 2.5);
  RecordOutcome("timed_out, SIGKILL after " + std::to_string(wall).substr(0, 4) + " s");
}

// /proc/self/limits line for `name`: {soft, hard}.
std::pair<std::string, std::string> LimitOf(const std::string& limits, const std::string& name) {
  for (const auto& line : it::SplitLines(limits)) {
    if (line.rfind(name, 0) != 0) continue;
    std::istringstream in(line.substr(name.size()));
    std::string soft, hard;
    in >> soft >> hard;
    return {soft, hard};
  }
  return {"<missing>", "<missing>"};
}

TEST_F(ResourceTest, RlimitsAreSetAndCannotBeRaised) {
  SBX_SANDBOX(sb);
  for (const auto& opts : {AsUser(), AsRoot()}) {
    const std::string who = opts.user.empty() ? "sandbox" : opts.user;
    ExecResult r = it::RunExec(stub(), it::MakeStart(sb.id(), {"cat", "/proc/self/limits"}, opts));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    using P = std::pair<std::string, std::string>;
    EXPECT_EQ(LimitOf(r.out, "Max core file size"), P("0", "0")) << who;
    EXPECT_EQ(LimitOf(r.out, "Max open files"), P("1024", "1024")) << who;
    EXPECT_EQ(LimitOf(r.out, "Max file size"), P("1073741824", "1073741824")) << who;
    EXPECT_EQ(LimitOf(r.out, "Max stack size").first, "8388608") << who;

    // Raising a hard limit needs CAP_SYS_RESOURCE, which no command has.
    ExecResult raise = Py(stub(), sb.id(),
                          "import resource\n"
                          "for name in ('RLIMIT_NOFILE', 'RLIMIT_CORE', 'RLIMIT_FSIZE'):\n"
                          "    res = getattr(resource, name)\n"
                          "    soft, hard = resource.getrlimit(res)\n"
                          "    new = 1 << 40 if hard == resource.RLIM_INFINITY else hard + 4096\n"
                          "    try:\n"
                          "        resource.setrlimit(res, (new, new))\n"
                          "        print(name, 'raised')\n"
                          "    except (ValueError, OSError) as e:\n"
                          "        print(name, 'refused')\n",
                          opts);
    ASSERT_TRUE(raise.Ok()) << raise.Describe();
    EXPECT_EQ(raise.out, "RLIMIT_NOFILE refused\nRLIMIT_CORE refused\nRLIMIT_FSIZE refused\n")
        << who << ": " << raise.Describe();
  }
  // A write past 1 GiB (sparse, so /tmp's cap does not interfere) is stopped
  // by RLIMIT_FSIZE with SIGXFSZ.
  ExecResult big = it::RunExec(
      stub(), it::MakeStart(sb.id(), {"dd", "if=/dev/zero", "of=/tmp/big", "bs=1M", "count=1",
                                      "seek=1100"}));
  ASSERT_TRUE(big.Ok()) << big.Describe();
  EXPECT_EQ(big.exit->signal(), SIGXFSZ) << big.Describe();
  RecordOutcome("core 0/0, nofile 1024/1024, fsize 1GiB (SIGXFSZ past it), stack 8MiB; "
                "raising refused");
}

}  // namespace
}  // namespace sbx::sec
