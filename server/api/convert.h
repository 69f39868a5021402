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

// Limits the exec pump enforces itself (the rest are the kernel's).
struct ExecBudget {
  int64_t cpu_usec = 0;        // 0: none
  int64_t output_bytes = -1;   // -1: none
  int64_t memory_bytes = -1;   // -1: none (only used to name a verdict)
};

// What the exec pump knows of one command beside its exit status.
struct ExecOutcome {
  std::optional<engine::Usage> usage;  // of the command's own cgroup leaf
  bool cpu_exceeded = false;           // killed at its cpu-time limit
  bool output_truncated = false;       // killed at its output limit
  int64_t memory_limit = -1;           // its own memory limit, -1: none
};

// The exit message, with figures and the verdict. cpu time and peak memory
// come from the command's cgroup when known (exact for it and its
// descendants), else from rusage. Verdict precedence: TIME_LIMIT,
// WALL_TIME_LIMIT, OUTPUT_LIMIT, MEMORY_LIMIT (OOM kill, or a failure with
// its peak at its memory limit), SIGNALED, RUNTIME_ERROR, OK.
void ToProto(const engine::ExecExit& exit, const ExecOutcome& outcome, v1::ExecExit* out);

// Checks a google.protobuf.Duration (-315576000000..315576000000 s, nanos of
// the same sign) and converts it; `field` names it in the error.
absl::StatusOr<absl::Duration> FromProto(const google::protobuf::Duration& d,
                                         const char* field);

}  // namespace sbx::api

#endif  // SBX_SERVER_API_CONVERT_H_
