// The `sbx` CLI against a real daemon, run as a child process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

class CliTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }
  void SetUp() override {
    DaemonTest::SetUp();
    ASSERT_STRNE(SBX_CLI_PATH, "") << "the `sbx` CLI target does not exist in this build";
    ASSERT_EQ(access(SBX_CLI_PATH, X_OK), 0) << "sbx CLI not built at " << SBX_CLI_PATH;
  }

  static ProcessResult Sbx(std::vector<std::string> args, const std::string& stdin_data = "") {
    args.insert(args.begin(), {SBX_CLI_PATH, "--server", daemon().address()});
    return RunProcess(args, stdin_data, seconds(60));
  }

  // Creates a sandbox with the CLI and returns its id ("" on failure).
  static std::string CliCreate(std::vector<std::string> flags) {
    flags.insert(flags.begin(), "create");
    ProcessResult r = Sbx(flags);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    std::string id = Trim(r.out);
    EXPECT_EQ(id.find_first_of(" \t\n"), std::string::npos) << "create printed more than an id:\n"
                                                             << r.out;
    return r.exit_code == 0 ? id : "";
  }
};

// Finds `key_part` (case-insensitive substring of a key) anywhere below a
// "limits" object and returns its value as text.
std::vector<std::string> LimitValues(const nlohmann::json& j, const std::string& key_part,
                                     bool under_limits = false) {
  std::vector<std::string> out;
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string key = it.key();
      for (auto& c : key) c = static_cast<char>(std::tolower(c));
      if (under_limits && key.find(key_part) != std::string::npos && !it->is_structured()) {
        out.push_back(it->is_string() ? it->get<std::string>() : it->dump());
      }
      auto more = LimitValues(*it, key_part, under_limits || key == "limits");
      out.insert(out.end(), more.begin(), more.end());
    }
  } else if (j.is_array()) {
    for (const auto& e : j) {
      auto more = LimitValues(e, key_part, under_limits);
      out.insert(out.end(), more.begin(), more.end());
    }
  }
  return out;
}

bool Contains(const std::vector<std::string>& values, std::initializer_list<const char*> any) {
  for (const auto& v : values) {
    for (const char* a : any) {
      if (v == a) return true;
    }
  }
  return false;
}

TEST_F(CliTest, CreatePrintsIdAndAppliesLimits) {
  const std::string id = CliCreate({"--memory", "256M", "--cpus", "0.5", "--pids", "64"});
  ASSERT_FALSE(id.empty());
  v1::Sandbox got;
  grpc::Status s = Get(stub(), id, &got);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_EQ(got.limits().memory_bytes(), int64_t{256} << 20);
  EXPECT_DOUBLE_EQ(got.limits().cpus(), 0.5);
  EXPECT_EQ(got.limits().pids(), 64);
  ProcessResult rm = Sbx({"rm", id});
  EXPECT_EQ(rm.exit_code, 0) << rm.Describe();
}

TEST_F(CliTest, ExecSeparatesStreamsAndPassesExitCode) {
  const std::string id = CliCreate({});
  ASSERT_FALSE(id.empty());
  ProcessResult r = Sbx({"exec", id, "--", "sh", "-c", "echo hi; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3) << r.Describe();
  EXPECT_EQ(r.out, "hi\n");
  EXPECT_EQ(r.err, "err\n");
  r = Sbx({"exec", id, "--", "sh", "-c", "kill -KILL $$"});
  EXPECT_EQ(r.exit_code, 128 + 9) << r.Describe();
  r = Sbx({"exec", "--env", "FOO=bar", "--cwd", "/tmp", id, "--", "sh", "-c", "echo $FOO; pwd"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, "bar\n/tmp\n");
  r = Sbx({"exec", "--timeout", "500ms", id, "--", "sleep", "100"});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(r.timed_out) << "the CLI did not stop at the timeout";
  EXPECT_EQ(Sbx({"rm", id}).exit_code, 0);
}

TEST_F(CliTest, ExecInteractiveStdinFromFile) {
  const std::string id = CliCreate({});
  ASSERT_FALSE(id.empty());
  const std::string data = RandomBytes(4 << 20, 99);
  const std::string file = daemon().temp_dir() + "/big.bin";
  {
    std::ofstream f(file, std::ios::binary);
    f << data;
  }
  ProcessResult r = RunProcess({"/bin/sh", "-c", "exec \"$0\" --server \"$1\" exec -i \"$2\" -- sha256sum < \"$3\"",
                                SBX_CLI_PATH, daemon().address(), id, file},
                               "", seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.out, Sha256Hex(data) + "  -\n");
  EXPECT_EQ(Sbx({"rm", id}).exit_code, 0);
}

TEST_F(CliTest, LimitsInspectLsRm) {
  const std::string id = CliCreate({"--label", "team=cli", "--memory", "256M"});
  ASSERT_FALSE(id.empty());
  const std::string other = CliCreate({"--label", "team=other"});
  ASSERT_FALSE(other.empty());

  ProcessResult r = Sbx({"limits", id, "--memory", "64M", "--pids", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), id, &got).ok());
  EXPECT_EQ(got.limits().memory_bytes(), 64 << 20);
  EXPECT_EQ(got.limits().pids(), 16);

  r = Sbx({"inspect", id});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << "inspect did not print JSON:\n" << r.out;
  EXPECT_NE(r.out.find(id), std::string::npos);
  EXPECT_TRUE(Contains(LimitValues(j, "memory"), {"67108864", "64M", "64MiB", "64 MiB"}))
      << "memory limit 64M not in inspect output:\n" << r.out;
  EXPECT_TRUE(Contains(LimitValues(j, "pids"), {"16"})) << "pids 16 not in:\n" << r.out;

  r = Sbx({"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(other), std::string::npos) << r.out;
  r = Sbx({"ls", "--label", "team=cli"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(other), std::string::npos) << "label filter ignored:\n" << r.out;

  r = Sbx({"rm", id, other});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_TRUE(ListIds(stub()).empty());
  r = Sbx({"inspect", id});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(r.err.empty()) << "no error message on stderr";
  r = Sbx({"ls"});
  EXPECT_EQ(r.out.find(id), std::string::npos) << r.out;
}

TEST_F(CliTest, ErrorsPrintServerMessageAndFail) {
  ProcessResult r = Sbx({"exec", "no-such-sandbox", "--", "true"});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.err.find("no-such-sandbox"), std::string::npos) << r.Describe();
  r = Sbx({"create", "--memory", "-5"});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(r.err.empty());
  EXPECT_TRUE(ListIds(stub()).empty());
  // $SBX_SERVER is honoured.
  ProcessResult ls = RunProcess({SBX_CLI_PATH, "ls"}, "", seconds(30),
                                {"SBX_SERVER=" + daemon().address()});
  EXPECT_EQ(ls.exit_code, 0) << ls.Describe();
}

}  // namespace
}  // namespace sbx::it
