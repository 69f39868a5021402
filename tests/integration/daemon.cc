#include "daemon.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>

#include "proc_util.h"

namespace sbx::it {

namespace {

// One line per thread of `pid`: its tid, name, state and where in the
// kernel it waits, for a daemon that does not stop.
std::string ThreadStates(pid_t pid) {
  std::string out;
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& tid : ListSubdirs(task)) {
    const std::string dir = task + "/" + tid;
    auto comm = ReadFile(dir + "/comm");
    auto wchan = ReadFile(dir + "/wchan");
    auto stat = ReadFile(dir + "/stat");
    std::string state = "?";
    if (stat) {
      const size_t paren = stat->rfind(')');
      if (paren != std::string::npos && paren + 2 < stat->size()) state = stat->substr(paren + 2, 1);
    }
    std::string name = comm ? *comm : "?";
    if (!name.empty() && name.back() == '\n') name.pop_back();
    out += "  " + tid + " " + name + " " + state + " " + (wchan ? *wchan : "?") + "\n";
  }
  return out;
}

std::atomic<int> g_instance{0};

bool WaitExited(pid_t pid, std::chrono::milliseconds timeout, int* status) {
  return WaitFor(
      [&] {
        pid_t r = waitpid(pid, status, WNOHANG);
        return r == pid || (r < 0 && errno == ECHILD);
      },
      timeout, std::chrono::milliseconds(10));
}

// The <pid> of `name` if it is `<prefix>-<pid>-<rest>`; 0 if not.
pid_t OwnerPid(const std::string& name, const std::string& prefix) {
  const std::string head = prefix + "-";
  if (name.rfind(head, 0) != 0) return 0;
  size_t end = head.size();
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == head.size() || end - head.size() > 9 || end >= name.size() || name[end] != '-') {
    return 0;
  }
  return static_cast<pid_t>(std::stol(name.substr(head.size(), end - head.size())));
}

bool PidExists(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

// sbxd processes started with `--cgroup-parent <parent>`.
std::vector<pid_t> SbxdsWithCgroupParent(const std::string& parent) {
  const std::string argument = std::string("\0--cgroup-parent\0", 17) + parent + '\0';
  std::vector<pid_t> out;
  for (pid_t pid : AllPids()) {
    // NUL-separated arguments, the program first.
    const std::string cmdline =
        ReadFile("/proc/" + std::to_string(pid) + "/cmdline").value_or("");
    const std::string program = cmdline.substr(0, cmdline.find('\0'));
    if (program.size() >= 5 && program.substr(program.size() - 5) == "/sbxd" &&
        cmdline.find(argument) != std::string::npos) {
      out.push_back(pid);
    }
  }
  return out;
}

std::once_flag g_swept;

}  // namespace

std::string NamePrefix() {
  const char* prefix = getenv("SBX_IT_NAME_PREFIX");
  return prefix != nullptr && *prefix != '\0' ? prefix : "sbx-it";
}

std::vector<std::string> SweepAfterDeadTestProcesses(const std::string& prefix) {
  std::vector<std::string> removed;
  for (const auto& own : OwnCgroupDirs()) {
    for (const auto& name : ListSubdirs(own)) {
      const pid_t owner = OwnerPid(name, prefix);
      if (owner <= 0 || PidExists(owner)) continue;
      // Its daemon first, so that it makes nothing new meanwhile.
      const std::string parent = name.substr(0, name.find('.'));
      for (pid_t sbxd : SbxdsWithCgroupParent(parent)) {
        const uint64_t started = ProcStartTime(sbxd);
        kill(sbxd, SIGKILL);
        WaitFor([&] { return ProcessGone(sbxd, started); }, std::chrono::seconds(5));
        removed.push_back("sbxd pid " + std::to_string(sbxd) + " (" + parent + ")");
      }
      const size_t processes = CgroupProcsRecursive(own + "/" + name).size();
      RemoveCgroupTree(own + "/" + name);
      removed.push_back("cgroup " + own + "/" + name + " with " + std::to_string(processes) +
                        " processes");
    }
  }
  for (const auto& name : ListSubdirs("/tmp")) {
    const pid_t owner = OwnerPid(name, prefix);
    if (owner <= 0 || PidExists(owner)) continue;
    const std::string dir = "/tmp/" + name;
    auto mounts = MountsBelow(dir);
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
    RemoveTree(dir);
    removed.push_back(dir + (mounts.empty() ? "" : " and " + std::to_string(mounts.size()) +
                                                       " mounts below it"));
  }
  return removed;
}

