// The on-disk record of one sandbox: everything a restarted sbxd needs to
// re-attach to it.
//
// It is kept in two files of the sandbox's directory, state.0 and state.1
// ("slots"), written in turn and in place. Each write has a number one
// higher than the last (`seq`), and goes to slot seq % 2: the other slot
// keeps the state before it. A reader takes the valid slot with the higher
// number, so a write that never finished (sbxd killed during it) leaves the
// previous state to be read. Each slot is a header line
// "sbx-state <length> <hash>\n", then the JSON: a slot whose JSON does not
// match its header's length and hash is not valid.
//
// Why not a new file renamed into place: on ext4, creating that file was
// most of a hand-out from the warm pool, 0.2-0.6 ms, against about 0.1 ms
// for rewriting a page of an existing file (docs/benchmarks.md). The first
// write (seq 1) creates both slots, so that no later write creates a file.
// A slot is padded to whole 4 KiB pages, so that a rewrite replaces whole
// pages: the kernel never has to read the old ones back from the disk first.
// Nothing is fsync'ed: a state file describes live processes, which a
// machine crash ends.
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

inline constexpr const char* kStateSlotNames[2] = {"state.0", "state.1"};
// Where sbxd before the two slots kept the state (renamed aside to
// state.json.prev during a rewrite). Read when neither slot exists, so that
// sandboxes outlive an upgrade from such an sbxd.
inline constexpr const char* kLegacyStateFileName = "state.json";
inline constexpr int kStateFileVersion = 1;  // of the JSON

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
  uint64_t seq = 0;         // the write's number, from 1; 0 in a legacy file
  // Its init takes a command's task limit (Record::init_takes_nproc);
  // false in files from before it.
  bool init_takes_nproc = false;
};

std::string SerializeState(const PersistedSandbox& state);
// INVALID_ARGUMENT (naming what is wrong) for a malformed or incomplete file.
absl::StatusOr<PersistedSandbox> ParseState(const std::string& text);

// Writes `state` into slot state.seq % 2 of `dir`; state.seq must be one
// more than the last successful write's. After a failed write, retry with
// the same number: the next one would overwrite the only valid slot.
absl::Status WriteStateFile(const std::string& dir, const PersistedSandbox& state);
// The latest valid state of `dir`'s slots, else of its legacy file.
// NOT_FOUND when there is none of these files; INVALID_ARGUMENT (naming
// what is wrong) when there are but none is valid.
absl::StatusOr<PersistedSandbox> ReadStateFile(const std::string& dir);

}  // namespace sbx::manager

#endif  // SBX_SERVER_MANAGER_STATE_FILE_H_
