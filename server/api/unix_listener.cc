#include "server/api/unix_listener.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/api/log.h"
#include "server/common/status.h"
#include "server/common/thread_name.h"

namespace sbx::api {
namespace {

// How long accepting pauses when the process is out of fds or memory: the
// connection waits in the backlog meanwhile instead of the loop spinning.
constexpr int kOutOfResourcesPauseMs = 100;

void SizeSendBuffer(int fd) {
  const int bytes = kSendBufferBytes;
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes)) != 0) {
    // Without CAP_NET_ADMIN: as much as the host's wmem_max allows.
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<UnixListener>> UnixListener::Listen(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path must be 1 to ",
                                                   sizeof(addr.sun_path) - 1,
                                                   " bytes: ", path));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoStatus(errno, "creating a Unix socket");
  // Never reachable by others, not even between bind and chmod.
  const mode_t old_umask = ::umask(0177);
  const int bound = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) return ErrnoStatus(bind_errno, absl::StrCat("binding ", path));
  if (::chmod(path.c_str(), 0600) != 0) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat("chmod ", path));
    ::unlink(path.c_str());
    return s;
  }
  if (::listen(fd.get(), SOMAXCONN) != 0) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat("listening on ", path));
    ::unlink(path.c_str());
    return s;
  }
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) {
    absl::Status s = ErrnoStatus(errno, "creating the listener's eventfd");
    ::unlink(path.c_str());
    return s;
  }
  return std::unique_ptr<UnixListener>(new UnixListener(std::move(fd), std::move(wake)));
}

UnixListener::~UnixListener() { Stop(); }

absl::Status UnixListener::Start(Handler handler) {
  if (thread_.joinable() || !listen_fd_) {
    return absl::FailedPreconditionError("the Unix listener was started or stopped already");
  }
  handler_ = std::move(handler);
  thread_ = std::thread([this] { AcceptLoop(); });
  NameThread(thread_, "sbxd-accept");
  return absl::OkStatus();
}

void UnixListener::Stop() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(wake_fd_.get(), &one, sizeof(one));
    thread_.join();
  }
  listen_fd_.reset();
}

void UnixListener::AcceptLoop() {
  // Signals are sbxd's main thread's business.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);

  pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
  int timeout_ms = -1;
  for (;;) {
    const int ready = ::poll(fds, 2, timeout_ms);
    if (ready < 0 && errno != EINTR) {
      const int err = errno;
      Log().error("{}; no more connections are accepted", ErrnoStatus(err, "poll").ToString());
      return;
    }
    if (fds[1].revents != 0) return;  // Stop
    timeout_ms = -1;
    for (;;) {
      const int fd = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        SizeSendBuffer(fd);
        handler_(listen_fd_.get(), fd);
        continue;
      }
      const int err = errno;  // before Log(), whose first use may change errno
      if (err == EINTR || err == ECONNABORTED) continue;
      if (err != EAGAIN) {  // EMFILE, ENFILE, ENOBUFS, ENOMEM
        Log().warn("{}; retrying in {} ms", ErrnoStatus(err, "accepting a connection").ToString(),
                   kOutOfResourcesPauseMs);
        // Only the eventfd is watched until then: the socket stays readable.
        fds[0].events = 0;
        timeout_ms = kOutOfResourcesPauseMs;
      } else {
        fds[0].events = POLLIN;
      }
      break;
    }
  }
}

}  // namespace sbx::api
