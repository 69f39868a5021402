// What /proc/<pid>/status says about a process, as far as sbxd needs it:
// recovery recognises a sandbox's spare by it, and SetLimits the owner of
// each running command.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace sbx::engine {

struct ProcStatus {
  std::string name;               // "Name:", the command name (comm)
  pid_t ppid = 0;                 // "PPid:"
  pid_t ns_pid = 0;               // the last "NSpid:" field: its pid in its innermost namespace
  std::optional<uid_t> real_uid;  // the first "Uid:" field, as the host sees it
};

// Parses the text of a status file; fields it lacks keep their defaults.
ProcStatus ParseProcStatus(absl::string_view text);

// The status of process `pid`; nullopt if it is gone (or cannot be read).
std::optional<ProcStatus> ReadProcStatus(pid_t pid);

}  // namespace sbx::engine
