// Private to the SDK: what a Client shares with its copies and its ExecCalls.
#ifndef SBX_SDK_INTERNAL_CLIENT_STATE_H_
#define SBX_SDK_INTERNAL_CLIENT_STATE_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/client_interceptor.h>

#include <memory>
#include <optional>
#include <string_view>
#include <string>

#include "absl/time/time.h"
#include "sbx/client.h"
#include "sbx/v1/sandbox.grpc.pb.h"

namespace sbx {

struct Client::State {
  std::string target;
  ClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::SandboxService::Stub> stub;
};

namespace internal {

// Adds `authorization: <value>` to the initial metadata of every call.
class BearerTokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string& value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", value_});
    }
    methods->Proceed();
  }

 private:
  const std::string& value_;  // owned by the factory, which outlives the channel's calls
};

class BearerTokenInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(std::string value) : value_(std::move(value)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerTokenInterceptor(value_);
  }

 private:
  const std::string value_;
};

// Applies a deadline `timeout` from now, unless it is infinite.
void SetTimeout(grpc::ClientContext& context, absl::Duration timeout);

// For a call about sandbox `id`: when the id names its node
// ("sb-<hex>.<node>"), sends the node as `sbx-node` metadata, which a router
// in front of several daemons uses to pick the one that holds the sandbox.
void RouteToSandbox(grpc::ClientContext& context, std::string_view id);
// The node part of a sandbox id, "" when it has none.
std::string_view NodeOf(std::string_view id);
// Sends `node` (unless empty) as `sbx-node` metadata.
void RouteToNode(grpc::ClientContext& context, std::string_view node);

}  // namespace internal
}  // namespace sbx

#endif  // SBX_SDK_INTERNAL_CLIENT_STATE_H_
