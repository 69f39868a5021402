// The streaming Exec: one sync bidi stream per call, a reader thread that
// dispatches callbacks, and writes serialized by a mutex so exactly one is
// in flight (gRPC's sync stream allows one reader and one writer at once).
#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <optional>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "internal/client_state.h"
#include "internal/status_macros.h"
#include "sbx/client.h"
#include "sbx/grpc_status.h"
#include "sbx/proto_time.h"

namespace sbx {

class ExecCall::Impl {
 public:
  Impl(std::shared_ptr<const void> keepalive, v1::SandboxService::Stub* stub,
       ExecCallbacks callbacks)
      : keepalive_(std::move(keepalive)),
        stub_(stub),
        callbacks_(std::move(callbacks)) {}

  ~Impl() {
    if (reader_.joinable()) {
      if (!Done()) context_.TryCancel();
      reader_.join();
    }
  }

  // Opens the stream, sends `start` and launches the reader thread.
  void Start(const v1::ExecRequest& start,
             std::optional<absl::Duration> rpc_deadline, bool wait_for_ready) {
    if (rpc_deadline) internal::SetTimeout(context_, *rpc_deadline);
    context_.set_wait_for_ready(wait_for_ready);
    internal::RouteToSandbox(context_, start.start().sandbox_id());
    // The headers go out with the start message rather than on their own:
    // opening the stream then waits for nothing.
    context_.set_initial_metadata_corked(true);
    stream_ = stub_->Exec(&context_);
    // A failed first write means the stream is already dead; the reader
    // then sees Read() fail at once and reports the status from Finish().
    (void)Write(start);
    reader_ = std::thread([this] { ReadLoop(); });
  }

  absl::Status Write(const v1::ExecRequest& request) {
    absl::MutexLock lock(&write_mu_);
    if (write_failed_ || Done()) return StreamClosed();
    if (!stream_->Write(request)) {
      write_failed_ = true;
      return StreamClosed();
    }
    return absl::OkStatus();
  }

  absl::Status WriteStdin(std::string_view data) {
    v1::ExecRequest request;
    while (!data.empty()) {
      const size_t n = std::min(data.size(), kStdinChunkBytes);
      request.set_stdin(data.data(), n);
      SBX_RETURN_IF_ERROR(Write(request));
      data.remove_prefix(n);
    }
    return absl::OkStatus();
  }

  absl::Status CloseStdin() {
    {
      absl::MutexLock lock(&write_mu_);
      if (stdin_closed_) return absl::OkStatus();
    }
    v1::ExecRequest request;
    request.set_stdin_close(true);
    SBX_RETURN_IF_ERROR(Write(request));
    absl::MutexLock lock(&write_mu_);
    stdin_closed_ = true;
    return absl::OkStatus();
  }

  absl::StatusOr<v1::ExecExit> Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    if (exit_) return *exit_;
    return final_status_;
  }

  bool Done() const {
    absl::MutexLock lock(&mu_);
    return done_;
  }

  void Cancel() { context_.TryCancel(); }

 private:
  static absl::Status StreamClosed() {
    return absl::FailedPreconditionError(
        "exec stream is closed (the command has finished or the call failed)");
  }

  void Dispatch(const v1::ExecResponse& response,
                std::optional<v1::ExecExit>& exit) {
    switch (response.msg_case()) {
      case v1::ExecResponse::kStarted:
        if (callbacks_.on_started) callbacks_.on_started(response.started().pid());
        break;
      case v1::ExecResponse::kStdout:
        if (callbacks_.on_stdout) callbacks_.on_stdout(response.stdout());
        break;
      case v1::ExecResponse::kStderr:
        if (callbacks_.on_stderr) callbacks_.on_stderr(response.stderr());
        break;
      case v1::ExecResponse::kExit:
        exit = response.exit();
        if (callbacks_.on_exit) callbacks_.on_exit(*exit);
        break;
      case v1::ExecResponse::MSG_NOT_SET:
        break;  // a newer daemon's message kind: ignore, as proto3 intends
    }
  }

