#include "server/api/status.h"

#include <string>

namespace sbx::api {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const int code = static_cast<int>(status.code());
  // UNKNOWN would tell the client nothing: an error that reached us is, at
  // worst, our own fault.
  if (code <= static_cast<int>(absl::StatusCode::kUnknown) ||
      code > static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)) {
    return grpc::Status(grpc::StatusCode::INTERNAL, std::string(status.message()));
  }
  return grpc::Status(static_cast<grpc::StatusCode>(code), std::string(status.message()));
}

}  // namespace sbx::api
