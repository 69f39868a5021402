#include "exec_util.h"

#include <google/protobuf/util/time_util.h>

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/status/status.h"

namespace sbx::it {

std::string CodeName(grpc::StatusCode code) {
  // gRPC's codes are absl's, number for number.
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "?" : name;
}

std::string StatusText(const grpc::Status& s) {
  return std::string(CodeName(s.error_code())) + ": " + s.error_message();
}

void SetDeadline(grpc::ClientContext& ctx, std::chrono::milliseconds timeout) {
  ctx.set_deadline(std::chrono::system_clock::now() + timeout);
}

v1::CreateSandboxRequest MakeCreate(const CreateOptions& o) {
  v1::CreateSandboxRequest req;
  if (o.memory) req.mutable_limits()->set_memory_bytes(*o.memory);
  if (o.cpus) req.mutable_limits()->set_cpus(*o.cpus);
  if (o.pids) req.mutable_limits()->set_pids(*o.pids);
  for (const auto& [k, v] : o.labels) (*req.mutable_labels())[k] = v;
  for (const auto& [k, v] : o.env) (*req.mutable_env())[k] = v;
  if (o.ttl.count() > 0) {
    *req.mutable_ttl() = google::protobuf::util::TimeUtil::MillisecondsToDuration(o.ttl.count());
  }
  return req;
}

grpc::Status Create(Stub& stub, const v1::CreateSandboxRequest& request, v1::Sandbox* out) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::seconds(20));
  v1::CreateSandboxResponse resp;
  grpc::Status s = stub.CreateSandbox(&ctx, request, &resp);
  if (out != nullptr) *out = resp.sandbox();
  return s;
}

grpc::Status Get(Stub& stub, const std::string& id, v1::Sandbox* out) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::seconds(10));
  v1::GetSandboxRequest req;
  req.set_id(id);
  v1::GetSandboxResponse resp;
  grpc::Status s = stub.GetSandbox(&ctx, req, &resp);
  if (out != nullptr) *out = resp.sandbox();
  return s;
}

grpc::Status List(Stub& stub, v1::ListSandboxesResponse* out,
                  const std::map<std::string, std::string>& selector, v1::SandboxState state) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::seconds(10));
  v1::ListSandboxesRequest req;
  for (const auto& [k, v] : selector) (*req.mutable_label_selector())[k] = v;
  req.set_state(state);
  return stub.ListSandboxes(&ctx, req, out);
}

grpc::Status Destroy(Stub& stub, const std::string& id, bool* existed) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::seconds(20));
  v1::DestroySandboxRequest req;
  req.set_id(id);
  v1::DestroySandboxResponse resp;
  grpc::Status s = stub.DestroySandbox(&ctx, req, &resp);
  if (existed != nullptr) *existed = resp.existed();
  return s;
}

grpc::Status SetLimits(Stub& stub, const std::string& id, const v1::Limits& limits,
                       v1::Sandbox* out) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, std::chrono::seconds(10));
  v1::SetLimitsRequest req;
  req.set_id(id);
  *req.mutable_limits() = limits;
  v1::SetLimitsResponse resp;
  grpc::Status s = stub.SetLimits(&ctx, req, &resp);
  if (out != nullptr) *out = resp.sandbox();
  return s;
}

std::vector<std::string> ListIds(Stub& stub) {
  v1::ListSandboxesResponse resp;
  std::vector<std::string> ids;
  if (!List(stub, &resp).ok()) return ids;
  for (const auto& sb : resp.sandboxes()) ids.push_back(sb.id());
  return ids;
}

v1::ExecStart MakeStart(const std::string& id, const std::vector<std::string>& argv,
                        const ExecOptions& o) {
  v1::ExecStart start;
  start.set_sandbox_id(id);
  for (const auto& a : argv) start.add_argv(a);
  for (const auto& [k, v] : o.env) (*start.mutable_env())[k] = v;
  start.set_cwd(o.cwd);
  start.set_user(o.user);
  start.set_tty(o.tty);
  if (o.rows != 0 || o.cols != 0) {
    start.mutable_tty_size()->set_rows(o.rows);
    start.mutable_tty_size()->set_cols(o.cols);
  }
  if (o.timeout.count() > 0) {
    *start.mutable_timeout() =
        google::protobuf::util::TimeUtil::MillisecondsToDuration(o.timeout.count());
  }
  return start;
}

// ---- ExecSession -------------------------------------------------------------

ExecSession::ExecSession(Stub& stub, std::chrono::milliseconds deadline) {
  SetDeadline(ctx_, deadline);
  stream_ = stub.Exec(&ctx_);
}

ExecSession::~ExecSession() {
  if (!finished_) {
    ctx_.TryCancel();
    Finish();
  }
}

