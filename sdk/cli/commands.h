// The verbs of the `sbx` CLI. main.cc parses the command line into these
// plain structs (so CLI11 is compiled once); each verb lives in its own
// cmd_<verb>.cc and returns the process exit code.
#ifndef SBX_SDK_CLI_COMMANDS_H_
#define SBX_SDK_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace sbx::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitApiError = 1;  // the daemon said no, or is away
inline constexpr int kExitUsage = 2;     // bad command line

struct GlobalArgs {
  std::string server;  // "" = $SBX_SERVER or the default socket
  std::string token;   // --token / $SBX_TOKEN: bearer token
  bool tls = false;    // --tls: TLS to a TCP address (implied by the --tls-* files)
  std::string tls_ca;    // --tls-ca / $SBX_TLS_CA: CA bundle that verifies sbxd
  std::string tls_cert;  // --tls-cert / $SBX_TLS_CERT: client certificate (mTLS)
  std::string tls_key;   // --tls-key / $SBX_TLS_KEY: its key
};

// Limits as typed; parsed and checked by ParseLimitArgs.
struct LimitArgs {
  std::string memory;
  std::string cpus;
  std::string pids;
};

struct CreateArgs {
  std::string image;
  LimitArgs limits;
  std::string ttl;
  std::vector<std::string> labels;  // k=v
  std::vector<std::string> env;     // K=V
};

struct ExecArgs {
  bool interactive = false;
  bool tty = false;
  std::string timeout;
  std::vector<std::string> env;
  std::string cwd;
  std::string user;
  std::string id;
  std::vector<std::string> argv;
};

struct LimitsArgs {
  std::string id;
  LimitArgs limits;
};

struct LsArgs {
  std::vector<std::string> labels;
  std::string nodes;  // "a,b,c": list each node behind a router; also $SBX_NODES
};

struct InspectArgs {
  std::string id;
};

struct RmArgs {
  std::vector<std::string> ids;
};

struct CpArgs {
  std::string user;
  std::string src;  // local path, "-" or ID:PATH
  std::string dst;
};

struct RunArgs {
  std::string time;          // cpu time, DUR
  std::string wall;          // wall clock, DUR
  std::string memory;        // SIZE
  std::string pids;
  std::string output_limit;  // SIZE
  bool json = false;
  std::vector<std::string> argv;
};

int RunCreate(const GlobalArgs& global, const CreateArgs& args);
int RunExec(const GlobalArgs& global, const ExecArgs& args);
int RunLimits(const GlobalArgs& global, const LimitsArgs& args);
int RunLs(const GlobalArgs& global, const LsArgs& args);
int RunInspect(const GlobalArgs& global, const InspectArgs& args);
int RunRm(const GlobalArgs& global, const RmArgs& args);
int RunCp(const GlobalArgs& global, const CpArgs& args);
int RunRun(const GlobalArgs& global, const RunArgs& args);

}  // namespace sbx::cli

#endif  // SBX_SDK_CLI_COMMANDS_H_
