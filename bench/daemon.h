// The bench's private sbxd: its own temp dir (socket, state, log), cgroup
// parent "sbx-bench-<pid>" and uid range. Stop() destroys every sandbox,
// stops sbxd and removes everything the run made, even after a failure.
#ifndef SBX_BENCH_DAEMON_H_
#define SBX_BENCH_DAEMON_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/rpc.h"

namespace sbx::bench {

struct DaemonConfig {
  std::string sbxd_path;  // sbx-init must be beside it
  int max_sandboxes = 1024;
  int pool_size = 4;      // sbxd's --pool-size (its default)
  uint32_t uid_base = 0;  // 0: chosen from the bench's pid
  std::string name_suffix;  // tells a second daemon's cgroup parent apart
};

// Waits up to `timeout` for the server `pid`, a child of this process, to
// answer a ListSandboxes on `socket_path`; then sets `channel` and `stub`
// and returns "". Otherwise returns why not ("exited during start-up", when
// it was reaped and `pid` set to -1, or "did not answer within N s").
std::string WaitForServer(pid_t& pid, const std::string& socket_path,
                          std::chrono::seconds timeout,
                          std::shared_ptr<grpc::Channel>* channel, std::unique_ptr<Stub>* stub);

class BenchDaemon {
 public:
  explicit BenchDaemon(DaemonConfig config);
  BenchDaemon(const BenchDaemon&) = delete;
  BenchDaemon& operator=(const BenchDaemon&) = delete;
  ~BenchDaemon();  // Stop()

  // Starts sbxd and waits (up to 20 s) until it answers. On failure the
  // message carries the tail of its log.
  bool Start(std::string* error);
  // Destroys every sandbox, SIGTERMs sbxd (SIGKILL after 10 s), removes the
  // cgroup parent, mounts and the temp dir. Idempotent. Returns false when
  // something had to be cleaned up by force (described in `report`).
  bool Stop(std::string* report = nullptr);

  pid_t pid() const { return pid_; }
  // False once sbxd has exited (it is then reaped; see exit_description()).
  bool Alive();
  // "exit 1", "signal 11", or "" while it runs.
  const std::string& exit_description() const { return exit_description_; }
  std::string target() const { return "unix://" + socket_path_; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  uint32_t uid_base() const { return config_.uid_base; }
  Stub& stub() { return *stub_; }
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // The memory (v1) or unified (v2) directory of the cgroup parent.
  std::string MemoryCgroupDir() const;
  std::string LogTail(size_t bytes = 3000) const;

 private:
  DaemonConfig config_;
  std::string temp_dir_, socket_path_, state_dir_, log_path_, cgroup_parent_;
  pid_t pid_ = -1;
  std::string exit_description_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> stub_;
};

}  // namespace sbx::bench

#endif  // SBX_BENCH_DAEMON_H_
