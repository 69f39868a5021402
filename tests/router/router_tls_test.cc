// The router with TLS on both legs (deploy/router/render.sh --tls-* and
// --node-tls-*): two sbxd nodes that serve TLS only, each with a tenant for
// a token and one for the router's client certificate; nginx in front that
// serves TLS, requires client certificates and speaks TLS to the nodes;
// clients through the C++ SDK and the `sbx` CLI. Certificates are made for
// the test with the openssl command.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon.h"
#include "proc_util.h"
#include "router_util.h"
#include "sbx/client.h"

namespace sbx::it {
namespace {

using std::chrono::seconds;

constexpr char kAliceToken[] = "alice-router-token";
const char* const kNodes[] = {"n1", "n2"};

bool Contains(const std::vector<std::string>& ids, const std::string& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

class RouterTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/sbx-router-pki-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    pki_ = std::make_unique<Pki>(dir_);
    ASSERT_TRUE(pki_->MakeCa("ca"));
    ASSERT_TRUE(pki_->MakeCa("rogue-ca"));
    // The router reaches the nodes by the name localhost, which their
    // certificates carry; clients reach the router at 127.0.0.1 or localhost.
    for (const char* node : kNodes) {
      ASSERT_TRUE(pki_->MakeCert(node, "ca", node, "DNS:localhost"));
    }
    ASSERT_TRUE(pki_->MakeCert("router", "ca", "sbx-router", "DNS:localhost,IP:127.0.0.1"));
    ASSERT_TRUE(pki_->MakeCert("router-client", "ca", "sbx-router", "DNS:router.sbx.test"));
    ASSERT_TRUE(pki_->MakeCert("alice", "ca", "alice", "DNS:alice.clients.test"));
    ASSERT_TRUE(pki_->MakeCert("rogue", "rogue-ca", "alice", "DNS:alice.clients.test"));
    for (const char* node : kNodes) ASSERT_TRUE(StartNode(node));
    router_ = std::make_unique<Router>();
    ASSERT_TRUE(router_->Start(WithNodes(
        {"--tls-cert", pki_->Crt("router"), "--tls-key", pki_->Key("router"), "--tls-client-ca",
         pki_->Crt("ca"), "--node-tls-ca", pki_->Crt("ca"), "--node-tls-cert",
         pki_->Crt("router-client"), "--node-tls-key", pki_->Key("router-client")})));
    ready_ = true;
  }

  void SetUp() override { ASSERT_TRUE(ready_) << "the suite's set-up failed"; }

  static void TearDownTestSuite() {
    ready_ = false;
    router_.reset();
    for (auto& [node, daemon] : daemons_) {
      if (daemon->running()) daemon->Stop();
    }
    daemons_.clear();
    pki_.reset();
    if (!dir_.empty()) RemoveTree(dir_);
  }

  // A node that serves TLS only. Tenant `alice` has a token; tenant
  // `router` is whoever shows the router's client certificate.
  static ::testing::AssertionResult StartNode(const std::string& node) {
    const int port = FreeTcpPort();
    const std::string config = dir_ + "/" + node + ".yaml";
    std::ofstream(config) << "listen: 127.0.0.1:" << port << "\n"
                          << "tls:\n"
                          << "  cert: " << pki_->Crt(node) << "\n"
                          << "  key: " << pki_->Key(node) << "\n"
                          << "  client_ca: " << pki_->Crt("ca") << "\n"
                          << "tenants:\n"
                          << "  alice:\n"
                          << "    tokens: [" << Sha256Hex(kAliceToken) << "]\n"
                          << "  router:\n"
                          << "    client_names: [router.sbx.test]\n";
    DaemonOptions options;
    options.extra_args = {"--config", config, "--node", node, "--max-sandboxes", "8"};
    auto daemon = std::make_unique<Daemon>(options);
    ::testing::AssertionResult started = daemon->Start();
    if (!started) return started;
    daemons_[node] = std::move(daemon);
    ports_[node] = port;
    return ::testing::AssertionSuccess();
  }

  // render.sh arguments: `options`, then every node by the name localhost.
  static std::vector<std::string> WithNodes(std::vector<std::string> options) {
    for (const char* node : kNodes) {
      options.push_back(std::string(node) + "=localhost:" + std::to_string(ports_[node]));
    }
    return options;
  }

  // TLS client options: trusts `ca`, shows certificate `cert` unless "",
  // sends `token` unless "".
  static sbx::ClientOptions Tls(const std::string& ca, const std::string& cert,
                                const std::string& token) {
    sbx::ClientOptions options;
    options.tls = true;
    options.tls_ca_pem = pki_->CrtPem(ca);
    if (!cert.empty()) {
      options.tls_cert_pem = pki_->CrtPem(cert);
      options.tls_key_pem = pki_->KeyPem(cert);
    }
    options.tls_server_name = "localhost";
    options.token = token;
    return options;
  }

