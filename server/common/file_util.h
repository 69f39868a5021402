// Small helpers for the pseudo-files of /proc and cgroupfs.
#ifndef SBX_SERVER_COMMON_FILE_UTIL_H_
#define SBX_SERVER_COMMON_FILE_UTIL_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sbx {

// Reads a whole (small) file.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `content` with a single write(2), as cgroupfs and /proc expect; the
// file must exist (no O_CREAT).
absl::Status WriteStringToFile(const std::string& path, absl::string_view content);

// Reads a file holding one integer (surrounding white space ignored).
absl::StatusOr<int64_t> ReadInt64File(const std::string& path);

// The integer in `text`, read from `path` (named in the error).
absl::StatusOr<int64_t> ParseInt64(absl::string_view text, const std::string& path);

}  // namespace sbx

#endif  // SBX_SERVER_COMMON_FILE_UTIL_H_
