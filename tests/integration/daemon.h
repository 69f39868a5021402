// A real sbxd for one test process: unique temp dir (socket, state dir, log),
// unique cgroup parent and uid range. Stop() destroys what is left through
// the API, SIGTERMs the daemon (by pid), reports leftovers as test failures
// and cleans them up. What a test process that died before Stop() left is
// removed by the next process's first Daemon (SweepAfterDeadTestProcesses).
#ifndef SBX_TESTS_INTEGRATION_DAEMON_H_
#define SBX_TESTS_INTEGRATION_DAEMON_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "exec_util.h"

namespace sbx::it {

struct DaemonOptions {
  bool listen_tcp = false;              // adds --listen 127.0.0.1:<free port>
  std::vector<std::string> extra_args;  // e.g. {"--default-pids", "64"}
  // --pool-size: 0 unless a test is about the warm pool, so that the other
  // tests' checks of cgroups and state see only their own sandboxes.
  int pool_size = 0;
  // 0: a range chosen from the pid and the instance number (8 sandboxes'
  // worth); tests with more sandboxes per daemon pick their own.
  uint32_t uid_base = 0;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions options = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts sbxd and waits (≤ 20 s) until ListSandboxes answers.
  ::testing::AssertionResult Start();
  // Destroys every listed sandbox, SIGTERMs sbxd, checks and removes leftovers.
  void Stop();
  // SIGKILLs sbxd and reaps it; sandboxes are left alone.
  void Kill9();
  // SIGTERMs sbxd and waits (≤ 10 s) for it to exit; sandboxes are left alone.
  ::testing::AssertionResult Terminate();
  // Starts sbxd again with the same socket, state dir, cgroup parent, uid base.
  ::testing::AssertionResult Restart();

  Stub& stub() { return *stub_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  const std::string& temp_dir() const { return temp_dir_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  uint32_t uid_base() const { return uid_base_; }
  int tcp_port() const { return tcp_port_; }
  std::string address() const { return "unix://" + socket_path_; }

  // <own cgroup>/<parent> for memory, pids, cpu, cpuacct.
  std::vector<std::string> CgroupParentDirs() const;
  // Child cgroup names below the parent, over all hierarchies ("memory:<name>").
  std::vector<std::string> CgroupChildren() const;
  // Processes in the parent cgroups (recursive).
  std::vector<pid_t> CgroupProcesses() const;
  // Paths below the state dir whose name contains `id`.
  std::vector<std::string> StateEntriesFor(const std::string& id) const;
  // The last `bytes` of sbxd's stdout+stderr.
  std::string LogTail(size_t bytes = 4096) const;

 private:
  ::testing::AssertionResult Launch();
  void Connect();

  DaemonOptions options_;
  std::string temp_dir_, socket_path_, state_dir_, log_path_, cgroup_parent_;
  uint32_t uid_base_ = 0;
  int tcp_port_ = 0;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> stub_;
};

// A sandbox destroyed at scope exit (through `daemon`'s current stub).
class ScopedSandbox {
 public:
  ScopedSandbox(Daemon& daemon, const CreateOptions& options = {});
  ~ScopedSandbox();
  const grpc::Status& status() const { return status_; }
  const v1::Sandbox& sandbox() const { return sandbox_; }
  const std::string& id() const { return sandbox_.id(); }

 private:
  Daemon& daemon_;
  grpc::Status status_;
  v1::Sandbox sandbox_;
};

// Base fixture: one daemon per test suite (per process under ctest, which
// runs every test in its own process). Derived fixtures call StartDaemon()
// from SetUpTestSuite() and StopDaemon() from TearDownTestSuite().
class DaemonTest : public ::testing::Test {
 protected:
  static void StartDaemon(DaemonOptions options = {});
  static void StopDaemon();
  void SetUp() override;
  void TearDown() override;
  static Daemon& daemon() { return *daemon_; }
  static Stub& stub() { return daemon_->stub(); }

  static Daemon* daemon_;
  static std::string start_error_;
};

// Creates a sandbox in a ScopedSandbox named `var` or fails the test.
#define SBX_SANDBOX(var, ...)                                      \
  ::sbx::it::ScopedSandbox var(daemon(), ##__VA_ARGS__);           \
  ASSERT_TRUE(var.status().ok()) << "CreateSandbox: "              \
                                 << ::sbx::it::StatusText(var.status()); \
  ASSERT_FALSE(var.id().empty())

// What test processes that died without their teardown (a crash, ctest's
// SIGKILL at a timeout) left behind: for every cgroup parent
// `<prefix>-<pid>-<n>` below this process's own cgroups, and every temp dir
// `/tmp/<prefix>-<pid>-*`, whose <pid> no longer exists, it SIGKILLs (by
// pid) the sbxd started with that cgroup parent and every process in it,
// removes the cgroups, unmounts what is mounted below the temp dir and
// removes the dir. A live <pid> (or a reused one) is left alone. Returns
// one line per thing removed. Every Daemon's first construction in a
// process runs it with the harness's own prefix (NamePrefix()).
std::vector<std::string> SweepAfterDeadTestProcesses(const std::string& prefix);
// "sbx-it", or $SBX_IT_NAME_PREFIX: what the harness's cgroup parents and
// temp dirs are named after (the sweep's own test uses another, so that
// no other test process sweeps its leftovers first).
std::string NamePrefix();

// A free TCP port on 127.0.0.1 (bound, read and released).
int FreeTcpPort();
// True if a TCP connect to 127.0.0.1:port succeeds from the host.
bool CanConnectTcp(int port);

}  // namespace sbx::it

#endif  // SBX_TESTS_INTEGRATION_DAEMON_H_
