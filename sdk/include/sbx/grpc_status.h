// The single place where a grpc::Status becomes an absl::Status on the
// client side. Kept in its own header so that sbx/client.h does not pull in
// gRPC headers.
#ifndef SBX_GRPC_STATUS_H_
#define SBX_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace sbx {

// Same code number, same message. Codes outside absl's range (a
// misbehaving peer) become UNKNOWN with the message kept.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace sbx

#endif  // SBX_GRPC_STATUS_H_
