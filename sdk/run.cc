// Client::Run: the judge's one-shot call (ephemeral sandbox, files, one
// compile, N cases), a plain unary RPC.
#include <grpcpp/client_context.h>

#include <utility>

#include "internal/client_state.h"
#include "sbx/client.h"
#include "sbx/grpc_status.h"

namespace sbx {

absl::StatusOr<v1::RunResponse> Client::Run(const v1::RunRequest& request,
                                            const CallOptions& call) const {
  if (request.run_argv().empty()) return absl::InvalidArgumentError("run_argv is empty");
  grpc::ClientContext context;
  // A Run lasts as long as its cases: no default deadline.
  internal::SetTimeout(context, call.timeout.value_or(absl::InfiniteDuration()));
  context.set_wait_for_ready(state_->options.wait_for_ready);
  v1::RunResponse response;
  absl::Status status = FromGrpcStatus(state_->stub->Run(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

}  // namespace sbx
