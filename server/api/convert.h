// Conversions between the wire messages (sbx.v1) and the manager's and
// engine's types. Pure functions; validation of values is the manager's job,
// only the shape of a message is checked here.
#ifndef SBX_SERVER_API_CONVERT_H_
#define SBX_SERVER_API_CONVERT_H_

#include "absl/status/statusor.h"
#include "sbx/v1/sandbox.pb.h"
#include "server/engine/sandbox.h"
#include "server/manager/types.h"

namespace sbx::api {

engine::Limits FromProto(const v1::Limits& limits);
// INVALID_ARGUMENT for a malformed duration.
absl::StatusOr<manager::CreateParams> FromProto(const v1::CreateSandboxRequest& request);
absl::StatusOr<manager::ListFilter> FromProto(const v1::ListSandboxesRequest& request);
absl::StatusOr<manager::ExecParams> FromProto(const v1::ExecStart& start);

void ToProto(const manager::SandboxInfo& info, v1::Sandbox* out);
v1::SandboxState ToProto(manager::SandboxState state);
// The exit of a command, with its verdict.
void ToProto(const engine::ExecExit& exit, v1::ExecExit* out);

// Checks a google.protobuf.Duration (-315576000000..315576000000 s, nanos of
// the same sign) and converts it; `field` names it in the error.
absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         const char* field);

}  // namespace sbx::api

#endif  // SBX_SERVER_API_CONVERT_H_
