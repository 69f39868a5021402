// Client-side helpers on the raw generated stub: creating / destroying
// sandboxes and driving one Exec stream.
#ifndef SBX_TESTS_INTEGRATION_EXEC_UTIL_H_
#define SBX_TESTS_INTEGRATION_EXEC_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sbx/v1/sandbox.grpc.pb.h"
#include "sbx/v1/sandbox.pb.h"

namespace sbx::it {

namespace v1 = ::sbx::v1;
using Stub = v1::SandboxService::Stub;

std::string StatusText(const grpc::Status& s);
std::string CodeName(grpc::StatusCode code);

void SetDeadline(grpc::ClientContext& ctx, std::chrono::milliseconds timeout);

struct CreateOptions {
  std::optional<int64_t> memory;
  std::optional<double> cpus;
  std::optional<int64_t> pids;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> env;
  std::chrono::milliseconds ttl{0};
};
v1::CreateSandboxRequest MakeCreate(const CreateOptions& options);

grpc::Status Create(Stub& stub, const v1::CreateSandboxRequest& request, v1::Sandbox* out);
grpc::Status Get(Stub& stub, const std::string& id, v1::Sandbox* out);
grpc::Status List(Stub& stub, v1::ListSandboxesResponse* out,
                  const std::map<std::string, std::string>& selector = {},
                  v1::SandboxState state = v1::SANDBOX_STATE_UNSPECIFIED);
grpc::Status Destroy(Stub& stub, const std::string& id, bool* existed = nullptr);
grpc::Status SetLimits(Stub& stub, const std::string& id, const v1::Limits& limits,
                       v1::Sandbox* out = nullptr);
// Ids of every sandbox the daemon lists; empty on error.
std::vector<std::string> ListIds(Stub& stub);

struct ExecOptions {
  std::string user;
  std::string cwd;
  std::map<std::string, std::string> env;
  bool tty = false;
  uint32_t rows = 0, cols = 0;
  std::chrono::milliseconds timeout{0};  // the command's wall-clock limit
};
v1::ExecStart MakeStart(const std::string& id, const std::vector<std::string>& argv,
                        const ExecOptions& options = {});

// One Exec stream driven by hand. The caller reads and writes from at most
// one thread each (the sync gRPC rule).
class ExecSession {
 public:
  ExecSession(Stub& stub, std::chrono::milliseconds deadline);
  ~ExecSession();

  bool Start(const v1::ExecStart& start);
  bool Write(const v1::ExecRequest& request);
  bool SendStdin(const std::string& data);
  bool CloseStdin();
  bool SendSignal(int signo);
  bool Resize(uint32_t rows, uint32_t cols);

  // Reads one message and records it; false at the end of the stream.
  bool ReadOne();
  // Reads until `started` arrives (true) or the stream ends / exit comes first.
  bool WaitStarted();
  // Reads until stdout holds at least `bytes`, or the stream ends.
  bool ReadStdoutAtLeast(size_t bytes);
  // Reads to the end (half-closing once `exit` arrived) and returns the
  // final status. Call once, after any writer thread has finished.
  grpc::Status Finish();
  void Cancel() { ctx_.TryCancel(); }
  grpc::ClientContext& context() { return ctx_; }

  bool started = false;
  int pid = -1;
  std::string out;
  std::string err;
  std::optional<v1::ExecExit> exit;
  std::string order;  // 's' started, 'o' stdout, 'e' stderr, 'x' exit, '?' unknown
  std::optional<std::chrono::steady_clock::time_point> first_stdout_at;
  const std::chrono::steady_clock::time_point begun = std::chrono::steady_clock::now();

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::ExecRequest, v1::ExecResponse>> stream_;
  bool writes_done_ = false;
  bool finished_ = false;
  grpc::Status status_;
};

struct ExecResult {
  grpc::Status status;
  bool started = false;
  int pid = -1;
  std::string out;
  std::string err;
  std::optional<v1::ExecExit> exit;
  std::string order;
  double seconds = 0;  // wall clock seen by the client
  // "status=OK exit{code=0 signal=0 verdict=...} stdout=... stderr=..."
  std::string Describe() const;
  bool Ok() const { return status.ok() && exit.has_value(); }
};

// Runs one command to completion: writes start, `stdin_data` in 64 KiB
// chunks from a second thread, stdin_close (unless `close_stdin` is false),
// reads everything. The whole call is bounded by `deadline`.
ExecResult RunExec(Stub& stub, const v1::ExecStart& start, const std::string& stdin_data = "",
                   std::chrono::milliseconds deadline = std::chrono::seconds(30),
                   bool close_stdin = true);
// sh -c SCRIPT as the default user.
ExecResult Sh(Stub& stub, const std::string& id, const std::string& script,
              const ExecOptions& options = {},
              std::chrono::milliseconds deadline = std::chrono::seconds(30));

}  // namespace sbx::it

#endif  // SBX_TESTS_INTEGRATION_EXEC_UTIL_H_
