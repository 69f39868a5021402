#include "server/manager/validation.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace sbx::manager {
namespace {

bool HasNul(absl::string_view s) { return s.find('\0') != absl::string_view::npos; }

bool IsLabelKeyChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
         c == '-' || c == '/';
}

// Parses "", "root" or a decimal uid 0..65535.
absl::StatusOr<uint32_t> ParseUser(const std::string& user) {
  if (user.empty()) return engine::kSandboxUid;
  if (user == "root") return 0u;
  uint32_t uid;
  if (user.size() > 5 || !absl::SimpleAtoi(user, &uid) ||
      !absl::ascii_isdigit(static_cast<unsigned char>(user[0])) ||
      uid >= engine::kIdsPerSandbox) {
    return absl::InvalidArgumentError(absl::StrCat(
        "user: '", user, "' is not \"root\" or a uid between 0 and ",
        engine::kIdsPerSandbox - 1));
  }
  return uid;
}

// An ordered environment in which a later Set replaces an earlier value.
class EnvBuilder {
 public:
  void Set(const std::string& key, const std::string& value) {
    auto [it, inserted] = index_.emplace(key, entries_.size());
    if (inserted) {
      entries_.push_back(absl::StrCat(key, "=", value));
    } else {
      entries_[it->second] = absl::StrCat(key, "=", value);
    }
  }
  std::vector<std::string> Take() { return std::move(entries_); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<std::string> entries_;
};

}  // namespace

const char* SandboxStateName(SandboxState state) {
  switch (state) {
    case SandboxState::kCreating:
      return "CREATING";
    case SandboxState::kRunning:
      return "RUNNING";
    case SandboxState::kDead:
      return "DEAD";
    case SandboxState::kDestroying:
      return "DESTROYING";
  }
  return "UNKNOWN";
}

HostResources HostResources::Detect() {
  HostResources host;
  long pages = ::sysconf(_SC_PHYS_PAGES);
  long page_size = ::sysconf(_SC_PAGESIZE);
  host.memory_bytes = (pages > 0 && page_size > 0)
                          ? static_cast<int64_t>(pages) * page_size
                          : std::numeric_limits<int64_t>::max();
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  host.cpus = cpus > 0 ? static_cast<int>(cpus) : 1;
  return host;
}

absl::Status ValidateLimits(const engine::Limits& limits, const HostResources& host) {
  if (limits.memory_bytes) {
    int64_t m = *limits.memory_bytes;
    if (m < kMinMemoryBytes || m > host.memory_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("limits.memory_bytes: ", m, " is outside [", kMinMemoryBytes,
                       ", ", host.memory_bytes, "] (8 MiB to the host's RAM)"));
    }
  }
  if (limits.cpus) {
    double c = *limits.cpus;
    if (!std::isfinite(c) || c < kMinCpus || c > host.cpus) {
      return absl::InvalidArgumentError(absl::StrCat(
          "limits.cpus: ", c, " is outside [", kMinCpus, ", ", host.cpus,
          "] (the host has ", host.cpus, " cpus)"));
    }
  }
  if (limits.pids) {
    int64_t p = *limits.pids;
    if (p < 1 || p > kMaxPids) {
      return absl::InvalidArgumentError(
          absl::StrCat("limits.pids: ", p, " is outside [1, ", kMaxPids, "]"));
    }
  }
  return absl::OkStatus();
}

engine::Limits WithDefaults(const engine::Limits& limits, const ManagerOptions& options) {
  engine::Limits out = limits;
  if (!out.memory_bytes) out.memory_bytes = options.default_memory_bytes;
  if (!out.cpus) out.cpus = options.default_cpus;
  if (!out.pids) out.pids = options.default_pids;
  return out;
}

engine::Limits MergeLimits(const engine::Limits& base, const engine::Limits& update) {
  engine::Limits out = base;
  if (update.memory_bytes) out.memory_bytes = update.memory_bytes;
  if (update.cpus) out.cpus = update.cpus;
  if (update.pids) out.pids = update.pids;
  return out;
}

