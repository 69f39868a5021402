// Private to the SDK (never installed): the two status macros the installed
// abseil lacks. Prefixed so they cannot clash with a user's own.
#ifndef SBX_SDK_INTERNAL_STATUS_MACROS_H_
#define SBX_SDK_INTERNAL_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SBX_SDK_CONCAT_INNER_(a, b) a##b
#define SBX_SDK_CONCAT_(a, b) SBX_SDK_CONCAT_INNER_(a, b)

#define SBX_RETURN_IF_ERROR(expr)                  \
  do {                                             \
    ::absl::Status sbx_sdk_status_ = (expr);       \
    if (!sbx_sdk_status_.ok()) return sbx_sdk_status_; \
  } while (0)

#define SBX_ASSIGN_OR_RETURN(lhs, expr) \
  SBX_ASSIGN_OR_RETURN_IMPL_(SBX_SDK_CONCAT_(sbx_sdk_statusor_, __LINE__), lhs, expr)

#define SBX_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#endif  // SBX_SDK_INTERNAL_STATUS_MACROS_H_
