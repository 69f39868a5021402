// Lifecycle: destroy leaves nothing, create/destroy cycles leak nothing, TTL,
// and bad requests get clear errors and change nothing.
#include <google/protobuf/util/time_util.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <iostream>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::it {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class LifecycleTest : public DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }

  // Host processes whose real uid lies in [lo, lo + 65536).
  static std::vector<pid_t> ProcessesWithUidRange(int64_t lo) {
    std::vector<pid_t> out;
    for (pid_t p : AllPids()) {
      auto u = ProcUids(p);
      if (!u.empty() && u[0] >= lo && u[0] < lo + 65536) out.push_back(p);
    }
    return out;
  }
};

constexpr int64_t kMiB = 1 << 20;

TEST_F(LifecycleTest, DestroyLeavesNothing) {
  ScopedSandbox sb(daemon());
  ASSERT_TRUE(sb.status().ok()) << StatusText(sb.status());
  const std::string id = sb.id();
  const pid_t init_pid = sb.sandbox().init_pid();
  ASSERT_GT(init_pid, 0);
  const uint64_t init_start = ProcStartTime(init_pid);
  ASSERT_NE(init_start, 0u) << "init pid " << init_pid << " is not a live process";
  auto uids = ProcUids(init_pid);
  ASSERT_FALSE(uids.empty());
  const int64_t range_lo = uids[0];  // host uid of root inside
  const std::string mount_ns = ProcNamespace(init_pid, "mnt");
  ASSERT_FALSE(mount_ns.empty());
  ASSERT_NE(mount_ns, ProcNamespace(getpid(), "mnt"));

  // Leave work behind: background processes, files, a process as root.
  ExecResult r = Sh(stub(), id, "sleep 300 >/dev/null 2>&1 & sleep 300 >/dev/null 2>&1 & "
                                "echo data > /work/f; echo t > /tmp/t");
  ASSERT_TRUE(r.Ok() && r.exit->exit_code() == 0) << r.Describe();

  // What exists before, so the checks after are meaningful.
  bool cgroup_seen = false;
  for (const auto& dir : daemon().CgroupParentDirs()) {
    for (const auto& child : ListSubdirs(dir)) {
      if (child.find(id) != std::string::npos) cgroup_seen = true;
    }
  }
  EXPECT_TRUE(cgroup_seen) << "no cgroup named after " << id << " below " << daemon().cgroup_parent();
  EXPECT_FALSE(daemon().StateEntriesFor(id).empty()) << "no state for " << id << " in "
                                                     << daemon().state_dir();
  EXPECT_GE(daemon().CgroupProcesses().size(), 3u);

  bool existed = false;
  grpc::Status s = Destroy(stub(), id, &existed);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_TRUE(existed);

  EXPECT_TRUE(WaitFor([&] { return ProcessGone(init_pid, init_start); }, seconds(3)))
      << "init " << init_pid << " still alive after Destroy";
  EXPECT_TRUE(WaitFor([&] { return ProcessesWithUidRange(range_lo).empty(); }, seconds(3)))
      << "processes of the sandbox's uid range remain";
  // Destroy returns once every process is gone; its cgroups and files follow.
  EXPECT_TRUE(WaitFor(
      [&] {
        for (const auto& child : daemon().CgroupChildren()) {
          if (child.find(id) != std::string::npos) return false;
        }
        return !PathExists(daemon().state_dir() + "/sandboxes/" + id);
      },
      seconds(5)));
  for (const auto& dir : daemon().CgroupParentDirs()) {
    for (const auto& child : ListSubdirs(dir)) {
      EXPECT_EQ(child.find(id), std::string::npos) << "cgroup left: " << dir << "/" << child;
    }
  }
  EXPECT_TRUE(daemon().CgroupProcesses().empty());
  EXPECT_FALSE(PathExists(daemon().state_dir() + "/sandboxes/" + id));
  EXPECT_EQ(daemon().StateEntriesFor(id), std::vector<std::string>{});
  EXPECT_EQ(MountinfoLinesContaining(id), std::vector<std::string>{});
  // sbxd holds the sandbox's mount namespace over the init's death, so that
  // its teardown is not Destroy's to wait for; then it lets go.
  EXPECT_TRUE(WaitFor(
      [&] {
        const std::vector<std::string> held = ProcFdTargets(daemon().pid());
        return std::find(held.begin(), held.end(), mount_ns) == held.end();
      },
      seconds(5)))
      << "sbxd still holds the sandbox's mount namespace " << mount_ns;

  v1::Sandbox got;
  EXPECT_EQ(Get(stub(), id, &got).error_code(), grpc::NOT_FOUND);
  EXPECT_TRUE(ListIds(stub()).empty());
  // Idempotent.
  s = Destroy(stub(), id, &existed);
  EXPECT_TRUE(s.ok()) << StatusText(s);
  EXPECT_FALSE(existed);
}

