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

enum class Durability { kSync, kNoSync };

// Writes a file atomically: a temporary beside it, renamed into place. With
// kSync the data is fsync'ed first and renamed over the old file, so the file
// survives a machine crash. kNoSync is for files that describe processes,
// which a machine crash ends anyway; a crash of the writing process loses
// nothing either way. Such a file is never renamed over the old one: on ext4
// that starts the new data's writeback and waits for it (auto_da_alloc,
// 283 µs against 72 measured here). The old file steps aside to <path>.prev
// first, so that between the two renames the old content is there; read
// such a file with ReadFileWrittenAtomically.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view content,
                                 int mode = 0600, Durability durability = Durability::kSync);

// Reads a file written by WriteFileAtomically: <path>, or <path>.prev when
// the writer stopped between its renames. NOT_FOUND when neither exists.
absl::StatusOr<std::string> ReadFileWrittenAtomically(const std::string& path);

// Reads a file holding one integer (surrounding white space ignored).
absl::StatusOr<int64_t> ReadInt64File(const std::string& path);

// The integer in `text`, read from `path` (named in the error).
absl::StatusOr<int64_t> ParseInt64(absl::string_view text, const std::string& path);

}  // namespace sbx

#endif  // SBX_SERVER_COMMON_FILE_UTIL_H_
