// sbxd's configuration: every setting of the daemon, read from one YAML file
// (--config, default /etc/sbx/sbxd.yaml when it exists) with command-line
// flags laid over it. docs/sbxd.example.yaml documents every key.
//
// The flow in main: LoadFile (or an empty document) -> SetKey for every flag
// given -> Parse (types, sizes, unknown keys) -> Validate (cross-key rules)
// -> the daemon; ToYaml prints the effective result (--print-config).
//
// Errors name the key ("config key 'defaults.memory': ..."), so a bad file
// is refused at start with a message that says what to fix. yaml-cpp's
// exceptions never leave this module.
#ifndef SBX_SERVER_CONFIG_CONFIG_H_
#define SBX_SERVER_CONFIG_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace sbx::config {

inline constexpr char kDefaultConfigPath[] = "/etc/sbx/sbxd.yaml";

// One tenant: who it is (credentials) and what it may use (quotas).
struct Tenant {
  std::string name;
  // sha256 of each bearer token, lowercase hex; never the token itself.
  std::vector<std::string> token_sha256;
  // Client certificate subject CNs or SANs (DNS, URI, email) that are this
  // tenant when verified against tls.client_ca.
  std::vector<std::string> client_names;
  // Quotas; 0 = no limit of its own (the daemon's limits still hold).
  int max_sandboxes = 0;
  int64_t max_memory_bytes = 0;  // sum of the memory limits of its sandboxes
  double max_cpus = 0;           // sum of the cpu limits of its sandboxes
};

struct Config {
  // Listeners.
  std::string socket = "/run/sbx/sbxd.sock";  // owner-only (0600)
  std::string listen;                         // HOST:PORT; "" = none
  bool insecure_tcp = false;  // serve `listen` plain; callers = default tenant
  std::string tls_cert;       // PEM files for `listen`
  std::string tls_key;
  std::string tls_client_ca;  // set: accept client certificates (mTLS)
  std::string metrics_listen;  // HOST:PORT of /metrics; "" = off

  // Tenants. Unix-socket callers without a token are `default_tenant`.
  std::string default_tenant = "local";
  std::vector<Tenant> tenants;

  // The manager.
  std::string state_dir = "/var/lib/sbx";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string cgroup_version = "auto";
  std::string cgroup_parent = "sbx";
  uint32_t uid_base = 1000000000;
  int max_sandboxes = 1024;
  int pool_size = 4;
  // After SIGTERM, how long running calls may take to finish.
  absl::Duration shutdown_grace = absl::Seconds(10);
  std::string node;
  std::string init_path;  // "" = beside sbxd, else ../libexec/sbx/
  int64_t default_memory_bytes = int64_t{512} << 20;
  double default_cpus = 1;
  int64_t default_pids = 256;
  int64_t tmp_bytes = int64_t{64} << 20;
  int64_t work_bytes = int64_t{256} << 20;
  int64_t shm_bytes = int64_t{64} << 20;

  // Logs.
  std::string log_level = "info";
  bool log_json = false;
  bool access_log = true;  // one line per RPC
};

// Reads a YAML file into a document. NOT_FOUND if missing,
// INVALID_ARGUMENT (with the line) if it is not YAML.
absl::StatusOr<YAML::Node> LoadFile(const std::string& path);
absl::StatusOr<YAML::Node> LoadString(const std::string& text);

// Sets `dotted_key` (e.g. "defaults.memory") to the scalar `value` in `doc`,
// creating maps on the way: how a flag overrides the file.
absl::Status SetKey(YAML::Node& doc, absl::string_view dotted_key, const std::string& value);

// Builds a Config from a document: unknown keys, wrong types and bad sizes
// are INVALID_ARGUMENT naming the key. Missing keys keep their defaults.
absl::StatusOr<Config> Parse(const YAML::Node& doc);

// Rules between keys (TLS for TCP, unique credentials, ranges).
absl::Status Validate(const Config& config);

// The whole configuration, every key, as a YAML document that Parse reads
// back to the same Config.
std::string ToYaml(const Config& config);

// "512M" for exact binary multiples, else the number of bytes.
std::string FormatSize(int64_t bytes);

// sha256 of `token`, lowercase hex: what tenants[].tokens holds.
std::string TokenSha256(absl::string_view token);

}  // namespace sbx::config

#endif  // SBX_SERVER_CONFIG_CONFIG_H_
