// The sandbox init: set-up, then the exec server loop.
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/capability.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/engine/wire.h"
#include "server/init/init.h"
#include "server/init/seccomp_filter.h"

extern char** environ;

namespace sbx::init {
namespace {

[[noreturn]] void FailSetup(int ready, uint32_t step, int err) {
  wire::SetupReport report{step, err};
  ssize_t ignored = ::write(ready, &report, sizeof(report));
  (void)ignored;
  ::_exit(1);
}

// Closes every descriptor except those in `keep`.
void CloseAllExcept(std::vector<int> keep) {
  std::sort(keep.begin(), keep.end());
  unsigned int next = 0;
  for (int fd : keep) {
    if (static_cast<unsigned int>(fd) > next) ::close_range(next, fd - 1, 0);
    next = fd + 1;
  }
  ::close_range(next, ~0U, 0);
}

int BringUpLoopback() {
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return errno;
  struct ifreq ifr = {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  int err = 0;
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) {
    err = errno;
  } else {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (::ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) err = errno;
  }
  ::close(sock);
  return err;
}

int64_t NowUs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

int64_t TimevalUs(const struct timeval& tv) {
  return static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
}

// ---- exec ----------------------------------------------------------------------

struct ChildError {
  uint32_t step;
  int32_t err;
};

// The syscall filter of every command: compiled once by RunSandboxInit before
// any fork (compiling allocates), only loaded by the children. A failed build
// is kept so that every exec fails with its errno instead of running unfiltered.
SeccompFilter g_seccomp_filter;
int g_seccomp_build_error = 0;

int LoadSyscallFilter() {
  return g_seccomp_build_error != 0 ? g_seccomp_build_error : g_seccomp_filter.Load();
}

[[noreturn]] void ChildFail(int err_pipe, uint32_t step, int err) {
  ChildError e{step, err};
  ssize_t ignored = ::write(err_pipe, &e, sizeof(e));
  (void)ignored;
  ::_exit(127);
}

// Limits beside the cgroup: no core dumps (they could leak memory into files
// and take long to write), bounded descriptors, file size and stack, and
// (when sbxd sends one) a task count derived from the sandbox's pids limit.
// The kernel checks RLIMIT_NPROC at the start of fork, the pids cgroup only
// after it has copied the parent's memory map: a fork bomb at its pids
// limit would otherwise copy and tear down an address space with every
// failed fork, and hold locks the whole host shares while doing so.
int ApplyRlimits(const wire::ExecRequest& req) {
  struct Limit {
    int resource;
    rlim_t soft, hard;
  };
  auto or_default = [](int64_t requested, rlim_t fallback) {
    return requested > 0 ? static_cast<rlim_t>(requested) : fallback;
  };
  const rlim_t fsize = or_default(req.fsize_bytes, rlim_t{1} << 30);
  const rlim_t files = or_default(req.open_files, 1024);
  const Limit limits[] = {
      {RLIMIT_CORE, 0, 0},
      {RLIMIT_NOFILE, files, files},
      {RLIMIT_FSIZE, fsize, fsize},
      {RLIMIT_STACK, or_default(req.stack_bytes, rlim_t{8} << 20),
       req.stack_bytes > 0 ? static_cast<rlim_t>(req.stack_bytes) : RLIM_INFINITY},
      {RLIMIT_NPROC, static_cast<rlim_t>(req.nproc), static_cast<rlim_t>(req.nproc)},
  };
  for (const Limit& l : limits) {
    if (l.resource == RLIMIT_NPROC && req.nproc <= 0) continue;
    // Only ever lower: raising a hard limit needs a capability on the host.
    struct rlimit now;
    if (::getrlimit(l.resource, &now) != 0) return errno;
    struct rlimit r;
    r.rlim_max = std::min(l.hard, now.rlim_max);
    r.rlim_cur = std::min(l.soft, r.rlim_max);
    if (::setrlimit(l.resource, &r) != 0) return errno;
  }
  return 0;
}

// Drops every capability for good: ambient, and (via the uid change or
// capset for root) the effective/permitted/inheritable sets. The bounding
// set is empty already (see RunSandboxInit).
int DropPrivileges(uint32_t uid, uint32_t gid) {
  // The init emptied the bounding set for every child; a child that still
  // has one is not started.
  if (::prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) != 0) return EPERM;
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return errno;
  gid_t groups[1] = {gid};
  if (::setgroups(1, groups) != 0) return errno;
  if (::setresgid(gid, gid, gid) != 0) return errno;
  if (::setresuid(uid, uid, uid) != 0) return errno;
  // Root inside keeps its uid but not its capabilities.
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &header, data) != 0) return errno;
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  return 0;
}