  static std::unique_ptr<sbx::Client> Connect(const std::string& address,
                                              const sbx::ClientOptions& options) {
    absl::StatusOr<sbx::Client> client = sbx::Client::Connect(address, options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::make_unique<sbx::Client>(*std::move(client)) : nullptr;
  }

  // Alice's client of the router: the CA, her certificate, her token.
  static std::unique_ptr<sbx::Client> Alice() {
    return Connect(router_->address(), Tls("ca", "alice", kAliceToken));
  }

  // Alice's sandboxes on `node`, asked directly over TLS, not via the router.
  static std::vector<std::string> AliceIdsOn(const std::string& node) {
    std::unique_ptr<sbx::Client> direct =
        Connect("127.0.0.1:" + std::to_string(ports_[node]), Tls("ca", "", kAliceToken));
    std::vector<std::string> ids;
    if (direct == nullptr) return ids;
    absl::StatusOr<std::vector<v1::Sandbox>> listed = direct->ListSandboxes({});
    EXPECT_TRUE(listed.ok()) << node << ": " << listed.status();
    if (listed.ok()) {
      for (const v1::Sandbox& sandbox : *listed) ids.push_back(sandbox.id());
    }
    return ids;
  }

  static void ExpectNoSandboxes() {
    for (const char* node : kNodes) EXPECT_TRUE(AliceIdsOn(node).empty()) << node;
  }

  // The `sbx` CLI against the router as alice, with `args` after the
  // global options.
  static ProcessResult Cli(const std::string& ca, const std::vector<std::string>& args) {
    // clang-format off
    std::vector<std::string> argv = {SBX_CLI_PATH,
                                     "--server", "localhost:" + std::to_string(router_->port()),
                                     "--tls-ca", pki_->Crt(ca),
                                     "--tls-cert", pki_->Crt("alice"),
                                     "--tls-key", pki_->Key("alice"),
                                     "--token", kAliceToken};
    // clang-format on
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, "", seconds(60));
  }

  static inline std::string dir_;
  static inline std::unique_ptr<Pki> pki_;
  static inline std::map<std::string, std::unique_ptr<Daemon>> daemons_;
  static inline std::map<std::string, int> ports_;
  static inline std::unique_ptr<Router> router_;
  static inline bool ready_ = false;
};

TEST_F(RouterTlsTest, SdkCallsPassBothTlsLegs) {
  std::unique_ptr<sbx::Client> alice = Alice();
  ASSERT_NE(alice, nullptr);
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<v1::Sandbox> box = alice->CreateSandbox({});
    ASSERT_TRUE(box.ok()) << box.status() << "\n" << router_->Log();
    ids.push_back(box->id());
  }
  for (const std::string& id : ids) EXPECT_TRUE(ReachesItsSandbox(*alice, id));
  // Round-robin reached both nodes, and each holds them for alice: her token
  // went through the router to the node.
  for (const char* node : kNodes) {
    std::vector<std::string> on_node = AliceIdsOn(node);
    EXPECT_FALSE(on_node.empty()) << "no sandbox landed on " << node;
    for (const std::string& id : ids) EXPECT_EQ(Contains(on_node, id), NodeOf(id) == node) << id;
  }
  // A call without a token is the router's own tenant, which sees none.
  std::unique_ptr<sbx::Client> tokenless = Connect(router_->address(), Tls("ca", "alice", ""));
  ASSERT_NE(tokenless, nullptr);
  sbx::ListOptions all;
  all.nodes = {"n1", "n2"};
  absl::StatusOr<std::vector<v1::Sandbox>> listed = tokenless->ListSandboxes(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());

  for (const std::string& id : ids) {
    absl::StatusOr<bool> destroyed = alice->DestroySandbox(id);
    ASSERT_TRUE(destroyed.ok()) << id << ": " << destroyed.status();
    EXPECT_TRUE(*destroyed) << id;
  }
  ExpectNoSandboxes();
}

TEST_F(RouterTlsTest, CliCallsPassBothTlsLegs) {
  ProcessResult created = Cli("ca", {"create"});
  ASSERT_EQ(created.exit_code, 0) << created.Describe();
  const std::string id = Trim(created.out);
  ASSERT_TRUE(NodeOf(id) == "n1" || NodeOf(id) == "n2") << id;
  EXPECT_TRUE(Contains(AliceIdsOn(NodeOf(id)), id));

  ProcessResult exec = Cli("ca", {"exec", id, "--", "sh", "-c", "echo $((6 * 7))"});
  EXPECT_EQ(exec.exit_code, 0) << exec.Describe();
  EXPECT_EQ(exec.out, "42\n");

  ProcessResult removed = Cli("ca", {"rm", id});
  EXPECT_EQ(removed.exit_code, 0) << removed.Describe();
  ExpectNoSandboxes();
}

TEST_F(RouterTlsTest, ClientThatDoesNotTrustTheRouterFails) {
  std::unique_ptr<sbx::Client> wrong_ca =
      Connect(router_->address(), Tls("rogue-ca", "alice", kAliceToken));
  ASSERT_NE(wrong_ca, nullptr);
  absl::StatusOr<v1::Sandbox> box = wrong_ca->CreateSandbox({});
  EXPECT_EQ(box.status().code(), absl::StatusCode::kUnavailable) << box.status();

  ProcessResult cli = Cli("rogue-ca", {"create"});
  EXPECT_NE(cli.exit_code, 0) << cli.Describe();
  EXPECT_EQ(cli.out, "");

  // Nor does cleartext reach it.
  sbx::ClientOptions plain;
  plain.token = kAliceToken;
  std::unique_ptr<sbx::Client> cleartext = Connect(router_->address(), plain);
  ASSERT_NE(cleartext, nullptr);
  EXPECT_FALSE(cleartext->CreateSandbox({}).ok());
  ExpectNoSandboxes();
}

