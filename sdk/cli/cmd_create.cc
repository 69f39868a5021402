// sbx create: prints the new sandbox's id alone on stdout.
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "sbx/units.h"

namespace sbx::cli {

int RunCreate(const GlobalArgs& global, const CreateArgs& args) {
  CreateOptions options;
  options.image = args.image;
  absl::StatusOr<Limits> limits = ParseLimitArgs(args.limits);
  if (!limits.ok()) return ReportUsageError(limits.status().message());
  options.limits = *limits;
  if (!args.ttl.empty()) {
    absl::StatusOr<absl::Duration> ttl = ParseDuration(args.ttl);
    if (!ttl.ok()) return ReportUsageError(ttl.status().message());
    if (*ttl <= absl::ZeroDuration()) {
      return ReportUsageError("--ttl must be positive");
    }
    options.ttl = *ttl;
  }
  absl::StatusOr<std::map<std::string, std::string>> labels =
      ParseKeyValues(args.labels, "--label");
  if (!labels.ok()) return ReportUsageError(labels.status().message());
  options.labels = *std::move(labels);
  absl::StatusOr<std::map<std::string, std::string>> env =
      ParseKeyValues(args.env, "--env");
  if (!env.ok()) return ReportUsageError(env.status().message());
  options.env = *std::move(env);

  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return ReportUsageError(client.status().message());
  absl::StatusOr<v1::Sandbox> sandbox = client->CreateSandbox(options);
  if (!sandbox.ok()) return ReportApiError(global, sandbox.status());
  std::cout << sandbox->id() << "\n";
  return kExitOk;
}

}  // namespace sbx::cli