// Every disposition back to the default; done once by the init (which
// handles no signal: it reads SIGCHLD from a signalfd), so that its
// children inherit defaults and only have to clear the mask.
void ResetDispositions() {
  struct sigaction sa = {};
  sa.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &sa, nullptr);
}

void ClearSignalMask() {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
}

// Runs in the forked child; never returns. `filtered`: the syscall filter
// is in place already (a spare loads it while it waits). `in_leaf`: it was
// started in its cgroup leaf (req.cgroup_dir_first), and joins nothing.
[[noreturn]] void ExecChild(const wire::ExecRequest& req, const int* stdio,
                            const char* pty_name, int err_pipe, bool filtered,
                            bool in_leaf = false) {
  ClearSignalMask();
  // Join the command's own cgroup leaf first, so that everything it does,
  // from its first page on, is accounted there.
  const int* cgroup_fds = stdio + (req.tty ? 0 : 3);
  for (uint32_t i = req.cgroup_dir_first ? 1 : 0; i < req.cgroup_fds && !in_leaf; ++i) {
    if (::write(cgroup_fds[i], "0", 1) != 1) ChildFail(err_pipe, wire::kExecStepCgroup, errno);
  }
  // ...and make that leaf the root of what the command can see of cgroups.
  if (req.cgroup_fds > 0 && ::unshare(CLONE_NEWCGROUP) != 0) {
    ChildFail(err_pipe, wire::kExecStepCgroup, errno);
  }
  if (::setsid() < 0) ChildFail(err_pipe, wire::kExecStepSetsid, errno);
  if (pty_name != nullptr) {
    int slave = ::open(pty_name, O_RDWR);
    if (slave < 0) ChildFail(err_pipe, wire::kExecStepPty, errno);
    if (::ioctl(slave, TIOCSCTTY, 0) != 0) ChildFail(err_pipe, wire::kExecStepPty, errno);
    for (int fd = 0; fd < 3; ++fd) {
      if (::dup2(slave, fd) < 0) ChildFail(err_pipe, wire::kExecStepStdio, errno);
    }
    if (slave > 2) ::close(slave);
  } else {
    // dup2 onto 0..2 in two passes so that a source numbered 0..2 is not
    // overwritten before it is copied.
    int moved[3];
    for (int i = 0; i < 3; ++i) {
      moved[i] = ::fcntl(stdio[i], F_DUPFD_CLOEXEC, 3);
      if (moved[i] < 0) ChildFail(err_pipe, wire::kExecStepStdio, errno);
    }
    for (int i = 0; i < 3; ++i) {
      if (::dup2(moved[i], i) < 0) ChildFail(err_pipe, wire::kExecStepStdio, errno);
    }
  }
  // Everything above 2 closes on exec; the error pipe must stay open until then.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  if (::chdir(req.cwd.c_str()) != 0) ChildFail(err_pipe, wire::kExecStepCwd, errno);
  if (int err = ApplyRlimits(req); err != 0) ChildFail(err_pipe, wire::kExecStepLimits, err);
  if (int err = DropPrivileges(req.uid, req.gid); err != 0) {
    ChildFail(err_pipe, wire::kExecStepPrivileges, err);
  }
  // After no_new_privs (set by DropPrivileges), which an unprivileged filter needs.
  if (!filtered) {
    if (int err = LoadSyscallFilter(); err != 0) ChildFail(err_pipe, wire::kExecStepSeccomp, err);
  }
  std::vector<char*> argv;
  for (const auto& a : req.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : req.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  // execvpe searches the PATH of the current environment, so install the
  // command's environment first.
  environ = envp.data();
  ::execvpe(argv[0], argv.data(), envp.data());
  ChildFail(err_pipe, wire::kExecStepExec, errno);
}

// ---- the spare ----------------------------------------------------------------
//
// A child forked ahead of time that has joined the next command's cgroup
// leaf (and unshared its cgroup namespace there) and waits for the command.
// Joining a cgroup takes the kernel's cgroup_threadgroup_rwsem for writing,
// which waits for an RCU grace period unless another move happened just
// before: 5-10 ms on an idle host. The spare pays it off the exec path; on
// cgroup v2 it starts in its leaf instead (CloneIntoCgroup), and pays none.

// fork(), with the child starting in the cgroup whose directory is
// `cgroup_dir` (clone3 with CLONE_INTO_CGROUP, cgroup v2, Linux 5.7+): no
// move, so no grace period to wait for. glibc has no wrapper. What fork()
// does beyond the call, glibc's cached thread id and atfork handlers, the
// spare does not need: the init registers no handlers, and raise() asks the
// kernel for the thread id.
pid_t CloneIntoCgroup(int cgroup_dir) {
  struct CloneArgs {  // struct clone_args, up to CLONE_ARGS_SIZE_VER2
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
  };
  constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;
  CloneArgs args = {};
  args.flags = kCloneIntoCgroup;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(cgroup_dir);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof(args)));
}

