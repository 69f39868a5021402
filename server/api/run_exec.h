// Running one command to completion on the calling thread, for Run jobs:
// start it through the manager, feed it its whole stdin, collect stdout and
// stderr (up to the output limit), enforce its cpu-time limit from its own
// cgroup, and build the exit message with the same ToProto as Exec, so a
// command gets the same figures and verdict whichever RPC ran it.
//
// Blocks for as long as the command runs: call it only from a Run worker,
// never from a gRPC reaction or the IoLoop.
#ifndef SBX_SERVER_API_RUN_EXEC_H_
#define SBX_SERVER_API_RUN_EXEC_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "sbx/v1/sandbox.pb.h"
#include "server/api/convert.h"
#include "server/manager/manager.h"
#include "server/manager/types.h"

namespace sbx::api {

struct CommandSpec {
  manager::ExecParams params;  // with the limits the manager applies
  ExecBudget budget;           // the limits the pump applies (cpu, output)
  std::string stdin_data;
};

struct CommandResult {
  v1::ExecExit exit;   // figures and verdict, as Exec reports them
  std::string out;     // stdout, at most budget.output_bytes with err
  std::string err;
};

// Returns the start error of a command that could not be started (NOT_FOUND
// for a missing binary, ...), UNAVAILABLE if the sandbox went away, or
// CANCELLED once `cancelled` returned true (the command is killed first).
// Whatever is left in the command's cgroup after it exits is killed and the
// cgroup removed, so the next command starts with nothing of this one.
absl::StatusOr<CommandResult> RunCommand(manager::Manager& manager,
                                         const std::string& tenant,
                                         const std::string& sandbox_id,
                                         const CommandSpec& spec,
                                         const std::function<bool()>& cancelled);

// The pump's budget for `limits` (cpu time, output bytes, memory).
ExecBudget BudgetOf(const v1::ExecLimits& limits);

}  // namespace sbx::api

#endif  // SBX_SERVER_API_RUN_EXEC_H_
