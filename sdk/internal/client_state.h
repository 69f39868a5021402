// Private to the SDK: what a Client shares with its copies and its ExecCalls.
#ifndef SBX_SDK_INTERNAL_CLIENT_STATE_H_
#define SBX_SDK_INTERNAL_CLIENT_STATE_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <optional>
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

// Applies a deadline `timeout` from now, unless it is infinite.
void SetTimeout(grpc::ClientContext& context, absl::Duration timeout);

}  // namespace internal
}  // namespace sbx

#endif  // SBX_SDK_INTERNAL_CLIENT_STATE_H_
