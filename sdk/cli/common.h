// Helpers shared by the CLI verbs: connecting, reporting errors the one
// way the CLI contract asks (`sbx: <message>` on stderr), flag parsing.
#ifndef SBX_SDK_CLI_COMMON_H_
#define SBX_SDK_CLI_COMMON_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/commands.h"
#include "sbx/client.h"

namespace sbx::cli {

// The address to use: --server, else $SBX_SERVER, else the default socket.
std::string ServerAddress(const GlobalArgs& global);

absl::StatusOr<Client> ConnectClient(const GlobalArgs& global,
                                     ClientOptions options = {});

// Prints "sbx: <message>" (with the daemon address when it cannot be
// reached) and returns kExitApiError.
int ReportApiError(const GlobalArgs& global, const absl::Status& status);

// Prints "sbx: <message>" and returns kExitUsage.
int ReportUsageError(absl::string_view message);

// Parses repeated "key=value" flags; later keys win. The key must be
// non-empty; the value may contain '='.
absl::StatusOr<std::map<std::string, std::string>> ParseKeyValues(
    const std::vector<std::string>& items, absl::string_view flag);

// Parses --memory / --cpus / --pids; empty strings stay unset. Every value
// must be positive.
absl::StatusOr<Limits> ParseLimitArgs(const LimitArgs& args);

// Writes all of `data` to `fd`, retrying on EINTR and short writes.
// Returns false with errno set on failure.
bool WriteAll(int fd, std::string_view data);

// "RUNNING" for SANDBOX_STATE_RUNNING.
std::string StateName(v1::SandboxState state);

}  // namespace sbx::cli

#endif  // SBX_SDK_CLI_COMMON_H_
