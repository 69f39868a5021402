// sbx inspect ID: every field of the Sandbox message as JSON. Field names
// are the proto's; int64 values are JSON numbers (not strings as in the
// canonical proto mapping) so that jq arithmetic works; durations and
// timestamps use the canonical "1.5s" / RFC 3339 strings; unset optional
// fields are null.
#include <google/protobuf/util/time_util.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"

namespace sbx::cli {
namespace {

using google::protobuf::util::TimeUtil;
using nlohmann::json;

json LimitsJson(const v1::Limits& limits) {
  json out = json::object();
  out["memory_bytes"] =
      limits.has_memory_bytes() ? json(limits.memory_bytes()) : json(nullptr);
  out["cpus"] = limits.has_cpus() ? json(limits.cpus()) : json(nullptr);
  out["pids"] = limits.has_pids() ? json(limits.pids()) : json(nullptr);
  return out;
}

json UsageJson(const v1::Usage& usage) {
  return json{{"memory_bytes", usage.memory_bytes()},
              {"memory_peak_bytes", usage.memory_peak_bytes()},
              {"cpu_time", TimeUtil::ToString(usage.cpu_time())},
              {"pids", usage.pids()},
              {"oom_kills", usage.oom_kills()}};
}

json SandboxJson(const v1::Sandbox& sandbox) {
  json labels = json::object();
  for (const auto& [key, value] : sandbox.labels()) labels[key] = value;
  json out = json::object();
  out["id"] = sandbox.id();
  out["state"] = v1::SandboxState_Name(sandbox.state());
  out["image"] = sandbox.image();
  out["limits"] = LimitsJson(sandbox.limits());
  out["labels"] = std::move(labels);
  out["usage"] = UsageJson(sandbox.usage());
  out["created_at"] = sandbox.has_created_at()
                          ? json(TimeUtil::ToString(sandbox.created_at()))
                          : json(nullptr);
  out["expires_at"] = sandbox.has_expires_at()
                          ? json(TimeUtil::ToString(sandbox.expires_at()))
                          : json(nullptr);
  out["init_pid"] = sandbox.init_pid();
  return out;
}

}  // namespace

int RunInspect(const GlobalArgs& global, const InspectArgs& args) {
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return ReportUsageError(client.status().message());
  absl::StatusOr<v1::Sandbox> sandbox = client->GetSandbox(args.id);
  if (!sandbox.ok()) return ReportApiError(global, sandbox.status());
  // Labels and ids are user data: replace invalid UTF-8 rather than throw.
  std::cout << SandboxJson(*sandbox).dump(2, ' ', false,
                                          json::error_handler_t::replace)
            << "\n";
  return kExitOk;
}

}  // namespace sbx::cli
