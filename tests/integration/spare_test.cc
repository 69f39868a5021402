// Spare processes: every sandbox keeps one process, forked by its init, in
// the cgroup leaf of its next command. The command runs in it, with the same
// confinement as any other; a spare that dies (killed from the host or from
// inside) only costs the next command the slower path. Also: one sbxd per
// state directory.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

class SpareTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }

  // The sandbox's cgroup in the pids hierarchy (v1), or its only one (v2).
  static std::string SandboxCgroup(const std::string& id) {
    for (const std::string& dir : daemon().CgroupParentDirs()) {
      if (dir.find("/pids/") != std::string::npos || daemon().CgroupParentDirs().size() == 1) {
        return dir + "/" + id;
      }
    }
    return "";
  }

  // Command leaves ("x<n>") of the sandbox and the processes in each.
  struct Leaf {
    std::string name;
    std::vector<pid_t> pids;
  };
  static std::vector<Leaf> Leaves(const std::string& id) {
    std::vector<Leaf> out;
    const std::string dir = SandboxCgroup(id);
    for (const std::string& name : ListSubdirs(dir)) {
      if (name.empty() || name[0] != 'x') continue;
      out.push_back({name, CgroupProcsRecursive(dir + "/" + name)});
    }
    return out;
  }

  // Waits for the sandbox's spare: exactly one leaf, holding one process.
  static ::testing::AssertionResult WaitForSpare(const std::string& id, Leaf* spare) {
    std::vector<Leaf> leaves;
    const bool ok = WaitFor(
        [&] {
          leaves = Leaves(id);
          return leaves.size() == 1 && leaves[0].pids.size() == 1;
        },
        seconds(10));
    if (!ok) {
      std::string seen;
      for (const Leaf& l : leaves) seen += " " + l.name + "(" + std::to_string(l.pids.size()) + ")";
      return ::testing::AssertionFailure() << "no spare in " << SandboxCgroup(id)
                                           << "; leaves:" << seen;
    }
    *spare = leaves[0];
    // In its leaf is not yet sbxd's: the worker hands it out from the
    // moment it has recorded it. A Get (with usage) waits for the worker to
    // be done with the spare it is making.
    v1::Sandbox got;
    grpc::Status s = Get(stub(), id, &got);
    if (!s.ok()) return ::testing::AssertionFailure() << "GetSandbox: " << s.error_message();
    return ::testing::AssertionSuccess();
  }

  static bool HasLeaf(const std::string& id, const std::string& name) {
    for (const Leaf& l : Leaves(id)) {
      if (l.name == name) return true;
    }
    return false;
  }

  // The confinement every command must have, from /proc/self/status.
  static void ExpectConfined(const std::string& status, const std::string& who) {
    for (const char* line : {"Seccomp:\t2", "NoNewPrivs:\t1", "CapPrm:\t0000000000000000",
                             "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000",
                             "CapAmb:\t0000000000000000"}) {
      EXPECT_NE(status.find(line), std::string::npos) << who << ": no '" << line << "' in\n"
                                                      << status;
    }
  }
};

TEST_F(SpareTest, TheNextCommandRunsInTheSpareAndANewOneIsMade) {
  SBX_SANDBOX(sb);
  Leaf spare;
  ASSERT_TRUE(WaitForSpare(sb.id(), &spare));

  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"true"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.exit->exit_code(), 0);

  // The command took the spare's leaf (removed after its exit) and the
  // sandbox got a new spare in a new leaf.
  EXPECT_TRUE(WaitFor([&] { return !HasLeaf(sb.id(), spare.name); }, seconds(10)))
      << "leaf " << spare.name << " of the spare is still there";
  Leaf next;
  ASSERT_TRUE(WaitForSpare(sb.id(), &next));
  EXPECT_NE(next.name, spare.name);
  EXPECT_NE(next.pids[0], spare.pids[0]);
}