// Runs in the forked spare; never returns. `sock` is its end of the
// socketpair with the init; `cgroup_fds` the leaf's cgroup.procs files
// (none when it started in its leaf).
[[noreturn]] void RunSpare(int sock, const int* cgroup_fds, size_t ncgroup) {
  // A failure here is reported to the command it was meant for, as it would
  // have been without a spare.
  int setup_err = 0;
  for (size_t i = 0; i < ncgroup && setup_err == 0; ++i) {
    if (::write(cgroup_fds[i], "0", 1) != 1) setup_err = errno;
  }
  if (setup_err == 0 && ::unshare(CLONE_NEWCGROUP) != 0) setup_err = errno;
  // The filter too, ahead of time: compiling it into the kernel takes a good
  // part of a millisecond. It refuses none of the calls made from here to
  // exec, and with the capabilities the spare still has (CAP_SYS_ADMIN in
  // the sandbox's user namespace) it needs no no_new_privs yet; the command
  // gets that before exec all the same.
  int filter_err = setup_err == 0 ? LoadSyscallFilter() : 0;
  // Nothing of the init's (its control socket, other commands' connections)
  // stays open here.
  CloseAllExcept({0, 1, 2, sock});
  // Until now this process counted among the sandbox's own (sbxd's usage
  // leaves out only a spare in its leaf): the init tells sbxd after this.
  // It may have handed us a command already and closed its end: the
  // command is queued here all the same, so a failed send is no reason to go.
  wire::Send(sock, wire::Writer(wire::kSpareReady).data());
  std::string msg;
  int fds[wire::kMaxFds];
  size_t nfds = 0;
  ssize_t n;
  do {
    n = wire::Receive(sock, &msg, fds, &nfds);
  } while (n == -EINTR);
  // The init went away or replaced us: nothing to run.
  if (n <= 0 || wire::TypeOf(msg) != wire::kSpareRun || nfds < 1) ::_exit(0);
  const int err_pipe = fds[0];
  // The command is ours from here on; the init takes a spare that dies
  // without saying so (killed while it joined its leaf, say) for no spare.
  const char taken = 1;
  if (::write(err_pipe, &taken, 1) != 1) ::_exit(0);
  if (setup_err != 0) ChildFail(err_pipe, wire::kExecStepCgroup, setup_err);
  if (filter_err != 0) ChildFail(err_pipe, wire::kExecStepSeccomp, filter_err);
  wire::Reader in(msg.data() + sizeof(uint32_t), msg.size() - sizeof(uint32_t));
  std::string pty_name, exec_msg;
  wire::ExecRequest req;
  if (!in.Str(&pty_name) || !in.Str(&exec_msg) || !in.done()) {
    ChildFail(err_pipe, wire::kExecStepSpare, EPROTO);
  }
  wire::Reader exec_in(exec_msg.data() + sizeof(uint32_t), exec_msg.size() - sizeof(uint32_t));
  if (exec_msg.size() < sizeof(uint32_t) || !wire::DecodeExec(exec_in, &req) ||
      req.cgroup_fds != 0 || nfds != 1u + (req.tty ? 0u : 3u)) {
    ChildFail(err_pipe, wire::kExecStepSpare, EPROTO);
  }
  ::close(sock);
  ExecChild(req, fds + 1, req.tty ? pty_name.c_str() : nullptr, err_pipe, /*filtered=*/true);
}