TEST_F(LifecycleTest, CreateDestroyCyclesLeakNothing) {
  const pid_t sbxd = daemon().pid();
  // Warm up once so lazily created daemon resources exist.
  {
    ScopedSandbox warm(daemon());
    ASSERT_TRUE(warm.status().ok()) << StatusText(warm.status());
    ExecResult r = RunExec(stub(), MakeStart(warm.id(), {"true"}));
    ASSERT_TRUE(r.Ok()) << r.Describe();
  }
  ASSERT_TRUE(WaitFor([&] { return daemon().CgroupChildren().empty(); }, seconds(5)));
  const int fds_before = ProcFdCount(sbxd);
  const int threads_before = ProcThreadCount(sbxd);
  const size_t state_before = ListTree(daemon().state_dir()).size();
  const int64_t rss_before = ProcVmRssKb(sbxd);
  ASSERT_GT(fds_before, 0);

  constexpr int kCycles = 200;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kCycles; ++i) {
    v1::Sandbox sb;
    grpc::Status s = Create(stub(), v1::CreateSandboxRequest(), &sb);
    ASSERT_TRUE(s.ok()) << "cycle " << i << ": " << StatusText(s);
    if (i % 20 == 0) {
      ExecResult r = RunExec(stub(), MakeStart(sb.id(), {"true"}));
      ASSERT_TRUE(r.Ok() && r.exit->exit_code() == 0) << "cycle " << i << ": " << r.Describe();
    }
    s = Destroy(stub(), sb.id());
    ASSERT_TRUE(s.ok()) << "cycle " << i << ": " << StatusText(s);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_LT(elapsed, 150.0) << "only " << i << " cycles in " << elapsed << " s";
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "[cycles] " << kCycles << " create/destroy cycles in " << elapsed << " s ("
            << 1000 * elapsed / kCycles << " ms per cycle)\n";
  // The time is reported, not judged (bench/ measures speed): alone a cycle
  // takes ~12 ms, beside the soak ~360. The 150 s bound above catches a hang.
  RecordProperty("ms_per_cycle", std::to_string(1000 * elapsed / kCycles));

  EXPECT_TRUE(ListIds(stub()).empty());
  EXPECT_TRUE(WaitFor([&] { return daemon().CgroupChildren().empty(); }, seconds(5)))
      << daemon().CgroupChildren().size() << " child cgroups left, e.g. "
      << daemon().CgroupChildren()[0];
  EXPECT_TRUE(daemon().CgroupProcesses().empty());
  // A handful of fds may come and go with gRPC internals; a per-cycle leak
  // would show as ≥ 200.
  int fds_after = 0;
  WaitFor([&] { return (fds_after = ProcFdCount(sbxd)) <= fds_before + 4; }, seconds(5));
  EXPECT_LE(fds_after, fds_before + 4) << "sbxd fds " << fds_before << " -> " << fds_after;
  int threads_after = 0;
  WaitFor([&] { return (threads_after = ProcThreadCount(sbxd)) <= threads_before + 4; },
          seconds(5));
  EXPECT_LE(threads_after, threads_before + 4)
      << "sbxd threads " << threads_before << " -> " << threads_after;
  EXPECT_LE(ListTree(daemon().state_dir()).size(), state_before);
  std::cerr << "[cycles] sbxd fds " << fds_before << " -> " << fds_after << ", threads "
            << threads_before << " -> " << threads_after << ", rss " << rss_before << " -> "
            << ProcVmRssKb(sbxd) << " kB\n";
  EXPECT_TRUE(MountinfoLinesContaining(daemon().temp_dir()).empty());
}

