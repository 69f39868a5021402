// The host side of commands run by a sandbox init, and the control-socket
// helpers they share with sandbox.cc.
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/engine/sandbox.h"
#include "server/engine/socket_util.h"
#include "server/engine/wire.h"

namespace sbx::engine {
namespace {

constexpr int kStartTimeoutMs = 10000;
// Pipes sized for throughput: fewer wake-ups per megabyte streamed.
constexpr int kPipeSize = 1 << 20;

absl::StatusOr<struct sockaddr_un> UnixAddress(const std::string& path) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path too long (", path.size(), " bytes): ", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

absl::Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, "setting O_NONBLOCK");
  }
  return absl::OkStatus();
}

struct Pipe {
  UniqueFd read, write;
};

absl::StatusOr<Pipe> MakePipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return ErrnoStatus(errno, "creating a pipe");
  ::fcntl(p[0], F_SETPIPE_SZ, kPipeSize);  // best effort
  return Pipe{UniqueFd(p[0]), UniqueFd(p[1])};
}

// Marks the status of an exec in a spare that the init does not have.
constexpr char kNoSparePayload[] = "type.sbx.dev/engine.NoSpare";

absl::Status NoSpare(absl::string_view why) {
  absl::Status status = absl::UnavailableError(why);
  status.SetPayload(kNoSparePayload, absl::Cord());
  return status;
}

absl::Status StartFailure(uint32_t step, int err, const ExecOptions& options) {
  switch (step) {
    case wire::kExecStepSpare:
      return NoSpare("the sandbox has no spare process");
    case wire::kExecStepCgroup:
      // A spare that could not join its leaf (removed under it, say) fails
      // the command before anything of it ran: the ordinary path may retry.
      if (options.spare_pid != 0) {
        return NoSpare(absl::StrCat("the spare process could not join its cgroup: ",
                                    std::strerror(err)));
      }
      break;
    case wire::kExecStepExec:
      return ErrnoStatus(err, absl::StrCat("exec '", options.argv[0], "'"));
    case wire::kExecStepCwd:
      return ErrnoStatus(err, absl::StrCat("working directory '", options.cwd, "'"));
    default:
      break;
  }
  return ErrnoStatus(err, absl::StrCat("starting the command: ", wire::ExecStepName(step)));
}

}  // namespace

absl::StatusOr<UniqueFd> ListenSeqpacket(const std::string& path) {
  ASSIGN_OR_RETURN(struct sockaddr_un addr, UnixAddress(path));
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoStatus(errno, "creating a control socket");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("removing stale ", path));
  }
  if (::bind(sock.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoStatus(errno, absl::StrCat("binding ", path));
  }
  if (::chmod(path.c_str(), 0600) != 0) return ErrnoStatus(errno, absl::StrCat("chmod ", path));
  if (::listen(sock.get(), 128) != 0) return ErrnoStatus(errno, absl::StrCat("listening on ", path));
  return sock;
}

absl::StatusOr<UniqueFd> ConnectSeqpacket(const std::string& path) {
  ASSIGN_OR_RETURN(struct sockaddr_un addr, UnixAddress(path));
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoStatus(errno, "creating a socket");
  int rc;
  do {
    rc = ::connect(sock.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return absl::UnavailableError(
          absl::StrCat("the sandbox init is not listening (", std::strerror(err), ")"));
    }
    return ErrnoStatus(err, absl::StrCat("connecting to ", path));
  }
  return sock;
}

absl::StatusOr<std::string> ReceiveWithTimeout(int fd, int timeout_ms,
                                               std::vector<UniqueFd>* fds) {
  struct pollfd pfd = {fd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&pfd, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("the sandbox init did not answer within ", timeout_ms, " ms"));
  }
  std::string msg;
  int raw[wire::kMaxFds];
  size_t nfds = 0;
  ssize_t n = wire::Receive(fd, &msg, raw, &nfds, MSG_DONTWAIT);
  for (size_t i = 0; i < nfds; ++i) {
    if (fds != nullptr) {
      fds->emplace_back(raw[i]);
    } else {
      ::close(raw[i]);
    }
  }
  if (n == 0) return absl::UnavailableError("the sandbox init closed the connection");
  if (n < 0) return ErrnoStatus(static_cast<int>(-n), "receiving from the sandbox init");
  return msg;
}

