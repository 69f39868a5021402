// Soak: 32 clients do random work against one real sbxd for --duration
// seconds: create, exec with stdin and output (both checked by hash),
// set-limits, WriteFiles / ReadFile (checked by hash), destroy, and hostile
// programs (fork bomb under a pids limit, memory hog under a memory limit,
// output flood under an output limit, sleeper cut by its timeout). At the
// end: every answer was a success or a clear error (UNKNOWN / INTERNAL
// fail), nothing is left (sandboxes, processes, cgroups, mounts, state),
// and sbxd's RSS and fd count are back near their level after warm-up.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "daemon.h"
#include "proc_util.h"

namespace sbx::soak {
namespace {

using namespace ::sbx::it;  // NOLINT
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

int g_duration_s = 240;
constexpr int kClients = 32;

class Stats {
 public:
  void Record(const std::string& rpc, grpc::StatusCode code, Clock::duration took) {
    std::lock_guard<std::mutex> lock(mu_);
    ++codes_[rpc][code];
    latencies_[rpc].push_back(std::chrono::duration<double, std::milli>(took).count());
  }
  void Corrupt(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (corruptions_.size() < 20) corruptions_.push_back(what);
    ++corrupt_count_;
  }
  void Unexpected(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (unexpected_.size() < 20) unexpected_.push_back(what);
    ++unexpected_count_;
  }
  int64_t Count(grpc::StatusCode code) {
    std::lock_guard<std::mutex> lock(mu_);
    int64_t n = 0;
    for (auto& [rpc, codes] : codes_) n += codes[code];
    return n;
  }
  int corrupt_count() { return corrupt_count_; }
  int unexpected_count() { return unexpected_count_; }
  void Print() {
    std::lock_guard<std::mutex> lock(mu_);
    std::cout << "---- soak: requests by outcome ----\n";
    for (auto& [rpc, codes] : codes_) {
      std::cout << "  " << rpc << ":";
      for (auto& [code, n] : codes) std::cout << " " << CodeName(code) << "=" << n;
      std::cout << "\n";
    }
    std::cout << "---- soak: latency ms (p50 p90 p99 max) ----\n";
    for (auto& [rpc, v] : latencies_) {
      std::sort(v.begin(), v.end());
      auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
      std::printf("  %-14s n=%-6zu %8.1f %8.1f %8.1f %8.1f\n", rpc.c_str(), v.size(), at(0.5),
                  at(0.9), at(0.99), v.back());
    }
    for (auto& c : corruptions_) std::cout << "  CORRUPT: " << c << "\n";
    for (auto& u : unexpected_) std::cout << "  UNEXPECTED: " << u << "\n";
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::map<grpc::StatusCode, int64_t>> codes_;
  std::map<std::string, std::vector<double>> latencies_;
  std::vector<std::string> corruptions_, unexpected_;
  std::atomic<int> corrupt_count_{0}, unexpected_count_{0};
};

bool ClearCode(grpc::StatusCode c) { return c != grpc::UNKNOWN && c != grpc::INTERNAL; }

class Client {
 public:
  Client(Stub& stub, Stats& stats, int n) : stub_(stub), stats_(stats), rng_(1000 + n), n_(n) {}