// A command that runs a while has the sandbox's next spare made while it
// runs, so that the command after it (the program a compile built, say)
// runs in a spare at once: made only when the first ended, on v1 the spare
// would still be joining its leaf when the next command came.
TEST_F(SpareTest, TheNextSpareIsMadeWhileACommandRuns) {
  SBX_SANDBOX(sb);
  Leaf first;
  ASSERT_TRUE(WaitForSpare(sb.id(), &first));
  ExecResult long_one;
  std::thread running([&] { long_one = Sh(stub(), sb.id(), "sleep 2"); });
  // Within a second, well before the command ends: a leaf besides the
  // command's own (the first spare's) that holds a spare.
  pid_t spare = -1;
  const bool made = WaitFor(
      [&] {
        for (const Leaf& l : Leaves(sb.id())) {
          if (l.name != first.name && IsSpareLeaf(SandboxCgroup(sb.id()) + "/" + l.name)) {
            spare = l.pids[0];
            return true;
          }
        }
        return false;
      },
      seconds(1));
  const pid_t spare_in_sandbox = made ? ProcNsPid(spare) : -1;
  running.join();
  ASSERT_TRUE(long_one.Ok()) << long_one.Describe();
  ASSERT_TRUE(made) << "no spare was made while the command ran";
  ASSERT_GT(spare_in_sandbox, 1);

  // The next command runs in that spare.
  ExecResult next = RunExec(stub(), MakeStart(sb.id(), {"sh", "-c", "echo $$"}));
  ASSERT_TRUE(next.Ok()) << next.Describe();
  EXPECT_EQ(next.out, std::to_string(spare_in_sandbox) + "\n");
}

// On cgroup v2 the init starts each spare in its leaf (clone3 with
// CLONE_INTO_CGROUP), so that no spare waits for a cgroup move; for that it
// keeps sbxd's cgroup namespace. v1 has no such call: there a spare joins
// its leaf, and the init has a cgroup namespace of its own. sbxd's debug log
// says which way each spare went.
TEST_F(SpareTest, SparesStartInTheirLeafOnV2AndJoinItOnV1) {
  const bool v2 = daemon().CgroupParentDirs().size() == 1;
  SBX_SANDBOX(sb);
  Leaf first;
  ASSERT_TRUE(WaitForSpare(sb.id(), &first));
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"true"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  Leaf second;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<Leaf> leaves = Leaves(sb.id());
        if (leaves.size() != 1 || leaves[0].name == first.name || leaves[0].pids.size() != 1) {
          return false;
        }
        second = leaves[0];
        return true;
      },
      seconds(10)))
      << "no second spare";
  v1::Sandbox got;  // waits for the worker to be done with that spare
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());

  const std::string log = daemon().LogTail(1 << 20);
  for (const Leaf* spare : {&first, &second}) {
    const std::string said = std::string(v2 ? "started in its" : "joining its") + " leaf " +
                             sb.id() + "/" + spare->name;
    EXPECT_NE(log.find(said), std::string::npos)
        << (v2 ? "v2" : "v1") << ": no '" << said << "' in sbxd's log:\n" << log;
  }

  const std::vector<pid_t> init =
      CgroupProcsRecursive(SandboxCgroup(sb.id()) + "/init");
  ASSERT_EQ(init.size(), 1u);
  const std::string init_ns = ProcNamespace(init[0], "cgroup");
  ASSERT_FALSE(init_ns.empty());
  if (v2) {
    EXPECT_EQ(init_ns, ProcNamespace(daemon().pid(), "cgroup"));
  } else {
    EXPECT_NE(init_ns, ProcNamespace(daemon().pid(), "cgroup"));
  }
  // Either way the spare makes a namespace of its own, rooted at its leaf.
  EXPECT_TRUE(WaitFor([&] { return ProcNamespace(second.pids[0], "cgroup") != init_ns; },
                      seconds(5)))
      << "the spare " << second.pids[0] << " shares the init's cgroup namespace";
}

// The spare is made on sbxd's worker right after a create and after every
// command; usage read at those moments still counts the init alone.
TEST_F(SpareTest, UsageLeavesOutTheSpareEvenWhileItIsBeingMade) {
  for (int round = 0; round < 15; ++round) {
    SBX_SANDBOX(sb);
    v1::Sandbox got;
    ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
    EXPECT_EQ(got.usage().pids(), 1) << "round " << round << ", right after create";
    ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"true"}));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
    EXPECT_EQ(got.usage().pids(), 1) << "round " << round << ", right after a command";
  }
}