// How long the init waits for a spare to take the command it was handed.
// Joining its leaf, the longest thing a spare may still be doing, takes a
// grace period or two; a spare that is later than this has been stopped.
constexpr int kSpareTakeTimeoutMs = 1000;

// Waits for the byte with which a spare says it took its command (RunSpare).
bool SpareTookCommand(int err_pipe) {
  struct pollfd pfd = {err_pipe, POLLIN, 0};
  const int64_t deadline = NowUs() + kSpareTakeTimeoutMs * 1000;
  for (;;) {
    const int64_t left_ms = (deadline - NowUs() + 999) / 1000;
    if (left_ms <= 0) return false;
    const int rc = ::poll(&pfd, 1, static_cast<int>(left_ms));
    if (rc > 0) break;
    if (rc == 0 || errno != EINTR) return false;
  }
  char taken = 0;
  ssize_t n;
  do {
    n = ::read(err_pipe, &taken, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1;
}

struct Exec {
  int conn = -1;        // control connection; -1 once the peer has gone
  pid_t pid = 0;
  int64_t started_us = 0;
  int64_t deadline_us = 0;  // 0: none
  bool timed_out = false;
};

class Server {
 public:
  explicit Server(int control) : control_(control) {}
  [[noreturn]] void Run();

 private:
  void Accept();
  void OnConnReadable(int conn);
  void StartExec(int conn, const std::string& msg, int* fds, size_t nfds);
  void CloseConn(int conn);
  void ReapChildren();
  void EnforceDeadlines();
  int NextTimeoutMs() const;
  void SendFailure(int conn, uint32_t step, int err);
  void PrepareSpare(int conn, const std::string& msg, int* fds, size_t nfds);
  // The spare's socket is readable: it is ready (or died before).
  void OnSpareReadable();
  // Gives the kPrepare waiting for the spare to settle, if any, its second
  // answer: kSpareSettled, or kExecFailed with `err`.
  void AnswerPrepare(int err);
  // Ends the spare (`reaped`: it is dead and waited for already).
  void DropSpare(bool reaped = false);
  // Hands the command to the spare `expected`: 0, its pid and our end of
  // its socket (*sock, to be closed once the command has exec'd or failed),
  // or ESRCH when there is no such spare.
  int RunInSpare(pid_t expected, const std::string& msg, const char* pty_name, int err_pipe,
                 const int* stdio, pid_t* pid, int* sock);
  // fork(), the child starting in the cgroup leaf whose directory is
  // `leaf_dir` where the kernel allows it (CloneIntoCgroup; -1: no leaf to
  // start in), which *in_leaf tells (if not null). The child runs
  // `child(in_leaf)`, which must not return; the parent gets its pid, or
  // -1 with errno.
  template <typename Child>
  pid_t ForkInLeaf(int leaf_dir, bool* in_leaf, Child child);

  int control_;
  int epoll_ = -1;
  int sigfd_ = -1;
  std::map<int, std::unique_ptr<Exec>> by_conn_;  // conn fd -> exec (pid 0: none yet)
  std::map<pid_t, Exec*> by_pid_;
  pid_t spare_pid_ = 0;  // 0: no spare
  // The kernel refused clone3(CLONE_INTO_CGROUP) once: spares and commands
  // join their leaf from then on.
  bool clone_into_refused_ = false;
  int spare_sock_ = -1;
  // The connection whose kPrepare waits for the spare to settle (join its
  // leaf); -1: none (the spare, if any, is in its leaf).
  int spare_waiter_ = -1;
};

template <typename Child>
pid_t Server::ForkInLeaf(int leaf_dir, bool* in_leaf, Child child) {
  bool started_in_leaf = false;
  pid_t pid = -1;
  if (leaf_dir >= 0 && !clone_into_refused_) {
    pid = CloneIntoCgroup(leaf_dir);
    if (pid == 0) {
      child(/*in_leaf=*/true);
      ::_exit(127);
    }
    // Refused (an older kernel, or a host where the delegation does not
    // hold): the child joins its leaf, as do all after it. A passing
    // shortage is no refusal.
    if (pid < 0 && errno != EAGAIN && errno != ENOMEM) clone_into_refused_ = true;
    started_in_leaf = pid > 0;
  }
  if (in_leaf != nullptr) *in_leaf = started_in_leaf;
  if (pid < 0) {
    pid = ::fork();
    if (pid == 0) {
      child(/*in_leaf=*/false);
      ::_exit(127);
    }
  }
  return pid;
}

void Server::AnswerPrepare(int err) {
  const int conn = spare_waiter_;
  if (conn < 0) return;
  spare_waiter_ = -1;  // first: CloseConn below drops the spare of a waiter that goes
  if (err != 0) {
    SendFailure(conn, wire::kExecStepSpare, err);
  } else {
    wire::Send(conn, wire::Writer(wire::kSpareSettled).data());
  }
  CloseConn(conn);
}

void Server::DropSpare(bool reaped) {
  if (spare_pid_ == 0) return;
  // Closing its socket ends its wait; the kill covers a spare still joining.
  if (!reaped) ::kill(spare_pid_, SIGKILL);
  ::close(spare_sock_);  // out of the epoll set with it
  spare_pid_ = 0;
  spare_sock_ = -1;
  AnswerPrepare(ECHILD);
}

void Server::OnSpareReadable() {
  std::string msg;
  int fds[wire::kMaxFds];
  size_t nfds = 0;
  ssize_t n = wire::Receive(spare_sock_, &msg, fds, &nfds, MSG_DONTWAIT);
  for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
  if (n == -EAGAIN || n == -EINTR) return;
  if (n <= 0 || wire::TypeOf(msg) != wire::kSpareReady) {
    DropSpare();  // died before it was ready
    return;
  }
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, spare_sock_, nullptr);
  AnswerPrepare(0);
}

void Server::PrepareSpare(int conn, const std::string& msg, int* fds, size_t nfds) {
  DropSpare();
  wire::Reader in(msg.data() + sizeof(uint32_t), msg.size() - sizeof(uint32_t));
  uint32_t mode = wire::kPrepareJoin;
  if (!in.done() && !(in.U32(&mode) && in.done())) mode = UINT32_MAX;
  // The cgroup.procs files the spare joins, unless it starts in its leaf.
  const int* join_fds = fds;
  size_t njoin = nfds;
  int leaf_dir = -1;
  if (mode == wire::kPrepareCloneInto && nfds >= 2) {
    leaf_dir = fds[0];
    ++join_fds;
    --njoin;
  }
  int pair[2] = {-1, -1};
  int err = 0;
  pid_t pid = -1;
  bool born_in_leaf = false;
  if (njoin == 0 || (mode != wire::kPrepareJoin && leaf_dir < 0)) {
    err = EPROTO;
  } else if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    err = errno;
  } else {
    pid = ForkInLeaf(leaf_dir, &born_in_leaf, [&](bool in_leaf) {
      ::close(pair[0]);
      RunSpare(pair[1], in_leaf ? nullptr : join_fds, in_leaf ? 0 : njoin);
    });
    if (pid < 0) err = errno;
    ::close(pair[1]);
  }
  for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
  if (err != 0) {
    if (pair[0] >= 0) ::close(pair[0]);
    SendFailure(conn, wire::kExecStepFork, err);
    CloseConn(conn);
    return;
  }
  spare_pid_ = pid;
  spare_sock_ = pair[0];
  // Its pid at once: the next command can be handed to it while it joins.
  wire::Writer w(wire::kPrepared);
  w.U32(static_cast<uint32_t>(pid));
  w.U32(born_in_leaf ? wire::kSpareBornInLeaf : wire::kSpareJoining);
  if (wire::Send(conn, w.data()) != 0) {
    DropSpare();
    CloseConn(conn);
    return;
  }
  spare_waiter_ = conn;
  // Settled when the spare says it is in its leaf: joining can wait for
  // milliseconds, which this loop does not.
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.fd = spare_sock_;
  if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, spare_sock_, &ev) != 0) DropSpare();
}