  void Run(Clock::time_point until) {
    while (Clock::now() < until) {
      if (ids_.empty() || (ids_.size() < 2 && Pick(10) == 0)) {
        DoCreate();
        continue;
      }
      const std::string id = ids_[Pick(ids_.size())];
      switch (Pick(12)) {
        case 0: case 1: case 2: DoCatExec(id); break;
        case 3: DoSetLimits(id); break;
        case 4: case 5: DoFiles(id); break;
        case 6: DoDestroy(id); break;
        case 7: DoForkBomb(id); break;
        case 8: DoMemoryHog(id); break;
        case 9: DoFlood(id); break;
        case 10: DoSleeper(id); break;
        default: DoGet(id); break;
      }
    }
    for (const auto& id : ids_) {
      for (int attempt = 0; attempt < 20; ++attempt) {
        grpc::Status s = Destroy(stub_, id);
        if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    ids_.clear();
  }

 private:
  size_t Pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  template <typename F>
  grpc::Status Timed(const std::string& rpc, F&& f) {
    const auto t0 = Clock::now();
    grpc::Status s = f();
    stats_.Record(rpc, s.error_code(), Clock::now() - t0);
    if (!ClearCode(s.error_code())) stats_.Unexpected(rpc + ": " + StatusText(s));
    return s;
  }
  ExecResult TimedExec(const std::string& rpc, const v1::ExecStart& start,
                       const std::string& in = "") {
    const auto t0 = Clock::now();
    ExecResult r = RunExec(stub_, start, in, seconds(60));
    stats_.Record(rpc, r.status.error_code(), Clock::now() - t0);
    if (!ClearCode(r.status.error_code())) stats_.Unexpected(rpc + ": " + r.Describe());
    if (r.status.ok() && !r.exit) stats_.Unexpected(rpc + ": OK without exit");
    return r;
  }
  void Forget(const std::string& id) { ids_.erase(std::remove(ids_.begin(), ids_.end(), id), ids_.end()); }

  void DoCreate() {
    CreateOptions o;
    o.memory = 128 << 20;
    o.pids = 64;
    o.labels = {{"soak", std::to_string(n_)}};
    v1::Sandbox sb;
    grpc::Status s = Timed("CreateSandbox", [&] { return Create(stub_, MakeCreate(o), &sb); });
    if (s.ok()) ids_.push_back(sb.id());
  }
  // A destroy that timed out on the client may not have run: like a real
  // client, keep the id and destroy it again later (the final sweep retries
  // until the daemon confirms), so what is left at the end is the daemon's.
  // A destroy that failed on the daemon (its init did not exit within the
  // kill timeout, under this load) leaves the sandbox DEAD for a retry: so
  // DEAD is expected of a sandbox whose destroy was not confirmed, and of
  // no other.
  void DoDestroy(const std::string& id) {
    grpc::Status s = Timed("DestroySandbox", [&] { return Destroy(stub_, id); });
    if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) {
      Forget(id);
    } else {
      unconfirmed_.insert(id);
    }
  }
  void DoGet(const std::string& id) {
    v1::Sandbox sb;
    grpc::Status s = Timed("GetSandbox", [&] { return Get(stub_, id, &sb); });
    if (s.ok() && sb.state() != v1::SANDBOX_STATE_RUNNING) {
      if (sb.state() != v1::SANDBOX_STATE_DEAD || unconfirmed_.count(id) == 0) {
        stats_.Unexpected("sandbox " + id + " is " + v1::SandboxState_Name(sb.state()));
      }
      DoDestroy(id);
    }
  }
  void DoSetLimits(const std::string& id) {
    v1::Limits l;
    l.set_memory_bytes((64 + 32 * static_cast<int64_t>(Pick(5))) << 20);
    l.set_pids(32 + static_cast<int64_t>(Pick(64)));
    Timed("SetLimits", [&] { return SetLimits(stub_, id, l); });
  }
  void DoCatExec(const std::string& id) {
    const std::string in = RandomBytes(Pick(1 << 20) + 1, rng_());
    ExecResult r = TimedExec("Exec(cat)", MakeStart(id, {"cat"}), in);
    if (r.Ok() && (r.out.size() != in.size() || Sha256Hex(r.out) != Sha256Hex(in))) {
      stats_.Corrupt("cat of " + std::to_string(in.size()) + " bytes gave " +
                     std::to_string(r.out.size()));
    }
    // And the other way: stdout of a known stream, hashed in the sandbox.
    ExecResult h = TimedExec("Exec(sha256sum)", MakeStart(id, {"sha256sum"}), in);
    if (h.Ok() && h.out.substr(0, 64) != Sha256Hex(in)) stats_.Corrupt("sha256sum of stdin");
  }
  void DoFiles(const std::string& id) {
    const std::string data = RandomBytes(Pick(2 << 20) + 1, rng_());
    const std::string path = "/work/f" + std::to_string(Pick(4));
    Timed("WriteFiles", [&] {
      grpc::ClientContext ctx;
      SetDeadline(ctx, seconds(30));
      v1::WriteFilesResponse resp;
      auto w = stub_.WriteFiles(&ctx, &resp);
      v1::WriteFilesRequest req;
      req.set_sandbox_id(id);
      w->Write(req);
      req.Clear();
      req.mutable_file()->set_path(path);
      req.mutable_file()->set_mode(0644);
      req.mutable_file()->set_size(static_cast<int64_t>(data.size()));
      w->Write(req);
      for (size_t off = 0; off < data.size(); off += 64 << 10) {
        req.Clear();
        req.set_chunk(data.substr(off, 64 << 10));
        if (!w->Write(req)) break;
      }
      w->WritesDone();
      return w->Finish();
    });
    std::string got;
    grpc::Status s = Timed("ReadFile", [&] {
      grpc::ClientContext ctx;
      SetDeadline(ctx, seconds(30));
      v1::ReadFileRequest req;
      req.set_sandbox_id(id);
      req.set_path(path);
      auto r = stub_.ReadFile(&ctx, req);
      v1::ReadFileResponse resp;
      while (r->Read(&resp)) {
        if (resp.has_chunk()) got += resp.chunk();
      }
      return r->Finish();
    });
    // Another op of this client may have written the same path before; only
    // a file this write produced is compared.
    if (s.ok() && got.size() == data.size() && Sha256Hex(got) != Sha256Hex(data)) {
      stats_.Corrupt("ReadFile of " + path + " differs from what was written");
    }
  }
  v1::ExecStart Hostile(const std::string& id, const std::string& script) {
    v1::ExecStart start = MakeStart(id, {"sh", "-c", script});
    start.mutable_timeout()->set_seconds(5);
    return start;
  }
  void DoForkBomb(const std::string& id) {
    v1::ExecStart start = Hostile(id, "b() { b | b & }; b; sleep 2");
    start.mutable_limits()->set_pids(32);
    start.mutable_timeout()->set_seconds(3);
    TimedExec("Exec(forkbomb)", start);
  }
  void DoMemoryHog(const std::string& id) {
    v1::ExecStart start = Hostile(id, "head -c 400m /dev/zero | tail > /dev/null");
    start.mutable_limits()->set_memory_bytes(32 << 20);
    TimedExec("Exec(memhog)", start);
  }
  void DoFlood(const std::string& id) {
    v1::ExecStart start = Hostile(id, "yes flood");
    start.mutable_limits()->set_output_bytes(1 << 20);
    ExecResult r = TimedExec("Exec(flood)", start);
    if (r.Ok() && r.out.size() + r.err.size() > (1 << 20)) {
      stats_.Unexpected("output limit exceeded: " + std::to_string(r.out.size()));
    }
  }
  void DoSleeper(const std::string& id) {
    v1::ExecStart start = MakeStart(id, {"sleep", "60"});
    start.mutable_timeout()->set_nanos(300 * 1000 * 1000);
    ExecResult r = TimedExec("Exec(sleeper)", start);
    if (r.Ok() && !r.exit->timed_out()) stats_.Unexpected("sleeper not timed out");
  }

  Stub& stub_;
  Stats& stats_;
  std::mt19937_64 rng_;
  int n_;
  std::vector<std::string> ids_;
  std::set<std::string> unconfirmed_;  // destroys that returned an error
};

TEST(SoakTest, ThirtyTwoClientsLeaveNothingBehind) {
  Daemon daemon(DaemonOptions{.extra_args = {"--max-sandboxes", "128"}});
  ASSERT_TRUE(daemon.Start());
  Stats stats;
  const auto start = Clock::now();
  const auto until = start + seconds(g_duration_s);
  const auto warm_until = start + seconds(std::max(10, g_duration_s / 6));
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] { Client(daemon.stub(), stats, i).Run(i == 0 ? warm_until : until); });
  }
  // Warm-up: client 0 stops at warm_until; measure once every client ran a while.
  std::this_thread::sleep_for(warm_until - Clock::now());
  const int64_t rss_warm = ProcVmRssKb(daemon.pid());
  const int fds_warm = ProcFdCount(daemon.pid());
  for (auto& t : clients) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();

