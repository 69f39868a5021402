// sbxd's graceful shutdown. On SIGTERM the server stops taking new calls
// (listeners closed, GOAWAY on open connections: clients get UNAVAILABLE),
// the sbx.v1 calls already running get up to a grace period to finish
// (a running Exec ends with its real exit), what is left is then cancelled
// (an Exec cut off this way has its command killed), and sbxd returns as
// soon as no call runs: an idle daemon exits at once, even with idle client
// connections open. Sandboxes are not touched; they outlive sbxd.
//
// gRPC's own Server::Shutdown(deadline) waits out the whole deadline while
// any client connection stays open, idle or not; so the calls are counted
// here (a server interceptor) and the connections are dropped as soon as
// the count is zero.
//
// Use: Install() on the builder before BuildAndStart; Run() once, from the
// thread that got the signal. The object must outlive the server.
#ifndef SBX_SERVER_API_SHUTDOWN_H_
#define SBX_SERVER_API_SHUTDOWN_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <utility>

#include "absl/time/time.h"
#include "server/api/io_loop.h"
#include "server/api/service.h"

namespace sbx::api {

class GracefulShutdown {
 public:
  explicit GracefulShutdown(absl::Duration grace);
  ~GracefulShutdown();
  GracefulShutdown(const GracefulShutdown&) = delete;
  GracefulShutdown& operator=(const GracefulShutdown&) = delete;

  // Counts the calls of sbx.v1.SandboxService in flight (health and
  // reflection calls are not work and do not hold shutdown up). Replaces
  // any interceptor creators set on `builder` before; `more` run after it.
  void Install(grpc::ServerBuilder& builder,
               std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
                   more = {});

  // Stops taking calls, waits up to the grace period for the running ones,
  // cancels the rest and waits for the server to be down, then lets `loop`
  // run what the ended calls posted (a cancelled Exec's kill), so that the
  // loop may be destroyed next.
  void Run(grpc::Server& server, IoLoop& loop);

  // Calls of the service in flight now.
  int InFlight() const;
  // True from the start of Run: new calls are to be refused.
  bool closing() const { return closing_.load(); }

 private:
  struct Counter;
  class Interceptor;
  class Factory;

  const absl::Duration grace_;
  std::shared_ptr<Counter> counter_;
  std::atomic<bool> closing_{false};
};

// The reactors that refuse a call with UNAVAILABLE ("sbxd is shutting
// down"), one per call shape.
grpc::ServerUnaryReactor* RefuseUnary(grpc::CallbackServerContext* context);
grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse>* RefuseExec();
grpc::ServerReadReactor<v1::WriteFilesRequest>* RefuseWriteFiles();
grpc::ServerWriteReactor<v1::ReadFileResponse>* RefuseReadFile();

// SandboxService that refuses new calls once `gate` is closing, so that
// while running calls finish a new one gets a clear UNAVAILABLE (gRPC's
// own shutdown would cancel it, or hang it until a reconnect fails).
class GatedSandboxService final : public SandboxService {
 public:
  template <typename... Args>
  explicit GatedSandboxService(const GracefulShutdown& gate, Args&&... args)
      : SandboxService(std::forward<Args>(args)...), gate_(gate) {}

#define SBX_GATED_UNARY(Method, Request, Response)                                         \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* context,                   \
                                   const v1::Request* request, v1::Response* response)     \
      override {                                                                           \
    if (gate_.closing()) return RefuseUnary(context);                                      \
    return SandboxService::Method(context, request, response);                             \
  }
  SBX_GATED_UNARY(CreateSandbox, CreateSandboxRequest, CreateSandboxResponse)
  SBX_GATED_UNARY(GetSandbox, GetSandboxRequest, GetSandboxResponse)
  SBX_GATED_UNARY(ListSandboxes, ListSandboxesRequest, ListSandboxesResponse)
  SBX_GATED_UNARY(DestroySandbox, DestroySandboxRequest, DestroySandboxResponse)
  SBX_GATED_UNARY(SetLimits, SetLimitsRequest, SetLimitsResponse)
  SBX_GATED_UNARY(Run, RunRequest, RunResponse)
#undef SBX_GATED_UNARY

  grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse>* Exec(
      grpc::CallbackServerContext* context) override {
    if (gate_.closing()) return RefuseExec();
    return SandboxService::Exec(context);
  }
  grpc::ServerReadReactor<v1::WriteFilesRequest>* WriteFiles(
      grpc::CallbackServerContext* context, v1::WriteFilesResponse* response) override {
    if (gate_.closing()) return RefuseWriteFiles();
    return SandboxService::WriteFiles(context, response);
  }
  grpc::ServerWriteReactor<v1::ReadFileResponse>* ReadFile(
      grpc::CallbackServerContext* context, const v1::ReadFileRequest* request) override {
    if (gate_.closing()) return RefuseReadFile();
    return SandboxService::ReadFile(context, request);
  }

 private:
  const GracefulShutdown& gate_;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_SHUTDOWN_H_
