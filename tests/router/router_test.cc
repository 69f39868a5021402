// Three sbxd nodes behind nginx (deploy/router): sandboxes created through
// the router land on every node, every later call reaches the node that
// holds the sandbox, and a stopped node's sandboxes answer UNAVAILABLE while
// the others keep working.
#include <gtest/gtest.h>

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

const char* const kNodes[] = {"n1", "n2", "n3"};
constexpr int kSandboxes = 30;

class RouterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Each node its own uid ranges, above the other integration tests'.
    uint32_t uid_base = 3600000000u;
    std::vector<std::string> nodes;
    for (const char* node : kNodes) {
      DaemonOptions options;
      options.listen_tcp = true;
      options.uid_base = uid_base;
      uid_base += 64u * 65536u;
      options.extra_args = {"--node", node, "--max-sandboxes", "48"};
      auto daemon = std::make_unique<Daemon>(options);
      ASSERT_TRUE(daemon->Start());
      nodes.push_back(std::string(node) + "=127.0.0.1:" + std::to_string(daemon->tcp_port()));
      daemons_[node] = std::move(daemon);
    }
    router_ = std::make_unique<Router>();
    ASSERT_TRUE(router_->Start(nodes));
    absl::StatusOr<sbx::Client> client = sbx::Client::Connect(router_->address());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::make_unique<sbx::Client>(*std::move(client));
  }

  static void TearDownTestSuite() {
    client_.reset();
    router_.reset();
    for (auto& [node, daemon] : daemons_) {
      if (daemon->running()) daemon->Stop();
    }
    daemons_.clear();
  }

  static inline std::map<std::string, std::unique_ptr<Daemon>> daemons_;
  static inline std::unique_ptr<Router> router_;
  static inline std::unique_ptr<sbx::Client> client_;
};

TEST_F(RouterTest, SpreadsRoutesAndSurvivesANodeGoingDown) {
  std::vector<std::string> ids;
  for (int i = 0; i < kSandboxes; ++i) {
    sbx::CreateOptions o;
    o.labels = {{"n", std::to_string(i)}};
    absl::StatusOr<v1::Sandbox> box = client_->CreateSandbox(o);
    ASSERT_TRUE(box.ok()) << box.status();
    ids.push_back(box->id());
  }
  // Every node got some, and each node itself lists exactly its own.
  std::map<std::string, int> per_node;
  for (const std::string& id : ids) ++per_node[NodeOf(id)];
  for (const char* node : kNodes) {
    EXPECT_GT(per_node[node], 0) << "no sandbox landed on " << node;
    std::vector<std::string> listed = ListIds(daemons_[node]->stub());
    EXPECT_EQ(listed.size(), static_cast<size_t>(per_node[node])) << node;
    for (const std::string& id : listed) EXPECT_EQ(NodeOf(id), node);
  }
  EXPECT_EQ(per_node.size(), 3u) << "ids without a known node";

  // Later calls reach the right node: each would be NOT_FOUND elsewhere.
  for (const std::string& id : ids) {
    absl::StatusOr<v1::Sandbox> got = client_->GetSandbox(id);
    ASSERT_TRUE(got.ok()) << id << ": " << got.status();
    EXPECT_TRUE(ReachesItsSandbox(*client_, id));
    sbx::Limits limits;
    limits.pids = 77;
    absl::StatusOr<v1::Sandbox> limited = client_->SetLimits(id, limits);
    ASSERT_TRUE(limited.ok()) << id << ": " << limited.status();
    EXPECT_EQ(limited->limits().pids(), 77);
  }
  // List fans out over the nodes through the router.
  sbx::ListOptions all;
  all.nodes = {"n1", "n2", "n3"};
  absl::StatusOr<std::vector<v1::Sandbox>> listed = client_->ListSandboxes(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->size(), static_cast<size_t>(kSandboxes));

  // One node goes away (its sandboxes stay for its next start).
  Daemon& down = *daemons_["n2"];
  ASSERT_TRUE(down.Terminate());
  for (const std::string& id : ids) {
    absl::StatusOr<v1::Sandbox> got = client_->GetSandbox(id);
    if (NodeOf(id) == "n2") {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << id << ": " << got.status();
    } else {
      ASSERT_TRUE(got.ok()) << id << ": " << got.status();
      sbx::ExecOptions e;
      e.sandbox_id = id;
      e.argv = {"true"};
      absl::StatusOr<sbx::ExecResult> r = client_->ExecCollect(e);
      EXPECT_TRUE(r.ok() && r->exit.exit_code() == 0) << id;
    }
  }
  // New sandboxes still come up, on the nodes that are left.
  for (int i = 0; i < 6; ++i) {
    absl::StatusOr<v1::Sandbox> box = client_->CreateSandbox({});
    ASSERT_TRUE(box.ok()) << box.status();
    EXPECT_NE(NodeOf(box->id()), "n2");
    ids.push_back(box->id());
  }

  // Back up: its sandboxes answer again; then everything is destroyed.
  ASSERT_TRUE(down.Restart());
  for (const std::string& id : ids) {
    absl::StatusOr<bool> destroyed;
    ASSERT_TRUE(WaitFor(
        [&] {
          destroyed = client_->DestroySandbox(id);
          return destroyed.ok();
        },
        seconds(10)))
        << id << ": " << destroyed.status();
    EXPECT_TRUE(*destroyed) << id;
  }
}

}  // namespace
}  // namespace sbx::it
