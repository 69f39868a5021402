#include "server/api/exec_reactor.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/api/convert.h"
#include "server/api/log.h"
#include "server/api/metrics.h"
#include "server/api/reactor_order.h"
#include "server/api/status.h"
#include "server/api/stream_heap.h"
#include "server/common/status.h"
#include "server/common/unique_fd.h"
#include "server/engine/sandbox.h"

namespace sbx::api {
namespace {
// How often a command with a cpu-time limit has its cgroup's cpu time read.
constexpr absl::Duration kCpuPollInterval = absl::Milliseconds(10);

// Output is read in chunks of up to kChunkBytes, and up to
// kChunksInFlight of them per fd are queued or being written, so that the
// next read overlaps the write before it; past that the pipe fills and the
// command blocks (back-pressure). Bounds buffering at 512 KiB per fd.
// 256 KiB rather than 64: per-message costs in gRPC dominated, and stdout
// throughput went from 0.33x to 0.80x of a plain pipe (bench/, one run).
constexpr size_t kChunkBytes = 256 << 10;
constexpr int kChunksInFlight = 2;
// The smallest read: what a nearly empty pipe gets (EOF, or bytes arriving).
constexpr size_t kSmallRead = 4096;
// After the command exits, output is still read until EOF; a background
// process that keeps the pipe open is given this long once the pipe is empty.
constexpr absl::Duration kDrainAfterExit = absl::Milliseconds(200);
}  // namespace

// The state of one Exec call. Loop thread only (see exec_reactor.h).
class ExecSession {
 public:
  ExecSession(ExecReactor* reactor, manager::Manager& manager, IoLoop& loop)
      : reactor_(reactor), manager_(manager), loop_(loop) {}
  ~ExecSession() { CloseAll(); }

  // The command started (or not).
  void Begin(std::string sandbox_id, bool tty, ExecBudget budget,
             absl::StatusOr<engine::ExecChannel> channel);
  // The first message was not a usable start.
  void Reject(absl::Status status) { Fail(std::move(status)); }
  void OnClientMessage(bool ok, v1::ExecRequest request);
  void OnWriteDone(bool ok);
  void OnCancel() { Fail(absl::CancelledError("the client cancelled the exec")); }
  // The reactor is gone; drop everything.
  void OnDone() {
    reactor_ = nullptr;
    CloseAll();
  }

 private:
  enum Slot { kOut = 0, kErr = 1, kIn = 2, kCtl = 3, kSlots = 4 };

  struct Outgoing {
    v1::ExecResponse message;
    int source = -1;  // kOut / kErr: that fd is re-armed once it is written
    bool exit = false;
  };

  // Finished, or about to once the write in flight completes.
  bool stopping() const { return finished_ || finish_after_write_.has_value(); }
  int StdinSlot() const { return tty_ ? kOut : kIn; }
  bool OutputOpen(int slot) const { return fds_[slot].valid() && !eof_[slot]; }
  uint32_t Interest(int slot) const;
  void Rearm(int slot);
  absl::Status Register(int slot);
  void OnEvent(int slot, uint32_t events);

  void ReadNext();
  void HandleStdin(std::string data);
  bool FlushStdin();  // true once the buffer is empty
  void CloseStdin();
  void ReadOutput(int slot);
  // A buffer for the next read of up to `size` bytes: a written chunk's
  // when one is free (no allocation, no zero-fill), else a new one.
  std::string TakeChunk(size_t size);
  // Keeps a full-size buffer for TakeChunk, up to kChunksInFlight of them.
  void KeepChunk(std::string chunk);
  // Keeps the output buffer of a message that has been written.
  void RecycleChunk(v1::ExecResponse& message);
  void CloseFd(int slot);
  void OnControlReadable();
  void OnDrainDeadline();
  void MaybeSendExit();
  void ScheduleCpuCheck();

  void Queue(Outgoing out);
  void MaybeStartWrite();
  void Fail(absl::Status status);
  void Finish(const absl::Status& status);
  void KillCommand();
  void CloseAll();

