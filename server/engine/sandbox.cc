#include "server/engine/sandbox.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/engine/proc_status.h"
#include "server/engine/socket_util.h"
#include "server/engine/wire.h"

namespace sbx::engine {
namespace {

constexpr int kSetupTimeoutMs = 10000;

absl::StatusOr<uint64_t> ReadStartTime(pid_t pid) {
  ASSIGN_OR_RETURN(std::string stat, ReadFileToString(absl::StrCat("/proc/", pid, "/stat")));
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return absl::InternalError("malformed /proc stat");
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(close + 2), ' ');
  uint64_t start = 0;
  // Field 22 overall; field 3 (state) is index 0 here.
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start)) {
    return absl::InternalError(absl::StrCat("malformed /proc/", pid, "/stat"));
  }
  return start;
}

absl::Status WriteIdMaps(pid_t pid, uint32_t base) {
  const std::string map = absl::StrCat("0 ", base, " ", kIdsPerSandbox, "\n");
  RETURN_IF_ERROR(WriteStringToFile(absl::StrCat("/proc/", pid, "/uid_map"), map));
  return WriteStringToFile(absl::StrCat("/proc/", pid, "/gid_map"), map);
}

absl::Status WaitForSetup(int ready_fd, const std::string& id) {
  struct pollfd pfd = {ready_fd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&pfd, 1, kSetupTimeoutMs);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("sandbox ", id, " did not finish its set-up in ", kSetupTimeoutMs, " ms"));
  }
  wire::SetupReport report{};
  ssize_t n;
  do {
    n = ::read(ready_fd, &report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  if (n != sizeof(report)) {
    return absl::InternalError(absl::StrCat("sandbox ", id, " init died during set-up"));
  }
  if (report.step != wire::kStepReady) {
    return ErrnoStatus(report.err, absl::StrCat("setting up sandbox ", id, ": ",
                                                wire::SetupStepName(report.step)));
  }
  return absl::OkStatus();
}

}  // namespace

std::string ControlSocketPath(const std::string& sandbox_dir) {
  return sandbox_dir + "/ctl.sock";
}

absl::StatusOr<std::unique_ptr<Spawner>> Spawner::Start(const std::string& init_path) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoStatus(errno, "creating the spawner channel");
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  const int child_fd = theirs.get() == 3 ? 4 : 3;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, theirs.get(), child_fd);
  const std::string fd_arg = std::to_string(child_fd);
  const std::string parent_arg = std::to_string(::getpid());
  char* argv[] = {const_cast<char*>(init_path.c_str()), const_cast<char*>("spawner"),
                  const_cast<char*>(fd_arg.c_str()), const_cast<char*>(parent_arg.c_str()),
                  nullptr};
  char* envp[] = {nullptr};
  // sbxd blocks its stop signals for sigwait; the spawner starts clean.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  // posix_spawn uses a vfork-style clone: no copy of sbxd's address space.
  int err = ::posix_spawn(&pid, init_path.c_str(), &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return ErrnoStatus(err, absl::StrCat("starting ", init_path));
  auto spawner = std::unique_ptr<Spawner>(new Spawner(pid, std::move(ours)));
  spawner->init_path_ = init_path;
  return spawner;
}

Spawner::~Spawner() {
  std::lock_guard<std::mutex> lock(mu_);
  channel_.reset();  // the spawner exits at end of stream
  if (pid_ > 0) {
    int status;
    ::waitpid(pid_, &status, 0);
  }
}

absl::Status Spawner::RestartLocked() {
  channel_.reset();
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Spawner> fresh, Start(init_path_));
  std::lock_guard<std::mutex> lock(fresh->mu_);
  pid_ = std::exchange(fresh->pid_, 0);
  channel_ = std::move(fresh->channel_);
  return absl::OkStatus();
}

absl::StatusOr<SandboxProcess> Spawner::Spawn(const SandboxConfig& config, Cgroup& cgroup) {
  std::lock_guard<std::mutex> lock(mu_);
  auto result = SpawnLocked(config, cgroup);
  if (result.ok() || result.status().code() != absl::StatusCode::kUnavailable) return result;
  // The spawner itself died (it is restarted once, then the error stands).
  RETURN_IF_ERROR(RestartLocked());
  return SpawnLocked(config, cgroup);
}

