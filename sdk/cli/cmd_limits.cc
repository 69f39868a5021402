// sbx limits ID [--memory SIZE] [--cpus N] [--pids N]
#include "cli/commands.h"
#include "cli/common.h"

namespace sbx::cli {

int RunLimits(const GlobalArgs& global, const LimitsArgs& args) {
  absl::StatusOr<Limits> limits = ParseLimitArgs(args.limits);
  if (!limits.ok()) return ReportUsageError(limits.status().message());
  if (!limits->memory_bytes && !limits->cpus && !limits->pids) {
    return ReportUsageError(
        "limits: give at least one of --memory, --cpus, --pids");
  }
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return ReportUsageError(client.status().message());
  absl::StatusOr<v1::Sandbox> sandbox = client->SetLimits(args.id, *limits);
  if (!sandbox.ok()) return ReportApiError(global, sandbox.status());
  return kExitOk;
}

}  // namespace sbx::cli
