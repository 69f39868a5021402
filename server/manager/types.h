// The manager's vocabulary: what callers pass in and get back. No gRPC types;
// the api layer converts to and from the wire messages.
#ifndef SBX_SERVER_MANAGER_TYPES_H_
#define SBX_SERVER_MANAGER_TYPES_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/engine/limits.h"

namespace sbx::manager {

enum class SandboxState { kCreating, kRunning, kDead, kDestroying };

const char* SandboxStateName(SandboxState state);

struct CreateParams {
  std::string image;                        // "" or "host"
  engine::Limits limits;                    // unset fields take the defaults
  std::map<std::string, std::string> env;   // default env of every exec
  std::map<std::string, std::string> labels;
  absl::Duration ttl = absl::ZeroDuration();  // zero: no expiry
  // Who creates it: the only caller that will see it, and whose quota it
  // counts against.
  std::string tenant;
};

// What one tenant may hold at once; 0 = no limit of its own.
struct TenantQuota {
  int max_sandboxes = 0;
  int64_t max_memory_bytes = 0;  // sum of its sandboxes' memory limits
  double max_cpus = 0;           // sum of its sandboxes' cpu limits
};

// A point-in-time copy of one sandbox, safe to hand out.
struct SandboxInfo {
  std::string id;
  SandboxState state = SandboxState::kCreating;
  std::string image;
  engine::Limits limits;  // effective, every field set
  std::map<std::string, std::string> labels;
  std::optional<engine::Usage> usage;  // absent if it could not be read
  absl::Time created_at;
  std::optional<absl::Time> expires_at;
  pid_t init_pid = 0;
  std::string tenant;
};

struct ListFilter {
  std::map<std::string, std::string> label_selector;  // all must match
  std::optional<SandboxState> state;                  // absent: any
};

// Limits of one command alone; unset: none of its own.
struct ExecLimits {
  std::optional<absl::Duration> cpu_time;
  std::optional<int64_t> memory_bytes;
  std::optional<int64_t> pids;
  std::optional<int64_t> output_bytes;
  std::optional<int64_t> file_size_bytes;
  std::optional<int64_t> stack_bytes;
  std::optional<int64_t> open_files;
};

struct ExecParams {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;  // added to the sandbox env
  std::string cwd;                         // "" = the working directory
  std::string user;                        // "" = default, "root" or a uid
  bool tty = false;
  uint16_t rows = 24;
  uint16_t cols = 80;
  absl::Duration timeout = absl::ZeroDuration();  // zero: none
  ExecLimits limits;
};

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_TYPES_H_
