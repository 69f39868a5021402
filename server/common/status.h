// Error helpers shared by every layer. The installed abseil predates
// absl's own status macros, so the two we need live here.
#ifndef SBX_SERVER_COMMON_STATUS_H_
#define SBX_SERVER_COMMON_STATUS_H_

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sbx {

// Maps an errno value to the closest absl code and builds
// "<what>: <strerror>" (e.g. "creating cgroup /sys/...: Permission denied").
absl::Status ErrnoStatus(int err, absl::string_view what);

// Prepends context to a status message, keeping its code.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

}  // namespace sbx

#define SBX_STATUS_CONCAT_INNER_(a, b) a##b
#define SBX_STATUS_CONCAT_(a, b) SBX_STATUS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                     \
  do {                                            \
    ::absl::Status sbx_status_ = (expr);          \
    if (!sbx_status_.ok()) return sbx_status_;    \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(SBX_STATUS_CONCAT_(sbx_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#endif  // SBX_SERVER_COMMON_STATUS_H_
