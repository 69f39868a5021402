#include "server/manager/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/common/unique_fd.h"
#include "server/manager/validation.h"

namespace sbx::manager {
namespace {

using nlohmann::json;

constexpr absl::string_view kSlotMagic = "sbx-state";
constexpr size_t kPageBytes = 4096;

std::string SlotPath(const std::string& dir, uint64_t slot) {
  return absl::StrCat(dir, "/", kStateSlotNames[slot]);
}

// FNV-1a, 64 bits: enough to tell a torn or garbled slot from a whole one.
// Only sbxd writes these files (0600 in a 0700 directory).
uint64_t Fnv1a64(absl::string_view data) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

std::string FrameSlot(absl::string_view json_text) {
  std::string out = absl::StrFormat("%s %d %016x\n", kSlotMagic, json_text.size(),
                                    Fnv1a64(json_text));
  out.append(json_text.data(), json_text.size());
  out.push_back('\n');
  out.append((kPageBytes - out.size() % kPageBytes) % kPageBytes, ' ');
  return out;
}

// The JSON of a slot, or INVALID_ARGUMENT.
absl::StatusOr<absl::string_view> UnframeSlot(absl::string_view text) {
  const size_t eol = text.find('\n');
  if (eol == absl::string_view::npos) return absl::InvalidArgumentError("no header line");
  const std::vector<absl::string_view> fields = absl::StrSplit(text.substr(0, eol), ' ');
  size_t length = 0;
  uint64_t hash = 0;
  if (fields.size() != 3 || fields[0] != kSlotMagic || !absl::SimpleAtoi(fields[1], &length) ||
      !absl::SimpleHexAtoi(fields[2], &hash)) {
    return absl::InvalidArgumentError("malformed header line");
  }
  absl::string_view json_text = text.substr(eol + 1);
  if (json_text.size() < length) {
    return absl::InvalidArgumentError("shorter than its header says (a torn write)");
  }
  json_text = json_text.substr(0, length);
  if (Fnv1a64(json_text) != hash) {
    return absl::InvalidArgumentError("does not match its header's hash (a torn write)");
  }
  return json_text;
}

// One slot's state. NOT_FOUND when the file is missing, or empty: the
// first write creates both slots and fills one.
absl::StatusOr<PersistedSandbox> ReadSlot(const std::string& dir, uint64_t slot) {
  const std::string path = SlotPath(dir, slot);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  if (text.empty()) return absl::NotFoundError(absl::StrCat(path, " was never written"));
  absl::StatusOr<absl::string_view> json_text = UnframeSlot(text);
  if (!json_text.ok()) return Annotate(json_text.status(), path);
  absl::StatusOr<PersistedSandbox> state = ParseState(std::string(*json_text));
  if (!state.ok()) return Annotate(state.status(), path);
  if (state->seq == 0 || state->seq % 2 != slot) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": write number ", state->seq, " does not belong in this slot"));
  }
  return state;
}

// The file sbxd wrote before the slots, or its .prev when it was stopped
// between the renames of a rewrite.
absl::StatusOr<PersistedSandbox> ReadLegacyStateFile(const std::string& dir) {
  std::string path = absl::StrCat(dir, "/", kLegacyStateFileName);
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsNotFound(text.status())) {
    absl::StatusOr<std::string> prev = ReadFileToString(path + ".prev");
    if (prev.ok()) {
      text = std::move(prev);
      path += ".prev";
    }
  }
  if (!text.ok()) return text.status();
  absl::StatusOr<PersistedSandbox> state = ParseState(*text);
  if (!state.ok()) return Annotate(state.status(), path);
  return state;
}

// Writes all of `content` at the start of `path`, which is created if need
// be; what lies beyond it stays.
absl::Status WriteInPlace(const std::string& path, absl::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("opening ", path));
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::pwrite(fd.get(), content.data() + done, content.size() - done,
                               static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("writing ", path));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

