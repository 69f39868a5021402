// sbx exec [-i] [-t] ... ID -- CMD [ARG...]
//
// The command's stdout and stderr are written out by the SDK's reader thread
// as they arrive (a slow local sink back-pressures the remote command). The
// main thread runs one poll loop over local stdin, a signalfd and an eventfd
// the reader pokes when the stream ends, so it never blocks in a way that
// could miss the end of the command.
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/terminal.h"
#include "sbx/units.h"

namespace sbx::cli {
namespace {

// Closes an fd on scope exit.
class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  const int fd_;
};

// What the reader thread's callbacks tell the main loop.
struct StreamEvents {
  explicit StreamEvents(int fd) : wake_fd(fd) {}
  void Wake() const {
    const uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof(one));
  }
  const int wake_fd;
  std::atomic<bool> finished{false};
  std::atomic<bool> stdout_failed{false};  // e.g. EPIPE from `| head`
};

struct LoopState {
  bool stdin_open = false;
  int interrupts = 0;
  bool cancelled_by_user = false;
};

absl::StatusOr<ExecOptions> BuildOptions(const ExecArgs& args) {
  ExecOptions options;
  options.sandbox_id = args.id;
  options.argv = args.argv;
  options.cwd = args.cwd;
  options.user = args.user;
  options.tty = args.tty;
  absl::StatusOr<std::map<std::string, std::string>> env =
      ParseKeyValues(args.env, "--env");
  if (!env.ok()) return env.status();
  options.env = *std::move(env);
  if (!args.timeout.empty()) {
    absl::StatusOr<absl::Duration> timeout = ParseDuration(args.timeout);
    if (!timeout.ok()) return timeout.status();
    if (*timeout <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("--timeout must be positive");
    }
    options.timeout = *timeout;
  }
  return options;
}

int TtyFd() { return ::isatty(STDIN_FILENO) ? STDIN_FILENO : STDOUT_FILENO; }

void HandleSignals(ExecCall& call, int signal_fd, bool tty, LoopState& state) {
  signalfd_siginfo info;
  while (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
    const int signo = static_cast<int>(info.ssi_signo);
    if (signo == SIGWINCH) {
      if (!tty) continue;
      if (std::optional<WindowSize> size = GetWindowSize(TtyFd())) {
        (void)call.Resize(size->rows, size->cols);
      }
      continue;
    }
    // The first Ctrl-C goes to the command; a second one gives up on it.
    if (signo == SIGINT && ++state.interrupts > 1) {
      state.cancelled_by_user = true;
      call.Cancel();
      continue;
    }
    (void)call.Signal(signo);
  }
}

// `buffer` holds ExecCall::kStdinChunkBytes.
void ForwardStdin(ExecCall& call, char* buffer, LoopState& state) {
  const ssize_t n = ::read(STDIN_FILENO, buffer, ExecCall::kStdinChunkBytes);
  if (n > 0) {
    // Failure means the stream has ended; the loop learns it from events.
    if (!call.WriteStdin(std::string_view(buffer, n)).ok()) {
      state.stdin_open = false;
    }
    return;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  (void)call.CloseStdin();  // EOF (or an unreadable stdin: same for the command)
  state.stdin_open = false;
}

void PumpUntilFinished(ExecCall& call, const ExecArgs& args, int signal_fd,
                       const StreamEvents& events, LoopState& state) {
  // Not zeroed: a command without input never touches its pages, whose
  // zeroing and faulting-in took about 0.1 ms of every `sbx exec`.
  const std::unique_ptr<char[]> buffer =
      std::make_unique_for_overwrite<char[]>(ExecCall::kStdinChunkBytes);
  while (!events.finished.load()) {
    pollfd fds[] = {{signal_fd, POLLIN, 0},
                    {events.wake_fd, POLLIN, 0},
                    {state.stdin_open ? STDIN_FILENO : -1, POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      std::cerr << "sbx: poll: " << std::strerror(errno) << "\n";
      call.Cancel();
      return;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      (void)!::read(events.wake_fd, &count, sizeof(count));
      if (events.stdout_failed.load()) call.Cancel();
      continue;
    }
    if (fds[0].revents & POLLIN) HandleSignals(call, signal_fd, args.tty, state);
    if (fds[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      ForwardStdin(call, buffer.get(), state);
    }
  }
}

int ExitCodeOf(const v1::ExecExit& exit) {
  if (exit.timed_out()) std::cerr << "sbx: command timed out\n";
  if (exit.oom_killed()) std::cerr << "sbx: command ran out of memory\n";
  if (exit.signal() != 0) return 128 + exit.signal();
  return exit.exit_code() & 0xff;
}

}  // namespace

int RunExec(const GlobalArgs& global, const ExecArgs& args) {
  absl::StatusOr<ExecOptions> options = BuildOptions(args);
  if (!options.ok()) return ReportUsageError(options.status().message());
  const bool raw = args.tty && args.interactive;
  if (raw && !::isatty(STDIN_FILENO)) {
    return ReportUsageError(
        "-t with -i needs a terminal on stdin (use -i alone for pipes)");
  }
  if (args.tty) {
    if (std::optional<WindowSize> size = GetWindowSize(TtyFd())) {
      options->rows = size->rows;
      options->cols = size->cols;
    }
  }

  // Blocked before the client starts any thread, so every thread inherits
  // the mask and these signals reach only the signalfd. Left blocked on
  // return: exec is the process's last act, and unblocking would let a
  // late Ctrl-C kill it with the wrong exit code.
  sigset_t signals;
  sigemptyset(&signals);
  for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) {
    sigaddset(&signals, signo);
  }
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ScopedFd signal_fd(::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  ScopedFd wake_fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (signal_fd.get() < 0 || wake_fd.get() < 0) {
    std::cerr << "sbx: setting up signal handling: " << std::strerror(errno)
              << "\n";
    return kExitApiError;
  }

  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return ReportUsageError(client.status().message());

  StreamEvents events(wake_fd.get());
  ExecCallbacks callbacks;
  callbacks.on_stdout = [&events](std::string_view data) {
    if (events.stdout_failed.load()) return;
    if (!WriteAll(STDOUT_FILENO, data)) {
      events.stdout_failed = true;
      events.Wake();
    }
  };
  callbacks.on_stderr = [](std::string_view data) {
    (void)WriteAll(STDERR_FILENO, data);
  };
  callbacks.on_finish = [&events](const absl::Status&) {
    events.finished = true;
    events.Wake();
  };

  std::unique_ptr<RawTerminal> terminal;
  if (raw) {
    absl::StatusOr<std::unique_ptr<RawTerminal>> entered =
        RawTerminal::Enter(STDIN_FILENO);
    if (!entered.ok()) return ReportUsageError(entered.status().message());
    terminal = *std::move(entered);
  }
  absl::StatusOr<std::unique_ptr<ExecCall>> call =
      client->Exec(*options, std::move(callbacks));
  if (!call.ok()) {
    terminal.reset();
    return ReportUsageError(call.status().message());
  }
  LoopState state;
  state.stdin_open = args.interactive;
  if (!args.interactive) (void)(*call)->CloseStdin();
  PumpUntilFinished(**call, args, signal_fd.get(), events, state);
  absl::StatusOr<v1::ExecExit> exit = (*call)->Wait();
  terminal.reset();  // before any message of ours

  if (!exit.ok()) {
    if (state.cancelled_by_user) return 128 + SIGINT;
    if (events.stdout_failed.load()) return 128 + SIGPIPE;
    return ReportApiError(global, exit.status());
  }
  return ExitCodeOf(*exit);
}

}  // namespace sbx::cli