absl::StatusOr<SandboxProcess> Spawner::SpawnLocked(const SandboxConfig& config,
                                                    Cgroup& cgroup) {
  const std::string root_path = config.dir + "/root";
  if (::mkdir(root_path.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(errno, absl::StrCat("creating ", root_path));
  }
  ASSIGN_OR_RETURN(UniqueFd listener, ListenSeqpacket(ControlSocketPath(config.dir)));
  int sync_pipe[2], ready_pipe[2];
  if (::pipe2(sync_pipe, O_CLOEXEC) != 0) return ErrnoStatus(errno, "creating a pipe");
  UniqueFd sync_read(sync_pipe[0]), sync_write(sync_pipe[1]);
  if (::pipe2(ready_pipe, O_CLOEXEC) != 0) return ErrnoStatus(errno, "creating a pipe");
  UniqueFd ready_read(ready_pipe[0]), ready_write(ready_pipe[1]);

  wire::SpawnRequest request{config.id, root_path, config.tmp_bytes, config.work_bytes,
                             config.shm_bytes, config.keep_cgroup_ns};
  const int fds[3] = {listener.get(), sync_read.get(), ready_write.get()};
  if (int err = wire::Send(channel_.get(), wire::EncodeSpawn(request), fds, 3); err != 0) {
    return ErrnoStatus(err, "sending a spawn request to the spawner");
  }
  listener.reset();
  sync_read.reset();
  ready_write.reset();

  std::string reply;
  int reply_fds[wire::kMaxFds];
  size_t nfds = 0;
  ssize_t n = wire::Receive(channel_.get(), &reply, reply_fds, &nfds);
  if (n <= 0) {
    return absl::UnavailableError(absl::StrCat("the spawner did not answer: ",
                                               n == 0 ? "end of stream" : std::strerror(-n)));
  }
  wire::Reader in(reply);
  uint32_t type = 0, value = 0;
  in.U32(&type);
  if (!in.U32(&value)) return absl::InternalError("malformed reply from the spawner");
  if (type == wire::kSpawnFailed) {
    return ErrnoStatus(static_cast<int>(value), "cloning the sandbox init");
  }
  if (type != wire::kSpawned || nfds != 1) {
    for (size_t i = 0; i < nfds; ++i) ::close(reply_fds[i]);
    return absl::InternalError("unexpected reply from the spawner");
  }
  SandboxProcess process;
  process.pid = static_cast<pid_t>(value);
  process.pidfd.reset(reply_fds[0]);

  // "From the parent" steps; on failure the init is killed (closing the sync
  // pipe alone also makes it exit).
  absl::Status status = WriteIdMaps(process.pid, config.host_id_base);
  if (status.ok()) {
    // The init lives in the leaf "init" of the sandbox's cgroup tree (see
    // Cgroup::CreateSub); commands get leaves of their own.
    absl::StatusOr<std::unique_ptr<Cgroup>> leaf = cgroup.CreateSub(kInitCgroup);
    status = leaf.ok() ? (*leaf)->AddProcess(process.pid) : leaf.status();
  }
  if (status.ok()) {
    auto start = ReadStartTime(process.pid);
    if (start.ok()) process.start_time = *start;
    status = start.status();
  }
  if (status.ok() && ::write(sync_write.get(), "g", 1) != 1) {
    status = ErrnoStatus(errno, "releasing the sandbox init");
  }
  sync_write.reset();
  if (status.ok()) {
    status = WaitForSetup(ready_read.get(), config.id);
  } else if (struct pollfd pfd = {ready_read.get(), POLLIN, 0}; ::poll(&pfd, 1, 0) > 0) {
    // The init failed before we released it; its own report says why.
    absl::Status own = WaitForSetup(ready_read.get(), config.id);
    if (!own.ok()) status = Annotate(own, status.message());
  }
  if (!status.ok()) {
    KillSandboxProcess(process).IgnoreError();
    return status;
  }
  return process;
}

absl::StatusOr<SandboxProcess> AttachSandboxProcess(pid_t pid, uint64_t start_time) {
  SandboxProcess process;
  process.pid = pid;
  process.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!process.pidfd) return ErrnoStatus(errno, absl::StrCat("opening pid ", pid));
  // Read the start time after opening the pidfd: if it matches, the pidfd
  // refers to the same process.
  auto start = ReadStartTime(pid);
  if (!start.ok() || *start != start_time) {
    return absl::NotFoundError(absl::StrCat("pid ", pid, " is no longer the sandbox init"));
  }
  process.start_time = start_time;
  return process;
}

