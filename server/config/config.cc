#include "server/config/config.h"

#include <openssl/sha.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/status.h"
#include "server/manager/validation.h"

namespace sbx::config {
namespace {

absl::Status KeyError(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config key '", key, "': ", what));
}

std::string Join(absl::string_view prefix, absl::string_view key) {
  return prefix.empty() ? std::string(key) : absl::StrCat(prefix, ".", key);
}

// Refuses keys of the map `node` (at `prefix`) that are not in `known`.
absl::Status CheckKeys(const YAML::Node& node, absl::string_view prefix,
                       const std::set<std::string>& known) {
  if (!node.IsMap()) {
    return prefix.empty() ? absl::InvalidArgumentError("config: the document must be a map")
                          : KeyError(prefix, "must be a map");
  }
  for (const auto& entry : node) {
    const std::string key = entry.first.Scalar();
    if (!known.count(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config: unknown key '", Join(prefix, key), "' (known: ", absl::StrJoin(known, ", "),
          ")"));
    }
  }
  return absl::OkStatus();
}

// Typed readers: leave `out` alone when the key is absent or null.
absl::Status ReadString(const YAML::Node& map, absl::string_view prefix, const char* key,
                        std::string* out) {
  const YAML::Node v = map[key];
  if (!v || v.IsNull()) return absl::OkStatus();
  if (!v.IsScalar()) return KeyError(Join(prefix, key), "must be a string");
  *out = v.Scalar();
  return absl::OkStatus();
}

template <typename T>
absl::Status ReadNumber(const YAML::Node& map, absl::string_view prefix, const char* key,
                        const char* type_name, T* out) {
  const YAML::Node v = map[key];
  if (!v || v.IsNull()) return absl::OkStatus();
  T value;
  if (!v.IsScalar() || !YAML::convert<T>::decode(v, value)) {
    return KeyError(Join(prefix, key),
                    absl::StrCat("must be ", type_name, ", not '", v.IsScalar() ? v.Scalar() : "(a collection)", "'"));
  }
  if constexpr (std::is_floating_point_v<T>) {
    if (!std::isfinite(value)) return KeyError(Join(prefix, key), "must be a finite number");
  }
  *out = value;
  return absl::OkStatus();
}

absl::Status ReadBool(const YAML::Node& map, absl::string_view prefix, const char* key,
                      bool* out) {
  return ReadNumber(map, prefix, key, "true or false", out);
}

absl::Status ReadSize(const YAML::Node& map, absl::string_view prefix, const char* key,
                      int64_t* out) {
  const YAML::Node v = map[key];
  if (!v || v.IsNull()) return absl::OkStatus();
  if (!v.IsScalar()) return KeyError(Join(prefix, key), "must be a size such as 512M");
  absl::StatusOr<int64_t> size = manager::ParseSize(v.Scalar());
  if (!size.ok()) {
    return KeyError(Join(prefix, key),
                    absl::StrCat("bad size '", v.Scalar(), "' (use bytes or K, M, G, T)"));
  }
  *out = *size;
  return absl::OkStatus();
}

absl::Status ReadDuration(const YAML::Node& map, absl::string_view prefix, const char* key,
                          absl::Duration* out) {
  const YAML::Node v = map[key];
  if (!v || v.IsNull()) return absl::OkStatus();
  absl::Duration d;
  if (!v.IsScalar() || !absl::ParseDuration(v.Scalar(), &d)) {
    return KeyError(Join(prefix, key),
                    absl::StrCat("must be a duration such as 10s or 500ms, not '",
                                 v.IsScalar() ? v.Scalar() : "(a collection)", "'"));
  }
  *out = d;
  return absl::OkStatus();
}

absl::Status ReadStringList(const YAML::Node& map, absl::string_view prefix, const char* key,
                            std::vector<std::string>* out) {
  const YAML::Node v = map[key];
  if (!v || v.IsNull()) return absl::OkStatus();
  if (!v.IsSequence()) return KeyError(Join(prefix, key), "must be a list of strings");
  for (const auto& item : v) {
    if (!item.IsScalar()) return KeyError(Join(prefix, key), "must be a list of strings");
    out->push_back(item.Scalar());
  }
  return absl::OkStatus();
}

// A sub-map such as `tls:`; absent is an empty map.
absl::StatusOr<YAML::Node> Section(const YAML::Node& doc, const char* key,
                                   const std::set<std::string>& known) {
  const YAML::Node v = doc[key];
  if (!v || v.IsNull()) return YAML::Node(YAML::NodeType::Map);
  RETURN_IF_ERROR(CheckKeys(v, key, known));
  return v;
}

absl::StatusOr<Tenant> ParseTenant(const std::string& name, const YAML::Node& node) {
  const std::string prefix = absl::StrCat("tenants.", name);
  Tenant t;
  t.name = name;
  if (node && !node.IsNull()) {
    RETURN_IF_ERROR(CheckKeys(node, prefix,
                              {"tokens", "client_names", "max_sandboxes", "max_memory",
                               "max_cpus"}));
    RETURN_IF_ERROR(ReadStringList(node, prefix, "tokens", &t.token_sha256));
    RETURN_IF_ERROR(ReadStringList(node, prefix, "client_names", &t.client_names));
    RETURN_IF_ERROR(ReadNumber(node, prefix, "max_sandboxes", "an integer", &t.max_sandboxes));
    RETURN_IF_ERROR(ReadSize(node, prefix, "max_memory", &t.max_memory_bytes));
    RETURN_IF_ERROR(ReadNumber(node, prefix, "max_cpus", "a number", &t.max_cpus));
  }
  for (std::string& hash : t.token_sha256) hash = absl::AsciiStrToLower(hash);
  return t;
}

absl::Status ParseYamlInto(const YAML::Node& doc, Config& c) {
  RETURN_IF_ERROR(CheckKeys(doc, "",
                            {"socket", "listen", "insecure_tcp", "metrics_listen", "node",
                             "state_dir", "uid_base", "max_sandboxes", "pool_size", "init_path",
                             "shutdown_grace", "tls", "cgroup", "defaults", "auth", "tenants", "log"}));
  RETURN_IF_ERROR(ReadString(doc, "", "socket", &c.socket));
  RETURN_IF_ERROR(ReadString(doc, "", "listen", &c.listen));
  RETURN_IF_ERROR(ReadBool(doc, "", "insecure_tcp", &c.insecure_tcp));
  RETURN_IF_ERROR(ReadString(doc, "", "metrics_listen", &c.metrics_listen));
  RETURN_IF_ERROR(ReadString(doc, "", "node", &c.node));
  RETURN_IF_ERROR(ReadString(doc, "", "state_dir", &c.state_dir));
  RETURN_IF_ERROR(ReadNumber(doc, "", "uid_base", "an unsigned 32-bit integer", &c.uid_base));
  RETURN_IF_ERROR(ReadNumber(doc, "", "max_sandboxes", "an integer", &c.max_sandboxes));
  RETURN_IF_ERROR(ReadNumber(doc, "", "pool_size", "an integer", &c.pool_size));
  RETURN_IF_ERROR(ReadString(doc, "", "init_path", &c.init_path));
  RETURN_IF_ERROR(ReadDuration(doc, "", "shutdown_grace", &c.shutdown_grace));

  ASSIGN_OR_RETURN(YAML::Node tls, Section(doc, "tls", {"cert", "key", "client_ca"}));
  RETURN_IF_ERROR(ReadString(tls, "tls", "cert", &c.tls_cert));
  RETURN_IF_ERROR(ReadString(tls, "tls", "key", &c.tls_key));
  RETURN_IF_ERROR(ReadString(tls, "tls", "client_ca", &c.tls_client_ca));

  ASSIGN_OR_RETURN(YAML::Node cgroup, Section(doc, "cgroup", {"root", "version", "parent"}));
  RETURN_IF_ERROR(ReadString(cgroup, "cgroup", "root", &c.cgroup_root));
  RETURN_IF_ERROR(ReadString(cgroup, "cgroup", "version", &c.cgroup_version));
  RETURN_IF_ERROR(ReadString(cgroup, "cgroup", "parent", &c.cgroup_parent));

  ASSIGN_OR_RETURN(YAML::Node defaults,
                   Section(doc, "defaults",
                           {"memory", "cpus", "pids", "tmp_size", "work_size", "shm_size"}));
  RETURN_IF_ERROR(ReadSize(defaults, "defaults", "memory", &c.default_memory_bytes));
  RETURN_IF_ERROR(ReadNumber(defaults, "defaults", "cpus", "a number", &c.default_cpus));
  RETURN_IF_ERROR(ReadNumber(defaults, "defaults", "pids", "an integer", &c.default_pids));
  RETURN_IF_ERROR(ReadSize(defaults, "defaults", "tmp_size", &c.tmp_bytes));
  RETURN_IF_ERROR(ReadSize(defaults, "defaults", "work_size", &c.work_bytes));
  RETURN_IF_ERROR(ReadSize(defaults, "defaults", "shm_size", &c.shm_bytes));

  ASSIGN_OR_RETURN(YAML::Node auth, Section(doc, "auth", {"default_tenant"}));
  RETURN_IF_ERROR(ReadString(auth, "auth", "default_tenant", &c.default_tenant));

  const YAML::Node tenants = doc["tenants"];
  if (tenants && !tenants.IsNull()) {
    if (!tenants.IsMap()) return KeyError("tenants", "must be a map of tenant name to settings");
    for (const auto& entry : tenants) {
      ASSIGN_OR_RETURN(Tenant t, ParseTenant(entry.first.Scalar(), entry.second));
      c.tenants.push_back(std::move(t));
    }
  }

  ASSIGN_OR_RETURN(YAML::Node log, Section(doc, "log", {"level", "json", "access"}));
  RETURN_IF_ERROR(ReadString(log, "log", "level", &c.log_level));
  RETURN_IF_ERROR(ReadBool(log, "log", "json", &c.log_json));
  RETURN_IF_ERROR(ReadBool(log, "log", "access", &c.access_log));
  return absl::OkStatus();
}

bool IsLowerHex(absl::string_view s) {
  for (char ch : s) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return false;
  }
  return true;
}

absl::Status ValidateTenants(const Config& c) {
  std::set<std::string> names, hashes, client_names;
  for (const Tenant& t : c.tenants) {
    const std::string prefix = absl::StrCat("tenants.", t.name);
    if (t.name.empty() || t.name.size() > 64) {
      return KeyError("tenants", "a tenant name must be 1 to 64 characters");
    }
    if (!names.insert(t.name).second) return KeyError(prefix, "defined twice");
    for (const std::string& h : t.token_sha256) {
      if (h.size() != 64 || !IsLowerHex(h)) {
        return KeyError(prefix + ".tokens",
                        "each entry must be the sha256 of a token in hex (64 digits), "
                        "e.g. from `printf %s TOKEN | sha256sum`");
      }
      if (!hashes.insert(h).second) {
        return KeyError(prefix + ".tokens", "a token hash is listed for two tenants");
      }
    }
    for (const std::string& n : t.client_names) {
      if (n.empty()) return KeyError(prefix + ".client_names", "empty name");
      if (!client_names.insert(n).second) {
        return KeyError(prefix + ".client_names",
                        absl::StrCat("'", n, "' is listed for two tenants"));
      }
    }
    if (t.max_sandboxes < 0) return KeyError(prefix + ".max_sandboxes", "must be >= 0");
    if (t.max_memory_bytes < 0) return KeyError(prefix + ".max_memory", "must be >= 0");
    if (t.max_cpus < 0) return KeyError(prefix + ".max_cpus", "must be >= 0");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<YAML::Node> LoadString(const std::string& text) {
  try {
    YAML::Node doc = YAML::Load(text);
    if (doc.IsNull()) return YAML::Node(YAML::NodeType::Map);
    return doc;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: not valid YAML: ", e.what()));
  }
}

absl::StatusOr<YAML::Node> LoadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return ErrnoStatus(errno, absl::StrCat("reading config ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<YAML::Node> doc = LoadString(text.str());
  if (!doc.ok()) return Annotate(doc.status(), path);
  return doc;
}

absl::Status SetKey(YAML::Node& doc, absl::string_view dotted_key, const std::string& value) {
  std::vector<std::string> parts = absl::StrSplit(dotted_key, '.');
  try {
    if (!doc.IsMap()) doc = YAML::Node(YAML::NodeType::Map);
    std::vector<YAML::Node> path{doc};
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      YAML::Node next = path.back()[parts[i]];
      if (!next.IsMap()) next = YAML::Node(YAML::NodeType::Map);
      path.back()[parts[i]] = next;
      path.push_back(next);
    }
    path.back()[parts.back()] = value;
  } catch (const YAML::Exception& e) {
    return KeyError(dotted_key, e.what());
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> Parse(const YAML::Node& doc) {
  Config c;
  try {
    RETURN_IF_ERROR(ParseYamlInto(doc, c));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
  return c;
}

absl::Status Validate(const Config& c) {
  if (c.socket.empty()) return KeyError("socket", "must not be empty");
  if (!c.listen.empty()) {
    const bool has_tls = !c.tls_cert.empty() || !c.tls_key.empty();
    if (has_tls && (c.tls_cert.empty() || c.tls_key.empty())) {
      return KeyError(c.tls_cert.empty() ? "tls.cert" : "tls.key",
                      "tls.cert and tls.key go together");
    }
    if (!has_tls && !c.insecure_tcp) {
      return KeyError("listen",
                      "a TCP listener needs tls.cert and tls.key (or insecure_tcp: true, "
                      "for development or router-only networks: plain and unauthenticated)");
    }
    if (has_tls && c.insecure_tcp) {
      return KeyError("insecure_tcp", "must not be set together with tls.cert / tls.key");
    }
  }
  if (!c.tls_client_ca.empty() && c.tls_cert.empty()) {
    return KeyError("tls.client_ca", "needs tls.cert and tls.key (mTLS is on the TCP listener)");
  }
  if (c.max_sandboxes < 1 || c.max_sandboxes > 65536) {
    return KeyError("max_sandboxes", "must be in [1, 65536]");
  }
  if (c.pool_size < 0 || c.pool_size > 1024) return KeyError("pool_size", "must be in [0, 1024]");
  if (c.shutdown_grace < absl::ZeroDuration() || c.shutdown_grace > absl::Hours(1)) {
    return KeyError("shutdown_grace", "must be in [0s, 1h]");
  }
  if (c.cgroup_version != "auto" && c.cgroup_version != "v1" && c.cgroup_version != "v2") {
    return KeyError("cgroup.version", "must be auto, v1 or v2");
  }
  if (c.cgroup_parent.empty()) return KeyError("cgroup.parent", "must not be empty");
  if (!c.node.empty() && !manager::IsNodeName(c.node)) {
    return KeyError("node", "1 to 44 of [a-z0-9.-], starting and ending with a letter or digit");
  }
  if (c.default_memory_bytes <= 0) return KeyError("defaults.memory", "must be > 0");
  if (c.default_cpus <= 0) return KeyError("defaults.cpus", "must be > 0");
  if (c.default_pids <= 0) return KeyError("defaults.pids", "must be > 0");
  if (c.tmp_bytes <= 0) return KeyError("defaults.tmp_size", "must be > 0");
  if (c.work_bytes <= 0) return KeyError("defaults.work_size", "must be > 0");
  if (c.shm_bytes <= 0) return KeyError("defaults.shm_size", "must be > 0");
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn",
                                                "error", "critical", "off"};
  if (!kLevels.count(c.log_level)) {
    return KeyError("log.level", "must be one of trace, debug, info, warn, error, critical, off");
  }
  if (c.default_tenant.empty()) return KeyError("auth.default_tenant", "must not be empty");
  return ValidateTenants(c);
}

std::string FormatSize(int64_t bytes) {
  static constexpr struct {
    int shift;
    char suffix;
  } kUnits[] = {{40, 'T'}, {30, 'G'}, {20, 'M'}, {10, 'K'}};
  for (const auto& u : kUnits) {
    const int64_t unit = int64_t{1} << u.shift;
    if (bytes >= unit && bytes % unit == 0) return absl::StrCat(bytes / unit, std::string(1, u.suffix));
  }
  return absl::StrCat(bytes);
}

std::string ToYaml(const Config& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "socket" << YAML::Value << c.socket;
  out << YAML::Key << "listen" << YAML::Value << c.listen;
  out << YAML::Key << "insecure_tcp" << YAML::Value << c.insecure_tcp;
  out << YAML::Key << "tls" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "cert" << YAML::Value << c.tls_cert;
  out << YAML::Key << "key" << YAML::Value << c.tls_key;
  out << YAML::Key << "client_ca" << YAML::Value << c.tls_client_ca;
  out << YAML::EndMap;
  out << YAML::Key << "metrics_listen" << YAML::Value << c.metrics_listen;
  out << YAML::Key << "node" << YAML::Value << c.node;
  out << YAML::Key << "state_dir" << YAML::Value << c.state_dir;
  out << YAML::Key << "uid_base" << YAML::Value << c.uid_base;
  out << YAML::Key << "max_sandboxes" << YAML::Value << c.max_sandboxes;
  out << YAML::Key << "pool_size" << YAML::Value << c.pool_size;
  out << YAML::Key << "init_path" << YAML::Value << c.init_path;
  out << YAML::Key << "shutdown_grace" << YAML::Value << absl::FormatDuration(c.shutdown_grace);
  out << YAML::Key << "cgroup" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "root" << YAML::Value << c.cgroup_root;
  out << YAML::Key << "version" << YAML::Value << c.cgroup_version;
  out << YAML::Key << "parent" << YAML::Value << c.cgroup_parent;
  out << YAML::EndMap;
  out << YAML::Key << "defaults" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "memory" << YAML::Value << FormatSize(c.default_memory_bytes);
  out << YAML::Key << "cpus" << YAML::Value << c.default_cpus;
  out << YAML::Key << "pids" << YAML::Value << c.default_pids;
  out << YAML::Key << "tmp_size" << YAML::Value << FormatSize(c.tmp_bytes);
  out << YAML::Key << "work_size" << YAML::Value << FormatSize(c.work_bytes);
  out << YAML::Key << "shm_size" << YAML::Value << FormatSize(c.shm_bytes);
  out << YAML::EndMap;
  out << YAML::Key << "auth" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "default_tenant" << YAML::Value << c.default_tenant;
  out << YAML::EndMap;
  out << YAML::Key << "tenants" << YAML::Value << YAML::BeginMap;
  for (const Tenant& t : c.tenants) {
    out << YAML::Key << t.name << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "tokens" << YAML::Value << YAML::Flow << t.token_sha256;
    out << YAML::Key << "client_names" << YAML::Value << YAML::Flow << t.client_names;
    out << YAML::Key << "max_sandboxes" << YAML::Value << t.max_sandboxes;
    out << YAML::Key << "max_memory" << YAML::Value << FormatSize(t.max_memory_bytes);
    out << YAML::Key << "max_cpus" << YAML::Value << t.max_cpus;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  out << YAML::Key << "log" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "level" << YAML::Value << c.log_level;
  out << YAML::Key << "json" << YAML::Value << c.log_json;
  out << YAML::Key << "access" << YAML::Value << c.access_log;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string TokenSha256(absl::string_view token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  std::string hex;
  hex.reserve(2 * sizeof(digest));
  static constexpr char kDigits[] = "0123456789abcdef";
  for (unsigned char b : digest) {
    hex.push_back(kDigits[b >> 4]);
    hex.push_back(kDigits[b & 0xf]);
  }
  return hex;
}

}  // namespace sbx::config
