// sbx ls [--label k=v]...: one row per sandbox under a header.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "sbx/proto_time.h"
#include "sbx/units.h"

namespace sbx::cli {
namespace {

constexpr size_t kColumns = 7;
using Row = std::array<std::string, kColumns>;

Row MakeRow(const v1::Sandbox& sandbox, absl::Time now) {
  const v1::Limits& limits = sandbox.limits();
  const v1::Usage& usage = sandbox.usage();
  std::string memory = FormatSize(usage.memory_bytes());
  if (limits.has_memory_bytes()) {
    absl::StrAppend(&memory, "/", FormatSize(limits.memory_bytes()));
  }
  std::string pids = absl::StrCat(usage.pids());
  if (limits.has_pids()) absl::StrAppend(&pids, "/", limits.pids());
  std::string age = "-";
  if (sandbox.has_created_at()) {
    age = FormatDurationShort(now - FromProtoTimestamp(sandbox.created_at()));
  }
  std::vector<std::string> labels;
  for (const auto& [key, value] : sandbox.labels()) {
    labels.push_back(absl::StrCat(key, "=", value));
  }
  std::sort(labels.begin(), labels.end());
  return Row{sandbox.id(),
             absl::AsciiStrToLower(StateName(sandbox.state())),
             std::move(memory),
             limits.has_cpus() ? absl::StrFormat("%g", limits.cpus()) : "-",
             std::move(pids),
             std::move(age),
             labels.empty() ? "-" : absl::StrJoin(labels, ",")};
}

void PrintTable(const std::vector<Row>& rows) {
  std::array<size_t, kColumns> width{};
  for (const Row& row : rows) {
    for (size_t i = 0; i < kColumns; ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const Row& row : rows) {
    std::string line;
    for (size_t i = 0; i < kColumns; ++i) {
      line += row[i];
      if (i + 1 < kColumns) line.append(width[i] - row[i].size() + 3, ' ');
    }
    std::cout << line << "\n";
  }
}

}  // namespace

int RunLs(const GlobalArgs& global, const LsArgs& args) {
  absl::StatusOr<std::map<std::string, std::string>> selector =
      ParseKeyValues(args.labels, "--label");
  if (!selector.ok()) return ReportUsageError(selector.status().message());
  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return ReportUsageError(client.status().message());
  ListOptions options;
  options.label_selector = *std::move(selector);
  std::string nodes = args.nodes;
  if (nodes.empty()) {
    const char* env = std::getenv("SBX_NODES");
    if (env != nullptr) nodes = env;
  }
  options.nodes = absl::StrSplit(nodes, ',', absl::SkipWhitespace());
  absl::StatusOr<std::vector<v1::Sandbox>> sandboxes =
      client->ListSandboxes(options);
  if (!sandboxes.ok()) return ReportApiError(global, sandboxes.status());

  std::vector<Row> rows;
  rows.push_back(Row{"ID", "STATE", "MEMORY", "CPUS", "PIDS", "AGE", "LABELS"});
  const absl::Time now = absl::Now();
  for (const v1::Sandbox& sandbox : *sandboxes) {
    rows.push_back(MakeRow(sandbox, now));
  }
  PrintTable(rows);
  return kExitOk;
}

}  // namespace sbx::cli