TEST_F(LifecycleTest, TtlDestroysSandbox) {
  CreateOptions o;
  o.ttl = seconds(1);
  v1::Sandbox sb;
  grpc::Status s = Create(stub(), MakeCreate(o), &sb);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  EXPECT_TRUE(sb.has_expires_at());
  const pid_t init_pid = sb.init_pid();
  const uint64_t init_start = ProcStartTime(init_pid);
  const auto t0 = std::chrono::steady_clock::now();
  bool gone = WaitFor(
      [&] {
        v1::Sandbox got;
        return Get(stub(), sb.id(), &got).error_code() == grpc::NOT_FOUND;
      },
      seconds(5), milliseconds(50));
  ASSERT_TRUE(gone) << "sandbox with a 1 s TTL still exists after 5 s";
  std::cerr << "[ttl] gone after "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s\n";
  EXPECT_TRUE(ListIds(stub()).empty());
  EXPECT_TRUE(WaitFor([&] { return ProcessGone(init_pid, init_start); }, seconds(3)));
  EXPECT_TRUE(WaitFor([&] { return daemon().CgroupChildren().empty(); }, seconds(3)));
  EXPECT_TRUE(daemon().StateEntriesFor(sb.id()).empty());
}

// ---- bad requests ------------------------------------------------------------

class BadRequestTest : public LifecycleTest {};

TEST_F(BadRequestTest, UnknownIdIsNotFound) {
  const std::string id = "no-such-sandbox";
  v1::Sandbox got;
  grpc::Status s = Get(stub(), id, &got);
  EXPECT_EQ(s.error_code(), grpc::NOT_FOUND) << StatusText(s);
  EXPECT_NE(s.error_message().find(id), std::string::npos) << StatusText(s);
  v1::Limits l;
  l.set_pids(10);
  s = SetLimits(stub(), id, l);
  EXPECT_EQ(s.error_code(), grpc::NOT_FOUND) << StatusText(s);
  ExecResult r = RunExec(stub(), MakeStart(id, {"true"}));
  EXPECT_EQ(r.status.error_code(), grpc::NOT_FOUND) << r.Describe();
  EXPECT_FALSE(r.exit.has_value());
  // Path-like ids are not found either (and touch nothing).
  s = Get(stub(), "../../etc", &got);
  EXPECT_TRUE(s.error_code() == grpc::NOT_FOUND || s.error_code() == grpc::INVALID_ARGUMENT)
      << StatusText(s);
  bool existed = true;
  s = Destroy(stub(), id, &existed);
  EXPECT_TRUE(s.ok()) << StatusText(s);
  EXPECT_FALSE(existed);
}

TEST_F(BadRequestTest, BadLimitsAreRejectedAndCreateNothing) {
  struct Case {
    const char* name;
    CreateOptions options;
  };
  std::vector<Case> cases;
  cases.push_back({"negative memory", {}});
  cases.back().options.memory = -1;
  cases.push_back({"zero memory", {}});
  cases.back().options.memory = 0;
  cases.push_back({"1 EiB memory", {}});
  cases.back().options.memory = int64_t{1} << 60;
  cases.push_back({"zero cpus", {}});
  cases.back().options.cpus = 0;
  cases.push_back({"negative cpus", {}});
  cases.back().options.cpus = -1;
  cases.push_back({"zero pids", {}});
  cases.back().options.pids = 0;
  cases.push_back({"negative pids", {}});
  cases.back().options.pids = -5;
  cases.push_back({"negative ttl", {}});
  cases.back().options.ttl = milliseconds(-1000);

  for (const auto& c : cases) {
    v1::CreateSandboxRequest req = MakeCreate(c.options);
    if (c.options.ttl.count() < 0) {
      req.mutable_ttl()->set_seconds(-1);
    }
    v1::Sandbox sb;
    grpc::Status s = Create(stub(), req, &sb);
    EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << c.name << ": " << StatusText(s);
    EXPECT_FALSE(s.error_message().empty()) << c.name;
    if (s.ok()) Destroy(stub(), sb.id());
    EXPECT_TRUE(ListIds(stub()).empty()) << c.name;
    // A destroyed sandbox's cgroups go right after Destroy returns.
    EXPECT_TRUE(WaitFor([&] { return daemon().CgroupChildren().empty(); }, seconds(5))) << c.name;
  }
  v1::Sandbox sb;
  grpc::Status s = Create(stub(), [] {
    v1::CreateSandboxRequest r;
    r.set_image("no-such-image");
    return r;
  }(), &sb);
  EXPECT_TRUE(s.error_code() == grpc::INVALID_ARGUMENT || s.error_code() == grpc::NOT_FOUND)
      << StatusText(s);
  if (s.ok()) Destroy(stub(), sb.id());
  EXPECT_TRUE(ListIds(stub()).empty());
  EXPECT_TRUE(WaitFor([&] { return daemon().CgroupChildren().empty(); }, seconds(5)));
}

