// A small in-process sbx.v1 server for testing the SDK and CLI client side
// (stream handling, status mapping, exit codes) over a real gRPC channel on
// a Unix socket. It is not sbxd: commands are interpreted by name here, no
// process is run. The real daemon is covered by tests/integration.
//
//   echo ARG...       stdout "ARG ARG\n", exit 0
//   exit CODE [SIG]   stdout "out\n", stderr "err\n", exit CODE (or SIG)
//   cat               stdin back to stdout until stdin_close, exit 0
//   early             exit 0 at once, never reading stdin
//   wait-signal       exit with the first signal it receives
//   hang              until the client cancels
// Sandbox id "missing" is NOT_FOUND everywhere.
#ifndef SBX_TESTS_UNIT_SDK_FAKE_SBXD_H_
#define SBX_TESTS_UNIT_SDK_FAKE_SBXD_H_

#include <grpcpp/grpcpp.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_join.h"
#include "sbx/v1/sandbox.grpc.pb.h"

namespace sbx::testing {

class FakeSandboxService final : public v1::SandboxService::Service {
 public:
  grpc::Status CreateSandbox(grpc::ServerContext*,
                             const v1::CreateSandboxRequest* request,
                             v1::CreateSandboxResponse* response) override {
    v1::Sandbox* sandbox = response->mutable_sandbox();
    sandbox->set_id("sb-1");
    sandbox->set_state(v1::SANDBOX_STATE_RUNNING);
    sandbox->set_image(request->image().empty() ? "host" : request->image());
    *sandbox->mutable_limits() = request->limits();
    *sandbox->mutable_labels() = request->labels();
    if (request->has_ttl()) sandbox->mutable_expires_at()->set_seconds(request->ttl().seconds());
    return grpc::Status::OK;
  }

  grpc::Status GetSandbox(grpc::ServerContext*,
                          const v1::GetSandboxRequest* request,
                          v1::GetSandboxResponse* response) override {
    if (request->id() == "missing") return NotFound(request->id());
    response->mutable_sandbox()->set_id(request->id());
    response->mutable_sandbox()->set_state(v1::SANDBOX_STATE_RUNNING);
    response->mutable_sandbox()->mutable_limits()->set_memory_bytes(256 << 20);
    (*response->mutable_sandbox()->mutable_labels())["team"] = "a";
    response->mutable_sandbox()->mutable_created_at()->set_seconds(1'700'000'000);
    return grpc::Status::OK;
  }

  grpc::Status ListSandboxes(grpc::ServerContext*,
                             const v1::ListSandboxesRequest* request,
                             v1::ListSandboxesResponse* response) override {
    for (const char* id : {"sb-1", "sb-2"}) {
      v1::Sandbox* sandbox = response->add_sandboxes();
      sandbox->set_id(id);
      sandbox->set_state(v1::SANDBOX_STATE_RUNNING);
      *sandbox->mutable_labels() = request->label_selector();
    }
    return grpc::Status::OK;
  }

  grpc::Status DestroySandbox(grpc::ServerContext*,
                              const v1::DestroySandboxRequest* request,
                              v1::DestroySandboxResponse* response) override {
    if (request->id() == "broken") {
      return grpc::Status(grpc::StatusCode::INTERNAL, "cannot remove cgroup");
    }
    response->set_existed(request->id() != "missing");
    return grpc::Status::OK;
  }

  grpc::Status SetLimits(grpc::ServerContext*,
                         const v1::SetLimitsRequest* request,
                         v1::SetLimitsResponse* response) override {
    if (request->id() == "missing") return NotFound(request->id());
    if (request->limits().has_pids() && request->limits().pids() > 1'000'000) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "pids limit 1000001 is above the maximum 1000000");
    }
    response->mutable_sandbox()->set_id(request->id());
    *response->mutable_sandbox()->mutable_limits() = request->limits();
    return grpc::Status::OK;
  }

  grpc::Status Exec(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::ExecResponse, v1::ExecRequest>* stream)
      override {
    v1::ExecRequest request;
    if (!stream->Read(&request) || !request.has_start()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "first message must be start");
    }
    const v1::ExecStart start = request.start();
    if (start.sandbox_id() == "missing") return NotFound(start.sandbox_id());
    v1::ExecResponse response;
    response.mutable_started()->set_pid(7);
    stream->Write(response);
    const std::string& cmd = start.argv(0);
    v1::ExecExit exit;
    if (cmd == "echo") {
      response.set_stdout(absl::StrJoin(start.argv().begin() + 1,
                                        start.argv().end(), " ") + "\n");
      stream->Write(response);
    } else if (cmd == "exit") {
      response.set_stdout("out\n");
      stream->Write(response);
      response.set_stderr("err\n");
      stream->Write(response);
      exit.set_exit_code(start.argv_size() > 1 ? atoi(start.argv(1).c_str()) : 0);
      if (start.argv_size() > 2) exit.set_signal(atoi(start.argv(2).c_str()));
    } else if (cmd == "cat") {
      while (stream->Read(&request) && !request.stdin_close()) {
        if (!request.has_stdin()) continue;
        response.set_stdout(request.stdin());
        stream->Write(response);
      }
    } else if (cmd == "wait-signal") {
      while (stream->Read(&request)) {
        if (request.msg_case() == v1::ExecRequest::kSignal) {
          exit.set_signal(request.signal());
          break;
        }
      }
    } else if (cmd == "hang") {
      while (!context->IsCancelled()) usleep(10'000);
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }  // "early" and anything else: exit 0 at once
    *response.mutable_exit() = exit;
    stream->Write(response);
    return grpc::Status::OK;
  }

 private:
  static grpc::Status NotFound(const std::string& id) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "sandbox " + id + " not found");
  }
};

// Serves FakeSandboxService on a fresh Unix socket for the test's lifetime.
class FakeSbxd {
 public:
  FakeSbxd() {
    char dir[] = "/tmp/sbx-sdk-test-XXXXXX";
    dir_ = mkdtemp(dir);
    address_ = "unix://" + dir_ + "/sbxd.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort(address_, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeSbxd() {
    server_->Shutdown();
    unlink((dir_ + "/sbxd.sock").c_str());
    rmdir(dir_.c_str());
  }
  const std::string& address() const { return address_; }
  bool ok() const { return server_ != nullptr; }

 private:
  std::string dir_;
  std::string address_;
  FakeSandboxService service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace sbx::testing

#endif  // SBX_TESTS_UNIT_SDK_FAKE_SBXD_H_
