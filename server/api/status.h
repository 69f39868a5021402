// The one place where an absl::Status becomes a grpc::Status.
#ifndef SBX_SERVER_API_STATUS_H_
#define SBX_SERVER_API_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace sbx::api {

// Keeps the code (absl and gRPC share the numbering) and the message.
// UNKNOWN (and a code outside gRPC's range) becomes INTERNAL.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace sbx::api

#endif  // SBX_SERVER_API_STATUS_H_
