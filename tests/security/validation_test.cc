// Hostile input through the API: every bad request gets a clear gRPC error
// (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED past the sandbox cap), changes
// nothing — no sandbox, cgroup, state or process appears — and sbxd and the
// sandboxes already there carry on.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>

#include <cmath>

#include "hostile_util.h"

namespace sbx::sec {
namespace {

using google::protobuf::util::TimeUtil;
using std::chrono::seconds;

constexpr int kMaxSandboxes = 3;

class ValidationTest : public it::DaemonTest {
 protected:
  static void SetUpTestSuite() {
    it::DaemonOptions o;
    o.extra_args = {"--max-sandboxes", std::to_string(kMaxSandboxes)};
    StartDaemon(o);
  }
  static void TearDownTestSuite() { StopDaemon(); }

  struct World {
    std::vector<std::string> ids;
    std::vector<std::string> cgroups;
    std::vector<std::string> state;
    bool operator==(const World&) const = default;
  };
  World Observe() {
    World w;
    w.ids = it::ListIds(stub());
    std::sort(w.ids.begin(), w.ids.end());
    w.cgroups = daemon().CgroupChildren();
    std::sort(w.cgroups.begin(), w.cgroups.end());
    w.state = it::ListTree(daemon().state_dir());
    std::sort(w.state.begin(), w.state.end());
    return w;
  }

  // `request` is refused with `code` and the world is as before.
  void ExpectCreateRefused(const std::string& what, v1::CreateSandboxRequest request,
                           grpc::StatusCode code = grpc::StatusCode::INVALID_ARGUMENT) {
    const World before = Observe();
    v1::Sandbox out;
    grpc::Status s = it::Create(stub(), request, &out);
    EXPECT_EQ(s.error_code(), code) << what << ": " << it::StatusText(s);
    EXPECT_FALSE(s.error_message().empty()) << what;
    if (s.ok()) it::Destroy(stub(), out.id());
    EXPECT_TRUE(Observe() == before) << what << ": the refused create left something behind";
    messages_.push_back(what + " -> " + it::CodeName(s.error_code()));
  }

  void ExpectExecRefused(const std::string& what, const std::string& id, v1::ExecStart start) {
    ExecResult r = it::RunExec(stub(), start, "", seconds(20));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << what << ": " << r.Describe();
    EXPECT_FALSE(r.started) << what << ": the command started";
    v1::Sandbox sb;
    ASSERT_TRUE(it::Get(stub(), id, &sb).ok());
    EXPECT_EQ(sb.usage().pids(), 1) << what << ": a process is left in the sandbox";
    messages_.push_back(what + " -> " + it::CodeName(r.status.error_code()));
  }

  void TearDown() override {
    EXPECT_TRUE(DaemonAlive(daemon()));
    it::DaemonTest::TearDown();
  }

