// Pure checks and conversions of the manager: request validation, defaults,
// the exec environment, sandbox ids and human sizes. No I/O except
// HostResources::Detect; safe to call from any thread.
#ifndef SBX_SERVER_MANAGER_VALIDATION_H_
#define SBX_SERVER_MANAGER_VALIDATION_H_

#include <cstdint>
#include <map>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/engine/limits.h"
#include "server/engine/sandbox.h"
#include "server/manager/options.h"
#include "server/manager/types.h"

namespace sbx::manager {

inline constexpr int64_t kMinMemoryBytes = int64_t{8} << 20;
inline constexpr double kMinCpus = 0.01;  // 1 ms of CFS quota per 100 ms
inline constexpr int64_t kMaxPids = 4194304;
inline constexpr size_t kMaxLabels = 64;
inline constexpr size_t kMaxLabelKeyLength = 63;
inline constexpr size_t kMaxLabelValueLength = 256;
inline constexpr size_t kMaxEnvEntries = 256;
inline constexpr size_t kMaxArgs = 4096;
inline constexpr size_t kMaxArgvEnvBytes = 128 << 10;
inline constexpr absl::Duration kMaxTtl = absl::Hours(24 * 30);
inline constexpr absl::Duration kMaxExecTimeout = absl::Hours(24 * 30);
inline constexpr const char* kDefaultUserName = "sandbox";
inline constexpr const char* kDefaultPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// What the host offers; limits above it are refused.
struct HostResources {
  int64_t memory_bytes = 0;
  int cpus = 0;
  static HostResources Detect();
};

// Checks the fields that are set. INVALID_ARGUMENT names the field.
absl::Status ValidateLimits(const engine::Limits& limits, const HostResources& host);
// Fills the unset fields from the daemon's defaults.
engine::Limits WithDefaults(const engine::Limits& limits, const ManagerOptions& options);
// `base` with the fields set in `update` replaced.
engine::Limits MergeLimits(const engine::Limits& base, const engine::Limits& update);

absl::Status ValidateLabels(const std::map<std::string, std::string>& labels);
// `field` names the map in error messages ("env", "exec env").
absl::Status ValidateEnv(const std::map<std::string, std::string>& env,
                         absl::string_view field);
absl::Status ValidateTtl(absl::Duration ttl);
absl::Status ValidateImage(const std::string& image);
// Everything a create request carries.
absl::Status ValidateCreateParams(const CreateParams& params, const HostResources& host);

// True if every selector entry is present in `labels` with the same value.
bool MatchesSelector(const std::map<std::string, std::string>& labels,
                     const std::map<std::string, std::string>& selector);

// Checks the ranges of one command's own limits (INVALID_ARGUMENT naming
// the field).
absl::Status ValidateExecLimits(const ExecLimits& limits);

// The RLIMIT_NPROC of a command run as `uid` (inside the sandbox) in a
// sandbox whose pids limit is `pids_limit`: what is left of the pids for
// that uid beside what sbx keeps there, all as uid 0: the init, and the
// spare process for the next command (which the worker may make while
// this command runs). So a fork past the limit is refused by RLIMIT_NPROC,
// checked before the kernel copies the parent's memory map, and not by the
// pids cgroup, checked after (unless processes of other uids hold pids
// too). Root's own count includes the init and the spare: it gets all of
// them. 0 (no limit) when the sandbox has no pids limit.
int64_t TaskLimitFor(int64_t pids_limit, uint32_t uid);

// Validates an exec request and turns it into the engine's options: the
// user, the working directory and the complete environment (defaults, then
// the sandbox's env, then the request's env; later entries win).
absl::StatusOr<engine::ExecOptions> BuildExecOptions(
    const std::string& sandbox_id, const std::map<std::string, std::string>& sandbox_env,
    const ExecParams& params);

// "sb-" followed by 16 random lowercase hex digits, then ".<node>" when the
// daemon has a node name: a valid cgroup name and hostname. The node part
// lets a router send every call about a sandbox to the node that holds it.
std::string NewSandboxId(absl::string_view node = "");
bool IsSandboxId(absl::string_view id);
// 1 to 44 of [a-z0-9.-] (a Kubernetes node name fits), starting and ending
// with a letter or digit.
bool IsNodeName(absl::string_view name);

// Parses "512M", "1G", "64k", "1048576", "2GiB" (binary multiples,
// case-insensitive). INVALID_ARGUMENT on junk, negatives or overflow.
absl::StatusOr<int64_t> ParseSize(absl::string_view text);

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_VALIDATION_H_