std::string SerializeState(const PersistedSandbox& s) {
  json j;
  j["version"] = kStateFileVersion;
  j["id"] = s.id;
  j["pid"] = s.pid;
  j["start_time"] = s.start_time;
  j["slot"] = s.slot;
  j["limits"] = {{"memory_bytes", s.limits.memory_bytes.value_or(0)},
                 {"cpus", s.limits.cpus.value_or(0)},
                 {"pids", s.limits.pids.value_or(0)}};
  j["labels"] = s.labels;
  j["env"] = s.env;
  j["image"] = s.image;
  j["created_at_unix_ns"] = absl::ToUnixNanos(s.created_at);
  if (s.expires_at) j["expires_at_unix_ns"] = absl::ToUnixNanos(*s.expires_at);
  if (s.pooled) j["pooled"] = true;
  if (!s.tenant.empty()) j["tenant"] = s.tenant;
  j["seq"] = s.seq;
  if (s.init_takes_nproc) j["init_takes_nproc"] = true;
  return j.dump(2);
}

absl::StatusOr<PersistedSandbox> ParseState(const std::string& text) {
  // nlohmann reports problems as exceptions; they stop here.
  try {
    json j = json::parse(text);
    if (!j.is_object()) return absl::InvalidArgumentError("state: not a JSON object");
    if (j.value("version", 0) != kStateFileVersion) {
      return absl::InvalidArgumentError(
          absl::StrCat("state: unsupported version ", j.value("version", 0)));
    }
    PersistedSandbox s;
    s.id = j.at("id").get<std::string>();
    if (!IsSandboxId(s.id)) {
      return absl::InvalidArgumentError(absl::StrCat("state: bad id '", s.id, "'"));
    }
    s.pid = j.at("pid").get<pid_t>();
    if (s.pid <= 0) return absl::InvalidArgumentError("state: bad pid");
    s.start_time = j.at("start_time").get<uint64_t>();
    s.slot = j.at("slot").get<uint32_t>();
    const json& limits = j.at("limits");
    s.limits.memory_bytes = limits.at("memory_bytes").get<int64_t>();
    s.limits.cpus = limits.at("cpus").get<double>();
    s.limits.pids = limits.at("pids").get<int64_t>();
    s.labels = j.at("labels").get<std::map<std::string, std::string>>();
    s.env = j.at("env").get<std::map<std::string, std::string>>();
    s.image = j.at("image").get<std::string>();
    s.created_at = absl::FromUnixNanos(j.at("created_at_unix_ns").get<int64_t>());
    if (j.contains("expires_at_unix_ns")) {
      s.expires_at = absl::FromUnixNanos(j.at("expires_at_unix_ns").get<int64_t>());
    }
    s.pooled = j.value("pooled", false);
    s.tenant = j.value("tenant", std::string());
    s.seq = j.value("seq", uint64_t{0});
    s.init_takes_nproc = j.value("init_takes_nproc", false);
    return s;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("state: ", e.what()));
  }
}

absl::Status WriteStateFile(const std::string& dir, const PersistedSandbox& state) {
  if (state.seq == 0) return absl::InternalError("state write numbers start at 1");
  const uint64_t slot = state.seq % 2;
  RETURN_IF_ERROR(WriteInPlace(SlotPath(dir, slot), FrameSlot(SerializeState(state))));
  if (state.seq == 1) {
    const std::string other = SlotPath(dir, 1 - slot);
    UniqueFd fd(::open(other.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return ErrnoStatus(errno, absl::StrCat("creating ", other));
  }
  return absl::OkStatus();
}

absl::StatusOr<PersistedSandbox> ReadStateFile(const std::string& dir) {
  std::optional<PersistedSandbox> latest;
  absl::Status invalid;  // of a slot that was written but is not valid
  for (uint64_t slot : {0, 1}) {
    absl::StatusOr<PersistedSandbox> state = ReadSlot(dir, slot);
    if (state.ok()) {
      if (!latest || state->seq > latest->seq) latest = std::move(*state);
    } else if (!absl::IsNotFound(state.status())) {
      invalid = state.status();
    }
  }
  if (latest) return *std::move(latest);
  if (!invalid.ok()) return invalid;
  return ReadLegacyStateFile(dir);
}

}  // namespace sbx::manager
