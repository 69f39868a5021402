// Resource limits and usage figures of a sandbox, in the engine's terms.
#ifndef SBX_SERVER_ENGINE_LIMITS_H_
#define SBX_SERVER_ENGINE_LIMITS_H_

#include <cstdint>
#include <optional>

namespace sbx::engine {

// A limit left unset is not changed (SetLimits) or not applied (Create).
struct Limits {
  std::optional<int64_t> memory_bytes;  // swap is always off
  std::optional<double> cpus;           // fraction of one cpu allowed, e.g. 0.5
  std::optional<int64_t> pids;          // tasks (processes + threads)
};

struct Usage {
  int64_t memory_bytes = 0;
  int64_t memory_peak_bytes = 0;
  int64_t cpu_usec = 0;  // user + system of the whole tree
  int64_t pids = 0;
  int64_t oom_kills = 0;
};

}  // namespace sbx::engine

#endif  // SBX_SERVER_ENGINE_LIMITS_H_
