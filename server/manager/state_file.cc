#include "server/manager/state_file.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/manager/validation.h"

namespace sbx::manager {
namespace {

using nlohmann::json;

std::string StatePath(const std::string& dir) { return absl::StrCat(dir, "/", kStateFileName); }

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
    return s;
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("state: ", e.what()));
  }
}

absl::Status WriteStateFile(const std::string& dir, const PersistedSandbox& state) {
  // A state file describes live processes, which a machine crash ends: an
  // fsync would buy nothing and costs a disk flush on every create.
  return WriteFileAtomically(StatePath(dir), SerializeState(state), 0600, Durability::kNoSync);
}

absl::StatusOr<PersistedSandbox> ReadStateFile(const std::string& dir) {
  const std::string path = StatePath(dir);
  ASSIGN_OR_RETURN(std::string text, ReadFileWrittenAtomically(path));
  absl::StatusOr<PersistedSandbox> state = ParseState(text);
  if (!state.ok()) return Annotate(state.status(), path);
  return state;
}

}  // namespace sbx::manager