absl::Status KillSandboxProcess(const SandboxProcess& process) {
  if (!process.pidfd) return absl::FailedPreconditionError("no pidfd for the sandbox init");
  if (::syscall(SYS_pidfd_send_signal, process.pidfd.get(), SIGKILL, nullptr, 0) != 0 &&
      errno != ESRCH) {
    return ErrnoStatus(errno, absl::StrCat("killing sandbox init ", process.pid));
  }
  return absl::OkStatus();
}

UniqueFd HoldMountNamespace(const SandboxProcess& process) {
  if (!process.pidfd || process.pid <= 0) return UniqueFd();
  UniqueFd ns(::open(absl::StrCat("/proc/", process.pid, "/ns/mnt").c_str(),
                     O_RDONLY | O_CLOEXEC));
  // Alive after the open: the pid named the init when it was opened.
  if (!ns ||
      ::syscall(SYS_pidfd_send_signal, process.pidfd.get(), 0, nullptr, 0) != 0) {
    return UniqueFd();
  }
  return ns;
}

absl::Status WaitSandboxProcessExit(const SandboxProcess& process, int timeout_ms) {
  if (!process.pidfd) return absl::OkStatus();
  struct pollfd pfd = {process.pidfd.get(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&pfd, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return ErrnoStatus(errno, "waiting for the sandbox init to exit");
  if (rc == 0) {
    return absl::DeadlineExceededError(absl::StrCat(
        "sandbox init ", process.pid, " still runs ", timeout_ms, " ms after SIGKILL"));
  }
  return absl::OkStatus();
}

void ReapSandboxProcess(const SandboxProcess& process) {
  int status;
  ::waitpid(process.pid, &status, WNOHANG);
}

absl::Status PingInit(const std::string& control_socket, int timeout_ms) {
  ASSIGN_OR_RETURN(UniqueFd conn, ConnectSeqpacket(control_socket));
  if (int err = wire::Send(conn.get(), wire::Writer(wire::kPing).data()); err != 0) {
    return ErrnoStatus(err, "pinging the sandbox init");
  }
  ASSIGN_OR_RETURN(std::string reply, ReceiveWithTimeout(conn.get(), timeout_ms, nullptr));
  if (wire::TypeOf(reply) != wire::kPong) {
    return absl::UnavailableError("the sandbox init gave an unexpected answer");
  }
  return absl::OkStatus();
}

bool HasEffectiveCapability(int cap) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (cap < 0 || cap >= 64 || ::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

absl::Status SetTaskLimits(const std::function<absl::StatusOr<std::vector<pid_t>>()>& list,
                           const std::function<int64_t(uid_t, rlim_t)>& limit_for) {
  // Every pass changes the processes it saw, so only children forked
  // during the pass before can be left; a handful of passes is plenty
  // unless the commands keep forking new ones.
  constexpr int kMaxPasses = 8;
  for (int pass = 0; pass < kMaxPasses; ++pass) {
    ASSIGN_OR_RETURN(std::vector<pid_t> pids, list());
    int changed = 0;
    for (pid_t pid : pids) {
      std::optional<ProcStatus> status = ReadProcStatus(pid);
      struct rlimit now;
      if (!status || !status->real_uid || ::prlimit(pid, RLIMIT_NPROC, nullptr, &now) != 0) {
        continue;
      }
      const int64_t limit = limit_for(*status->real_uid, now.rlim_max);
      if (limit <= 0) continue;
      const struct rlimit wanted = {static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
      if (::prlimit(pid, RLIMIT_NPROC, &wanted, nullptr) != 0) {
        if (errno == ESRCH) continue;
        return ErrnoStatus(errno, absl::StrCat("setting the task limit of pid ", pid));
      }
      ++changed;
    }
    if (changed == 0) return absl::OkStatus();
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "setting the task limits: processes with the old one were still being forked after ",
      kMaxPasses, " passes"));
}

}  // namespace sbx::engine
