// sbxd starts over state files that are truncated or garbage: it starts,
// cleans those sandboxes up (processes, cgroup, directory) and keeps the
// good ones. A state file is two slots (server/manager/state_file.h): when
// only the latest is bad, as a write cut short leaves it, the sandbox comes
// back as it was before that write.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <map>

#include "fault_util.h"

namespace sbx::faults {
namespace {

using CorruptStateTest = FaultTest;

bool WriteWhole(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  return static_cast<bool>(out);
}

TEST_F(CorruptStateTest, BadStateFilesAreCleanedUpAndGoodOnesKept) {
  v1::Sandbox truncated, garbage, empty, good;
  for (auto* sb : {&truncated, &garbage, &empty, &good}) {
    ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), sb).ok());
    ExecResult r = Sh(stub(), sb->id(), "sleep 300 >/dev/null 2>&1 &");
    ASSERT_TRUE(r.Ok()) << r.Describe();
  }
  ASSERT_TRUE(Sh(stub(), good.id(), "echo kept > /work/mark").Ok());
  daemon_.Kill9();

  // Both slots of each: cut short inside the JSON (a slot is padded with
  // spaces, which may go), garbage, or empty.
  for (const char* slot : {"/state.0", "/state.1"}) {
    auto state_path = [&](const v1::Sandbox& sb) {
      return daemon_.state_dir() + "/sandboxes/" + sb.id() + slot;
    };
    auto whole = ReadFile(state_path(truncated));
    ASSERT_TRUE(whole.has_value()) << slot;
    ASSERT_TRUE(WriteWhole(state_path(truncated), whole->substr(0, whole->find("\"slot\""))));
    ASSERT_TRUE(WriteWhole(state_path(garbage), std::string("\x00\xff{not json", 11)));
    ASSERT_TRUE(WriteWhole(state_path(empty), ""));
  }
  std::map<std::string, uint64_t> starts;
  for (const auto* sb : {&truncated, &garbage, &empty, &good}) {
    starts[sb->id()] = ProcStartTime(sb->init_pid());
  }
  const uint64_t good_start = starts[good.id()];

  ASSERT_TRUE(daemon_.Restart()) << daemon_.LogTail();

  EXPECT_EQ(ListIds(stub()), std::vector<std::string>{good.id()});
  for (const auto* sb : {&truncated, &garbage, &empty}) {
    v1::Sandbox got;
    EXPECT_EQ(Get(stub(), sb->id(), &got).error_code(), grpc::NOT_FOUND) << sb->id();
    EXPECT_TRUE(WaitFor([&] { return SandboxProcesses(sb->id()).empty(); }, seconds(5)));
    EXPECT_TRUE(
        WaitFor([&] { return ProcessGone(sb->init_pid(), starts[sb->id()]); }, seconds(5)))
        << "init of " << sb->id() << " still runs";
    ExpectNothingLeftOf(sb->id());
  }
  EXPECT_FALSE(ProcessGone(good.init_pid(), good_start));
  ExecResult r = RunExec(stub(), MakeStart(good.id(), {"cat", "/work/mark"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "kept\n");

  ASSERT_TRUE(Destroy(stub(), good.id()).ok());
  ExpectNothingLeft();
}

TEST_F(CorruptStateTest, ACutShortWriteLeavesTheStateBeforeIt) {
  v1::Sandbox sb;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &sb).ok());
  const int64_t pids_before = sb.limits().pids();
  v1::Limits raised;
  raised.set_pids(pids_before + 7);
  v1::Sandbox after;
  ASSERT_TRUE(SetLimits(stub(), sb.id(), raised, &after).ok());
  ASSERT_EQ(after.limits().pids(), pids_before + 7);
  daemon_.Kill9();

  // The write of the new limits went to the slot that did not hold the
  // latest state; cut it short inside its JSON, as a write that stopped
  // part of the way leaves it.
  const std::string dir = daemon_.state_dir() + "/sandboxes/" + sb.id();
  std::string latest;
  for (const char* slot : {"/state.0", "/state.1"}) {
    auto text = ReadFile(dir + slot);
    ASSERT_TRUE(text.has_value()) << slot;
    if (text->find("\"pids\": " + std::to_string(pids_before + 7)) != std::string::npos) {
      latest = dir + slot;
      ASSERT_TRUE(WriteWhole(latest, text->substr(0, text->find("\"pids\""))));
    }
  }
  ASSERT_FALSE(latest.empty()) << "no slot holds the new limits";

  ASSERT_TRUE(daemon_.Restart()) << daemon_.LogTail();
  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
  EXPECT_EQ(got.state(), v1::SANDBOX_STATE_RUNNING);
  EXPECT_EQ(got.limits().pids(), pids_before);
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  // The next write goes to the slot that was cut, and is read after a
  // restart.
  ASSERT_TRUE(SetLimits(stub(), sb.id(), raised).ok());
  daemon_.Kill9();
  ASSERT_TRUE(daemon_.Restart()) << daemon_.LogTail();
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
  EXPECT_EQ(got.limits().pids(), pids_before + 7);
  ASSERT_TRUE(Destroy(stub(), sb.id()).ok());
  ExpectNothingLeft();
}

TEST_F(CorruptStateTest, StrayFilesInStateDirDoNotStopStartUp) {
  v1::Sandbox good;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &good).ok());
  daemon_.Kill9();
  // A stray file, a directory without state, and a state dir whose file
  // names another sandbox.
  const std::string dir = daemon_.state_dir() + "/sandboxes";
  ASSERT_TRUE(WriteWhole(dir + "/README", "not a sandbox"));
  ASSERT_EQ(mkdir((dir + "/sb-0000000000000000").c_str(), 0700), 0);
  ASSERT_TRUE(daemon_.Restart()) << daemon_.LogTail();
  EXPECT_EQ(ListIds(stub()), std::vector<std::string>{good.id()});
  ExecResult r = RunExec(stub(), MakeStart(good.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  ASSERT_TRUE(Destroy(stub(), good.id()).ok());
  ExpectNothingLeft();
}

}  // namespace
}  // namespace sbx::faults
