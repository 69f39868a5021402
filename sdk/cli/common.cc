#include "cli/common.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sbx/units.h"

namespace sbx::cli {

std::string ServerAddress(const GlobalArgs& global) {
  return global.server.empty() ? DefaultAddress() : global.server;
}

namespace {

absl::Status ReadPemFile(const std::string& flag, const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Client> ConnectClient(const GlobalArgs& global,
                                     ClientOptions options) {
  options.token = global.token;
  options.tls = global.tls || !global.tls_ca.empty() || !global.tls_cert.empty() ||
                !global.tls_key.empty();
  if (!global.tls_ca.empty()) {
    if (absl::Status s = ReadPemFile("--tls-ca", global.tls_ca, &options.tls_ca_pem); !s.ok()) {
      return s;
    }
  }
  if (global.tls_cert.empty() != global.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!global.tls_cert.empty()) {
    if (absl::Status s = ReadPemFile("--tls-cert", global.tls_cert, &options.tls_cert_pem);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ReadPemFile("--tls-key", global.tls_key, &options.tls_key_pem);
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<Client> client = Client::Connect(ServerAddress(global), options);
  if (client.ok()) {
    // A copy is kept until main's _exit: when the verb's client goes away,
    // its channel then stays instead of being torn down, which made the
    // process wait milliseconds for gRPC's threads to finish their part.
    static std::vector<Client>* const kept = new std::vector<Client>();
    kept->push_back(*client);
  }
  return client;
}

int ReportApiError(const GlobalArgs& global, const absl::Status& status) {
  if (status.code() == absl::StatusCode::kUnavailable) {
    std::cerr << "sbx: cannot reach sbxd at " << ServerAddress(global) << ": "
              << status.message() << "\n";
  } else {
    std::cerr << "sbx: " << status.message() << "\n";
  }
  return kExitApiError;
}

int ReportUsageError(absl::string_view message) {
  std::cerr << "sbx: " << message << "\n";
  return kExitUsage;
}

absl::StatusOr<std::map<std::string, std::string>> ParseKeyValues(
    const std::vector<std::string>& items, absl::string_view flag) {
  std::map<std::string, std::string> out;
  for (const std::string& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid ", flag, " \"", item, "\": expected KEY=VALUE"));
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

absl::StatusOr<Limits> ParseLimitArgs(const LimitArgs& args) {
  Limits limits;
  if (!args.memory.empty()) {
    absl::StatusOr<int64_t> bytes = ParseSize(args.memory);
    if (!bytes.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--memory: ", bytes.status().message()));
    }
    if (*bytes <= 0) {
      return absl::InvalidArgumentError("--memory must be positive");
    }
    limits.memory_bytes = *bytes;
  }
  if (!args.cpus.empty()) {
    double cpus;
    if (!absl::SimpleAtod(args.cpus, &cpus) || !std::isfinite(cpus) ||
        cpus <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --cpus \"", args.cpus, "\": expected a positive number"));
    }
    limits.cpus = cpus;
  }
  if (!args.pids.empty()) {
    int64_t pids;
    if (!absl::SimpleAtoi(args.pids, &pids) || pids <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid --pids \"", args.pids, "\": expected a positive integer"));
    }
    limits.pids = pids;
  }
  return limits;
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string StateName(v1::SandboxState state) {
  std::string name = v1::SandboxState_Name(state);
  constexpr absl::string_view kPrefix = "SANDBOX_STATE_";
  if (absl::StartsWith(name, kPrefix)) name.erase(0, kPrefix.size());
  return name.empty() ? absl::StrCat("STATE_", static_cast<int>(state)) : name;
}

}  // namespace sbx::cli