  StreamHeapUse heap_use_;  // first: the buffers below are freed before it goes
  ExecReactor* reactor_;    // null after OnDone
  manager::Manager& manager_;
  IoLoop& loop_;
  std::string sandbox_id_;
  ExecBudget budget_;
  std::unique_ptr<engine::Cgroup> cgroup_;  // the command's own leaf
  uint64_t cpu_timer_ = 0;
  uint64_t runs_on_timer_ = 0;  // see Manager::CommandRunsOn
  bool cpu_exceeded_ = false;
  int64_t output_bytes_ = 0;
  bool output_truncated_ = false;
  bool tty_ = false;
  pid_t pid_ = 0;

  UniqueFd fds_[kSlots];
  uint64_t regs_[kSlots] = {0, 0, 0, 0};
  bool eof_[2] = {false, false};
  int queued_[2] = {0, 0};  // chunks of this fd queued or in flight
  bool CanRead(int slot) const { return OutputOpen(slot) && queued_[slot] < kChunksInFlight; }

  std::string stdin_buf_;
  size_t stdin_off_ = 0;
  bool stdin_closed_ = false;
  bool reads_done_ = false;     // the client half-closed; no more StartRead
  bool read_waiting_ = false;   // the next read waits for stdin to drain

  std::optional<engine::ExecExit> exit_;
  bool exit_queued_ = false;
  bool drain_expired_ = false;
  uint64_t drain_timer_ = 0;

