// The SDK against FakeSbxd over a real gRPC channel: unary calls, the Exec
// stream (ordering, stdin back-pressure, early finish, signals, cancel,
// errors) and concurrency.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "fake_sbxd.h"
#include "sbx/client.h"

namespace sbx {
namespace {

class SdkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ok());
    absl::StatusOr<Client> client = Client::Connect(server_.address());
    ASSERT_TRUE(client.ok()) << client.status();
    client_.emplace(*std::move(client));
  }

  ExecOptions Cmd(std::vector<std::string> argv) {
    ExecOptions options;
    options.sandbox_id = "sb-1";
    options.argv = std::move(argv);
    return options;
  }

  testing::FakeSbxd server_;
  std::optional<Client> client_;
};

TEST_F(SdkTest, CreateSendsLimitsLabelsAndTtl) {
  CreateOptions options;
  options.limits.memory_bytes = 64 << 20;
  options.limits.cpus = 0.5;
  options.labels["team"] = "a";
  options.ttl = absl::Seconds(90);
  absl::StatusOr<v1::Sandbox> sandbox = client_->CreateSandbox(options);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status();
  EXPECT_EQ(sandbox->id(), "sb-1");
  EXPECT_EQ(sandbox->limits().memory_bytes(), 64 << 20);
  EXPECT_DOUBLE_EQ(sandbox->limits().cpus(), 0.5);
  EXPECT_FALSE(sandbox->limits().has_pids());  // unset stays unset
  EXPECT_EQ(sandbox->labels().at("team"), "a");
  EXPECT_EQ(sandbox->expires_at().seconds(), 90);
}

TEST_F(SdkTest, UnaryErrorsKeepCodeAndMessage) {
  absl::StatusOr<v1::Sandbox> got = client_->GetSandbox("missing");
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), "sandbox missing not found");
  Limits limits;
  limits.pids = 1'000'001;
  absl::StatusOr<v1::Sandbox> set = client_->SetLimits("sb-1", limits);
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*client_->DestroySandbox("sb-1"), true);
  EXPECT_EQ(*client_->DestroySandbox("missing"), false);
  ListOptions list;
  list.label_selector["team"] = "b";
  absl::StatusOr<std::vector<v1::Sandbox>> all = client_->ListSandboxes(list);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[1].labels().at("team"), "b");
}

TEST_F(SdkTest, ExecCollectSeparatesStreamsAndExitCode) {
  absl::StatusOr<ExecResult> result = client_->ExecCollect(Cmd({"exit", "3"}));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->stdout_data, "out\n");
  EXPECT_EQ(result->stderr_data, "err\n");
  EXPECT_EQ(result->exit.exit_code(), 3);
}

TEST_F(SdkTest, ExecCollectStreamsLargeStdin) {
  std::string input(10 << 20, '\0');
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<char>(i * 31);
  absl::StatusOr<ExecResult> result = client_->ExecCollect(Cmd({"cat"}), input);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->stdout_data == input);
}

TEST_F(SdkTest, ServerFinishingEarlyDoesNotBlockAWriter) {
  // The fake never reads this stdin; without the reader unblocking the
  // writer this would hang on flow control.
  std::string input(32 << 20, 'x');
  absl::StatusOr<ExecResult> result = client_->ExecCollect(Cmd({"early"}), input);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit.exit_code(), 0);
}

TEST_F(SdkTest, CallbacksComeInOrderAndFinishOnce) {
  std::vector<std::string> events;
  std::atomic<int> finishes{0};
  ExecCallbacks callbacks;
  callbacks.on_started = [&](int32_t pid) { events.push_back("started"); };
  callbacks.on_stdout = [&](std::string_view d) {
    events.push_back("out:" + std::string(d));
  };
  callbacks.on_exit = [&](const v1::ExecExit&) { events.push_back("exit"); };
  callbacks.on_finish = [&](const absl::Status& s) {
    EXPECT_TRUE(s.ok()) << s;
    ++finishes;
  };
  absl::StatusOr<std::unique_ptr<ExecCall>> call =
      client_->Exec(Cmd({"echo", "a", "b"}), callbacks);
  ASSERT_TRUE(call.ok());
  ASSERT_TRUE((*call)->Wait().ok());
  EXPECT_TRUE((*call)->Done());
  EXPECT_EQ(events,
            (std::vector<std::string>{"started", "out:a b\n", "exit"}));
  EXPECT_EQ(finishes.load(), 1);
  EXPECT_EQ((*call)->WriteStdin("late").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SdkTest, SignalReachesTheCommand) {
  absl::StatusOr<std::unique_ptr<ExecCall>> call =
      client_->Exec(Cmd({"wait-signal"}));
  ASSERT_TRUE(call.ok());
  ASSERT_TRUE((*call)->Signal(15).ok());
  absl::StatusOr<v1::ExecExit> exit = (*call)->Wait();
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->signal(), 15);
  EXPECT_EQ((*call)->Signal(0).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SdkTest, CancelEndsTheStream) {
  absl::StatusOr<std::unique_ptr<ExecCall>> call = client_->Exec(Cmd({"hang"}));
  ASSERT_TRUE(call.ok());
  (*call)->Cancel();
  EXPECT_EQ((*call)->Wait().status().code(), absl::StatusCode::kCancelled);
}

TEST_F(SdkTest, DestroyingARunningCallCancelsIt) {
  absl::StatusOr<std::unique_ptr<ExecCall>> call = client_->Exec(Cmd({"hang"}));
  ASSERT_TRUE(call.ok());
  call->reset();  // must return, not hang
}

TEST_F(SdkTest, ExecErrorsComeFromWait) {
  ExecOptions options = Cmd({"echo"});
  options.sandbox_id = "missing";
  absl::StatusOr<std::unique_ptr<ExecCall>> call = client_->Exec(options);
  ASSERT_TRUE(call.ok());
  absl::StatusOr<v1::ExecExit> exit = (*call)->Wait();
  EXPECT_EQ(exit.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(exit.status().message(), "sandbox missing not found");
  EXPECT_EQ(client_->Exec(Cmd({})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SdkTest, UnreachableDaemonFailsExecWithUnavailable) {
  absl::StatusOr<Client> client = Client::Connect("/nonexistent/sbxd.sock");
  ASSERT_TRUE(client.ok());
  absl::StatusOr<ExecResult> result = client->ExecCollect(Cmd({"echo"}), "in");
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SdkTest, ConcurrentExecsOnOneClient) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      const std::string word = "w" + std::to_string(i);
      absl::StatusOr<ExecResult> r = client_->ExecCollect(Cmd({"echo", word}));
      if (r.ok() && r->stdout_data == word + "\n") ++ok;
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 20);
}

}  // namespace
}  // namespace sbx
