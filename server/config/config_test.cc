#include "server/config/config.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sbx::config {
namespace {

Tenant MakeTenant(std::string name, std::vector<std::string> tokens,
                  std::vector<std::string> client_names = {}) {
  Tenant t;
  t.name = std::move(name);
  t.token_sha256 = std::move(tokens);
  t.client_names = std::move(client_names);
  return t;
}

absl::StatusOr<Config> ParseText(const std::string& text) {
  absl::StatusOr<YAML::Node> doc = LoadString(text);
  if (!doc.ok()) return doc.status();
  return Parse(*doc);
}

TEST(ConfigTest, EmptyDocumentGivesDefaults) {
  absl::StatusOr<Config> c = ParseText("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->socket, "/run/sbx/sbxd.sock");
  EXPECT_EQ(c->default_memory_bytes, int64_t{512} << 20);
  EXPECT_EQ(c->default_tenant, "local");
  EXPECT_TRUE(c->listen.empty());
  EXPECT_TRUE(Validate(*c).ok());
}

TEST(ConfigTest, ReadsEveryGroup) {
  absl::StatusOr<Config> c = ParseText(R"(
socket: /tmp/s.sock
listen: 127.0.0.1:7000
tls: {cert: /c.pem, key: /k.pem, client_ca: /ca.pem}
metrics_listen: 127.0.0.1:9090
state_dir: /srv/sbx
uid_base: 2000000000
max_sandboxes: 7
pool_size: 0
shutdown_grace: 1m30s
node: n1
cgroup: {root: /cg, version: v2, parent: p}
defaults: {memory: 1G, cpus: 0.5, pids: 64, tmp_size: 8M, work_size: 16M, shm_size: 4M}
auth: {default_tenant: ops}
tenants:
  alice:
    tokens: [2C26B46B68FFC68FF99B453C1D30413413422D706483BFA0F98A5E886266E7AE]
    client_names: [alice.example]
    max_sandboxes: 3
    max_memory: 2G
    max_cpus: 2.5
  bob: {}
log: {level: debug, json: true, access: false}
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->socket, "/tmp/s.sock");
  EXPECT_EQ(c->listen, "127.0.0.1:7000");
  EXPECT_EQ(c->tls_client_ca, "/ca.pem");
  EXPECT_EQ(c->uid_base, 2000000000u);
  EXPECT_EQ(c->max_sandboxes, 7);
  EXPECT_EQ(c->shutdown_grace, absl::Seconds(90));
  EXPECT_EQ(c->cgroup_version, "v2");
  EXPECT_EQ(c->default_memory_bytes, int64_t{1} << 30);
  EXPECT_DOUBLE_EQ(c->default_cpus, 0.5);
  EXPECT_EQ(c->shm_bytes, int64_t{4} << 20);
  EXPECT_EQ(c->default_tenant, "ops");
  ASSERT_EQ(c->tenants.size(), 2u);
  EXPECT_EQ(c->tenants[0].name, "alice");
  // Hashes are compared in lowercase.
  EXPECT_EQ(c->tenants[0].token_sha256[0],
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
  EXPECT_EQ(c->tenants[0].max_memory_bytes, int64_t{2} << 30);
  EXPECT_DOUBLE_EQ(c->tenants[0].max_cpus, 2.5);
  EXPECT_EQ(c->tenants[1].name, "bob");
  EXPECT_TRUE(c->log_json);
  EXPECT_FALSE(c->access_log);
  EXPECT_TRUE(Validate(*c).ok()) << Validate(*c);
}

TEST(ConfigTest, UnknownKeyIsNamed) {
  absl::StatusOr<Config> c = ParseText("sockett: /x\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("unknown key 'sockett'"), std::string::npos)
      << c.status();
  c = ParseText("defaults: {memroy: 1G}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'defaults.memroy'"), std::string::npos) << c.status();
  c = ParseText("tenants: {a: {max_sandbox: 1}}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'tenants.a.max_sandbox'"), std::string::npos)
      << c.status();
}

TEST(ConfigTest, WrongTypeIsNamed) {
  absl::StatusOr<Config> c = ParseText("max_sandboxes: lots\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'max_sandboxes'"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("lots"), std::string::npos) << c.status();
  c = ParseText("log: {json: maybe}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'log.json'"), std::string::npos) << c.status();
  c = ParseText("uid_base: -5\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'uid_base'"), std::string::npos) << c.status();
  c = ParseText("cgroup: 3\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'cgroup'"), std::string::npos) << c.status();
  c = ParseText("shutdown_grace: soon\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'shutdown_grace'"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("soon"), std::string::npos) << c.status();
  c = ParseText("socket: [a, b]\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'socket'"), std::string::npos) << c.status();
}