int Server::RunInSpare(pid_t expected, const std::string& msg, const char* pty_name,
                       int err_pipe, const int* stdio, pid_t* pid, int* sock) {
  if (spare_pid_ == 0 || spare_pid_ != expected) return ESRCH;
  // A spare still joining its leaf takes the command all the same: it reads
  // it once it is in, which is sooner than a new child could join.
  wire::Writer w(wire::kSpareRun);
  w.Str(pty_name != nullptr ? pty_name : "").Str(msg);
  int fds[4] = {err_pipe, -1, -1, -1};
  size_t nfds = 1;
  if (pty_name == nullptr) {
    for (int i = 0; i < 3; ++i) fds[nfds++] = stdio[i];
  }
  const int err = wire::Send(spare_sock_, w.data(), fds, nfds);
  // Used or dead: either way it is nobody's spare any more. Whether it took
  // the command, StartExec learns from the error pipe (SpareTookCommand).
  const pid_t spare = spare_pid_;
  const int spare_sock = spare_sock_;
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, spare_sock, nullptr);
  spare_pid_ = 0;
  spare_sock_ = -1;
  if (err != 0) {
    ::close(spare_sock);
    ::kill(spare, SIGKILL);
    AnswerPrepare(ECHILD);
    return ESRCH;
  }
  AnswerPrepare(0);  // settled: it is the command's now
  // Not closed yet: a spare still joining may have its "ready" unread in
  // our end, and closing an end with unread data resets the other, which
  // would lose the command queued for it.
  *sock = spare_sock;
  *pid = spare;
  return 0;
}