bool ExecSession::Start(const v1::ExecStart& start) {
  v1::ExecRequest req;
  *req.mutable_start() = start;
  return Write(req);
}

bool ExecSession::Write(const v1::ExecRequest& request) { return stream_->Write(request); }

bool ExecSession::SendStdin(const std::string& data) {
  v1::ExecRequest req;
  req.set_stdin(data);
  return Write(req);
}

bool ExecSession::CloseStdin() {
  v1::ExecRequest req;
  req.set_stdin_close(true);
  return Write(req);
}

bool ExecSession::SendSignal(int signo) {
  v1::ExecRequest req;
  req.set_signal(signo);
  return Write(req);
}

bool ExecSession::Resize(uint32_t rows, uint32_t cols) {
  v1::ExecRequest req;
  req.mutable_resize()->set_rows(rows);
  req.mutable_resize()->set_cols(cols);
  return Write(req);
}

bool ExecSession::ReadOne() {
  v1::ExecResponse resp;
  if (!stream_->Read(&resp)) return false;
  switch (resp.msg_case()) {
    case v1::ExecResponse::kStarted:
      started = true;
      pid = resp.started().pid();
      order.push_back('s');
      break;
    case v1::ExecResponse::kStdout:
      if (!first_stdout_at) first_stdout_at = std::chrono::steady_clock::now();
      out += resp.stdout();
      order.push_back('o');
      break;
    case v1::ExecResponse::kStderr:
      err += resp.stderr();
      order.push_back('e');
      break;
    case v1::ExecResponse::kExit:
      exit = resp.exit();
      order.push_back('x');
      break;
    default:
      order.push_back('?');
  }
  return true;
}

bool ExecSession::WaitStarted() {
  while (!started && !exit) {
    if (!ReadOne()) return false;
  }
  return started;
}

bool ExecSession::ReadStdoutAtLeast(size_t bytes) {
  while (out.size() < bytes) {
    if (!ReadOne()) return false;
  }
  return true;
}

grpc::Status ExecSession::Finish() {
  if (finished_) return status_;
  while (true) {
    if (exit && !writes_done_) {
      writes_done_ = true;
      stream_->WritesDone();
    }
    if (!ReadOne()) break;
  }
  status_ = stream_->Finish();
  finished_ = true;
  return status_;
}

// ---- RunExec -----------------------------------------------------------------

std::string ExecResult::Describe() const {
  std::ostringstream ss;
  ss << "status=" << StatusText(status) << " started=" << started << " pid=" << pid;
  if (exit) {
    ss << " exit{code=" << exit->exit_code() << " signal=" << exit->signal()
       << " timed_out=" << exit->timed_out() << " verdict=" << v1::Verdict_Name(exit->verdict())
       << " oom_killed=" << exit->oom_killed() << "}";
  } else {
    ss << " exit=<none>";
  }
  ss << " order=" << order.substr(0, 64) << " seconds=" << seconds;
  ss << "\n--- stdout (" << out.size() << " bytes) ---\n" << out.substr(0, 2048);
  ss << "\n--- stderr (" << err.size() << " bytes) ---\n" << err.substr(0, 2048);
  return ss.str();
}

ExecResult RunExec(Stub& stub, const v1::ExecStart& start, const std::string& stdin_data,
                   std::chrono::milliseconds deadline, bool close_stdin) {
  const auto t0 = std::chrono::steady_clock::now();
  ExecSession session(stub, deadline);
  ExecResult result;
  std::mutex mu;
  std::condition_variable cv;
  bool writer_done = false;
  std::thread writer;
  if (session.Start(start)) {
    writer = std::thread([&] {
      for (size_t off = 0; off < stdin_data.size(); off += 65536) {
        if (!session.SendStdin(stdin_data.substr(off, 65536))) break;
      }
      if (close_stdin) session.CloseStdin();
      std::lock_guard<std::mutex> lock(mu);
      writer_done = true;
      cv.notify_all();
    });
  } else {
    writer_done = true;
  }
  // Read until exit (or the end); then make sure the writer is not stuck
  // before half-closing in Finish().
  while (!session.exit && session.ReadOne()) {
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(5), [&] { return writer_done; })) {
      session.Cancel();
    }
  }
  if (writer.joinable()) writer.join();
  result.status = session.Finish();
  result.started = session.started;
  result.pid = session.pid;
  result.out = std::move(session.out);
  result.err = std::move(session.err);
  result.exit = session.exit;
  result.order = session.order;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

ExecResult Sh(Stub& stub, const std::string& id, const std::string& script,
              const ExecOptions& options, std::chrono::milliseconds deadline) {
  return RunExec(stub, MakeStart(id, {"sh", "-c", script}, options), "", deadline);
}

}  // namespace sbx::it