  std::deque<Outgoing> queue_;
  Outgoing current_;
  std::vector<std::string> free_chunks_;  // at most kChunksInFlight
  bool write_in_flight_ = false;
  std::optional<absl::Status> finish_after_write_;
  bool finished_ = false;
};

// ---- the reactor ---------------------------------------------------------------

ExecReactor::ExecReactor(manager::Manager& manager, IoLoop& loop, RunPool& starts,
                         std::string tenant)
    : manager_(manager),
      loop_(loop),
      starts_(starts),
      tenant_(std::move(tenant)),
      session_(std::make_shared<ExecSession>(this, manager, loop)) {
  BeforeGrpcOp(this);
  StartRead(&request_);
}

void ExecReactor::ReadNext() {
  BeforeGrpcOp(this);
  StartRead(&request_);
}

void ExecReactor::Write(const v1::ExecResponse* response) {
  BeforeGrpcOp(this);
  StartWrite(response);
}

void ExecReactor::End(const grpc::Status& status) {
  BeforeGrpcOp(this);
  Finish(status);
}

void ExecReactor::OnReadDone(bool ok) {
  InReaction(this);
  if (!first_read_) {
    loop_.Post([s = session_, ok, r = std::move(request_)]() mutable {
      s->OnClientMessage(ok, std::move(r));
    });
    return;
  }
  first_read_ = false;
  if (!ok) {
    loop_.Post([s = session_] {
      s->Reject(absl::InvalidArgumentError("the stream ended before a start message"));
    });
    return;
  }
  if (!request_.has_start()) {
    loop_.Post([s = session_] {
      s->Reject(absl::InvalidArgumentError("the first message must be `start`"));
    });
    return;
  }
  const v1::ExecStart& start = request_.start();
  ExecBudget budget;
  if (start.limits().has_cpu_time()) {
    budget.cpu_usec = start.limits().cpu_time().seconds() * 1000000 +
                      start.limits().cpu_time().nanos() / 1000;
  }
  if (start.limits().has_output_bytes()) budget.output_bytes = start.limits().output_bytes();
  if (start.limits().has_memory_bytes()) budget.memory_bytes = start.limits().memory_bytes();
  auto begin = [&manager = manager_, &loop = loop_, s = session_, tenant = tenant_, budget,
                start = std::move(*request_.mutable_start())]() mutable {
    absl::StatusOr<engine::ExecChannel> channel;
    if (start.sandbox_id().empty()) {
      channel = absl::InvalidArgumentError("start.sandbox_id: must not be empty");
    } else {
      absl::StatusOr<manager::ExecParams> params = FromProto(start);
      channel = params.ok() ? manager.StartExec(tenant, start.sandbox_id(), *params)
                            : params.status();
    }
    loop.Post([s = std::move(s), id = start.sandbox_id(), tty = start.tty(), budget,
               c = std::move(channel)]() mutable { s->Begin(id, tty, budget, std::move(c)); });
  };
  if (absl::Status queued = starts_.Submit(std::move(begin)); !queued.ok()) {
    loop_.Post([s = session_, id = start.sandbox_id(), queued]() mutable {
      s->Begin(id, false, ExecBudget(), absl::StatusOr<engine::ExecChannel>(
                                            Annotate(queued, "starting the command")));
    });
  }
}

void ExecReactor::OnWriteDone(bool ok) {
  InReaction(this);
  loop_.Post([s = session_, ok] { s->OnWriteDone(ok); });
}

void ExecReactor::OnCancel() {
  InReaction(this);
  loop_.Post([s = session_] { s->OnCancel(); });
}

void ExecReactor::OnDone() {
  InReaction(this);
  loop_.Post([s = std::move(session_)] { s->OnDone(); });
  delete this;
}

// ---- start --------------------------------------------------------------------


void ExecSession::Begin(std::string sandbox_id, bool tty, ExecBudget budget,
                        absl::StatusOr<engine::ExecChannel> channel) {
  sandbox_id_ = std::move(sandbox_id);
  budget_ = budget;
  if (!channel.ok()) {
    Finish(channel.status());
    if (channel.status().code() == absl::StatusCode::kUnavailable ||
        channel.status().code() == absl::StatusCode::kInternal) {
      Log().warn("sandbox {}: exec could not start: {}", sandbox_id_,
                 channel.status().ToString());
    }
    return;
  }
  tty_ = tty;
  pid_ = channel->pid;
  cgroup_ = std::move(channel->cgroup);
  fds_[kCtl] = std::move(channel->control);
  if (tty_) {
    fds_[kOut] = std::move(channel->pty);
    eof_[kErr] = true;
  } else {
    fds_[kOut] = std::move(channel->stdout_fd);
    fds_[kErr] = std::move(channel->stderr_fd);
    fds_[kIn] = std::move(channel->stdin_fd);
  }
  if (finished_) {  // cancelled while the command was being started
    KillCommand();
    CloseAll();
    return;
  }
  for (int slot = 0; slot < kSlots; ++slot) {
    if (!fds_[slot].valid()) continue;
    if (absl::Status s = Register(slot); !s.ok()) {
      Log().error("sandbox {}: exec pid {}: {}", sandbox_id_, pid_, s.ToString());
      Fail(Annotate(s, "exec"));
      return;
    }
  }
  Outgoing started;
  started.message.mutable_started()->set_pid(pid_);
  Queue(std::move(started));
  runs_on_timer_ = loop_.AddTimer(absl::Now() + manager::Manager::kCommandRunsOn, [this] {
    runs_on_timer_ = 0;
    if (!finished_ && !exit_) manager_.CommandRunsOn(sandbox_id_);
  });
  if (budget_.cpu_usec > 0 && cgroup_) ScheduleCpuCheck();
  ReadNext();
}

// cpu time cannot be capped by the kernel for a whole tree, so it is read
// from the command's cgroup every kCpuPollInterval: the command is killed at
// most that long after it crossed its limit.
void ExecSession::ScheduleCpuCheck() {
  cpu_timer_ = loop_.AddTimer(absl::Now() + kCpuPollInterval, [this] {
    cpu_timer_ = 0;
    if (finished_ || exit_) return;
    absl::StatusOr<engine::Usage> usage = cgroup_->GetUsage();
    if (usage.ok() && usage->cpu_usec >= budget_.cpu_usec) {
      cpu_exceeded_ = true;
      KillCommand();
      return;
    }
    ScheduleCpuCheck();
  });
}

absl::Status ExecSession::Register(int slot) {
  absl::StatusOr<uint64_t> id =
      loop_.Add(fds_[slot].get(), Interest(slot), [this, slot](uint32_t events) {
        OnEvent(slot, events);
      });
  if (!id.ok()) return id.status();
  regs_[slot] = *id;
  return absl::OkStatus();
}

uint32_t ExecSession::Interest(int slot) const {
  uint32_t events = 0;
  if ((slot == kOut || slot == kErr) && CanRead(slot)) {
    events |= EPOLLIN;
  }
  if (slot == StdinSlot() && stdin_off_ < stdin_buf_.size()) events |= EPOLLOUT;
  if (slot == kCtl && fds_[kCtl].valid()) events |= EPOLLIN;
  return events;
}

void ExecSession::Rearm(int slot) {
  if (regs_[slot] == 0 || finished_) return;
  if (absl::Status s = loop_.Modify(regs_[slot], Interest(slot)); !s.ok()) {
    Log().error("sandbox {}: exec pid {}: {}", sandbox_id_, pid_, s.ToString());
    Fail(Annotate(s, "exec"));
  }
}

void ExecSession::OnEvent(int slot, uint32_t events) {
  if (finished_) return;
  if (slot == kCtl) {
    OnControlReadable();
    return;
  }
  const bool any = events & (EPOLLERR | EPOLLHUP);
  if (slot == StdinSlot() && stdin_off_ < stdin_buf_.size() && (events & EPOLLOUT || any)) {
    if (FlushStdin() && read_waiting_) {
      read_waiting_ = false;
      ReadNext();
    }
  }
  if ((slot == kOut || slot == kErr) && CanRead(slot) && (events & EPOLLIN || any)) {
    ReadOutput(slot);
  }
  Rearm(slot);
}

// ---- client -> command ----------------------------------------------------------

void ExecSession::ReadNext() {
  if (stopping() || reads_done_ || reactor_ == nullptr) return;
  reactor_->ReadNext();
}

void ExecSession::OnClientMessage(bool ok, v1::ExecRequest request) {
  if (stopping()) return;
  if (!ok) {
    // The client half-closed its side: that ends stdin, not the command.
    reads_done_ = true;
    CloseStdin();
    return;
  }
  switch (request.msg_case()) {
    case v1::ExecRequest::kStdin:
      HandleStdin(std::move(*request.mutable_stdin()));
      return;
    case v1::ExecRequest::kStdinClose:
      CloseStdin();
      break;
    case v1::ExecRequest::kSignal: {
      const int signo = request.signal();
      if (signo < 1 || signo > SIGRTMAX) {
        Fail(absl::InvalidArgumentError(absl::StrCat("signal: ", signo, " is not a signal")));
        return;
      }
      if (fds_[kCtl].valid() && !exit_) {
        absl::Status s = engine::SendExecSignal(fds_[kCtl].get(), signo);
        if (!s.ok()) Log().warn("sandbox {}: exec pid {}: {}", sandbox_id_, pid_, s.ToString());
      }
      break;
    }
    case v1::ExecRequest::kResize: {
      const auto& size = request.resize();
      if (size.rows() == 0 || size.cols() == 0 || size.rows() > 65535 || size.cols() > 65535) {
        Fail(absl::InvalidArgumentError("resize: rows and cols must be 1..65535"));
        return;
      }
      if (tty_ && fds_[kOut].valid()) {
        absl::Status s = engine::ResizePty(fds_[kOut].get(), size.rows(), size.cols());
        if (!s.ok()) Log().warn("sandbox {}: exec pid {}: {}", sandbox_id_, pid_, s.ToString());
      }
      break;
    }
    case v1::ExecRequest::kStart:
      Fail(absl::InvalidArgumentError("`start` may only be the first message"));
      return;
    case v1::ExecRequest::MSG_NOT_SET:
      break;  // a field this server does not know; ignore it
  }
  ReadNext();
}

void ExecSession::HandleStdin(std::string data) {
  if (stdin_closed_ || data.empty()) {
    ReadNext();
    return;
  }
  stdin_buf_ = std::move(data);
  stdin_off_ = 0;
  if (FlushStdin()) {
    ReadNext();
  } else {
    // Back-pressure: no new read from the client until this is written.
    read_waiting_ = true;
    Rearm(StdinSlot());
  }
}

bool ExecSession::FlushStdin() {
  const int fd = fds_[StdinSlot()].get();
  while (stdin_off_ < stdin_buf_.size()) {
    ssize_t n = ::write(fd, stdin_buf_.data() + stdin_off_, stdin_buf_.size() - stdin_off_);
    if (n >= 0) {
      stdin_off_ += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return false;
    // EPIPE / EIO: the command does not read its input any more. Drop it.
    stdin_buf_.clear();
    stdin_off_ = 0;
    if (!tty_) CloseStdin();
    return true;
  }
  stdin_buf_.clear();
  stdin_off_ = 0;
  return true;
}

void ExecSession::CloseStdin() {
  if (stdin_closed_) return;
  stdin_closed_ = true;
  stdin_buf_.clear();
  stdin_off_ = 0;
  if (tty_) {
    // A terminal has no half-close: send the EOF character, as a user would.
    if (fds_[kOut].valid()) (void)!::write(fds_[kOut].get(), "\x04", 1);
    return;
  }
  CloseFd(kIn);
}

// ---- command -> client ----------------------------------------------------------

void ExecSession::ReadOutput(int slot) {
  // Most reads of a short command find a few bytes or EOF, for which a
  // full chunk would be allocated and zero-filled for nothing; those are
  // sized to what the pipe holds. A stream keeps full chunks, so that a
  // read also takes what arrives meanwhile.
  size_t size = kChunkBytes;
  int pending = 0;
  if (::ioctl(fds_[slot].get(), FIONREAD, &pending) == 0 &&
      static_cast<size_t>(pending) < kChunkBytes / 4) {
    size = std::max(static_cast<size_t>(pending), kSmallRead);
  }
  std::string chunk = TakeChunk(size);
  ssize_t n;
  do {
    n = ::read(fds_[slot].get(), chunk.data(), chunk.size());
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    chunk.resize(static_cast<size_t>(n));
    if (budget_.output_bytes >= 0) {
      const int64_t room = budget_.output_bytes - output_bytes_;
      if (n > room) {
        // Past the output limit: keep what fits, stop reading, kill.
        chunk.resize(static_cast<size_t>(std::max<int64_t>(room, 0)));
        output_truncated_ = true;
        KillCommand();
        eof_[kOut] = eof_[kErr] = true;
        CloseFd(kOut);
        CloseFd(kErr);
        if (chunk.empty()) {
          MaybeSendExit();
          return;
        }
      }
    }
    output_bytes_ += static_cast<int64_t>(chunk.size());
    Outgoing out;
    if (slot == kOut) {
      out.message.set_stdout(std::move(chunk));
    } else {
      out.message.set_stderr(std::move(chunk));
    }
    out.source = slot;
    ++queued_[slot];
    Queue(std::move(out));
    return;
  }
  const int read_errno = errno;
  KeepChunk(std::move(chunk));  // nothing read into it
  if (n < 0 && read_errno == EAGAIN && !drain_expired_) return;
  // EOF; EIO on a pty master once the terminal is closed; or, after the
  // command exited and the drain time passed, an empty pipe.
  eof_[slot] = true;
  CloseFd(slot);
  MaybeSendExit();
}

void ExecSession::CloseFd(int slot) {
  if (regs_[slot] != 0) loop_.Remove(regs_[slot]);
  regs_[slot] = 0;
  fds_[slot].reset();
  if (tty_ && slot == kOut) {
    stdin_closed_ = true;
    stdin_buf_.clear();
    stdin_off_ = 0;
    if (read_waiting_) {
      read_waiting_ = false;
      ReadNext();
    }
  }
}

void ExecSession::OnControlReadable() {
  absl::StatusOr<engine::ExecExit> exit = engine::ReadExecExit(fds_[kCtl].get());
  if (!exit.ok()) {
    if (exit.status().code() == absl::StatusCode::kFailedPrecondition) {
      Rearm(kCtl);  // nothing there yet
      return;
    }
    if (exit.status().code() == absl::StatusCode::kUnavailable) {
      Log().warn("sandbox {}: exec pid {}: the sandbox went away", sandbox_id_, pid_);
      CloseFd(kCtl);  // nobody left to signal
      Fail(absl::UnavailableError(absl::StrCat("sandbox ", sandbox_id_, " died")));
      return;
    }
    Log().error("sandbox {}: exec pid {}: {}", sandbox_id_, pid_, exit.status().ToString());
    Fail(Annotate(exit.status(), "reading the exit of the command"));
    return;
  }
  exit_ = *exit;
  CloseFd(kCtl);
  drain_timer_ = loop_.AddTimer(absl::Now() + kDrainAfterExit, [this] {
    drain_timer_ = 0;
    OnDrainDeadline();
  });
  MaybeSendExit();
}

void ExecSession::OnDrainDeadline() {
  if (finished_) return;
  drain_expired_ = true;
  // An fd at its limit of chunks in flight is read again after a write; one
  // that waits for data is tried now and closed if empty.
  for (int slot : {kOut, kErr}) {
    if (CanRead(slot)) {
      ReadOutput(slot);
      Rearm(slot);
    }
  }
}

void ExecSession::MaybeSendExit() {
  if (!exit_ || exit_queued_ || finished_) return;
  if (OutputOpen(kOut) || OutputOpen(kErr)) return;
  exit_queued_ = true;
  if (drain_timer_ != 0) loop_.CancelTimer(drain_timer_);
  drain_timer_ = 0;
  Outgoing out;
  v1::ExecExit* exit = out.message.mutable_exit();
  ExecOutcome outcome;
  outcome.cpu_exceeded = cpu_exceeded_;
  outcome.output_truncated = output_truncated_;
  outcome.memory_limit = budget_.memory_bytes;
  if (cgroup_) {
    absl::StatusOr<engine::Usage> usage = cgroup_->GetUsage();
    if (usage.ok()) {
      outcome.usage = *usage;
      manager_.NoteCommandOomKills(sandbox_id_, usage->oom_kills);
    } else {
      Log().warn("sandbox {}: exec pid {}: reading its usage: {}", sandbox_id_, pid_,
                 usage.status().ToString());
    }
  }
  ToProto(*exit_, outcome, exit);
  out.exit = true;
  Metrics::Global().ExecFinished(exit->verdict(), exit_->wall_us,
                                 outcome.usage ? outcome.usage->oom_kills : 0);
  Log().debug("sandbox {}: exec pid {} exited (status {:#x}, {} us)", sandbox_id_, pid_,
              exit_->wait_status, exit_->wall_us);
  // The exit message goes out first: removing the leaf (a few rmdirs) is
  // bookkeeping the client need not wait for.
  Queue(std::move(out));
  if (cgroup_) {
    // Not here: this loop serves every stream, and an rmdir can wait for
    // milliseconds. A leaf still holding background processes stays until
    // the sandbox goes.
    manager_.CommandEnded(sandbox_id_, std::move(cgroup_), /*kill_rest=*/false);
  }
}

std::string ExecSession::TakeChunk(size_t size) {
  if (size < kChunkBytes || free_chunks_.empty()) return std::string(size, '\0');
  std::string chunk = std::move(free_chunks_.back());
  free_chunks_.pop_back();
  // Only what grows past its last read is zero-filled: nothing, in a stream.
  chunk.resize(size);
  return chunk;
}

void ExecSession::KeepChunk(std::string chunk) {
  if (chunk.capacity() < kChunkBytes ||
      free_chunks_.size() >= static_cast<size_t>(kChunksInFlight)) {
    return;
  }
  free_chunks_.push_back(std::move(chunk));
}

void ExecSession::RecycleChunk(v1::ExecResponse& message) {
  if (message.has_stdout()) KeepChunk(std::move(*message.mutable_stdout()));
  if (message.has_stderr()) KeepChunk(std::move(*message.mutable_stderr()));
}

// ---- writes and the end ---------------------------------------------------------

void ExecSession::Queue(Outgoing out) {
  queue_.push_back(std::move(out));
  MaybeStartWrite();
}

void ExecSession::MaybeStartWrite() {
  if (write_in_flight_ || queue_.empty() || finished_ || reactor_ == nullptr) return;
  current_ = std::move(queue_.front());
  queue_.pop_front();
  write_in_flight_ = true;
  reactor_->Write(&current_.message);
}

void ExecSession::OnWriteDone(bool ok) {
  write_in_flight_ = false;
  if (finished_) return;
  if (finish_after_write_) {
    Finish(*finish_after_write_);
    return;
  }
  if (!ok) {
    Fail(absl::CancelledError("the client went away"));
    return;
  }
  if (current_.exit) {
    // The status follows the exit message once that is written. Sending both
    // at once (StartWriteAndFinish) ended `sbx exec` 1 ms sooner but made the
    // next Exec slower (docs/benchmarks.md).
    Finish(absl::OkStatus());
    return;
  }
  const int source = current_.source;
  RecycleChunk(current_.message);
  // Cleared first: ReadOutput below may start the next write into current_.
  current_ = Outgoing();
  if (source >= 0) {
    --queued_[source];
    if (OutputOpen(source)) {
      if (drain_expired_) ReadOutput(source);  // empty now means done
      Rearm(source);
    }
  }
  MaybeStartWrite();
}

void ExecSession::Fail(absl::Status status) {
  if (finished_) return;
  KillCommand();
  if (cgroup_) {
    // Not left for the sandbox's Destroy: a long-lived sandbox whose clients
    // come and go would pile up leaves.
    // The command was SIGKILLed through its init; what it started in the
    // background goes too, since nobody is left to read it.
    manager_.CommandEnded(sandbox_id_, std::move(cgroup_), /*kill_rest=*/true);
  }
  queue_.clear();
  if (write_in_flight_) {
    // Finish may not overlap a write; OnWriteDone finishes.
    if (!finish_after_write_) finish_after_write_ = std::move(status);
    CloseAll();
    return;
  }
  Finish(status);
}

void ExecSession::Finish(const absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  CloseAll();
  if (reactor_ != nullptr) reactor_->End(ToGrpcStatus(status));
}

void ExecSession::KillCommand() {
  if (!fds_[kCtl].valid() || exit_) return;
  absl::Status s = engine::SendExecSignal(fds_[kCtl].get(), SIGKILL);
  if (!s.ok()) {
    Log().warn("sandbox {}: killing exec pid {}: {}", sandbox_id_, pid_, s.ToString());
  } else {
    Log().debug("sandbox {}: exec pid {} killed: its stream ended", sandbox_id_, pid_);
  }
}

void ExecSession::CloseAll() {
  for (int slot = 0; slot < kSlots; ++slot) {
    if (regs_[slot] != 0) loop_.Remove(regs_[slot]);
    regs_[slot] = 0;
    fds_[slot].reset();
  }
  if (drain_timer_ != 0) loop_.CancelTimer(drain_timer_);
  drain_timer_ = 0;
  if (cpu_timer_ != 0) loop_.CancelTimer(cpu_timer_);
  cpu_timer_ = 0;
  if (runs_on_timer_ != 0) loop_.CancelTimer(runs_on_timer_);
  runs_on_timer_ = 0;
}

}  // namespace sbx::api