Daemon::Daemon(DaemonOptions options) : options_(std::move(options)) {
  std::call_once(g_swept, [] {
    for (const auto& line : SweepAfterDeadTestProcesses(NamePrefix())) {
      std::cerr << "[daemon] removed what a dead test process left: " << line << "\n";
    }
  });
  const std::string prefix = NamePrefix();
  std::string tmpl = "/tmp/" + prefix + "-" + std::to_string(getpid()) + "-XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  if (dir == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << strerror(errno);
    return;
  }
  temp_dir_ = dir;
  socket_path_ = temp_dir_ + "/sbxd.sock";
  state_dir_ = temp_dir_ + "/state";
  log_path_ = temp_dir_ + "/sbxd.log";
  const int n = g_instance++;
  cgroup_parent_ = prefix + "-" + std::to_string(getpid()) + "-" + std::to_string(n);
  // 32 id ranges per test process, 8 per daemon instance in it.
  uid_base_ = 1500000000u + static_cast<uint32_t>(getpid() % 1000) * 65536u * 32u +
              static_cast<uint32_t>(n % 4) * 65536u * 8u;
  if (options_.uid_base != 0) uid_base_ = options_.uid_base;
  if (options_.listen_tcp) tcp_port_ = FreeTcpPort();
}

Daemon::~Daemon() {
  if (pid_ > 0 || !temp_dir_.empty()) Stop();
}

::testing::AssertionResult Daemon::Start() { return Launch(); }

::testing::AssertionResult Daemon::Restart() {
  if (pid_ > 0) return ::testing::AssertionFailure() << "sbxd still running";
  return Launch();
}

void Daemon::Connect() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  channel_ = grpc::CreateCustomChannel(address(), grpc::InsecureChannelCredentials(), args);
  stub_ = v1::SandboxService::NewStub(channel_);
}

::testing::AssertionResult Daemon::Launch() {
  if (temp_dir_.empty()) return ::testing::AssertionFailure() << "no temp dir";
  std::vector<std::string> argv = {SBX_SBXD_PATH,
                                   "--socket", socket_path_,
                                   "--state-dir", state_dir_,
                                   "--cgroup-parent", cgroup_parent_,
                                   "--uid-base", std::to_string(uid_base_),
                                   "--log-level", "debug",
                                   "--pool-size", std::to_string(options_.pool_size)};
  if (tcp_port_ != 0) {
    argv.push_back("--listen");
    argv.push_back("127.0.0.1:" + std::to_string(tcp_port_));
    argv.push_back("--insecure-tcp");  // these tests need a port, not TLS
  }
  for (const auto& a : options_.extra_args) argv.push_back(a);
  if (access(argv[0].c_str(), X_OK) != 0) {
    return ::testing::AssertionFailure() << "sbxd not built at " << argv[0];
  }
  int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return ::testing::AssertionFailure() << "open log: " << strerror(errno);
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  // Our environment, with lock-order checks kept on in the daemon (see
  // sbxd's main.cc); made before the fork, where only exec may follow.
  std::string check_locks = "SBX_CHECK_LOCK_ORDER=1";
  std::vector<char*> cenv;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "SBX_CHECK_LOCK_ORDER=", 21) != 0) cenv.push_back(*e);
  }
  cenv.push_back(check_locks.data());
  cenv.push_back(nullptr);
  // A test process that dies (a crash, ctest's SIGKILL at its timeout) takes
  // its daemon with it: SIGTERM, which shuts sbxd down in order. Every
  // Launch runs on the test's main thread, whose exit is what counts.
  const pid_t test_pid = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != test_pid) _exit(127);
    int null_fd = open("/dev/null", O_RDONLY);
    dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    // Its own process group: a terminal ^C to the test does not reach it
    // before the test's own teardown does.
    setpgid(0, 0);
    execve(cargv[0], cargv.data(), cenv.data());
    _exit(127);
  }
  close(log_fd);
  if (pid < 0) return ::testing::AssertionFailure() << "fork: " << strerror(errno);
  pid_ = pid;
  stub_.reset();
  channel_.reset();
  grpc::Status last;
  const auto t0 = std::chrono::steady_clock::now();
  bool ready = WaitFor(
      [&] {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          return true;
        }
        if (!PathExists(socket_path_)) return false;
        // A fresh channel per attempt: a channel that failed once waits out
        // gRPC's re-resolution delay before trying again.
        if (!last.ok() || stub_ == nullptr) Connect();
        grpc::ClientContext ctx;
        SetDeadline(ctx, std::chrono::milliseconds(500));
        v1::ListSandboxesResponse resp;
        last = stub_->ListSandboxes(&ctx, v1::ListSandboxesRequest(), &resp);
        return last.ok();
      },
      std::chrono::seconds(20), std::chrono::milliseconds(20));
  if (pid_ < 0) {
    return ::testing::AssertionFailure() << "sbxd exited during start-up; log:\n" << LogTail();
  }
  if (!ready) {
    return ::testing::AssertionFailure()
           << "sbxd did not answer ListSandboxes within 20 s (last: " << StatusText(last)
           << "); log:\n"
           << LogTail();
  }
  std::cerr << "[daemon] sbxd pid " << pid_ << " ready in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - t0)
                   .count()
            << " ms (" << temp_dir_ << ", cgroup parent " << cgroup_parent_ << ")\n";
  return ::testing::AssertionSuccess();
}

