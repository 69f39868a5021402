// sbx cp [--user U] SRC DST: copies a file or a directory tree into or out of
// a sandbox. Exactly one of SRC and DST is ID:PATH; the other is a local path,
// or "-" for stdin (SRC) / stdout (DST) with a single file. A local path that
// holds a ':' before any '/' can be written as ./name.
#include <iostream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/common.h"

namespace sbx::cli {
namespace {

struct Remote {
  std::string id;
  std::string path;
};

// "ID:PATH" when a ':' comes before any '/' and both sides are non-empty.
std::optional<Remote> ParseRemote(const std::string& arg) {
  const size_t colon = arg.find(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  if (arg.find('/') < colon) return std::nullopt;
  return Remote{arg.substr(0, colon), arg.substr(colon + 1)};
}

}  // namespace

int RunCp(const GlobalArgs& global, const CpArgs& args) {
  const std::optional<Remote> src = ParseRemote(args.src);
  const std::optional<Remote> dst = ParseRemote(args.dst);
  if (src.has_value() == dst.has_value()) {
    return ReportUsageError(
        "cp: exactly one of SRC and DST must be ID:PATH (e.g. sbx cp ./a.txt sb-123:/work/)");
  }
  const Remote& remote = src ? *src : *dst;
  if (remote.path.empty()) return ReportUsageError("cp: empty path after ID:");

  absl::StatusOr<Client> client = ConnectClient(global);
  if (!client.ok()) return ReportUsageError(client.status().message());
  TransferOptions options;
  options.user = args.user;

  absl::Status status;
  if (dst) {
    if (args.src == "-") {
      status = client->WriteFileFrom(dst->id, std::cin, dst->path, 0, options).status();
    } else {
      status = client->CopyIn(dst->id, args.src, dst->path, options).status();
    }
  } else if (args.dst == "-") {
    status = client->ReadFileTo(src->id, src->path, std::cout, options).status();
  } else {
    status = client->CopyOut(src->id, src->path, args.dst, options).status();
  }
  if (!status.ok()) return ReportApiError(global, status);
  return kExitOk;
}

}  // namespace sbx::cli
