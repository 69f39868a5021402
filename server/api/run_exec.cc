#include "server/api/run_exec.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/api/log.h"
#include "server/common/status.h"
#include "server/common/unique_fd.h"
#include "server/engine/sandbox.h"

namespace sbx::api {
namespace {

// The pump wakes at least this often: to read the command's cpu time (so a
// command is killed at most this long after it crossed its cpu limit) and to
// notice a cancelled call.
constexpr int kPollIntervalMs = 10;
constexpr size_t kReadBytes = 64 << 10;
// After the command exits, output is still read until EOF; a background
// process that keeps a pipe open is given this long (as in Exec).
constexpr absl::Duration kDrainAfterExit = absl::Milliseconds(200);
// How long leftovers in a command's cgroup may take to die.
constexpr int kKillTimeoutMs = 2000;

int64_t Micros(const google::protobuf::Duration& d) {
  return d.seconds() * 1000000 + d.nanos() / 1000;
}

// One command's pipes, from start to exit. Calling thread only.
class Pump {
 public:
  Pump(manager::Manager& manager, std::string sandbox_id, engine::ExecChannel channel,
       const CommandSpec& spec)
      : manager_(manager), id_(std::move(sandbox_id)), spec_(spec), pid_(channel.pid),
        cgroup_(std::move(channel.cgroup)) {
    ctl_ = std::move(channel.control);
    in_ = std::move(channel.stdin_fd);
    out_ = std::move(channel.stdout_fd);
    err_ = std::move(channel.stderr_fd);
  }
  // Kills whatever is left of the command and removes its cgroup.
  ~Pump();

  absl::StatusOr<CommandResult> Run(const std::function<bool()>& cancelled);

 private:
  absl::Status Step();
  void WriteStdin();
  void ReadOutput(UniqueFd& fd, std::string& sink);
  void CheckCpu();
  void Kill();
  bool Done() const { return exit_.has_value() && !out_.valid() && !err_.valid(); }