  // Idle again: everything destroyed by the clients.
  EXPECT_TRUE(ListIds(daemon.stub()).empty());
  EXPECT_TRUE(WaitFor([&] { return daemon.CgroupChildren().empty(); }, seconds(10)))
      << daemon.CgroupChildren().size() << " cgroups left";
  std::this_thread::sleep_for(seconds(2));
  const int64_t rss_end = ProcVmRssKb(daemon.pid());
  const int fds_end = ProcFdCount(daemon.pid());
  const size_t cgroups_left = daemon.CgroupChildren().size();
  const size_t procs_left = daemon.CgroupProcesses().size();
  const size_t state_left = ListDir(daemon.state_dir() + "/sandboxes").size();
  const size_t mounts_left = MountsBelow(daemon.temp_dir()).size();

  stats.Print();
  // What sbxd itself logged as an error (a destroy that failed, say): the
  // counts above say how often, this says why.
  {
    std::istringstream log(daemon.LogTail(size_t{1} << 30));
    int shown = 0;
    for (std::string line; std::getline(log, line);) {
      if (line.find(" error [") == std::string::npos) continue;
      if (shown++ == 0) std::printf("---- soak: sbxd errors ----\n");
      if (shown <= 20) std::printf("  %s\n", line.c_str());
    }
    if (shown > 20) std::printf("  ... %d more\n", shown - 20);
  }
  std::printf("---- soak: %.0f s, %d clients ----\n", secs, kClients);
  std::printf("  leaks: cgroups=%zu processes=%zu state=%zu mounts=%zu sandboxes=%zu\n",
              cgroups_left, procs_left, state_left, mounts_left, ListIds(daemon.stub()).size());
  std::printf("  sbxd rss kB: after warm-up %lld, end %lld; fds: %d -> %d\n",
              static_cast<long long>(rss_warm), static_cast<long long>(rss_end), fds_warm,
              fds_end);
  std::fflush(stdout);

  EXPECT_EQ(stats.unexpected_count(), 0);
  EXPECT_EQ(stats.corrupt_count(), 0);
  EXPECT_EQ(stats.Count(grpc::UNKNOWN), 0);
  EXPECT_EQ(stats.Count(grpc::INTERNAL), 0);
  EXPECT_GT(stats.Count(grpc::OK), 0);
  EXPECT_EQ(cgroups_left, 0u);
  EXPECT_EQ(procs_left, 0u);
  EXPECT_EQ(state_left, 0u);
  EXPECT_EQ(mounts_left, 0u);
  EXPECT_LE(rss_end, rss_warm + std::max<int64_t>(rss_warm / 10, 16 << 10));
  EXPECT_LE(fds_end, fds_warm + 8);
  if (HasFailure()) std::cerr << daemon.LogTail(4000);
  daemon.Stop();  // also fails the test on any leftover
}

}  // namespace
}  // namespace sbx::soak

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--duration=", 11) == 0) sbx::soak::g_duration_s = std::atoi(argv[i] + 11);
  }
  return RUN_ALL_TESTS();
}
