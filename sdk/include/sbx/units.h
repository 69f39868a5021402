// Parsing and printing of the human units the CLI and its users speak:
// sizes ("64M", "1G", "512k") and durations ("500ms", "2s", "5m").
//
// Pure functions, no I/O; safe to call from any thread.
#ifndef SBX_UNITS_H_
#define SBX_UNITS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace sbx {

// Parses a size in bytes. Suffixes are binary multiples and case-insensitive:
// "" or "b" (bytes), "k", "m", "g", "t", "p", each optionally followed by
// "i" and/or "b" ("64M" == "64MiB" == "64mb" == 64 << 20). A decimal fraction
// is allowed before a suffix ("1.5G"); the result is rounded down to whole
// bytes. Rejects empty input, signs, whitespace, unknown suffixes and values
// above INT64_MAX with INVALID_ARGUMENT.
absl::StatusOr<int64_t> ParseSize(std::string_view text);

// Parses a non-negative, finite duration with a unit on every component:
// "500ms", "2s", "1.5s", "5m", "1h", "1h30m", also "us" and "ns". A bare
// "0" is zero. Rejects negatives, "inf", a missing unit and junk with
// INVALID_ARGUMENT.
absl::StatusOr<absl::Duration> ParseDuration(std::string_view text);

// Formats bytes in the shortest binary unit that keeps it readable:
// 0 -> "0B", 100 -> "100B", 65536 -> "64K", 268435456 -> "256M",
// 1610612736 -> "1.5G" (one decimal, only when not a whole number).
std::string FormatSize(int64_t bytes);

// Formats a duration compactly for tables: "850ms", "42s", "5m", "3h", "2d".
// Truncates to the largest unit; negative durations print as "0s".
std::string FormatDurationShort(absl::Duration d);

}  // namespace sbx

#endif  // SBX_UNITS_H_