void Server::Accept() {
  for (;;) {
    int conn = ::accept4(control_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) return;
    struct epoll_event ev = {};
    ev.events = EPOLLIN;
    ev.data.fd = conn;
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, conn, &ev) != 0) {
      ::close(conn);
      continue;
    }
    by_conn_[conn] = std::make_unique<Exec>();
    by_conn_[conn]->conn = conn;
  }
}

void Server::CloseConn(int conn) {
  auto it = by_conn_.find(conn);
  if (it == by_conn_.end()) return;
  if (conn == spare_waiter_) {
    // sbxd gave up waiting for this spare; it would never learn its pid.
    spare_waiter_ = -1;
    DropSpare();
  }
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, conn, nullptr);
  ::close(conn);
  Exec* exec = it->second.get();
  if (exec->pid > 0) {
    // The client went away: its command goes with it. The record stays until
    // the child is reaped.
    ::kill(-exec->pid, SIGKILL);
    exec->conn = -1;
    it->second.release();
  }
  by_conn_.erase(it);
}

void Server::SendFailure(int conn, uint32_t step, int err) {
  wire::Writer w(wire::kExecFailed);
  w.U32(step).U32(static_cast<uint32_t>(err));
  wire::Send(conn, w.data());
}

void Server::StartExec(int conn, const std::string& msg, int* fds, size_t nfds) {
  Exec* exec = by_conn_[conn].get();
  wire::ExecRequest req;
  wire::Reader in(msg.data() + sizeof(uint32_t), msg.size() - sizeof(uint32_t));
  bool ok = exec->pid == 0 && wire::DecodeExec(in, &req) && !req.argv.empty() &&
            nfds == (req.tty ? 0u : 3u) + req.cgroup_fds &&
            !(req.spare_pid != 0 && req.cgroup_fds != 0);
  if (!ok) {
    for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
    SendFailure(conn, wire::kExecStepExec, EPROTO);
    CloseConn(conn);
    return;
  }
  int master = -1;
  char pty_name[64] = {};
  if (req.tty) {
    master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct winsize ws = {req.rows, req.cols, 0, 0};
    if (master < 0 || ::unlockpt(master) != 0 ||
        ::ptsname_r(master, pty_name, sizeof(pty_name)) != 0 ||
        ::ioctl(master, TIOCSWINSZ, &ws) != 0) {
      int err = errno;
      if (master >= 0) ::close(master);
      SendFailure(conn, wire::kExecStepPty, err);
      CloseConn(conn);
      return;
    }
  }
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    SendFailure(conn, wire::kExecStepFork, errno);
    for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
    if (master >= 0) ::close(master);
    CloseConn(conn);
    return;
  }
  int64_t started = NowUs();
  pid_t pid = -1;
  int start_err = 0;
  int spare_sock = -1;
  uint32_t start_step = wire::kExecStepFork;
  if (req.spare_pid != 0) {
    start_step = wire::kExecStepSpare;
    start_err = RunInSpare(static_cast<pid_t>(req.spare_pid), msg, req.tty ? pty_name : nullptr,
                           err_pipe[1], fds, &pid, &spare_sock);
  } else {
    const int leaf_dir = req.cgroup_dir_first ? fds[req.tty ? 0 : 3] : -1;
    pid = ForkInLeaf(leaf_dir, nullptr, [&](bool in_leaf) {
      ::close(err_pipe[0]);
      ExecChild(req, fds, req.tty ? pty_name : nullptr, err_pipe[1], /*filtered=*/false,
                in_leaf);
    });
    if (pid < 0) start_err = errno;
  }
  ::close(err_pipe[1]);
  for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
  if (start_err == 0 && spare_sock >= 0 && !SpareTookCommand(err_pipe[0])) {
    // Dead before it read the command, or stopped: the command has not
    // begun, and sbxd starts it the ordinary way.
    ::kill(pid, SIGKILL);
    ::close(spare_sock);
    start_err = ESRCH;
  }
  if (start_err != 0) {
    ::close(err_pipe[0]);
    if (master >= 0) ::close(master);
    SendFailure(conn, start_step, start_err);
    CloseConn(conn);
    return;
  }
  // The child writes a ChildError if it fails before exec; a successful
  // exec closes the pipe. This wait is short: a few syscalls in the child.
  ChildError child_error{};
  ssize_t n;
  do {
    n = ::read(err_pipe[0], &child_error, sizeof(child_error));
  } while (n < 0 && errno == EINTR);
  ::close(err_pipe[0]);
  if (spare_sock >= 0) ::close(spare_sock);  // it has read the command, or died
  if (n == sizeof(child_error)) {
    int status;
    ::waitpid(pid, &status, 0);
    if (master >= 0) ::close(master);
    SendFailure(conn, child_error.step, child_error.err);
    CloseConn(conn);
    return;
  }
  exec->pid = pid;
  exec->started_us = started;
  if (req.timeout_ms > 0) exec->deadline_us = started + req.timeout_ms * 1000;
  by_pid_[pid] = exec;
  wire::Writer w(wire::kStarted);
  w.U32(static_cast<uint32_t>(pid));
  int send_err = master >= 0 ? wire::Send(conn, w.data(), &master, 1)
                             : wire::Send(conn, w.data());
  if (master >= 0) ::close(master);
  if (send_err != 0) CloseConn(conn);
}

