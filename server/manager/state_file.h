// The on-disk record of one sandbox (<state-dir>/sandboxes/<id>/state.json):
// everything a restarted sbxd needs to re-attach to it.
#ifndef SBX_SERVER_MANAGER_STATE_FILE_H_
#define SBX_SERVER_MANAGER_STATE_FILE_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/engine/limits.h"

namespace sbx::manager {

inline constexpr const char* kStateFileName = "state.json";
inline constexpr int kStateFileVersion = 1;

struct PersistedSandbox {
  std::string id;
  pid_t pid = 0;
  uint64_t start_time = 0;  // of the init, guards against pid reuse
  uint32_t slot = 0;        // host id range = uid_base + slot * 65536
  engine::Limits limits;    // effective, every field set
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> env;
  std::string image;
  absl::Time created_at;
  std::optional<absl::Time> expires_at;
  bool pooled = false;      // in the warm pool, not yet handed out
  std::string tenant;       // its owner; "" in files from before tenants
};

std::string SerializeState(const PersistedSandbox& state);
// INVALID_ARGUMENT (naming what is wrong) for a malformed or incomplete file.
absl::StatusOr<PersistedSandbox> ParseState(const std::string& text);

// Atomic write / read of <dir>/state.json.
absl::Status WriteStateFile(const std::string& dir, const PersistedSandbox& state);
absl::StatusOr<PersistedSandbox> ReadStateFile(const std::string& dir);

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_STATE_FILE_H_