TEST_F(SpareTest, CommandsInTheSpareAreConfinedLikeAnyOther) {
  SBX_SANDBOX(sb);
  Leaf spare;
  ASSERT_TRUE(WaitForSpare(sb.id(), &spare));
  for (const char* user : {"", "root"}) {
    // Each command first waits for its spare, so that it surely ran in one.
    ASSERT_TRUE(WaitForSpare(sb.id(), &spare));
    ExecOptions options;
    options.user = user;
    ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"cat", "/proc/self/status"}, options));
    ASSERT_TRUE(r.Ok()) << r.Describe();
    ExpectConfined(r.out, std::string("user '") + user + "'");
  }
  // And the spare itself holds no more than the init: same filter, no
  // bounding set.
  ASSERT_TRUE(WaitForSpare(sb.id(), &spare));
  auto status = ReadFile("/proc/" + std::to_string(spare.pids[0]) + "/status");
  ASSERT_TRUE(status.has_value());
  EXPECT_NE(status->find("Seccomp:\t2"), std::string::npos) << *status;
  EXPECT_NE(status->find("CapBnd:\t0000000000000000"), std::string::npos) << *status;
}

TEST_F(SpareTest, ASpareKilledFromTheHostIsReplaced) {
  SBX_SANDBOX(sb);
  Leaf spare;
  ASSERT_TRUE(WaitForSpare(sb.id(), &spare));
  // Our own sandbox's process, by pid.
  ASSERT_EQ(::kill(spare.pids[0], SIGKILL), 0);
  ASSERT_TRUE(WaitFor([&] { return ::kill(spare.pids[0], 0) != 0; }, seconds(5)));

  ExecResult r = Sh(stub(), sb.id(), "echo still here");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.exit->exit_code(), 0);
  EXPECT_EQ(r.out, "still here\n");
  EXPECT_TRUE(WaitFor([&] { return !HasLeaf(sb.id(), spare.name); }, seconds(10)))
      << "the dead spare's leaf " << spare.name << " was not removed";
  Leaf next;
  ASSERT_TRUE(WaitForSpare(sb.id(), &next));
  EXPECT_NE(next.pids[0], spare.pids[0]);
}

TEST_F(SpareTest, ACommandThatKillsEverythingDoesNotBreakTheNextOne) {
  SBX_SANDBOX(sb);
  Leaf spare;
  ASSERT_TRUE(WaitForSpare(sb.id(), &spare));
  // Root inside signals every process it may: the spare of the next
  // command among them (the init, pid 1, is immune).
  ExecOptions root;
  root.user = "root";
  ExecResult killer = Sh(stub(), sb.id(), "sleep 0.2; kill -9 -1; echo survived", root);
  ASSERT_TRUE(killer.Ok()) << killer.Describe();
  EXPECT_EQ(killer.out, "survived\n");
  for (int i = 0; i < 3; ++i) {
    ExecResult r = Sh(stub(), sb.id(), "echo next");
    ASSERT_TRUE(r.Ok()) << "command " << i << ": " << r.Describe();
    EXPECT_EQ(r.out, "next\n");
  }
}

// A stopped spare never takes the command it is handed: the init gives up
// on it after a second, and the command runs the ordinary way.
TEST_F(SpareTest, AStoppedSpareIsGivenUpAndTheCommandRunsAllTheSame) {
  SBX_SANDBOX(sb);
  Leaf spare;
  ASSERT_TRUE(WaitForSpare(sb.id(), &spare));
  // Our own sandbox's process, by pid.
  ASSERT_EQ(::kill(spare.pids[0], SIGSTOP), 0);
  ExecResult r = Sh(stub(), sb.id(), "echo ran");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ran\n");
  EXPECT_TRUE(WaitFor([&] { return ::kill(spare.pids[0], 0) != 0; }, seconds(5)))
      << "the stopped spare " << spare.pids[0] << " was not ended";
}