  manager::Manager& manager_;
  const std::string id_;
  const CommandSpec& spec_;
  const pid_t pid_;
  std::unique_ptr<engine::Cgroup> cgroup_;
  UniqueFd ctl_, in_, out_, err_;
  size_t stdin_off_ = 0;
  std::optional<engine::ExecExit> exit_;
  absl::Time drain_deadline_ = absl::InfiniteFuture();
  bool drain_expired_ = false;
  bool cpu_exceeded_ = false;
  absl::Time next_cpu_check_ = absl::InfinitePast();
  absl::Time runs_on_at_ = absl::Now() + manager::Manager::kCommandRunsOn;
  bool output_truncated_ = false;
  int64_t output_bytes_ = 0;
  CommandResult result_;
};

Pump::~Pump() {
  if (!exit_) Kill();
  if (!cgroup_) return;
  absl::Status removed = cgroup_->Remove();
  if (removed.code() == absl::StatusCode::kFailedPrecondition) {
    // Background processes outlived the command: a Run's next command must
    // not share the machine with them.
    if (absl::Status s = cgroup_->KillAll(kKillTimeoutMs); !s.ok()) {
      Log().warn("sandbox {}: killing what exec pid {} left: {}", id_, pid_, s.ToString());
    }
    removed = cgroup_->Remove();
  }
  if (!removed.ok()) {
    // The sandbox's removal takes the leaf with it.
    Log().warn("sandbox {}: removing cgroup of exec pid {}: {}", id_, pid_,
               removed.ToString());
  }
}

absl::StatusOr<CommandResult> Pump::Run(const std::function<bool()>& cancelled) {
  if (spec_.stdin_data.empty()) in_.reset();
  while (!Done()) {
    if (cancelled && cancelled()) {
      Kill();
      return absl::CancelledError("the client cancelled the run");
    }
    RETURN_IF_ERROR(Step());
    if (!exit_ && absl::Now() >= runs_on_at_) {
      runs_on_at_ = absl::InfiniteFuture();
      manager_.CommandRunsOn(id_);  // the next step finds a spare ready
    }
    if (!exit_ && !cpu_exceeded_ && spec_.budget.cpu_usec > 0 && cgroup_ &&
        absl::Now() >= next_cpu_check_) {
      next_cpu_check_ = absl::Now() + absl::Milliseconds(kPollIntervalMs);
      CheckCpu();
    }
  }
  ExecOutcome outcome;
  outcome.cpu_exceeded = cpu_exceeded_;
  outcome.output_truncated = output_truncated_;
  outcome.memory_limit = spec_.budget.memory_bytes;
  if (cgroup_) {
    absl::StatusOr<engine::Usage> usage = cgroup_->GetUsage();
    if (usage.ok()) {
      outcome.usage = *usage;
    } else {
      Log().warn("sandbox {}: exec pid {}: reading its usage: {}", id_, pid_,
                 usage.status().ToString());
    }
  }
  ToProto(*exit_, outcome, &result_.exit);
  return std::move(result_);
}

// One poll round: waits up to kPollIntervalMs and serves what is ready.
absl::Status Pump::Step() {
  pollfd fds[4];
  int n = 0;
  int in_i = -1, out_i = -1, err_i = -1, ctl_i = -1;
  if (in_.valid()) {
    in_i = n;
    fds[n++] = {in_.get(), POLLOUT, 0};
  }
  if (out_.valid()) {
    out_i = n;
    fds[n++] = {out_.get(), POLLIN, 0};
  }
  if (err_.valid()) {
    err_i = n;
    fds[n++] = {err_.get(), POLLIN, 0};
  }
  if (ctl_.valid() && !exit_) {
    ctl_i = n;
    fds[n++] = {ctl_.get(), POLLIN, 0};
  }
  int r = ::poll(fds, n, kPollIntervalMs);
  if (r < 0) {
    if (errno == EINTR) return absl::OkStatus();
    return ErrnoStatus(errno, "poll on the command's pipes");
  }
  if (exit_ && !drain_expired_ && absl::Now() >= drain_deadline_) drain_expired_ = true;
  auto ready = [&](int i) { return i >= 0 && fds[i].revents != 0; };
  if (ready(in_i)) WriteStdin();
  if (ready(out_i) || (drain_expired_ && out_.valid())) ReadOutput(out_, result_.out);
  if (ready(err_i) || (drain_expired_ && err_.valid())) ReadOutput(err_, result_.err);
  if (ready(ctl_i)) {
    absl::StatusOr<engine::ExecExit> exit = engine::ReadExecExit(ctl_.get());
    if (exit.ok()) {
      exit_ = *exit;
      ctl_.reset();
      in_.reset();
      drain_deadline_ = absl::Now() + kDrainAfterExit;
    } else if (exit.status().code() == absl::StatusCode::kUnavailable) {
      ctl_.reset();
      return absl::UnavailableError(absl::StrCat("sandbox ", id_, " died"));
    } else if (exit.status().code() != absl::StatusCode::kFailedPrecondition) {
      return Annotate(exit.status(), "reading the exit of the command");
    }
  }
  return absl::OkStatus();
}

void Pump::WriteStdin() {
  const std::string& data = spec_.stdin_data;
  while (stdin_off_ < data.size()) {
    const size_t len = std::min(data.size() - stdin_off_, kReadBytes);
    ssize_t w = ::write(in_.get(), data.data() + stdin_off_, len);
    if (w >= 0) {
      stdin_off_ += static_cast<size_t>(w);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return;
    break;  // EPIPE: the command does not read its input any more
  }
  in_.reset();  // all written (or refused): EOF for the command
}

void Pump::ReadOutput(UniqueFd& fd, std::string& sink) {
  char buf[kReadBytes];
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    size_t keep = static_cast<size_t>(n);
    if (spec_.budget.output_bytes >= 0) {
      const int64_t room = std::max<int64_t>(spec_.budget.output_bytes - output_bytes_, 0);
      if (n > room) {
        // Past the output limit: keep what fits, stop reading, kill.
        keep = static_cast<size_t>(room);
        output_truncated_ = true;
        Kill();
        out_.reset();
        err_.reset();
      }
    }
    sink.append(buf, keep);
    output_bytes_ += static_cast<int64_t>(keep);
    return;
  }
  if (n < 0 && errno == EAGAIN && !drain_expired_) return;
  fd.reset();  // EOF, or an empty pipe after the drain time
}

// cpu time cannot be capped by the kernel for a whole tree, so it is read
// from the command's own cgroup every poll round.
void Pump::CheckCpu() {
  absl::StatusOr<engine::Usage> usage = cgroup_->GetUsage();
  if (usage.ok() && usage->cpu_usec >= spec_.budget.cpu_usec) {
    cpu_exceeded_ = true;
    Kill();
  }
}

void Pump::Kill() {
  if (!ctl_.valid() || exit_) return;
  absl::Status s = engine::SendExecSignal(ctl_.get(), SIGKILL);
  if (!s.ok()) Log().warn("sandbox {}: killing exec pid {}: {}", id_, pid_, s.ToString());
}

}  // namespace

ExecBudget BudgetOf(const v1::ExecLimits& limits) {
  ExecBudget budget;
  if (limits.has_cpu_time()) budget.cpu_usec = Micros(limits.cpu_time());
  if (limits.has_output_bytes()) budget.output_bytes = limits.output_bytes();
  if (limits.has_memory_bytes()) budget.memory_bytes = limits.memory_bytes();
  return budget;
}

absl::StatusOr<CommandResult> RunCommand(manager::Manager& manager,
                                         const std::string& tenant,
                                         const std::string& sandbox_id,
                                         const CommandSpec& spec,
                                         const std::function<bool()>& cancelled) {
  ASSIGN_OR_RETURN(engine::ExecChannel channel, manager.StartExec(tenant, sandbox_id, spec.params));
  Pump pump(manager, sandbox_id, std::move(channel), spec);
  return pump.Run(cancelled);
}

}  // namespace sbx::api