TEST_F(BadRequestTest, BadSetLimitsChangeNothing) {
  CreateOptions o;
  o.memory = 128 * kMiB;
  o.cpus = 1;
  o.pids = 100;
  SBX_SANDBOX(sb, o);
  std::vector<std::pair<const char*, v1::Limits>> cases;
  v1::Limits l;
  l.set_memory_bytes(-1);
  cases.push_back({"negative memory", l});
  l.Clear();
  l.set_memory_bytes(int64_t{1} << 60);
  cases.push_back({"1 EiB memory", l});
  l.Clear();
  l.set_cpus(0);
  cases.push_back({"zero cpus", l});
  l.Clear();
  l.set_pids(0);
  cases.push_back({"zero pids", l});
  l.Clear();
  l.set_pids(32);  // valid, but with an invalid companion: nothing applies
  l.set_memory_bytes(-1);
  cases.push_back({"valid pids with negative memory", l});
  for (const auto& [name, limits] : cases) {
    grpc::Status s = SetLimits(stub(), sb.id(), limits);
    EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << name << ": " << StatusText(s);
  }
  v1::Sandbox got;
  ASSERT_TRUE(Get(stub(), sb.id(), &got).ok());
  EXPECT_EQ(got.limits().memory_bytes(), 128 * kMiB);
  EXPECT_DOUBLE_EQ(got.limits().cpus(), 1.0);
  EXPECT_EQ(got.limits().pids(), 100);
}

TEST_F(BadRequestTest, BadExecRequests) {
  SBX_SANDBOX(sb);
  ExecResult r = RunExec(stub(), MakeStart(sb.id(), {}));
  EXPECT_EQ(r.status.error_code(), grpc::INVALID_ARGUMENT) << "empty argv: " << r.Describe();

  std::vector<std::string> many(100000, std::string(16, 'a'));
  many.insert(many.begin(), "echo");
  r = RunExec(stub(), MakeStart(sb.id(), many));
  EXPECT_EQ(r.status.error_code(), grpc::INVALID_ARGUMENT)
      << "100k args: " << StatusText(r.status);

  ExecOptions big_env;
  big_env.env["BIG"] = std::string(1 << 20, 'x');
  r = RunExec(stub(), MakeStart(sb.id(), {"true"}, big_env));
  EXPECT_EQ(r.status.error_code(), grpc::INVALID_ARGUMENT) << "1 MiB env: " << StatusText(r.status);

  ExecOptions bad_env;
  bad_env.env["A=B"] = "c";
  r = RunExec(stub(), MakeStart(sb.id(), {"true"}, bad_env));
  EXPECT_EQ(r.status.error_code(), grpc::INVALID_ARGUMENT) << "'=' in env name: " << r.Describe();

  {
    ExecSession s(stub(), seconds(10));
    ASSERT_TRUE(s.SendStdin("not a start message"));
    grpc::Status st = s.Finish();
    EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "stdin first: " << StatusText(st);
    EXPECT_FALSE(s.started);
  }

  r = RunExec(stub(), MakeStart(sb.id(), {"no-such-binary-xyz"}));
  EXPECT_EQ(r.status.error_code(), grpc::NOT_FOUND) << r.Describe();
  EXPECT_NE(r.status.error_message().find("no-such-binary-xyz"), std::string::npos)
      << r.Describe();

  ExecOptions bad_cwd;
  bad_cwd.cwd = "/no/such/dir";
  r = RunExec(stub(), MakeStart(sb.id(), {"true"}, bad_cwd));
  EXPECT_TRUE(r.status.error_code() == grpc::NOT_FOUND ||
              r.status.error_code() == grpc::INVALID_ARGUMENT)
      << "bad cwd: " << r.Describe();

  ExecOptions bad_user;
  bad_user.user = "no-such-user";
  r = RunExec(stub(), MakeStart(sb.id(), {"true"}, bad_user));
  EXPECT_TRUE(r.status.error_code() == grpc::NOT_FOUND ||
              r.status.error_code() == grpc::INVALID_ARGUMENT)
      << "bad user: " << r.Describe();

  // The sandbox is unharmed.
  r = RunExec(stub(), MakeStart(sb.id(), {"echo", "ok"}));
  ASSERT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");
}

