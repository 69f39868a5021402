// sbxd's configuration file: --config, flags over the file, --print-config,
// bad files refused naming the key, and a daemon that runs from a file
// (defaults applied, owner-only socket, JSON logs).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sbx-config-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { RemoveTree(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

ProcessResult Sbxd(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SBX_SBXD_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunProcess(argv, "", seconds(20));
}

TEST(ConfigFileTest, PrintConfigMergesFileAndFlags) {
  TempDir dir;
  const std::string file = dir.Write("sbxd.yaml", R"(
pool_size: 7
defaults:
  memory: 1G
  pids: 99
tenants:
  alice:
    tokens: [2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae]
    max_sandboxes: 2
)");
  ProcessResult r = Sbxd({"--config", file, "--pool-size", "0", "--default-cpus", "2",
                          "--print-config"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  const std::string& out = r.out;
  EXPECT_NE(out.find("pool_size: 0\n"), std::string::npos) << out;  // the flag wins
  EXPECT_NE(out.find("  memory: 1G\n"), std::string::npos) << out;  // from the file
  EXPECT_NE(out.find("  pids: 99\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  cpus: 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  alice:\n"), std::string::npos) << out;
  EXPECT_NE(out.find("    max_sandboxes: 2\n"), std::string::npos) << out;
  // The printed configuration is itself a valid config file.
  const std::string printed = dir.Write("printed.yaml", out);
  ProcessResult again = Sbxd({"--config", printed, "--print-config"});
  ASSERT_EQ(again.exit_code, 0) << again.Describe();
  EXPECT_EQ(again.out, out);
}

TEST(ConfigFileTest, BadConfigIsRefusedNamingTheKey) {
  TempDir dir;
  struct Case {
    std::string yaml;
    std::string key;
  } cases[] = {
      {"defaults:\n  memory: 12Q\n", "'defaults.memory'"},
      {"max_sandboxs: 3\n", "'max_sandboxs'"},
      {"max_sandboxes: many\n", "'max_sandboxes'"},
      {"log:\n  json: perhaps\n", "'log.json'"},
      {"listen: 127.0.0.1:1\n", "'listen'"},  // plain TCP without insecure_tcp
      {"tenants:\n  a:\n    tokens: [hunter2]\n", "'tenants.a.tokens'"},
  };
  for (const Case& c : cases) {
    const std::string file = dir.Write("bad.yaml", c.yaml);
    const std::string socket = dir.path() + "/never.sock";
    ProcessResult r = Sbxd({"--config", file, "--socket", socket, "--state-dir",
                            dir.path() + "/state", "--cgroup-parent", "sbx-never-started"});
    EXPECT_EQ(r.exit_code, 2) << c.yaml << r.Describe();
    EXPECT_NE(r.err.find(c.key), std::string::npos) << c.yaml << r.err;
    EXPECT_FALSE(PathExists(socket)) << c.yaml;
    EXPECT_FALSE(PathExists(dir.path() + "/state")) << c.yaml;
  }
  // A bad flag value is named by its key too.
  ProcessResult r = Sbxd({"--default-memory", "12Q", "--print-config"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_NE(r.err.find("'defaults.memory'"), std::string::npos) << r.err;
  // A --config that does not exist is an error, not a silent default.
  r = Sbxd({"--config", dir.path() + "/missing.yaml", "--print-config"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_NE(r.err.find("missing.yaml"), std::string::npos) << r.err;
}

// A socket path sbxd cannot use stops it at start with the reason, after
// its manager was up: its cgroup parent is not left behind, and a file
// that is not a socket is not touched.
TEST(ConfigFileTest, AnUnusableSocketPathIsRefusedAtStart) {
  TempDir dir;
  const std::string parent = NamePrefix() + "-" + std::to_string(::getpid()) + "-badsocket";
  const std::string not_a_socket = dir.Write("file.sock", "keep me");
  const struct {
    std::string socket;
    std::string reason;
  } cases[] = {
      {dir.path() + "/" + std::string(120, 'x') + ".sock", "socket path must be 1 to 107 bytes"},
      {not_a_socket, "exists and is not a socket; refusing to replace it"},
  };
  for (const auto& c : cases) {
    ProcessResult r = Sbxd({"--config", "/dev/null", "--socket", c.socket, "--state-dir",
                            dir.path() + "/state", "--cgroup-parent", parent, "--pool-size", "0"});
    EXPECT_FALSE(r.timed_out) << r.Describe();
    EXPECT_EQ(r.exit_code, 1) << r.Describe();
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << r.Describe();
    for (const std::string& cgroup : CgroupParentDirs(parent)) {
      EXPECT_FALSE(PathExists(cgroup)) << cgroup << " left by " << c.socket;
    }
  }
  std::ifstream in(not_a_socket);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "keep me");
}

TEST(ConfigFileTest, ExampleConfigIsAccepted) {
  ProcessResult r =
      Sbxd({"--config", std::string(SBX_SOURCE_DIR) + "/docs/sbxd.example.yaml", "--print-config"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_NE(r.out.find("alice"), std::string::npos);
}

// A daemon started from a file (plus the fixture's flags).
class ConfiguredDaemonTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    DaemonOptions o;
    o.extra_args = {"--config", dir_->Write("sbxd.yaml", R"(
defaults:
  pids: 77
  memory: 96M
log:
  json: true
)")};
    StartDaemon(o);
  }
  static void TearDownTestSuite() {
    StopDaemon();
    delete dir_;
  }
  static TempDir* dir_;
};
TempDir* ConfiguredDaemonTest::dir_ = nullptr;

TEST_F(ConfiguredDaemonTest, FileDefaultsApplyToSandboxes) {
  SBX_SANDBOX(sb);
  EXPECT_EQ(sb.sandbox().limits().pids(), 77);
  EXPECT_EQ(sb.sandbox().limits().memory_bytes(), 96 << 20);
}

TEST_F(ConfiguredDaemonTest, SocketIsOwnerOnly) {
  struct stat st;
  ASSERT_EQ(lstat(daemon().socket_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, geteuid());
}

TEST_F(ConfiguredDaemonTest, LogLinesAreJson) {
  SBX_SANDBOX(sb);  // makes the daemon log something about a sandbox
  int parsed = 0;
  for (const std::string& line : SplitLines(daemon().LogTail(16384))) {
    if (line.empty() || line[0] != '{' || line.back() != '}') continue;  // a cut first line
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << line;
    EXPECT_TRUE(j.contains("ts") && j.contains("level") && j.contains("logger") &&
                j.contains("msg"))
        << line;
    ++parsed;
  }
  EXPECT_GT(parsed, 3) << daemon().LogTail();
  const std::vector<std::string> lines = SplitLines(daemon().LogTail(16384));
  for (size_t i = 1; i < lines.size(); ++i) {  // [0] may be cut
    // No text-format line (they start with the date) in a JSON log.
    EXPECT_FALSE(!lines[i].empty() && lines[i][0] >= '0' && lines[i][0] <= '9') << lines[i];
  }
}

}  // namespace
}  // namespace sbx::it