absl::StatusOr<ExecChannel> StartExec(const std::string& control_socket,
                                      const ExecOptions& options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("argv is empty");
  wire::ExecRequest request;
  request.uid = options.uid;
  request.gid = options.gid;
  request.tty = options.tty;
  request.rows = options.rows;
  request.cols = options.cols;
  request.timeout_ms = options.timeout_ms;
  request.fsize_bytes = options.fsize_bytes;
  request.stack_bytes = options.stack_bytes;
  request.open_files = options.open_files;
  request.nproc = options.nproc;
  std::vector<int> cgroup_fds;
  if (options.cgroup_dir >= 0) {
    if (options.cgroup_procs_fds.empty()) {
      return absl::InternalError("a command started in its leaf needs its cgroup.procs files");
    }
    cgroup_fds.push_back(options.cgroup_dir);
    request.cgroup_dir_first = true;
  }
  cgroup_fds.insert(cgroup_fds.end(), options.cgroup_procs_fds.begin(),
                    options.cgroup_procs_fds.end());
  request.cgroup_fds = static_cast<uint32_t>(cgroup_fds.size());
  request.spare_pid = static_cast<uint32_t>(options.spare_pid);
  if (options.spare_pid != 0 && !cgroup_fds.empty()) {
    return absl::InternalError("a command in the spare joins no cgroup");
  }
  if (cgroup_fds.size() + 3 > wire::kMaxFds) {
    return absl::InternalError("too many cgroup files for one exec request");
  }
  request.cwd = options.cwd;
  request.argv = options.argv;
  request.env = options.env;
  const std::string msg = wire::EncodeExec(request);
  if (msg.size() > wire::kMaxMessage) {
    return absl::InvalidArgumentError(absl::StrCat(
        "argv and env take ", msg.size(), " bytes; at most ", wire::kMaxMessage, " are allowed"));
  }

  ExecChannel channel;
  ASSIGN_OR_RETURN(channel.control, ConnectSeqpacket(control_socket));
  // A 256 KiB request must fit the socket buffer in one datagram.
  int sndbuf = static_cast<int>(wire::kMaxMessage * 2);
  ::setsockopt(channel.control.get(), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
  std::vector<int> send_fds;
  Pipe in_pipe, out_pipe, err_pipe;
  if (!options.tty) {
    ASSIGN_OR_RETURN(in_pipe, MakePipe());
    ASSIGN_OR_RETURN(out_pipe, MakePipe());
    ASSIGN_OR_RETURN(err_pipe, MakePipe());
    send_fds = {in_pipe.read.get(), out_pipe.write.get(), err_pipe.write.get()};
  }
  send_fds.insert(send_fds.end(), cgroup_fds.begin(), cgroup_fds.end());
  int err = wire::Send(channel.control.get(), msg, send_fds.data(), send_fds.size());
  if (!options.tty) {
    // The init holds the child ends now; ours go at return, so that EOF
    // arrives when the command's side closes.
    channel.stdin_fd = std::move(in_pipe.write);
    channel.stdout_fd = std::move(out_pipe.read);
    channel.stderr_fd = std::move(err_pipe.read);
  }
  if (err != 0) return ErrnoStatus(err, "sending the exec request to the sandbox init");

  std::vector<UniqueFd> fds;
  ASSIGN_OR_RETURN(std::string reply, ReceiveWithTimeout(channel.control.get(),
                                                         kStartTimeoutMs, &fds));
  wire::Reader in(reply);
  uint32_t type = 0, value = 0;
  in.U32(&type);
  if (type == wire::kExecFailed) {
    uint32_t error = 0;
    if (!in.U32(&value) || !in.U32(&error)) {
      return absl::InternalError("malformed exec failure from the sandbox init");
    }
    return StartFailure(value, static_cast<int>(error), options);
  }
  if (type != wire::kStarted || !in.U32(&value) || fds.size() != (options.tty ? 1u : 0u)) {
    return absl::InternalError("unexpected answer from the sandbox init");
  }
  channel.pid = static_cast<pid_t>(value);
  if (options.tty) channel.pty = std::move(fds[0]);
  for (const UniqueFd* fd : {&channel.control, &channel.stdin_fd, &channel.stdout_fd,
                             &channel.stderr_fd, &channel.pty}) {
    if (fd->valid()) RETURN_IF_ERROR(SetNonBlocking(fd->get()));
  }
  return channel;
}

bool IsNoSpare(const absl::Status& status) {
  return status.GetPayload(kNoSparePayload).has_value();
}

namespace {

absl::Status SpareFailure(const std::string& reply) {
  wire::Reader in(reply);
  uint32_t type = 0, step = 0, error = 0;
  if (in.U32(&type) && type == wire::kExecFailed && in.U32(&step) && in.U32(&error)) {
    return ErrnoStatus(static_cast<int>(error),
                       absl::StrCat("preparing a spare: ", wire::ExecStepName(step)));
  }
  return absl::InternalError("unexpected answer from the sandbox init to a spare request");
}

}  // namespace

absl::StatusOr<PendingSpare> PrepareSpare(const std::string& control_socket,
                                          const std::vector<int>& cgroup_procs_fds,
                                          int leaf_dir) {
  std::vector<int> fds;
  if (leaf_dir >= 0) fds.push_back(leaf_dir);
  fds.insert(fds.end(), cgroup_procs_fds.begin(), cgroup_procs_fds.end());
  if (cgroup_procs_fds.empty() || fds.size() > wire::kMaxFds) {
    return absl::InternalError("a spare takes a leaf with between 1 and 7 cgroup.procs files");
  }
  ASSIGN_OR_RETURN(UniqueFd control, ConnectSeqpacket(control_socket));
  wire::Writer request(wire::kPrepare);
  // A message without the mode: what an init from before it expects.
  if (leaf_dir >= 0) request.U32(wire::kPrepareCloneInto);
  if (int err = wire::Send(control.get(), request.data(), fds.data(), fds.size()); err != 0) {
    return ErrnoStatus(err, "asking the sandbox init for a spare");
  }
  ASSIGN_OR_RETURN(std::string reply, ReceiveWithTimeout(control.get(), kStartTimeoutMs, nullptr));
  wire::Reader in(reply);
  uint32_t type = 0, pid = 0, how = 0;
  if (in.U32(&type) && type == wire::kPrepared && in.U32(&pid) && pid != 0) {
    PendingSpare pending;
    pending.pid = static_cast<pid_t>(pid);
    if (in.done()) return pending;  // an older init: it answers once joined
    if (in.U32(&how) && (how == wire::kSpareJoining || how == wire::kSpareBornInLeaf) &&
        in.done()) {
      pending.born_in_leaf = how == wire::kSpareBornInLeaf;
      pending.settle = std::move(control);
      return pending;
    }
  }
  return SpareFailure(reply);
}

absl::Status WaitSpareSettled(PendingSpare& pending) {
  if (!pending.settle.valid()) return absl::OkStatus();
  UniqueFd control = std::move(pending.settle);
  ASSIGN_OR_RETURN(std::string reply, ReceiveWithTimeout(control.get(), kStartTimeoutMs, nullptr));
  wire::Reader in(reply);
  uint32_t type = 0;
  if (in.U32(&type) && type == wire::kSpareSettled && in.done()) return absl::OkStatus();
  return SpareFailure(reply);
}

absl::StatusOr<ExecExit> ReadExecExit(int control_fd) {
  std::string msg;
  int fds[wire::kMaxFds];
  size_t nfds = 0;
  ssize_t n = wire::Receive(control_fd, &msg, fds, &nfds, MSG_DONTWAIT);
  for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
  if (n == -EAGAIN) return absl::FailedPreconditionError("no exit event yet");
  if (n == 0 || n == -ECONNRESET) {
    return absl::UnavailableError("the sandbox init went away before the command exited");
  }
  if (n < 0) return ErrnoStatus(static_cast<int>(-n), "reading the exit event");
  wire::Reader in(msg);
  uint32_t type = 0;
  wire::ExitReport report;
  if (!in.U32(&type) || type != wire::kExited || !wire::DecodeExit(in, &report)) {
    return absl::InternalError("malformed exit event from the sandbox init");
  }
  ExecExit exit;
  exit.wait_status = report.wait_status;
  exit.wall_us = report.wall_us;
  exit.user_us = report.user_us;
  exit.system_us = report.system_us;
  exit.max_rss_kb = report.max_rss_kb;
  exit.timed_out = report.timed_out;
  return exit;
}

absl::Status SendExecSignal(int control_fd, int signo) {
  wire::Writer w(wire::kSignal);
  w.U32(static_cast<uint32_t>(signo));
  if (int err = wire::Send(control_fd, w.data()); err != 0) {
    return ErrnoStatus(err, absl::StrCat("sending signal ", signo));
  }
  return absl::OkStatus();
}

absl::Status ResizePty(int pty_fd, uint16_t rows, uint16_t cols) {
  struct winsize ws = {rows, cols, 0, 0};
  if (::ioctl(pty_fd, TIOCSWINSZ, &ws) != 0) return ErrnoStatus(errno, "resizing the terminal");
  return absl::OkStatus();
}

}  // namespace sbx::engine