TEST_F(BadRequestTest, RunNeedsACommandAndFileRpcsNeedASandbox) {
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, seconds(10));
    v1::RunRequest req;  // no run_argv
    req.add_cases();
    v1::RunResponse resp;
    grpc::Status s = stub().Run(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::INVALID_ARGUMENT) << StatusText(s);
    EXPECT_FALSE(s.error_message().empty());
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, seconds(10));
    v1::ReadFileRequest req;
    req.set_sandbox_id("x");
    req.set_path("/etc/hostname");
    auto reader = stub().ReadFile(&ctx, req);
    v1::ReadFileResponse resp;
    while (reader->Read(&resp)) {
    }
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::NOT_FOUND) << StatusText(s);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(ctx, seconds(10));
    v1::WriteFilesResponse resp;
    auto writer = stub().WriteFiles(&ctx, &resp);
    v1::WriteFilesRequest req;
    req.set_sandbox_id("x");
    writer->Write(req);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::NOT_FOUND) << StatusText(s);
  }
}

}  // namespace
}  // namespace sbx::it

namespace sbx::it {
namespace {

// Each of sbxd's own threads says what it does (top -H, perf, gdb): only the
// main thread carries the bare process name.
TEST_F(LifecycleTest, EveryThreadOfTheDaemonIsNamed) {
  ScopedSandbox sb(daemon());  // the exec and teardown machinery has started
  ASSERT_TRUE(sb.status().ok()) << StatusText(sb.status());
  const std::string task_dir = "/proc/" + std::to_string(daemon().pid()) + "/task";
  std::vector<std::string> names, bare;
  for (const std::string& tid : ListSubdirs(task_dir)) {
    std::optional<std::string> comm = ReadFile(task_dir + "/" + tid + "/comm");
    if (!comm) continue;  // ended meanwhile
    const std::string name = comm->substr(0, comm->find('\n'));
    names.push_back(name);
    if (name == "sbxd" && tid != std::to_string(daemon().pid())) bare.push_back(tid);
  }
  // (The test daemons have no pool, so no sbxd-pool thread.)
  for (const char* want : {"sbxd-io", "sbxd-start", "sbxd-run", "sbxd-worker", "sbxd-teardown",
                           "sbxd-watch", "sbxd-trim"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << "no thread " << want;
  }
  EXPECT_TRUE(bare.empty()) << bare.size() << " threads of sbxd have no name of their own";
}

// grpc.health.v1.Health/Check through a generic stub (no generated health
// code here): SERVING, and sbxd still answers afterwards. The default health
// service receives a raw ByteBuffer, which the access-log interceptor once
// took for a protobuf message and crashed on.
TEST_F(LifecycleTest, HealthCheckAnswersServing) {
  auto channel = grpc::CreateChannel(daemon().address(), grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  for (int i = 0; i < 3; ++i) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, std::chrono::seconds(10));
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);  // HealthCheckRequest{service: ""}
    auto call = generic.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
    call->StartCall();
    grpc::ByteBuffer response;
    grpc::Status status;
    call->Finish(&response, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
    ASSERT_TRUE(status.ok()) << StatusText(status);
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(response.Dump(&slices).ok());
    std::string bytes;
    for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
  }
  cq.Shutdown();
  v1::ListSandboxesResponse list;
  EXPECT_TRUE(List(stub(), &list).ok()) << "sbxd stopped answering after health checks";
}

}  // namespace
}  // namespace sbx::it