TEST_F(RouterTlsTest, RouterRequiresAClientCertificate) {
  std::unique_ptr<sbx::Client> no_cert = Connect(router_->address(), Tls("ca", "", kAliceToken));
  ASSERT_NE(no_cert, nullptr);
  absl::StatusOr<v1::Sandbox> box = no_cert->CreateSandbox({});
  EXPECT_EQ(box.status().code(), absl::StatusCode::kUnauthenticated) << box.status();
  EXPECT_NE(box.status().message().find("client certificate"), std::string::npos) << box.status();

  // A certificate from a CA the router does not trust, with alice's names.
  std::unique_ptr<sbx::Client> rogue = Connect(router_->address(), Tls("ca", "rogue", kAliceToken));
  ASSERT_NE(rogue, nullptr);
  box = rogue->CreateSandbox({});
  EXPECT_EQ(box.status().code(), absl::StatusCode::kUnauthenticated) << box.status();
  ExpectNoSandboxes();
}

TEST_F(RouterTlsTest, NodesServeOnlyTls) {
  // Straight to a node in cleartext: refused, whatever the token.
  sbx::ClientOptions plain;
  plain.token = kAliceToken;
  std::unique_ptr<sbx::Client> cleartext =
      Connect("127.0.0.1:" + std::to_string(ports_["n1"]), plain);
  ASSERT_NE(cleartext, nullptr);
  EXPECT_FALSE(cleartext->ListSandboxes({}).ok());

  // Through the router without a token: the node authenticates the call by
  // the router's client certificate, which only TLS carries.
  std::unique_ptr<sbx::Client> tokenless = Connect(router_->address(), Tls("ca", "alice", ""));
  ASSERT_NE(tokenless, nullptr);
  absl::StatusOr<v1::Sandbox> box = tokenless->CreateSandbox({});
  ASSERT_TRUE(box.ok()) << box.status() << "\n" << router_->Log();
  EXPECT_FALSE(Contains(AliceIdsOn(NodeOf(box->id())), box->id())) << "not alice's";
  absl::StatusOr<bool> destroyed = tokenless->DestroySandbox(box->id());
  ASSERT_TRUE(destroyed.ok()) << destroyed.status();
  EXPECT_TRUE(*destroyed);
}

TEST_F(RouterTlsTest, RouterVerifiesTheNodes) {
  // Second routers, cleartext towards the client, each with one thing
  // wrong on the node leg.
  sbx::ClientOptions plain;
  plain.token = kAliceToken;
  struct Case {
    std::vector<std::string> options;
    std::string logged;  // what nginx says about it
  };
  const Case broken[] = {
      {{"--node-tls-ca", pki_->Crt("ca"), "--node-tls-name", "elsewhere.test"},
       "upstream SSL certificate does not match \"elsewhere.test\""},
      {{"--node-tls-ca", pki_->Crt("rogue-ca")}, "upstream SSL certificate verify error"},
      {{}, "upstream prematurely closed connection"},  // cleartext to nodes that speak TLS only
  };
  for (const Case& c : broken) {
    Router router;
    ASSERT_TRUE(router.Start(WithNodes(c.options)));
    std::unique_ptr<sbx::Client> client = Connect(router.address(), plain);
    ASSERT_NE(client, nullptr);
    absl::StatusOr<v1::Sandbox> box = client->CreateSandbox({});
    EXPECT_EQ(box.status().code(), absl::StatusCode::kUnavailable) << box.status();
    EXPECT_NE(router.Log().find(c.logged), std::string::npos) << router.Log();
  }
  ExpectNoSandboxes();

  // TLS to the nodes without a client certificate: alice's token still
  // authenticates her, a call without one is refused by the node.
  Router router;
  ASSERT_TRUE(router.Start(WithNodes({"--node-tls-ca", pki_->Crt("ca")})));
  std::unique_ptr<sbx::Client> client = Connect(router.address(), plain);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<v1::Sandbox> box = client->CreateSandbox({});
  ASSERT_TRUE(box.ok()) << box.status() << "\n" << router.Log();
  EXPECT_TRUE(Contains(AliceIdsOn(NodeOf(box->id())), box->id()));
  absl::StatusOr<bool> destroyed = client->DestroySandbox(box->id());
  ASSERT_TRUE(destroyed.ok()) << destroyed.status();
  std::unique_ptr<sbx::Client> tokenless = Connect(router.address(), {});
  ASSERT_NE(tokenless, nullptr);
  EXPECT_EQ(tokenless->ListSandboxes({}).status().code(), absl::StatusCode::kUnauthenticated);
  ExpectNoSandboxes();
}

}  // namespace
}  // namespace sbx::it
