#include "server/engine/proc_status.h"

#include <cstdint>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/common/file_util.h"

namespace sbx::engine {

ProcStatus ParseProcStatus(absl::string_view text) {
  ProcStatus status;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view key = line.substr(0, colon);
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line.substr(colon + 1), absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (key == "Name") {
      // The name itself may hold blanks; only the tab after the colon is not part of it.
      status.name = std::string(absl::StripPrefix(line.substr(colon + 1), "\t"));
    } else if (key == "PPid") {
      int32_t ppid;
      if (absl::SimpleAtoi(fields[0], &ppid)) status.ppid = ppid;
    } else if (key == "NSpid") {
      int32_t ns_pid;
      if (absl::SimpleAtoi(fields.back(), &ns_pid)) status.ns_pid = ns_pid;
    } else if (key == "Uid") {
      uint32_t uid;
      if (absl::SimpleAtoi(fields[0], &uid)) status.real_uid = uid;
    }
  }
  return status;
}

std::optional<ProcStatus> ReadProcStatus(pid_t pid) {
  absl::StatusOr<std::string> text = ReadFileToString(absl::StrCat("/proc/", pid, "/status"));
  if (!text.ok()) return std::nullopt;
  return ParseProcStatus(*text);
}

}  // namespace sbx::engine
