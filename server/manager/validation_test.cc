#include "server/manager/validation.h"

#include <gtest/gtest.h>

#include <string>

namespace sbx::manager {
namespace {

const HostResources kHost{.memory_bytes = int64_t{4} << 30, .cpus = 2};

TEST(ValidationTest, AcceptsSaneLimits) {
  engine::Limits l;
  l.memory_bytes = 256 << 20;
  l.cpus = 0.5;
  l.pids = 64;
  EXPECT_TRUE(ValidateLimits(l, kHost).ok());
  EXPECT_TRUE(ValidateLimits({}, kHost).ok());
}

TEST(ValidationTest, RejectsAbsurdLimitsNamingTheField) {
  engine::Limits l;
  l.memory_bytes = 1024;
  auto s = ValidateLimits(l, kHost);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("memory_bytes"), std::string::npos);
  l.memory_bytes = int64_t{5} << 30;
  EXPECT_FALSE(ValidateLimits(l, kHost).ok());

  engine::Limits c;
  c.cpus = -1;
  EXPECT_NE(ValidateLimits(c, kHost).message().find("cpus"), std::string::npos);
  c.cpus = 3;
  EXPECT_FALSE(ValidateLimits(c, kHost).ok());
  c.cpus = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(ValidateLimits(c, kHost).ok());

  engine::Limits p;
  p.pids = 0;
  EXPECT_NE(ValidateLimits(p, kHost).message().find("pids"), std::string::npos);
  p.pids = kMaxPids + 1;
  EXPECT_FALSE(ValidateLimits(p, kHost).ok());
}

TEST(ValidationTest, DefaultsAndMerge) {
  ManagerOptions options;
  engine::Limits in;
  in.cpus = 0.25;
  engine::Limits out = WithDefaults(in, options);
  EXPECT_EQ(*out.memory_bytes, options.default_memory_bytes);
  EXPECT_EQ(*out.cpus, 0.25);
  EXPECT_EQ(*out.pids, options.default_pids);

  engine::Limits update;
  update.pids = 16;
  engine::Limits merged = MergeLimits(out, update);
  EXPECT_EQ(*merged.pids, 16);
  EXPECT_EQ(*merged.cpus, 0.25);
}

TEST(ValidationTest, Labels) {
  EXPECT_TRUE(ValidateLabels({{"app", "x"}, {"example.com/team", "a b"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"", "x"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"bad key", "x"}}).ok());
  EXPECT_FALSE(ValidateLabels({{std::string(64, 'k'), "x"}}).ok());
  EXPECT_FALSE(ValidateLabels({{"k", std::string(257, 'v')}}).ok());
  std::map<std::string, std::string> many;
  for (int i = 0; i < 65; ++i) many["k" + std::to_string(i)] = "v";
  EXPECT_FALSE(ValidateLabels(many).ok());
}

TEST(ValidationTest, EnvTtlImage) {
  EXPECT_TRUE(ValidateEnv({{"A", "b=c"}}, "env").ok());
  EXPECT_FALSE(ValidateEnv({{"A=B", "c"}}, "env").ok());
  EXPECT_FALSE(ValidateEnv({{std::string("A\0B", 3), "c"}}, "env").ok());
  EXPECT_FALSE(ValidateEnv({{"A", std::string("x\0y", 3)}}, "env").ok());
  EXPECT_TRUE(ValidateTtl(absl::Hours(1)).ok());
  EXPECT_FALSE(ValidateTtl(absl::Seconds(-1)).ok());
  EXPECT_FALSE(ValidateTtl(absl::Hours(24 * 31)).ok());
  EXPECT_TRUE(ValidateImage("").ok());
  EXPECT_TRUE(ValidateImage("host").ok());
  EXPECT_EQ(ValidateImage("ubuntu").code(), absl::StatusCode::kInvalidArgument);
}

TEST(ValidationTest, Selector) {
  std::map<std::string, std::string> labels = {{"a", "1"}, {"b", "2"}};
  EXPECT_TRUE(MatchesSelector(labels, {}));
  EXPECT_TRUE(MatchesSelector(labels, {{"a", "1"}}));
  EXPECT_FALSE(MatchesSelector(labels, {{"a", "2"}}));
  EXPECT_FALSE(MatchesSelector(labels, {{"c", "1"}}));
}

TEST(ValidationTest, ExecEnvironmentLayers) {
  ExecParams p;
  p.argv = {"sh", "-c", "env"};
  p.env = {{"FOO", "exec"}, {"PATH", "/x"}};
  auto o = BuildExecOptions("sb-0123456789abcdef", {{"FOO", "sandbox"}, {"BAR", "1"}}, p);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->uid, engine::kSandboxUid);
  EXPECT_EQ(o->cwd, engine::kWorkDir);
  auto has = [&](const std::string& kv) {
    return std::find(o->env.begin(), o->env.end(), kv) != o->env.end();
  };
  EXPECT_TRUE(has("PATH=/x"));
  EXPECT_TRUE(has("FOO=exec"));
  EXPECT_TRUE(has("BAR=1"));
  EXPECT_TRUE(has("HOME=/work"));
  EXPECT_TRUE(has("HOSTNAME=sb-0123456789abcdef"));
  EXPECT_FALSE(has("TERM=xterm-256color"));
  EXPECT_EQ(std::count_if(o->env.begin(), o->env.end(),
                          [](const std::string& e) { return e.rfind("PATH=", 0) == 0; }),
            1);
}