  void ReadLoop() {
    std::optional<v1::ExecExit> exit;
    v1::ExecResponse response;
    while (stream_->Read(&response)) Dispatch(response, exit);
    absl::Status status = FromGrpcStatus(stream_->Finish());
    // The status is in; cancelling now only fails a write that may still be
    // blocked on flow control, so a writer never outlives the stream.
    context_.TryCancel();
    if (status.ok() && !exit) {
      status = absl::InternalError("exec stream ended without an exit message");
    }
    // An exit that arrived wins over a late error (e.g. a cancel racing
    // the end of the stream): the command did finish.
    if (exit) status = absl::OkStatus();
    if (callbacks_.on_finish) callbacks_.on_finish(status);
    absl::MutexLock lock(&mu_);
    exit_ = std::move(exit);
    final_status_ = std::move(status);
    done_ = true;
  }

  const std::shared_ptr<const void> keepalive_;  // owns the channel and stub_
  v1::SandboxService::Stub* const stub_;
  const ExecCallbacks callbacks_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ExecRequest, v1::ExecResponse>>
      stream_;
  std::thread reader_;

  absl::Mutex write_mu_;  // held for the whole of one write
  bool write_failed_ ABSL_GUARDED_BY(write_mu_) = false;
  bool stdin_closed_ ABSL_GUARDED_BY(write_mu_) = false;

  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<v1::ExecExit> exit_ ABSL_GUARDED_BY(mu_);
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
};

ExecCall::ExecCall(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ExecCall::~ExecCall() = default;

absl::Status ExecCall::WriteStdin(std::string_view data) {
  return impl_->WriteStdin(data);
}

absl::Status ExecCall::CloseStdin() { return impl_->CloseStdin(); }

absl::Status ExecCall::Signal(int signo) {
  if (signo <= 0 || signo >= 65) {
    return absl::InvalidArgumentError(absl::StrCat("invalid signal ", signo));
  }
  v1::ExecRequest request;
  request.set_signal(signo);
  return impl_->Write(request);
}

absl::Status ExecCall::Resize(uint32_t rows, uint32_t cols) {
  if (rows == 0 || cols == 0) {
    return absl::InvalidArgumentError("tty size must be at least 1x1");
  }
  v1::ExecRequest request;
  request.mutable_resize()->set_rows(rows);
  request.mutable_resize()->set_cols(cols);
  return impl_->Write(request);
}

absl::StatusOr<v1::ExecExit> ExecCall::Wait() { return impl_->Wait(); }
bool ExecCall::Done() const { return impl_->Done(); }
void ExecCall::Cancel() { impl_->Cancel(); }

absl::StatusOr<std::unique_ptr<ExecCall>> Client::Exec(
    const ExecOptions& options, ExecCallbacks callbacks) const {
  if (options.sandbox_id.empty()) {
    return absl::InvalidArgumentError("sandbox id is empty");
  }
  if (options.argv.empty()) return absl::InvalidArgumentError("argv is empty");
  if (options.timeout && *options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("exec timeout must be positive");
  }
  v1::ExecRequest request;
  v1::ExecStart& start = *request.mutable_start();
  start.set_sandbox_id(options.sandbox_id);
  for (const std::string& arg : options.argv) start.add_argv(arg);
  start.mutable_env()->insert(options.env.begin(), options.env.end());
  start.set_cwd(options.cwd);
  start.set_user(options.user);
  start.set_tty(options.tty);
  if (options.rows != 0 || options.cols != 0) {
    start.mutable_tty_size()->set_rows(options.rows);
    start.mutable_tty_size()->set_cols(options.cols);
  }
  if (options.timeout) *start.mutable_timeout() = ToProtoDuration(*options.timeout);

  auto impl = std::make_unique<ExecCall::Impl>(state_, state_->stub.get(),
                                               std::move(callbacks));
  impl->Start(request, options.rpc_deadline,
              state_->options.wait_for_ready);
  return std::unique_ptr<ExecCall>(new ExecCall(std::move(impl)));
}

absl::StatusOr<ExecResult> Client::ExecCollect(const ExecOptions& options,
                                               std::string_view stdin_data) const {
  ExecResult result;
  ExecCallbacks callbacks;
  callbacks.on_stdout = [&result](std::string_view data) {
    result.stdout_data.append(data);
  };
  callbacks.on_stderr = [&result](std::string_view data) {
    result.stderr_data.append(data);
  };
  SBX_ASSIGN_OR_RETURN(std::unique_ptr<ExecCall> call,
                       Exec(options, std::move(callbacks)));
  // A command may exit without reading all its input; the write then fails
  // and Wait() reports what really happened.
  if (call->WriteStdin(stdin_data).ok()) (void)call->CloseStdin();
  SBX_ASSIGN_OR_RETURN(result.exit, call->Wait());
  return result;
}

}  // namespace sbx