void Daemon::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

::testing::AssertionResult Daemon::Terminate() {
  if (pid_ <= 0) return ::testing::AssertionFailure() << "sbxd not running";
  kill(pid_, SIGTERM);
  int status = 0;
  const auto t0 = std::chrono::steady_clock::now();
  bool exited = WaitExited(pid_, std::chrono::seconds(10), &status);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (took > 2) std::cerr << "[daemon] sbxd took " << took << " s to exit on SIGTERM\n";
  if (!exited) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  if (!exited) return ::testing::AssertionFailure() << "sbxd ignored SIGTERM for 10 s";
  if (WIFSIGNALED(status)) {
    // sbxd takes SIGTERM with sigwait and shuts down in order; dying of it
    // means some thread of its had left it unblocked.
    return ::testing::AssertionFailure()
           << "sbxd died of signal " << WTERMSIG(status) << " on SIGTERM instead of shutting "
           << "down; log:\n" << LogTail();
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    return ::testing::AssertionFailure()
           << "sbxd exited with status " << WEXITSTATUS(status) << " on SIGTERM; log:\n"
           << LogTail();
  }
  return ::testing::AssertionSuccess();
}

void Daemon::Stop() {
  if (temp_dir_.empty()) return;
  std::vector<std::string> destroyed;
  if (pid_ > 0) {
    for (const auto& id : ListIds(*stub_)) {
      grpc::Status s = Destroy(*stub_, id);
      if (!s.ok()) ADD_FAILURE() << "teardown: Destroy(" << id << "): " << StatusText(s);
      destroyed.push_back(id);
    }
    stub_.reset();
    channel_.reset();
    kill(pid_, SIGTERM);
    int status = 0;
    const auto t0 = std::chrono::steady_clock::now();
    if (!WaitExited(pid_, std::chrono::seconds(10), &status)) {
      ADD_FAILURE() << "sbxd (pid " << pid_ << ") did not exit within 10 s of SIGTERM; its "
                    << "threads:\n" << ThreadStates(pid_) << "log:\n" << LogTail();
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    } else if (WIFSIGNALED(status)) {
      // Not even of SIGTERM itself: sbxd takes it with sigwait and exits.
      ADD_FAILURE() << "sbxd died of signal " << WTERMSIG(status) << " on SIGTERM; log:\n"
                    << LogTail();
    } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
      // A sanitizer's report (at exit: LeakSanitizer) ends it this way too.
      ADD_FAILURE() << "sbxd exited with status " << WEXITSTATUS(status) << " on SIGTERM; log:\n"
                    << LogTail();
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (took > 2) std::cerr << "[daemon] sbxd took " << took << " s to exit on SIGTERM\n";
    pid_ = -1;
  }
  stub_.reset();
  channel_.reset();

  // Leftovers: with every sandbox destroyed nothing of them may remain.
  for (const auto& dir : CgroupParentDirs()) {
    auto children = ListSubdirs(dir);
    auto procs = CgroupProcsRecursive(dir);
    if (!children.empty() || !procs.empty()) {
      std::string names;
      for (const std::string& child : children) names += " " + child;
      ADD_FAILURE() << "teardown: leftovers in " << dir << ": " << children.size()
                    << " child cgroups (" << names << " ), " << procs.size()
                    << " processes; sbxd's log:\n" << LogTail(8192);
    }
    RemoveCgroupTree(dir);
    // On cgroup v2 an sbxd that had to leave a cgroup shared with nothing
    // else for a leaf keeps that leaf (server/engine/cgroup.h); it is empty
    // once sbxd has exited.
    RemoveCgroupTree(dir + ".daemon");
  }
  for (const auto& id : destroyed) {
    auto entries = StateEntriesFor(id);
    if (!entries.empty()) ADD_FAILURE() << "teardown: state left for " << id << ": " << entries[0];
  }
  auto mounts = MountsBelow(temp_dir_);
  if (!mounts.empty()) ADD_FAILURE() << "teardown: mounts left below " << temp_dir_;
  for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  if (getenv("SBX_IT_KEEP") == nullptr) {
    RemoveTree(temp_dir_);
  } else {
    std::cerr << "[daemon] kept " << temp_dir_ << "\n";
  }
  temp_dir_.clear();
}