void Server::OnConnReadable(int conn) {
  std::string msg;
  int fds[wire::kMaxFds];
  size_t nfds = 0;
  ssize_t n = wire::Receive(conn, &msg, fds, &nfds, MSG_DONTWAIT);
  if (n == -EAGAIN) return;
  if (n <= 0) {
    CloseConn(conn);
    return;
  }
  Exec* exec = by_conn_[conn].get();
  switch (wire::TypeOf(msg)) {
    case wire::kExec:
      StartExec(conn, msg, fds, nfds);
      return;
    case wire::kSignal: {
      uint32_t sig = 0;
      wire::Reader in(msg.data() + sizeof(uint32_t), msg.size() - sizeof(uint32_t));
      if (in.U32(&sig) && sig > 0 && sig < NSIG && exec->pid > 0) ::kill(-exec->pid, sig);
      break;
    }
    case wire::kPing:
      wire::Send(conn, wire::Writer(wire::kPong).data());
      break;
    case wire::kPrepare:
      if (exec->pid == 0) {
        PrepareSpare(conn, msg, fds, nfds);
        return;
      }
      break;
    default:
      break;
  }
  for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
}

void Server::ReapChildren() {
  struct signalfd_siginfo info;
  while (::read(sigfd_, &info, sizeof(info)) == sizeof(info)) {
  }
  for (;;) {
    int status;
    struct rusage ru;
    pid_t pid = ::wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) return;
    if (pid == spare_pid_) {  // died waiting (killed, or could not join its leaf)
      DropSpare(/*reaped=*/true);
      continue;
    }
    auto it = by_pid_.find(pid);
    if (it == by_pid_.end()) continue;  // an orphan re-parented to us, or an old spare
    Exec* exec = it->second;
    by_pid_.erase(it);
    if (exec->conn < 0) {
      delete exec;  // its client is gone; nobody to tell
      continue;
    }
    wire::ExitReport report;
    report.wait_status = status;
    report.wall_us = NowUs() - exec->started_us;
    report.user_us = TimevalUs(ru.ru_utime);
    report.system_us = TimevalUs(ru.ru_stime);
    report.max_rss_kb = ru.ru_maxrss;
    report.timed_out = exec->timed_out;
    wire::Send(exec->conn, wire::EncodeExit(report));
    exec->pid = 0;
    CloseConn(exec->conn);
  }
}

void Server::EnforceDeadlines() {
  int64_t now = NowUs();
  for (auto& [pid, exec] : by_pid_) {
    if (exec->deadline_us > 0 && now >= exec->deadline_us && !exec->timed_out) {
      exec->timed_out = true;
      ::kill(-pid, SIGKILL);
    }
  }
}

