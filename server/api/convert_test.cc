#include "server/api/convert.h"

#include <gtest/gtest.h>
#include <signal.h>

#include "server/api/status.h"

namespace sbx::api {
namespace {

TEST(StatusTest, KeepsCodeAndMessage) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  grpc::Status s = ToGrpcStatus(absl::NotFoundError("sandbox x does not exist"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "sandbox x does not exist");
  EXPECT_EQ(ToGrpcStatus(absl::InvalidArgumentError("a")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("a")).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpcStatus(absl::FailedPreconditionError("a")).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("a")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ToGrpcStatus(absl::UnknownError("x")).error_code(), grpc::StatusCode::INTERNAL);
}

TEST(ConvertTest, LimitsKeepPresence) {
  v1::Limits in;
  in.set_cpus(0.5);
  engine::Limits out = FromProto(in);
  EXPECT_FALSE(out.memory_bytes.has_value());
  EXPECT_EQ(*out.cpus, 0.5);
  EXPECT_FALSE(out.pids.has_value());
  in.set_pids(0);  // explicitly zero is not "unset"
  EXPECT_EQ(*FromProto(in).pids, 0);
}

TEST(ConvertTest, CreateRequest) {
  v1::CreateSandboxRequest req;
  req.set_image("host");
  (*req.mutable_labels())["app"] = "x";
  (*req.mutable_env())["A"] = "1";
  req.mutable_ttl()->set_seconds(90);
  auto params = FromProto(req);
  ASSERT_TRUE(params.ok());
  EXPECT_EQ(params->ttl, absl::Seconds(90));
  EXPECT_EQ(params->labels.at("app"), "x");
  EXPECT_EQ(params->env.at("A"), "1");
  req.mutable_ttl()->set_nanos(-5);
  EXPECT_EQ(FromProto(req).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ConvertTest, ExecStart) {
  v1::ExecStart start;
  start.add_argv("sh");
  start.set_tty(true);
  start.mutable_tty_size()->set_rows(50);
  start.mutable_tty_size()->set_cols(132);
  start.mutable_timeout()->set_nanos(500000000);
  auto p = FromProto(start);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->rows, 50);
  EXPECT_EQ(p->cols, 132);
  EXPECT_EQ(p->timeout, absl::Milliseconds(500));
  start.mutable_tty_size()->set_rows(70000);
  EXPECT_FALSE(FromProto(start).ok());
}

TEST(ConvertTest, ListFilter) {
  v1::ListSandboxesRequest req;
  req.set_state(v1::SANDBOX_STATE_DEAD);
  EXPECT_EQ(*FromProto(req)->state, manager::SandboxState::kDead);
  req.set_state(static_cast<v1::SandboxState>(99));
  EXPECT_FALSE(FromProto(req).ok());
}

TEST(ConvertTest, ExitVerdicts) {
  engine::ExecExit e;
  e.wall_us = 1500000;
  e.user_us = 200000;
  e.system_us = 100000;
  v1::ExecExit out;
  ToProto(e, ExecOutcome{}, &out);
  EXPECT_EQ(out.verdict(), v1::VERDICT_OK);
  EXPECT_EQ(out.wall_time().seconds(), 1);
  EXPECT_EQ(out.wall_time().nanos(), 500000000);
  EXPECT_EQ(out.cpu_time().nanos(), 300000000);

  e.wait_status = 3 << 8;  // exit(3)
  out.Clear();
  ToProto(e, ExecOutcome{}, &out);
  EXPECT_EQ(out.exit_code(), 3);
  EXPECT_EQ(out.verdict(), v1::VERDICT_RUNTIME_ERROR);

  e.wait_status = SIGKILL;  // killed by SIGKILL
  out.Clear();
  ToProto(e, ExecOutcome{}, &out);
  EXPECT_EQ(out.signal(), SIGKILL);
  EXPECT_EQ(out.verdict(), v1::VERDICT_SIGNALED);

  e.timed_out = true;
  out.Clear();
  ToProto(e, ExecOutcome{}, &out);
  EXPECT_EQ(out.verdict(), v1::VERDICT_WALL_TIME_LIMIT);
  EXPECT_TRUE(out.timed_out());
}

TEST(ConvertTest, ExitFiguresAndVerdictsFromTheCommandsCgroup) {
  engine::ExecExit e;
  e.wall_us = 2000000;
  e.user_us = 1;  // rusage is superseded by the cgroup's figures
  ExecOutcome outcome;
  outcome.usage = engine::Usage{};
  outcome.usage->cpu_usec = 1250000;
  outcome.usage->memory_peak_bytes = 10 << 20;
  v1::ExecExit out;
  ToProto(e, outcome, &out);
  EXPECT_EQ(out.cpu_time().seconds(), 1);
  EXPECT_EQ(out.cpu_time().nanos(), 250000000);
  EXPECT_EQ(out.memory_peak_bytes(), 10 << 20);
  EXPECT_EQ(out.verdict(), v1::VERDICT_OK);

  e.wait_status = SIGKILL;
  outcome.usage->oom_kills = 1;
  out.Clear();
  ToProto(e, outcome, &out);
  EXPECT_TRUE(out.oom_killed());
  EXPECT_EQ(out.verdict(), v1::VERDICT_MEMORY_LIMIT);

  // A failed allocation at the limit, without the OOM killer.
  outcome.usage->oom_kills = 0;
  outcome.memory_limit = 10 << 20;
  e.wait_status = 1 << 8;
  out.Clear();
  ToProto(e, outcome, &out);
  EXPECT_EQ(out.verdict(), v1::VERDICT_MEMORY_LIMIT);

  outcome.output_truncated = true;
  e.wait_status = SIGKILL;
  out.Clear();
  ToProto(e, outcome, &out);
  EXPECT_TRUE(out.output_truncated());
  EXPECT_EQ(out.verdict(), v1::VERDICT_OUTPUT_LIMIT);

  // cpu time takes precedence over everything else.
  outcome.cpu_exceeded = true;
  e.timed_out = true;
  out.Clear();
  ToProto(e, outcome, &out);
  EXPECT_TRUE(out.cpu_time_exceeded());
  EXPECT_EQ(out.verdict(), v1::VERDICT_TIME_LIMIT);
}

TEST(ConvertTest, SandboxInfo) {
  manager::SandboxInfo info;
  info.id = "sb-0123456789abcdef";
  info.state = manager::SandboxState::kRunning;
  info.limits.memory_bytes = 1 << 30;
  info.limits.cpus = 1;
  info.limits.pids = 10;
  info.usage = engine::Usage{.memory_bytes = 5, .memory_peak_bytes = 6, .cpu_usec = 2500000,
                             .pids = 3, .oom_kills = 1};
  info.created_at = absl::FromUnixSeconds(1700000000) + absl::Milliseconds(5);
  v1::Sandbox out;
  ToProto(info, &out);
  EXPECT_EQ(out.state(), v1::SANDBOX_STATE_RUNNING);
  EXPECT_TRUE(out.limits().has_pids());
  EXPECT_EQ(out.usage().cpu_time().seconds(), 2);
  EXPECT_EQ(out.created_at().seconds(), 1700000000);
  EXPECT_EQ(out.created_at().nanos(), 5000000);
  EXPECT_FALSE(out.has_expires_at());
}

}  // namespace
}  // namespace sbx::api