// The task limit leaves two pids to uid 0, for the init and the spare: a
// command of another uid can hold every other pid, root's count includes
// those two itself.
TEST(ValidationTest, TaskLimitFollowsThePidsLimit) {
  EXPECT_EQ(TaskLimitFor(64, engine::kSandboxUid), 62);
  EXPECT_EQ(TaskLimitFor(64, 4242), 62);
  EXPECT_EQ(TaskLimitFor(64, 0), 64);
  EXPECT_EQ(TaskLimitFor(3, engine::kSandboxUid), 1);
  EXPECT_EQ(TaskLimitFor(2, engine::kSandboxUid), 1);
  EXPECT_EQ(TaskLimitFor(1, engine::kSandboxUid), 1);
  EXPECT_EQ(TaskLimitFor(1, 0), 1);
  EXPECT_EQ(TaskLimitFor(0, engine::kSandboxUid), 0);
  EXPECT_EQ(TaskLimitFor(0, 0), 0);
}

TEST(ValidationTest, ExecUsers) {
  ExecParams p;
  p.argv = {"id"};
  p.user = "root";
  p.tty = true;
  auto o = BuildExecOptions("sb-0123456789abcdef", {}, p);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->uid, 0u);
  EXPECT_NE(std::find(o->env.begin(), o->env.end(), "HOME=/root"), o->env.end());
  EXPECT_NE(std::find(o->env.begin(), o->env.end(), "TERM=xterm-256color"), o->env.end());
  p.user = "4242";
  EXPECT_EQ(BuildExecOptions("x", {}, p)->uid, 4242u);
  for (const char* bad : {"65536", "-1", "nobody", "+5", "1e3"}) {
    p.user = bad;
    EXPECT_EQ(BuildExecOptions("x", {}, p).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(ValidationTest, ExecRejectsBadRequests) {
  ExecParams p;
  EXPECT_NE(BuildExecOptions("x", {}, p).status().message().find("argv"),
            std::string::npos);
  p.argv = {"a", std::string("b\0c", 3)};
  EXPECT_FALSE(BuildExecOptions("x", {}, p).ok());
  p.argv = {"ls"};
  p.cwd = "relative";
  EXPECT_NE(BuildExecOptions("x", {}, p).status().message().find("cwd"),
            std::string::npos);
  p.cwd = "";
  p.argv.assign(kMaxArgs + 1, "a");
  EXPECT_FALSE(BuildExecOptions("x", {}, p).ok());
  p.argv = {"echo", std::string(kMaxArgvEnvBytes, 'x')};
  EXPECT_FALSE(BuildExecOptions("x", {}, p).ok());
  p.argv = {"sleep", "1"};
  p.timeout = absl::Seconds(-1);
  EXPECT_FALSE(BuildExecOptions("x", {}, p).ok());
  p.timeout = absl::Microseconds(10);
  EXPECT_EQ(BuildExecOptions("x", {}, p)->timeout_ms, 1);
}

TEST(ValidationTest, SandboxIds) {
  for (int i = 0; i < 100; ++i) {
    std::string id = NewSandboxId();
    EXPECT_TRUE(IsSandboxId(id)) << id;
    EXPECT_LE(id.size(), 63u);
  }
  EXPECT_NE(NewSandboxId(), NewSandboxId());
  EXPECT_FALSE(IsSandboxId("sb-0123456789ABCDEF"));
  EXPECT_FALSE(IsSandboxId("../etc"));
  EXPECT_FALSE(IsSandboxId(""));
}

TEST(ValidationTest, ParseSize) {
  EXPECT_EQ(*ParseSize("1048576"), 1048576);
  EXPECT_EQ(*ParseSize("64k"), 64 << 10);
  EXPECT_EQ(*ParseSize("512M"), int64_t{512} << 20);
  EXPECT_EQ(*ParseSize("2GiB"), int64_t{2} << 30);
  EXPECT_EQ(*ParseSize("1gb"), int64_t{1} << 30);
  for (const char* bad : {"", "M", "-1M", "1X", "1.5G", " 1M", "1Mx", "99999999999P"}) {
    EXPECT_EQ(ParseSize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ValidationTest, SandboxIdsCarryTheNodeName) {
  const std::string id = NewSandboxId("node-a");
  EXPECT_EQ(id.size(), 19u + 7u);
  EXPECT_EQ(id.substr(19), ".node-a");
  EXPECT_TRUE(IsSandboxId(id));
  EXPECT_TRUE(IsSandboxId(NewSandboxId()));
  EXPECT_FALSE(IsSandboxId(id.substr(0, 19) + "."));
  EXPECT_FALSE(IsSandboxId(id.substr(0, 19) + ".Node"));
  EXPECT_FALSE(IsSandboxId(id.substr(0, 19) + "x"));
  EXPECT_FALSE(IsSandboxId(id.substr(0, 19) + ".a/b"));
  EXPECT_FALSE(IsSandboxId(id.substr(0, 19) + "." + std::string(45, 'a')));
  EXPECT_TRUE(IsSandboxId(id.substr(0, 19) + ".ip-10-0-0-1.ec2.internal"));
}

TEST(ValidationTest, NodeNames) {
  for (const std::string& good : {std::string("a"), std::string("node-1"), std::string("n0"),
                                  std::string("a.b"), std::string(44, 'z')}) {
    EXPECT_TRUE(IsNodeName(good)) << good;
  }
  for (const char* bad : {"", "-a", "a-", ".a", "a.", "A", "a_b", "a b"}) {
    EXPECT_FALSE(IsNodeName(bad)) << bad;
  }
}

}  // namespace
}  // namespace sbx::manager
