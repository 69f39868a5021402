// sbx rm ID...: destroys each sandbox (idempotent), printing each id done;
// carries on past failures and exits non-zero if any failed.
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"

namespace sbx::cli {

int RunRm(const GlobalArgs& global, const RmArgs& args) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return ReportUsageError(client.status().message());
  int exit_code = kExitOk;
  for (const std::string& id : args.ids) {
    absl::StatusOr<bool> existed = client->DestroySandbox(id);
    if (!existed.ok()) {
      exit_code = ReportApiError(
          global, absl::Status(existed.status().code(),
                               id + ": " + std::string(existed.status().message())));
      continue;
    }
    std::cout << id << "\n";
  }
  return exit_code;
}

}  // namespace sbx::cli
