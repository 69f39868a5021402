// sbx.v1.SandboxService on the gRPC callback API. Handlers are thin: check
// the shape of a request, convert it, call the manager, convert the answer
// (errors through ToGrpcStatus). Unary handlers call the manager directly;
// Exec streams run on the shared IoLoop; the file streams (files.h) do one
// bounded step per reaction; Run jobs go to a small worker pool (run.h).
#ifndef SBX_SERVER_API_SERVICE_H_
#define SBX_SERVER_API_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "sbx/v1/sandbox.grpc.pb.h"
#include "server/api/auth.h"
#include "server/api/io_loop.h"
#include "server/api/run.h"
#include "server/manager/manager.h"

namespace sbx::api {

class SandboxService : public v1::SandboxService::CallbackService {
 public:
  // `manager`, `loop` and `auth` must outlive the gRPC server serving this
  // service. Every call is authenticated by `auth` first (auth.h).
  SandboxService(manager::Manager& manager, IoLoop& loop, const Authenticator& auth)
      : manager_(manager),
        loop_(loop),
        auth_(auth),
        runs_(RunPool::DefaultThreads(), kMaxQueuedRuns),
        starts_(kStartThreads, kMaxQueuedStarts, "exec starts", "sbxd-start") {}

  grpc::ServerUnaryReactor* CreateSandbox(grpc::CallbackServerContext* context,
                                          const v1::CreateSandboxRequest* request,
                                          v1::CreateSandboxResponse* response) override;
  grpc::ServerUnaryReactor* GetSandbox(grpc::CallbackServerContext* context,
                                       const v1::GetSandboxRequest* request,
                                       v1::GetSandboxResponse* response) override;
  grpc::ServerUnaryReactor* ListSandboxes(grpc::CallbackServerContext* context,
                                          const v1::ListSandboxesRequest* request,
                                          v1::ListSandboxesResponse* response) override;
  grpc::ServerUnaryReactor* DestroySandbox(grpc::CallbackServerContext* context,
                                           const v1::DestroySandboxRequest* request,
                                           v1::DestroySandboxResponse* response) override;
  grpc::ServerUnaryReactor* SetLimits(grpc::CallbackServerContext* context,
                                      const v1::SetLimitsRequest* request,
                                      v1::SetLimitsResponse* response) override;
  grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse>* Exec(
      grpc::CallbackServerContext* context) override;
  grpc::ServerReadReactor<v1::WriteFilesRequest>* WriteFiles(
      grpc::CallbackServerContext* context, v1::WriteFilesResponse* response) override;
  grpc::ServerWriteReactor<v1::ReadFileResponse>* ReadFile(
      grpc::CallbackServerContext* context, const v1::ReadFileRequest* request) override;
  grpc::ServerUnaryReactor* Run(grpc::CallbackServerContext* context,
                                const v1::RunRequest* request,
                                v1::RunResponse* response) override;

 private:
  // Runs that may wait for a worker before Run answers RESOURCE_EXHAUSTED.
  static constexpr size_t kMaxQueuedRuns = 64;
  // Exec starts likewise. A start mostly waits (for the sandbox's init to
  // fork and exec), so there are more threads than cpus.
  static constexpr int kStartThreads = 16;
  static constexpr size_t kMaxQueuedStarts = 1024;

  manager::Manager& manager_;
  IoLoop& loop_;
  const Authenticator& auth_;
  RunPool runs_;  // Run jobs (run.h); joined before the service goes
  // Exec starts: they wait for the sandbox's init, which gRPC's callback
  // threads must not (a health check would queue behind them).
  RunPool starts_;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_SERVICE_H_