std::vector<std::string> Daemon::CgroupParentDirs() const {
  return sbx::it::CgroupParentDirs(cgroup_parent_);
}

std::vector<std::string> Daemon::CgroupChildren() const {
  std::vector<std::string> out;
  for (const auto& dir : CgroupParentDirs()) {
    for (const auto& child : ListSubdirs(dir)) out.push_back(dir + ":" + child);
  }
  return out;
}

std::vector<pid_t> Daemon::CgroupProcesses() const {
  std::vector<pid_t> out;
  for (const auto& dir : CgroupParentDirs()) {
    auto p = CgroupProcsRecursive(dir);
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

std::vector<std::string> Daemon::StateEntriesFor(const std::string& id) const {
  std::vector<std::string> out;
  for (const auto& path : ListTree(state_dir_)) {
    if (path.substr(path.rfind('/') + 1).find(id) != std::string::npos) out.push_back(path);
  }
  return out;
}

std::string Daemon::LogTail(size_t bytes) const {
  auto log = ReadFile(log_path_);
  if (!log) return "<no log>";
  if (log->size() <= bytes) return *log;
  std::string tail = log->substr(log->size() - bytes);
  // A sanitizer's report names the two racing accesses (or the bad one) at
  // its top, which a tail of a long report leaves out: show its first
  // lines too.
  size_t report = std::string::npos;
  for (const char* mark : {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer",
                           "ERROR: LeakSanitizer", "runtime error:"}) {
    report = std::min(report, log->find(mark));
  }
  if (report == std::string::npos || report >= log->size() - bytes) return tail;
  const size_t line = log->rfind('\n', report);
  const size_t from = line == std::string::npos ? 0 : line + 1;
  const size_t head = std::min(bytes, log->size() - bytes - from);
  return log->substr(from, head) + "\n[...]\n" + tail;
}

ScopedSandbox::ScopedSandbox(Daemon& daemon, const CreateOptions& options) : daemon_(daemon) {
  status_ = Create(daemon_.stub(), MakeCreate(options), &sandbox_);
}

ScopedSandbox::~ScopedSandbox() {
  if (status_.ok() && !sandbox_.id().empty() && daemon_.running()) {
    Destroy(daemon_.stub(), sandbox_.id());
  }
}

Daemon* DaemonTest::daemon_ = nullptr;
std::string DaemonTest::start_error_;

void DaemonTest::StartDaemon(DaemonOptions options) {
  daemon_ = new Daemon(std::move(options));
  auto started = daemon_->Start();
  start_error_ = started ? "" : started.message();
}

void DaemonTest::StopDaemon() {
  delete daemon_;
  daemon_ = nullptr;
}

void DaemonTest::SetUp() {
  ASSERT_NE(daemon_, nullptr);
  ASSERT_TRUE(start_error_.empty()) << start_error_;
  ASSERT_TRUE(daemon_->running()) << "sbxd is not running; log:\n" << daemon_->LogTail();
}

void DaemonTest::TearDown() {
  if (HasFailure() && daemon_ != nullptr) {
    std::cerr << "---- sbxd log (tail) ----\n" << daemon_->LogTail(3000) << "\n----\n";
  }
}

int FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

bool CanConnectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

}  // namespace sbx::it