// A spare killed while it joins its leaf holds the signal until the join
// ends, and may be handed the next command in the meantime. That command
// must still run: the spare's death is no spare, not the command's death.
TEST_F(SpareTest, ASpareKilledHoldingTheCommandDoesNotTakeItAlong) {
  SBX_SANDBOX(sb);
  Leaf spare;
  ASSERT_TRUE(WaitForSpare(sb.id(), &spare));
  const pid_t init = sb.sandbox().init_pid();
  ASSERT_GT(init, 0);
  // Stopped, the spare leaves the command it is handed unread, as one still
  // in its cgroup join does.
  ASSERT_EQ(::kill(spare.pids[0], SIGSTOP), 0);
  ExecResult r;
  std::thread exec([&] { r = Sh(stub(), sb.id(), "echo ran"); });
  // The init has handed the command over once it waits for the spare (in
  // poll, which glibc makes ppoll on some architectures).
  auto polling = [&] {
    const long call = ProcBlockedSyscall(init);
#ifdef SYS_poll
    if (call == SYS_poll) return true;
#endif
    return call == SYS_ppoll;
  };
  const bool handed = WaitFor(polling, seconds(5), std::chrono::milliseconds(1));
  ::kill(spare.pids[0], SIGKILL);
  exec.join();
  EXPECT_TRUE(handed) << "the init was never seen waiting for the spare";
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.exit->exit_code(), 0);
  EXPECT_EQ(r.out, "ran\n");
}

// A Destroy that comes while the worker makes the sandbox's next spare (a
// command has just ended): the leaf that spare is given must not outlive
// the removal of the sandbox's cgroup, which runs on the teardown threads.
// Many sandboxes at a time, destroyed from several threads, so that
// destroys meet spares being made: a race, which this test provokes without
// being sure to (it did not fail in five runs on the code before the fix).
TEST_F(SpareTest, DestroysWhileSparesAreBeingMadeLeaveNoCgroup) {
  constexpr int kRounds = 6;
  constexpr int kSandboxes = 8;
  constexpr int kThreads = 4;
  std::vector<std::string> ids;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<v1::Sandbox> boxes(kSandboxes);
    for (v1::Sandbox& sb : boxes) ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &sb).ok());
    // A sandbox's second command and later ones have their next spare made
    // as soon as they end; the first waits 20 ms.
    for (int command = 0; command < 2; ++command) {
      for (const v1::Sandbox& sb : boxes) {
        ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"true"}));
        ASSERT_TRUE(r.Ok()) << r.Describe();
      }
    }
    std::vector<std::thread> destroyers;
    std::atomic<int> failed{0};
    for (int t = 0; t < kThreads; ++t) {
      destroyers.emplace_back([&, t] {
        for (int i = t; i < kSandboxes; i += kThreads) {
          if (!Destroy(stub(), boxes[i].id()).ok()) ++failed;
        }
      });
    }
    for (std::thread& t : destroyers) t.join();
    ASSERT_EQ(failed.load(), 0);
    for (const v1::Sandbox& sb : boxes) ids.push_back(sb.id());
  }
  // The cgroups go after Destroy returns, on the teardown threads.
  for (const std::string& parent : daemon().CgroupParentDirs()) {
    std::vector<std::string> left;
    const bool gone = WaitFor(
        [&] {
          left.clear();
          for (const std::string& name : ListSubdirs(parent)) {
            if (std::find(ids.begin(), ids.end(), name) != ids.end()) left.push_back(name);
          }
          return left.empty();
        },
        seconds(10));
    EXPECT_TRUE(gone) << left.size() << " destroyed sandboxes' cgroups left in " << parent
                      << ", the first " << (left.empty() ? "" : left[0]);
  }
  EXPECT_EQ(daemon().LogTail(200000).find("removing what it left"), std::string::npos)
      << daemon().LogTail(4000);
}

TEST_F(SpareTest, ASecondDaemonOnTheSameStateDirectoryRefusesToStart) {
  const std::string socket = daemon().temp_dir() + "/second.sock";
  ProcessResult second = RunProcess(
      {SBX_SBXD_PATH, "--socket", socket, "--state-dir", daemon().state_dir(), "--cgroup-parent",
       daemon().cgroup_parent() + "-second", "--pool-size", "0"},
      "", std::chrono::seconds(20));
  ASSERT_TRUE(second.started);
  EXPECT_FALSE(second.timed_out) << "the second sbxd kept running";
  EXPECT_NE(second.exit_code, 0) << second.Describe();
  EXPECT_NE(second.err.find("another sbxd uses the state directory"), std::string::npos)
      << second.Describe();
  // The first one is unharmed.
  SBX_SANDBOX(sb);
  ExecResult r = Sh(stub(), sb.id(), "echo fine");
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "fine\n");
}

}  // namespace
}  // namespace sbx::it