TEST(ConfigTest, BadSizeIsNamed) {
  absl::StatusOr<Config> c = ParseText("defaults: {memory: 12Q}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'defaults.memory'"), std::string::npos) << c.status();
  EXPECT_NE(c.status().message().find("12Q"), std::string::npos) << c.status();
  c = ParseText("tenants: {a: {max_memory: -1G}}\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("'tenants.a.max_memory'"), std::string::npos);
}

TEST(ConfigTest, NotYamlIsRefused) {
  absl::StatusOr<Config> c = ParseText("a: [unclosed\n");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  c = ParseText("- just\n- a list\n");
  ASSERT_FALSE(c.ok());
}

TEST(ConfigTest, TcpNeedsTlsOrExplicitInsecure) {
  Config c;
  c.listen = "127.0.0.1:7000";
  absl::Status s = Validate(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'listen'"), std::string::npos) << s;
  c.insecure_tcp = true;
  EXPECT_TRUE(Validate(c).ok());
  c.insecure_tcp = false;
  c.tls_cert = "/c.pem";
  s = Validate(c);
  EXPECT_NE(s.message().find("'tls.key'"), std::string::npos) << s;
  c.tls_key = "/k.pem";
  EXPECT_TRUE(Validate(c).ok());
  c.insecure_tcp = true;
  EXPECT_FALSE(Validate(c).ok());
}

TEST(ConfigTest, ClientCaNeedsServerCert) {
  Config c;
  c.tls_client_ca = "/ca.pem";
  absl::Status s = Validate(c);
  EXPECT_NE(s.message().find("'tls.client_ca'"), std::string::npos) << s;
}

TEST(ConfigTest, RangesAndEnumsAreChecked) {
  Config c;
  c.max_sandboxes = 0;
  EXPECT_NE(Validate(c).message().find("'max_sandboxes'"), std::string::npos);
  c = Config();
  c.cgroup_version = "v3";
  EXPECT_NE(Validate(c).message().find("'cgroup.version'"), std::string::npos);
  c = Config();
  c.log_level = "loud";
  EXPECT_NE(Validate(c).message().find("'log.level'"), std::string::npos);
  c = Config();
  c.default_cpus = 0;
  EXPECT_NE(Validate(c).message().find("'defaults.cpus'"), std::string::npos);
  c = Config();
  c.shutdown_grace = absl::Seconds(-1);
  EXPECT_NE(Validate(c).message().find("'shutdown_grace'"), std::string::npos);
  c.shutdown_grace = absl::Hours(2);
  EXPECT_NE(Validate(c).message().find("'shutdown_grace'"), std::string::npos);
  c.shutdown_grace = absl::ZeroDuration();  // calls are cancelled at once
  EXPECT_TRUE(Validate(c).ok()) << Validate(c);
  c = Config();
  c.node = "Bad_Name";
  EXPECT_NE(Validate(c).message().find("'node'"), std::string::npos);
}

TEST(ConfigTest, TenantCredentialsAreChecked) {
  Config c;
  c.tenants.push_back(MakeTenant("a", {"secret-token-in-clear"}));
  absl::Status s = Validate(c);
  EXPECT_NE(s.message().find("'tenants.a.tokens'"), std::string::npos) << s;
  const std::string h = TokenSha256("t");
  c.tenants = {MakeTenant("a", {h}), MakeTenant("b", {h})};
  s = Validate(c);
  EXPECT_NE(s.message().find("two tenants"), std::string::npos) << s;
  c.tenants = {MakeTenant("a", {}, {"x"}), MakeTenant("b", {}, {"x"})};
  EXPECT_FALSE(Validate(c).ok());
}

TEST(ConfigTest, TokenSha256IsHexOfDigest) {
  // printf foo | sha256sum
  EXPECT_EQ(TokenSha256("foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae");
}

TEST(ConfigTest, SetKeyOverridesTheFile) {
  absl::StatusOr<YAML::Node> doc = LoadString("defaults: {memory: 1G, pids: 10}\nsocket: /a\n");
  ASSERT_TRUE(doc.ok());
  ASSERT_TRUE(SetKey(*doc, "defaults.memory", "2G").ok());
  ASSERT_TRUE(SetKey(*doc, "socket", "/b").ok());
  ASSERT_TRUE(SetKey(*doc, "log.json", "true").ok());
  absl::StatusOr<Config> c = Parse(*doc);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->default_memory_bytes, int64_t{2} << 30);
  EXPECT_EQ(c->default_pids, 10);  // untouched keys of the same section stay
  EXPECT_EQ(c->socket, "/b");
  EXPECT_TRUE(c->log_json);
  // A bad flag value is named by its key like a bad file value.
  ASSERT_TRUE(SetKey(*doc, "defaults.memory", "12Q").ok());
  EXPECT_NE(Parse(*doc).status().message().find("'defaults.memory'"), std::string::npos);
}

TEST(ConfigTest, ToYamlRoundTrips) {
  Config c;
  c.listen = "0.0.0.0:7443";
  c.tls_cert = "/c";
  c.tls_key = "/k";
  c.default_memory_bytes = int64_t{3} << 30;
  c.tmp_bytes = 12345;
  c.default_cpus = 1.5;
  Tenant alice = MakeTenant("alice", {TokenSha256("x")}, {"alice.example"});
  alice.max_sandboxes = 4;
  alice.max_memory_bytes = int64_t{1} << 30;
  alice.max_cpus = 2;
  c.tenants.push_back(alice);
  c.log_json = true;
  c.shutdown_grace = absl::Milliseconds(1500);
  const std::string text = ToYaml(c);
  EXPECT_NE(text.find("memory: 3G"), std::string::npos) << text;
  absl::StatusOr<Config> back = ParseText(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(ToYaml(*back), text);
  EXPECT_EQ(back->tmp_bytes, 12345);
  EXPECT_EQ(back->shutdown_grace, absl::Milliseconds(1500));
  EXPECT_EQ(back->tenants.at(0).client_names.at(0), "alice.example");
}

TEST(ConfigTest, ExampleFileIsValid) {
  absl::StatusOr<YAML::Node> doc = LoadFile(SBX_SOURCE_DIR "/docs/sbxd.example.yaml");
  ASSERT_TRUE(doc.ok()) << doc.status();
  absl::StatusOr<Config> c = Parse(*doc);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(Validate(*c).ok()) << Validate(*c);
  EXPECT_FALSE(c->tenants.empty());
}

TEST(ConfigTest, FormatSize) {
  EXPECT_EQ(FormatSize(int64_t{512} << 20), "512M");
  EXPECT_EQ(FormatSize(int64_t{1} << 40), "1T");
  EXPECT_EQ(FormatSize(1536), "1536");  // 1.5K is not a whole unit
  EXPECT_EQ(FormatSize(2048), "2K");
  EXPECT_EQ(FormatSize(0), "0");
}

}  // namespace
}  // namespace sbx::config
