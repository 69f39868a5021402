// The spawner: clones sandbox inits on sbxd's behalf.
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "server/engine/wire.h"
#include "server/init/init.h"

namespace sbx::init {
namespace {

constexpr unsigned long kNamespaceFlags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS |
                                          CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;

void CloseAll(const int* fds, size_t n) {
  for (size_t i = 0; i < n; ++i) ::close(fds[i]);
}

void ReplyFailure(int channel, int err) {
  wire::Writer w(wire::kSpawnFailed);
  w.U32(static_cast<uint32_t>(err));
  wire::Send(channel, w.data());
}

// Clones one sandbox init. The child continues on a private copy of this
// process (no CLONE_VM), so it may run ordinary code.
void HandleSpawn(int channel, const std::string& msg, const int* fds, size_t nfds) {
  wire::SpawnRequest request;
  wire::Reader in(msg.data() + sizeof(uint32_t), msg.size() - sizeof(uint32_t));
  if (nfds != 3 || !wire::DecodeSpawn(in, &request)) {
    CloseAll(fds, nfds);
    ReplyFailure(channel, EPROTO);
    return;
  }
  InitFds init_fds{fds[0], fds[1], fds[2], -1};
  long pid = ::syscall(SYS_clone, kNamespaceFlags | SIGCHLD, nullptr, nullptr,
                       nullptr, nullptr);
  if (pid == 0) {
    ::close(channel);
    RunSandboxInit(request, init_fds);
  }
  int err = errno;
  CloseAll(fds, nfds);
  if (pid < 0) {
    ReplyFailure(channel, err);
    return;
  }
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    err = errno;
    ::kill(static_cast<pid_t>(pid), SIGKILL);
    ReplyFailure(channel, err);
    return;
  }
  wire::Writer w(wire::kSpawned);
  w.U32(static_cast<uint32_t>(pid));
  if (wire::Send(channel, w.data(), &pidfd, 1) != 0) ::kill(static_cast<pid_t>(pid), SIGKILL);
  ::close(pidfd);
}

}  // namespace

int RunSpawner(int channel) {
  // Inits are reaped automatically: sbxd watches them through pidfds, and
  // after a restart of sbxd they are not children of this spawner anyway.
  struct sigaction sa = {};
  sa.sa_handler = SIG_IGN;
  sa.sa_flags = SA_NOCLDWAIT;
  ::sigaction(SIGCHLD, &sa, nullptr);

  std::string msg;
  int fds[wire::kMaxFds];
  for (;;) {
    size_t nfds = 0;
    ssize_t n = wire::Receive(channel, &msg, fds, &nfds);
    if (n == 0) return 0;  // sbxd closed the channel
    if (n < 0) {
      if (n == -EMSGSIZE) {
        ReplyFailure(channel, EMSGSIZE);
        continue;
      }
      return 1;
    }
    if (wire::TypeOf(msg) != wire::kSpawn) {
      CloseAll(fds, nfds);
      ReplyFailure(channel, EPROTO);
      continue;
    }
    HandleSpawn(channel, msg, fds, nfds);
  }
}

}  // namespace sbx::init