  std::vector<std::string> messages_;
};

TEST_F(ValidationTest, BadLimitsAreRefusedAndCreateNothing) {
  auto with = [](auto set) {
    v1::CreateSandboxRequest r;
    set(*r.mutable_limits());
    return r;
  };
  ExpectCreateRefused("memory 1 byte", with([](v1::Limits& l) { l.set_memory_bytes(1); }));
  ExpectCreateRefused("memory -1", with([](v1::Limits& l) { l.set_memory_bytes(-1); }));
  ExpectCreateRefused("memory 2^62", with([](v1::Limits& l) { l.set_memory_bytes(int64_t{1} << 62); }));
  ExpectCreateRefused("cpus 0", with([](v1::Limits& l) { l.set_cpus(0); }));
  ExpectCreateRefused("cpus -1", with([](v1::Limits& l) { l.set_cpus(-1); }));
  ExpectCreateRefused("cpus NaN", with([](v1::Limits& l) { l.set_cpus(std::nan("")); }));
  ExpectCreateRefused("cpus inf", with([](v1::Limits& l) { l.set_cpus(INFINITY); }));
  ExpectCreateRefused("cpus 1e6", with([](v1::Limits& l) { l.set_cpus(1e6); }));
  ExpectCreateRefused("pids 0", with([](v1::Limits& l) { l.set_pids(0); }));
  ExpectCreateRefused("pids -1", with([](v1::Limits& l) { l.set_pids(-1); }));
  ExpectCreateRefused("pids 2^40", with([](v1::Limits& l) { l.set_pids(int64_t{1} << 40); }));

  // SetLimits: the same checks, and the sandbox keeps its limits.
  SBX_SANDBOX(sb);
  for (auto [what, limits] : std::vector<std::pair<std::string, v1::Limits>>{
           {"SetLimits memory 1", with([](v1::Limits& l) { l.set_memory_bytes(1); }).limits()},
           {"SetLimits cpus 0", with([](v1::Limits& l) { l.set_cpus(0); }).limits()},
           {"SetLimits pids 0", with([](v1::Limits& l) { l.set_pids(0); }).limits()}}) {
    grpc::Status s = it::SetLimits(stub(), sb.id(), limits);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << what << ": "
                                                                   << it::StatusText(s);
    v1::Sandbox got;
    ASSERT_TRUE(it::Get(stub(), sb.id(), &got).ok());
    EXPECT_EQ(got.limits().SerializeAsString(), sb.sandbox().limits().SerializeAsString())
        << what << " changed the limits";
  }
  EXPECT_TRUE(SandboxAnswers(stub(), sb.id()));
  RecordOutcome(std::to_string(messages_.size()) + " bad limits -> INVALID_ARGUMENT, nothing created");
}

TEST_F(ValidationTest, BadLabelsEnvImageAndTtlAreRefused) {
  auto req = [](auto set) {
    v1::CreateSandboxRequest r;
    set(r);
    return r;
  };
  using R = v1::CreateSandboxRequest;
  ExpectCreateRefused("label key 64 chars",
                      req([](R& r) { (*r.mutable_labels())[std::string(64, 'k')] = "v"; }));
  ExpectCreateRefused("label value 10 KiB",
                      req([](R& r) { (*r.mutable_labels())["k"] = std::string(10240, 'v'); }));
  ExpectCreateRefused("65 labels", req([](R& r) {
                        for (int i = 0; i < 65; ++i) (*r.mutable_labels())["k" + std::to_string(i)] = "v";
                      }));
  ExpectCreateRefused("label key with NUL",
                      req([](R& r) { (*r.mutable_labels())[std::string("a\0b", 3)] = "v"; }));
  ExpectCreateRefused("env key with '='", req([](R& r) { (*r.mutable_env())["A=B"] = "v"; }));
  ExpectCreateRefused("env key with NUL",
                      req([](R& r) { (*r.mutable_env())[std::string("A\0B", 3)] = "v"; }));
  ExpectCreateRefused("env value with NUL",
                      req([](R& r) { (*r.mutable_env())["A"] = std::string("x\0y", 3); }));
  ExpectCreateRefused("env 1000 entries", req([](R& r) {
                        for (int i = 0; i < 1000; ++i) (*r.mutable_env())["V" + std::to_string(i)] = "x";
                      }));
  ExpectCreateRefused("image ../../etc", req([](R& r) { r.set_image("../../etc"); }));
  ExpectCreateRefused("ttl -1s", req([](R& r) { r.mutable_ttl()->set_seconds(-1); }));
  RecordOutcome(std::to_string(messages_.size()) +
                " bad labels/env/image/ttl -> INVALID_ARGUMENT, nothing created");
}

TEST_F(ValidationTest, BadExecRequestsAreRefusedAndStartNothing) {
  SBX_SANDBOX(sb);
  auto start = [&](std::vector<std::string> argv, auto set) {
    v1::ExecStart s = it::MakeStart(sb.id(), argv);
    set(s);
    return s;
  };
  auto none = [](v1::ExecStart&) {};
  ExpectExecRefused("empty argv", sb.id(), start({}, none));
  ExpectExecRefused("empty argv[0]", sb.id(), start({""}, none));
  ExpectExecRefused("NUL in argv[0]", sb.id(), start({std::string("ec\0ho", 5)}, none));
  ExpectExecRefused("NUL in argv[1]", sb.id(), start({"echo", std::string("a\0b", 3)}, none));
  ExpectExecRefused("5000 args", sb.id(), start(std::vector<std::string>(5000, "true"), none));
  ExpectExecRefused("200 KiB argument", sb.id(), start({"echo", std::string(200 << 10, 'a')}, none));
  ExpectExecRefused("NUL in env", sb.id(), start({"true"}, [](v1::ExecStart& s) {
                      (*s.mutable_env())["A"] = std::string("x\0y", 3);
                    }));
  ExpectExecRefused("env key with '='", sb.id(),
                    start({"true"}, [](v1::ExecStart& s) { (*s.mutable_env())["A=B"] = "x"; }));
  ExpectExecRefused("relative cwd", sb.id(),
                    start({"true"}, [](v1::ExecStart& s) { s.set_cwd("../.."); }));
  ExpectExecRefused("NUL in cwd", sb.id(), start({"true"}, [](v1::ExecStart& s) {
                      s.set_cwd(std::string("/tmp\0/x", 7));
                    }));
  for (const std::string& user : std::vector<std::string>{"65536", "4294967295", "99999999999", "-1", "nobody", "0x0",
                                 " 1", std::string("1\0", 2)}) {
    ExpectExecRefused("user '" + user + "'", sb.id(),
                      start({"true"}, [&](v1::ExecStart& s) { s.set_user(user); }));
  }
  ExpectExecRefused("timeout -1s", sb.id(), start({"true"}, [](v1::ExecStart& s) {
                      s.mutable_timeout()->set_seconds(-1);
                    }));
  EXPECT_TRUE(SandboxAnswers(stub(), sb.id()));
  RecordOutcome(std::to_string(messages_.size()) + " bad exec requests -> INVALID_ARGUMENT, none started");
}

TEST_F(ValidationTest, HostileSandboxIdsTouchNothing) {
  SBX_SANDBOX(sb);
  const World before = Observe();
  for (const std::string& id : std::vector<std::string>{"..", "../state", "/", "../../../../etc", "sb-../../x",
                               std::string("sb-\0", 4), std::string(4096, 'a'), ""}) {
    v1::Sandbox out;
    grpc::Status g = it::Get(stub(), id, &out);
    EXPECT_TRUE(g.error_code() == grpc::StatusCode::NOT_FOUND ||
                g.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << "Get(" << id.substr(0, 40) << "): " << it::StatusText(g);
    bool existed = true;
    grpc::Status d = it::Destroy(stub(), id, &existed);
    EXPECT_TRUE(d.ok() || d.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << "Destroy(" << id.substr(0, 40) << "): " << it::StatusText(d);
    if (d.ok()) {
      EXPECT_FALSE(existed) << id;
    }
    ExecResult e = it::RunExec(stub(), it::MakeStart(id, {"true"}), "", seconds(10));
    EXPECT_FALSE(e.started) << id;
    EXPECT_TRUE(e.status.error_code() == grpc::StatusCode::NOT_FOUND ||
                e.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << "Exec(" << id.substr(0, 40) << "): " << e.Describe();
  }
  EXPECT_TRUE(Observe() == before) << "hostile ids changed sandboxes, cgroups or state";
  EXPECT_TRUE(it::PathExists(daemon().state_dir()));
  EXPECT_TRUE(SandboxAnswers(stub(), sb.id()));
  RecordOutcome("Get/Destroy/Exec with '..', '/', NUL, 4 KiB ids: NOT_FOUND or INVALID_ARGUMENT");
}

TEST_F(ValidationTest, SandboxCapIsResourceExhausted) {
  std::vector<std::unique_ptr<it::ScopedSandbox>> held;
  for (int i = 0; i < kMaxSandboxes; ++i) {
    held.push_back(std::make_unique<it::ScopedSandbox>(daemon()));
    ASSERT_TRUE(held.back()->status().ok()) << it::StatusText(held.back()->status());
  }
  ExpectCreateRefused("sandbox " + std::to_string(kMaxSandboxes + 1), v1::CreateSandboxRequest(),
                      grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (const auto& s : held) EXPECT_TRUE(SandboxAnswers(stub(), s->id()));
  // A slot freed is a slot usable again.
  held.pop_back();
  it::ScopedSandbox again(daemon());
  EXPECT_TRUE(again.status().ok()) << it::StatusText(again.status());
  RecordOutcome("create #" + std::to_string(kMaxSandboxes + 1) + " -> RESOURCE_EXHAUSTED; ok after a destroy");
}

}  // namespace
}  // namespace sbx::sec
