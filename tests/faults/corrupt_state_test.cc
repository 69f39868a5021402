// sbxd starts over state files that are truncated or garbage: it starts,
// cleans those sandboxes up (processes, cgroup, directory) and keeps the
// good ones.
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

  auto state_path = [&](const v1::Sandbox& sb) {
    return daemon_.state_dir() + "/sandboxes/" + sb.id() + "/state.json";
  };
  auto whole = ReadFile(state_path(truncated));
  ASSERT_TRUE(whole.has_value());
  ASSERT_TRUE(WriteWhole(state_path(truncated), whole->substr(0, whole->size() / 2)));
  ASSERT_TRUE(WriteWhole(state_path(garbage), std::string("\x00\xff{not json", 11)));
  ASSERT_TRUE(WriteWhole(state_path(empty), ""));
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
