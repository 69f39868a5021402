// The `sbx` binary against FakeSbxd: output format, exit codes (128+N for a
// signal), error reporting and usage errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "fake_sbxd.h"

extern char** environ;

namespace sbx {
namespace {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Runs the sbx binary with `args`, feeding `input` on stdin.
CliResult RunCli(const std::vector<std::string>& args,
                 const std::string& input = "") {
  char dir[] = "/tmp/sbx-cli-test-XXXXXX";
  const std::string tmp = mkdtemp(dir);
  const std::string in = tmp + "/in", out = tmp + "/out", err = tmp + "/err";
  std::ofstream(in, std::ios::binary) << input;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> argv_storage = {SBX_CLI_PATH};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  CliResult result;
  pid_t pid;
  if (posix_spawn(&pid, SBX_CLI_PATH, &actions, nullptr, argv.data(),
                  environ) == 0) {
    int status;
    waitpid(pid, &status, 0);
    result.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  posix_spawn_file_actions_destroy(&actions);
  result.out = ReadFile(out);
  result.err = ReadFile(err);
  unlink(in.c_str());
  unlink(out.c_str());
  unlink(err.c_str());
  rmdir(tmp.c_str());
  return result;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.ok()); }
  CliResult Sbx(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--server", server_.address()});
    return RunCli(args, input);
  }
  testing::FakeSbxd server_;
};

TEST(CliHelpTest, HelpOfEveryCommandExitsZero) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--help"}, {"create", "--help"},
        {"exec", "--help"}, {"limits", "--help"}, {"ls", "--help"},
        {"inspect", "--help"}, {"rm", "--help"}}) {
    CliResult r = RunCli(args);
    EXPECT_EQ(r.code, 0) << args[0] << ": " << r.err;
    EXPECT_NE(r.out.find("Usage: sbx"), std::string::npos) << r.out;
  }
  EXPECT_EQ(RunCli({"--version"}).code, 0);
}

TEST(CliUsageTest, BadCommandLinesExitTwo) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{}, {"frobnicate"}, {"exec", "sb-1"},
        {"create", "--memory", "12X"}, {"create", "--cpus", "-1"},
        {"create", "--label", "novalue"}, {"create", "--ttl", "10"},
        {"exec", "--timeout", "-1s", "sb-1", "--", "true"},
        {"--server", "not-an-address", "ls"}, {"cp", "a", "b"}}) {
    CliResult r = RunCli(args);
    EXPECT_EQ(r.code, 2) << (args.empty() ? "" : args[0]) << ": " << r.err;
    EXPECT_EQ(r.err.rfind("sbx: ", 0), 0u) << r.err;
  }
}

TEST(CliUnreachableTest, SaysWhereItLookedAndExitsOne) {
  CliResult r = RunCli({"--server", "/nonexistent/sbxd.sock", "create"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("sbx: cannot reach sbxd at /nonexistent/sbxd.sock"),
            std::string::npos)
      << r.err;
}

TEST_F(CliTest, CreatePrintsTheIdAlone) {
  CliResult r = Sbx({"create", "--memory", "256M", "--cpus", "0.5", "--pids",
                     "64", "--label", "team=a", "--ttl", "5m"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "sb-1\n");
}

TEST_F(CliTest, ExecSeparatesStreamsAndPassesTheExitCode) {
  CliResult r = Sbx({"exec", "sb-1", "--", "exit", "3"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(Sbx({"exec", "sb-1", "--", "exit", "0", "9"}).code, 128 + 9);
  CliResult dash = Sbx({"exec", "sb-1", "--", "echo", "-c", "--x"});
  EXPECT_EQ(dash.code, 0) << dash.err;
  EXPECT_EQ(dash.out, "-c --x\n");
}

TEST_F(CliTest, ExecInteractiveStreamsStdin) {
  std::string input(3 << 20, 'z');
  input += "end\n";
  CliResult r = Sbx({"exec", "-i", "sb-1", "--", "cat"}, input);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out == input) << r.out.size();
  // Without -i the command sees EOF at once and nothing is sent.
  CliResult closed = Sbx({"exec", "sb-1", "--", "cat"}, "ignored");
  EXPECT_EQ(closed.code, 0);
  EXPECT_EQ(closed.out, "");
}

TEST_F(CliTest, ExecErrorsPrintTheServerMessage) {
  CliResult r = Sbx({"exec", "missing", "--", "echo"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "sbx: sandbox missing not found\n");
}

TEST_F(CliTest, InspectPrintsEveryFieldAsJson) {
  CliResult r = Sbx({"inspect", "sb-7"});
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["id"], "sb-7");
  EXPECT_EQ(j["state"], "SANDBOX_STATE_RUNNING");
  EXPECT_EQ(j["limits"]["memory_bytes"], 256 << 20);
  EXPECT_TRUE(j["limits"]["pids"].is_null());
  EXPECT_EQ(j["labels"]["team"], "a");
  EXPECT_EQ(j["created_at"], "2023-11-14T22:13:20Z");
  EXPECT_TRUE(j["expires_at"].is_null());
  for (const char* key : {"image", "usage", "init_pid"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  CliResult missing = Sbx({"inspect", "missing"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "sbx: sandbox missing not found\n");
}

TEST_F(CliTest, LsPrintsHeaderAndOneRowPerSandbox) {
  CliResult r = Sbx({"ls", "--label", "team=a"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines;
  std::stringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[0].rfind("ID", 0), 0u);
  for (const char* column : {"STATE", "MEMORY", "CPUS", "PIDS", "AGE", "LABELS"}) {
    EXPECT_NE(lines[0].find(column), std::string::npos) << column;
  }
  EXPECT_EQ(lines[1].rfind("sb-1", 0), 0u);
  EXPECT_NE(lines[1].find("running"), std::string::npos);
  EXPECT_NE(lines[1].find("team=a"), std::string::npos);
}

TEST_F(CliTest, RmIsIdempotentAndReportsFailures) {
  CliResult r = Sbx({"rm", "sb-1", "missing"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "sb-1\nmissing\n");
  CliResult broken = Sbx({"rm", "broken", "sb-2"});
  EXPECT_EQ(broken.code, 1);
  EXPECT_EQ(broken.out, "sb-2\n");
  EXPECT_EQ(broken.err, "sbx: broken: cannot remove cgroup\n");
}

TEST_F(CliTest, LimitsNeedsAFlagAndReportsServerErrors) {
  EXPECT_EQ(Sbx({"limits", "sb-1"}).code, 2);
  EXPECT_EQ(Sbx({"limits", "sb-1", "--memory", "64M", "--pids", "16"}).code, 0);
  CliResult r = Sbx({"limits", "sb-1", "--pids", "1000001"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "sbx: pids limit 1000001 is above the maximum 1000000\n");
}

}  // namespace
}  // namespace sbx