absl::Status ValidateLabels(const std::map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "labels: ", labels.size(), " entries, at most ", kMaxLabels, " allowed"));
  }
  for (const auto& [key, value] : labels) {
    if (key.empty() || key.size() > kMaxLabelKeyLength) {
      return absl::InvalidArgumentError(absl::StrCat(
          "labels: key '", key, "' must have 1 to ", kMaxLabelKeyLength, " characters"));
    }
    for (char c : key) {
      if (!IsLabelKeyChar(c)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "labels: key '", absl::CHexEscape(key),
            "' may only contain letters, digits and _ . - /"));
      }
    }
    if (value.size() > kMaxLabelValueLength || HasNul(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("labels: value of '", key, "' must have at most ",
                       kMaxLabelValueLength, " characters and no NUL byte"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateEnv(const std::map<std::string, std::string>& env,
                         absl::string_view field) {
  if (env.size() > kMaxEnvEntries) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": ", env.size(), " entries, at most ", kMaxEnvEntries, " allowed"));
  }
  for (const auto& [key, value] : env) {
    if (key.empty() || key.find('=') != std::string::npos || HasNul(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": variable name '", absl::CHexEscape(key),
          "' must be non-empty without '=' or NUL"));
    }
    if (HasNul(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": value of ", key, " contains a NUL byte"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTtl(absl::Duration ttl) {
  if (ttl < absl::ZeroDuration() || ttl > kMaxTtl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ttl: ", absl::FormatDuration(ttl), " is outside [0s, 30 days]"));
  }
  return absl::OkStatus();
}

absl::Status ValidateImage(const std::string& image) {
  if (image.empty() || image == "host") return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "image: '", absl::CHexEscape(image), "' is unknown; only \"host\" exists"));
}

absl::Status ValidateCreateParams(const CreateParams& params, const HostResources& host) {
  if (auto s = ValidateImage(params.image); !s.ok()) return s;
  if (auto s = ValidateLimits(params.limits, host); !s.ok()) return s;
  if (auto s = ValidateEnv(params.env, "env"); !s.ok()) return s;
  if (auto s = ValidateLabels(params.labels); !s.ok()) return s;
  return ValidateTtl(params.ttl);
}

bool MatchesSelector(const std::map<std::string, std::string>& labels,
                     const std::map<std::string, std::string>& selector) {
  for (const auto& [key, value] : selector) {
    auto it = labels.find(key);
    if (it == labels.end() || it->second != value) return false;
  }
  return true;
}

absl::Status ValidateExecLimits(const ExecLimits& limits) {
  auto range = [](const std::optional<int64_t>& v, absl::string_view name, int64_t lo,
                  int64_t hi) -> absl::Status {
    if (!v || (*v >= lo && *v <= hi)) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("limits.", name, ": ", *v, " is outside [", lo, ", ", hi, "]"));
  };
  constexpr int64_t kTiB = int64_t{1} << 40;
  RETURN_IF_ERROR(range(limits.memory_bytes, "memory_bytes", kMinMemoryBytes, kTiB));
  RETURN_IF_ERROR(range(limits.pids, "pids", 1, kMaxPids));
  RETURN_IF_ERROR(range(limits.output_bytes, "output_bytes", 0, kTiB));
  RETURN_IF_ERROR(range(limits.file_size_bytes, "file_size_bytes", 1, kTiB));
  RETURN_IF_ERROR(range(limits.stack_bytes, "stack_bytes", 64 << 10, 1 << 30));
  RETURN_IF_ERROR(range(limits.open_files, "open_files", 3, 1 << 20));
  if (limits.cpu_time &&
      (*limits.cpu_time <= absl::ZeroDuration() || *limits.cpu_time > kMaxExecTimeout)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "limits.cpu_time: ", absl::FormatDuration(*limits.cpu_time),
        " is outside (0s, 30 days]"));
  }
  return absl::OkStatus();
}

int64_t TaskLimitFor(int64_t pids_limit, uint32_t uid) {
  if (pids_limit <= 0) return 0;
  // At least 1, the command itself: with pids 2 or less, what it may fork
  // beyond that is the pids cgroup's to refuse.
  return uid == 0 ? pids_limit : std::max<int64_t>(pids_limit - 2, 1);
}

