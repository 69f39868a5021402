#include "sbx/grpc_status.h"

namespace sbx {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  const int code = static_cast<int>(status.error_code());
  // absl and gRPC share the canonical code numbers 0..16.
  const bool known = code > 0 && code <= static_cast<int>(
                                              absl::StatusCode::kUnauthenticated);
  return absl::Status(
      known ? static_cast<absl::StatusCode>(code) : absl::StatusCode::kUnknown,
      status.error_message());
}

}  // namespace sbx