int Server::NextTimeoutMs() const {
  int64_t next = 0;
  for (const auto& [pid, exec] : by_pid_) {
    if (exec->deadline_us > 0 && !exec->timed_out &&
        (next == 0 || exec->deadline_us < next)) {
      next = exec->deadline_us;
    }
  }
  if (next == 0) return -1;
  int64_t ms = (next - NowUs() + 999) / 1000;
  return ms < 0 ? 0 : static_cast<int>(std::min<int64_t>(ms, 60000));
}

void Server::Run() {
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigfd_ = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  ::fcntl(control_, F_SETFL, O_NONBLOCK);
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.fd = control_;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, control_, &ev);
  ev.data.fd = sigfd_;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, sigfd_, &ev);
  struct epoll_event events[64];
  for (;;) {
    int n = ::epoll_wait(epoll_, events, 64, NextTimeoutMs());
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == control_) {
        Accept();
      } else if (fd == sigfd_) {
        ReapChildren();
      } else if (fd == spare_sock_ && spare_waiter_ >= 0) {
        OnSpareReadable();
      } else if (by_conn_.count(fd) != 0) {
        OnConnReadable(fd);
      }
    }
    EnforceDeadlines();
  }
}

}  // namespace

[[noreturn]] void ServeExecs(int control) {
  Server server(control);
  server.Run();
}

[[noreturn]] void RunSandboxInit(const wire::SpawnRequest& request, const InitFds& in_fds) {
  // The spawner auto-reaps its children (SIGCHLD ignored); this init must
  // see its own, and its commands must start with default dispositions.
  ResetDispositions();
  InitFds fds = in_fds;
  // Open the mount point now, in our new mount namespace, while our
  // credentials are still host root's (sbxd's directories are 0700 root).
  fds.root_dir = ::open(request.root_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fds.root_dir < 0) FailSetup(fds.ready, wire::kStepRootDir, errno);
  CloseAllExcept({fds.control, fds.sync, fds.ready, fds.root_dir});
  const int ready = fds.ready;
  // Occupy 0-2 so that no later descriptor lands there by accident.
  for (int i = 0; i < 3; ++i) {
    if (::open("/dev/null", O_RDWR | O_CLOEXEC) < 0) FailSetup(ready, wire::kStepSync, errno);
  }

  char go = 0;
  ssize_t n;
  do {
    n = ::read(fds.sync, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1 || go != 'g') ::_exit(1);  // sbxd gave up on us
  ::close(fds.sync);

  // sbxd has mapped root inside to the sandbox's host range; become it.
  if (::setresgid(0, 0, 0) != 0 || ::setgroups(0, nullptr) != 0 ||
      ::setresuid(0, 0, 0) != 0) {
    FailSetup(ready, wire::kStepIdentity, errno);
  }
  // Now that sbxd has moved us into our cgroup, make it our cgroup root,
  // unless we start our spares in their leaves (see keep_cgroup_ns).
  if (!request.keep_cgroup_ns && ::unshare(CLONE_NEWCGROUP) != 0) {
    FailSetup(ready, wire::kStepCgroupNs, errno);
  }
  if (::sethostname(request.id.data(), request.id.size()) != 0) {
    FailSetup(ready, wire::kStepHostname, errno);
  }
  if (int err = BringUpLoopback(); err != 0) FailSetup(ready, wire::kStepLoopback, err);
  uint32_t step = 0;
  if (int err = BuildRoot(request, fds.root_dir, &step); err != 0) {
    FailSetup(ready, step, err);
  }
  ::close(fds.root_dir);
  g_seccomp_build_error = SeccompFilter::Build(&g_seccomp_filter);
  // The init never execs, so its bounding set only matters to the commands
  // it forks: emptied once here rather than in every command.
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      FailSetup(ready, wire::kStepBoundingSet, errno);
    }
  }
  // No one inside may ptrace or read the init (/proc/1/environ, /proc/1/exe).
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGPIPE);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    FailSetup(ready, wire::kStepSignals, errno);
  }
  wire::SetupReport report{wire::kStepReady, 0};
  if (::write(ready, &report, sizeof(report)) != sizeof(report)) ::_exit(1);
  ::close(ready);
  ServeExecs(fds.control);
}

}  // namespace sbx::init