absl::StatusOr<engine::ExecOptions> BuildExecOptions(
    const std::string& sandbox_id, const std::map<std::string, std::string>& sandbox_env,
    const ExecParams& params) {
  if (params.argv.empty()) {
    return absl::InvalidArgumentError("argv: must not be empty");
  }
  if (params.argv.size() > kMaxArgs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "argv: ", params.argv.size(), " arguments, at most ", kMaxArgs, " allowed"));
  }
  if (params.argv[0].empty()) {
    return absl::InvalidArgumentError("argv[0]: must not be empty");
  }
  for (size_t i = 0; i < params.argv.size(); ++i) {
    if (HasNul(params.argv[i])) {
      return absl::InvalidArgumentError(absl::StrCat("argv[", i, "]: contains a NUL byte"));
    }
  }
  if (auto s = ValidateEnv(params.env, "env"); !s.ok()) return s;
  if (HasNul(params.cwd)) return absl::InvalidArgumentError("cwd: contains a NUL byte");
  if (!params.cwd.empty() && params.cwd[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("cwd: '", params.cwd, "' is not an absolute path"));
  }
  if (params.timeout < absl::ZeroDuration() || params.timeout > kMaxExecTimeout) {
    return absl::InvalidArgumentError(absl::StrCat(
        "timeout: ", absl::FormatDuration(params.timeout), " is outside [0s, 30 days]"));
  }
  absl::StatusOr<uint32_t> uid = ParseUser(params.user);
  if (!uid.ok()) return uid.status();
  RETURN_IF_ERROR(ValidateExecLimits(params.limits));

  engine::ExecOptions options;
  options.fsize_bytes = params.limits.file_size_bytes.value_or(0);
  options.stack_bytes = params.limits.stack_bytes.value_or(0);
  options.open_files = params.limits.open_files.value_or(0);
  options.argv = params.argv;
  options.uid = *uid;
  options.gid = *uid;
  options.cwd = params.cwd.empty() ? engine::kWorkDir : params.cwd;
  options.tty = params.tty;
  if (params.rows > 0) options.rows = params.rows;
  if (params.cols > 0) options.cols = params.cols;
  options.timeout_ms = absl::ToInt64Milliseconds(params.timeout);
  if (params.timeout > absl::ZeroDuration() && options.timeout_ms == 0) {
    options.timeout_ms = 1;
  }

  const bool root = *uid == 0;
  const std::string user_name = root ? "root"
                                : *uid == engine::kSandboxUid
                                    ? kDefaultUserName
                                    : absl::StrCat(*uid);
  EnvBuilder env;
  env.Set("PATH", kDefaultPath);
  env.Set("HOME", root ? "/root" : engine::kWorkDir);
  env.Set("USER", user_name);
  env.Set("LOGNAME", user_name);
  env.Set("LANG", "C.UTF-8");
  if (params.tty) env.Set("TERM", "xterm-256color");
  env.Set("HOSTNAME", sandbox_id);
  for (const auto& [k, v] : sandbox_env) env.Set(k, v);
  for (const auto& [k, v] : params.env) env.Set(k, v);
  options.env = env.Take();

  size_t bytes = 0;
  for (const auto& a : options.argv) bytes += a.size() + 1;
  for (const auto& e : options.env) bytes += e.size() + 1;
  if (bytes > kMaxArgvEnvBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "argv and env: ", bytes, " bytes, at most ", kMaxArgvEnvBytes, " allowed"));
  }
  return options;
}

std::string NewSandboxId(absl::string_view node) {
  unsigned char bytes[8];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = ::getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // getrandom(2) without GRND_NONBLOCK only fails on EINTR or a kernel
      // without it (< 3.17), which the namespaces we need rule out.
      std::abort();
    }
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "sb-";
  for (unsigned char b : bytes) {
    id.push_back(kHex[b >> 4]);
    id.push_back(kHex[b & 0xf]);
  }
  if (!node.empty()) absl::StrAppend(&id, ".", node);
  return id;
}

bool IsSandboxId(absl::string_view id) {
  if (id.size() > 19) {
    if (id[19] != '.' || !IsNodeName(id.substr(20))) return false;
    id = id.substr(0, 19);
  }
  if (id.size() != 19 || id.substr(0, 3) != "sb-") return false;
  for (char c : id.substr(3)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsNodeName(absl::string_view name) {
  // 44: the id "sb-<16>.<node>" is the sandbox's hostname (at most 64).
  if (name.empty() || name.size() > 44) return false;
  auto alnum = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'); };
  if (!alnum(name.front()) || !alnum(name.back())) return false;
  for (char c : name) {
    if (!alnum(c) && c != '-' && c != '.') return false;
  }
  return true;
}

absl::StatusOr<int64_t> ParseSize(absl::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not a size (examples: 1048576, 64K, 512M, 2G)"));
  };
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  if (digits == 0) return bad();
  uint64_t value;
  if (!absl::SimpleAtoi(text.substr(0, digits), &value)) return bad();
  std::string suffix = absl::AsciiStrToLower(text.substr(digits));
  int shift = 0;
  if (!suffix.empty() && suffix != "b") {
    static constexpr absl::string_view kUnits = "kmgtp";
    size_t pos = kUnits.find(suffix[0]);
    if (pos == absl::string_view::npos) return bad();
    shift = 10 * static_cast<int>(pos + 1);
    absl::string_view rest = absl::string_view(suffix).substr(1);
    if (!rest.empty() && rest != "b" && rest != "i" && rest != "ib") return bad();
  }
  if (value > (static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) >> shift)) {
    return absl::InvalidArgumentError(absl::StrCat("size '", text, "' is too large"));
  }
  return static_cast<int64_t>(value << shift);
}

}  // namespace sbx::manager
