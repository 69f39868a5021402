// sbxd: the sandbox daemon. Parses flags, starts the manager (which
// re-attaches to the sandboxes of a previous run), serves
// sbx.v1.SandboxService, health and reflection on a Unix socket (and
// optionally TCP), and shuts down gracefully on SIGTERM / SIGINT, leaving
// the sandboxes running for the next start.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/api/interceptors.h"
#include "server/api/io_loop.h"
#include "server/api/metrics.h"
#include "server/api/service.h"
#include "server/api/shutdown.h"
#include "server/api/stream_heap.h"
#include "server/api/unix_listener.h"
#include "server/common/file_util.h"
#include "server/common/status.h"
#include "server/config/config.h"
#include "server/manager/manager.h"
#include "server/manager/validation.h"

namespace {

constexpr int kMaxMessageBytes = 16 << 20;

// The effective configuration: the file (--config) with the flags given
// laid over it (server/config/config.h).
using Flags = sbx::config::Config;

// sbx-init next to this binary, else <prefix>/libexec/sbx/sbx-init.
std::string DefaultInitPath() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "/usr/local/libexec/sbx/sbx-init";
  std::filesystem::path beside = self.parent_path() / "sbx-init";
  if (std::filesystem::exists(beside, ec)) return beside.string();
  return (self.parent_path() / ".." / "libexec" / "sbx" / "sbx-init").lexically_normal().string();
}

sbx::manager::ManagerOptions ToManagerOptions(const Flags& flags) {
  sbx::manager::ManagerOptions o;
  o.state_dir = flags.state_dir;
  o.cgroup.root = flags.cgroup_root;
  o.cgroup.version = flags.cgroup_version;
  o.cgroup.parent = flags.cgroup_parent;
  o.uid_base = flags.uid_base;
  o.max_sandboxes = flags.max_sandboxes;
  o.pool_size = flags.pool_size;
  o.node_name = flags.node;
  o.init_path = flags.init_path.empty() ? DefaultInitPath() : flags.init_path;
  o.default_memory_bytes = flags.default_memory_bytes;
  o.default_cpus = flags.default_cpus;
  o.default_pids = flags.default_pids;
  o.tmp_bytes = flags.tmp_bytes;
  o.work_bytes = flags.work_bytes;
  o.shm_bytes = flags.shm_bytes;
  o.default_tenant = flags.default_tenant;
  for (const sbx::config::Tenant& t : flags.tenants) {
    o.quotas[t.name] = sbx::manager::TenantQuota{t.max_sandboxes, t.max_memory_bytes, t.max_cpus};
  }
  return o;
}

absl::StatusOr<std::string> ReadPem(const std::string& key, const std::string& path) {
  absl::StatusOr<std::string> text = sbx::ReadFileToString(path);
  if (!text.ok()) return sbx::Annotate(text.status(), absl::StrCat("config key '", key, "'"));
  return *text;
}

// The TCP listener's credentials: TLS from tls.cert / tls.key, asking for
// (but not requiring: a token works too) a client certificate verified
// against tls.client_ca when that is set; plain only with insecure_tcp.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> TcpCredentials(const Flags& flags) {
  if (flags.insecure_tcp) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  ASSIGN_OR_RETURN(pair.cert_chain, ReadPem("tls.cert", flags.tls_cert));
  ASSIGN_OR_RETURN(pair.private_key, ReadPem("tls.key", flags.tls_key));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!flags.tls_client_ca.empty()) {
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem("tls.client_ca", flags.tls_client_ca));
    ssl.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

// Makes the socket's directory (0700 if we create it) and removes a stale
// socket file left by a crash.
absl::Status PrepareSocketPath(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
      std::filesystem::create_directories(dir, ec);
      if (ec) return sbx::ErrnoStatus(ec.value(), absl::StrCat("creating ", dir.string()));
      if (::chmod(dir.c_str(), 0700) != 0) {
        return sbx::ErrnoStatus(errno, absl::StrCat("chmod ", dir.string()));
      }
    }
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
    }
    if (::unlink(path.c_str()) != 0) {
      return sbx::ErrnoStatus(errno, absl::StrCat("removing stale socket ", path));
    }
  }
  return absl::OkStatus();
}

// %* : the message as a JSON string body (quotes, backslashes and control
// characters escaped), for JSON log lines.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    for (char ch : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (ch) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        default:
          if (static_cast<unsigned char>(ch) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\u%04x", ch);
            dest.append(std::string_view(buf));
          } else {
            dest.push_back(ch);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

// Text lines, or one JSON object per line ({"ts", "level", "logger", "msg"}).
// Every layer's logger is a clone of this one, so it inherits the format.
void SetUpLogging(const std::string& level, bool json) {
  auto logger = spdlog::stderr_color_mt("sbxd");
  if (json) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","logger":"%n","msg":"%*"})");
    logger->set_formatter(std::move(formatter));
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

// Everything of sbxd's is done with: what would follow is gRPC's global
// teardown, whose grpc_shutdown joins gRPC's executor threads, and one of
// them can sit in epoll_wait for many seconds (10-17 s seen in sbxd built
// with ASan, the main thread in ~ServerBuilder -> grpc_shutdown ->
// Executor::ShutdownAll). So sbxd ends here, after flushing its log, and
// after LeakSanitizer's check in the builds that have it (which would
// otherwise run at exit).
[[noreturn]] void EndWithoutGrpcTeardown() {
  spdlog::shutdown();
  std::fflush(nullptr);
#ifdef __SANITIZE_ADDRESS__
  __lsan_do_leak_check();
#endif
  ::_exit(0);
}

// SIGTERM and SIGINT, which sbxd's main thread takes with sigwait.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

int Serve(const Flags& flags) {
  const sbx::manager::ManagerOptions options = ToManagerOptions(flags);
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials;
  if (!flags.listen.empty()) {
    absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> c = TcpCredentials(flags);
    if (!c.ok()) {
      spdlog::critical("{}", c.status().ToString());
      return 2;
    }
    tcp_credentials = *std::move(c);
  }

  absl::StatusOr<std::unique_ptr<sbx::manager::Manager>> manager =
      sbx::manager::Manager::Create(options);
  if (!manager.ok()) {
    spdlog::critical("starting: {}", manager.status().ToString());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);  // a closed pipe is an EPIPE, not a death

  absl::StatusOr<std::unique_ptr<sbx::api::IoLoop>> loop = sbx::api::IoLoop::Start();
  if (!loop.ok()) {
    spdlog::critical("starting: {}", loop.status().ToString());
    return 1;
  }
  const sbx::api::Authenticator auth(flags.default_tenant, flags.tenants, flags.insecure_tcp);
  sbx::api::GracefulShutdown shutdown(flags.shutdown_grace);  // outlives the server
  sbx::api::GatedSandboxService service(shutdown, **manager, **loop, auth);

  if (absl::Status s = PrepareSocketPath(flags.socket); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  absl::StatusOr<std::unique_ptr<sbx::api::UnixListener>> unix_listener =
      sbx::api::UnixListener::Listen(flags.socket);
  if (!unix_listener.ok()) {
    spdlog::critical("could not listen: {}", unix_listener.status().ToString());
    return 1;
  }
  absl::Cleanup remove_socket = [&flags] { ::unlink(flags.socket.c_str()); };
  grpc::ServerBuilder builder;
  // The Unix socket's connections are accepted by sbxd (see unix_listener.h).
  std::shared_ptr<grpc::experimental::ExternalConnectionAcceptor> unix_acceptor =
      builder.experimental().AddExternalConnectionAcceptor(
          grpc::ServerBuilder::experimental_type::ExternalConnectionType::FROM_FD,
          grpc::InsecureServerCredentials());
  int tcp_port = 0;
  if (!flags.listen.empty()) {
    builder.AddListeningPort(flags.listen, tcp_credentials, &tcp_port);
  }
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  // HTTP/2 frames of up to 256 KiB instead of 16 KiB from clients: a stdin
  // chunk of that size arrives in one frame, not sixteen. (Frames to a
  // client follow what the client allows; the SDK allows the same.)
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 256 << 10);
  builder.RegisterService(&service);
  {
    // One access-log line and the RPC error metrics for every call.
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> observers;
    observers.push_back(
        std::make_unique<sbx::api::ObserverInterceptorFactory>(auth, flags.access_log));
    shutdown.Install(builder, std::move(observers));
  }

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    spdlog::critical("could not start the gRPC server{}",
                     flags.listen.empty() ? "" : absl::StrCat(" on ", flags.listen));
    return 1;
  }
  if (absl::Status s = (*unix_listener)->Start([unix_acceptor](int listener_fd, int fd) {
        grpc::experimental::ExternalConnectionAcceptor::NewConnectionParameters p;
        p.listener_fd = listener_fd;
        p.fd = fd;
        unix_acceptor->HandleNewConnection(&p);  // owns fd; closes it once the server is down
      });
      !s.ok()) {
    spdlog::critical("{}", s.ToString());
    server->Shutdown();
    return 1;
  }
  if (!flags.listen.empty()) {
    if (tcp_port == 0) {
      spdlog::critical("could not listen on {}", flags.listen);
      server->Shutdown();
      return 1;
    }
    if (flags.insecure_tcp) {
      spdlog::warn("sbxd listening on {} (port {}) WITHOUT TLS (insecure_tcp: development only)",
                   flags.listen, tcp_port);
    } else {
      spdlog::info("sbxd listening on {} (TLS{}, port {})", flags.listen,
                   flags.tls_client_ca.empty() ? "" : " + client certificates", tcp_port);
    }
  }
  spdlog::info("sbxd listening on unix://{}", flags.socket);
  // Now that the umask is back to normal: see StartBackgroundWork.
  (*manager)->StartBackgroundWork();
  if (!flags.metrics_listen.empty()) {
    if (absl::Status s = sbx::api::Metrics::Global().Serve(flags.metrics_listen, **manager);
        !s.ok()) {
      spdlog::critical("{}", s.ToString());
      server->Shutdown();
      return 1;
    }
    spdlog::info("metrics on http://{}/metrics", flags.metrics_listen);
  }

  const sigset_t stop_signals = StopSignals();
  int signo = 0;
  while (sigwait(&stop_signals, &signo) != 0) {
  }
  spdlog::info("received {}; shutting down (sandboxes keep running)", strsignal(signo));
  shutdown.Run(*server, **loop);
  (*unix_listener)->Stop();  // after the server: until then a new call gets a clear refusal
  loop->reset();  // after the server: exec streams finish on the loop
  sbx::api::Metrics::Global().StopServing();  // reads the manager
  (*manager)->Shutdown();
  std::move(remove_socket).Invoke();
  manager->reset();  // joins its threads and waits for the spawner to exit
  spdlog::info("sbxd stopped");
  EndWithoutGrpcTeardown();
}

// Every option of sbxd is a key of the configuration file; a flag given on
// the command line overrides that key.
struct FlagKey {
  const char* flag;
  const char* key;
  const char* help;
};
constexpr FlagKey kFlagKeys[] = {
    {"--socket", "socket", "Unix socket to serve on (0600)"},
    {"--listen", "listen", "also serve on HOST:PORT (TLS unless --insecure-tcp)"},
    {"--tls-cert", "tls.cert", "PEM certificate chain of the TCP listener"},
    {"--tls-key", "tls.key", "PEM private key of the TCP listener"},
    {"--tls-client-ca", "tls.client_ca", "PEM CA of accepted client certificates (mTLS)"},
    {"--metrics-listen", "metrics_listen", "serve Prometheus /metrics on HOST:PORT"},
    {"--default-tenant", "auth.default_tenant", "tenant of Unix-socket callers without a token"},
    {"--state-dir", "state_dir", "where sandbox state is kept"},
    {"--cgroup-root", "cgroup.root", "cgroupfs mount point"},
    {"--cgroup-version", "cgroup.version", "auto, v1 or v2"},
    {"--cgroup-parent", "cgroup.parent", "name of sbxd's parent cgroup"},
    {"--uid-base", "uid_base", "first host uid of the sandboxes' ranges"},
    {"--max-sandboxes", "max_sandboxes", "most sandboxes at once"},
    {"--node", "node", "this daemon's name behind a router; sandbox ids end in .NAME"},
    {"--pool-size", "pool_size", "ready sandboxes kept for CreateSandbox (0: no warm pool)"},
    {"--shutdown-grace", "shutdown_grace",
     "after SIGTERM, how long running calls may take to finish (e.g. 10s, 500ms)"},
    {"--init-path", "init_path", "the sbx-init binary (default: beside sbxd, else ../libexec/sbx/)"},
    {"--default-memory", "defaults.memory", "memory of a sandbox (SIZE)"},
    {"--default-cpus", "defaults.cpus", "cpus of a sandbox"},
    {"--default-pids", "defaults.pids", "tasks of a sandbox"},
    {"--tmp-size", "defaults.tmp_size", "size of a sandbox's /tmp"},
    {"--work-size", "defaults.work_size", "size of a sandbox's /work"},
    {"--shm-size", "defaults.shm_size", "size of a sandbox's /dev/shm"},
    {"--log-level", "log.level", "trace, debug, info, warn, error, critical, off"},
    {"--access-log", "log.access", "one log line per RPC (true/false)"},
};
constexpr FlagKey kSwitchKeys[] = {
    {"--insecure-tcp", "insecure_tcp", "serve --listen without TLS (development only)"},
    {"--log-json", "log.json", "JSON log lines"},
};

// The file (if any), then the flags given, then the checks. Errors name the
// key; they go to stderr before logging is set up.
absl::StatusOr<Flags> LoadConfig(const std::string& path, bool path_given,
                                 const std::vector<std::pair<std::string, std::string>>& sets) {
  YAML::Node doc(YAML::NodeType::Map);
  std::error_code ec;
  if (path_given || std::filesystem::exists(path, ec)) {
    ASSIGN_OR_RETURN(doc, sbx::config::LoadFile(path));
  }
  for (const auto& [key, value] : sets) RETURN_IF_ERROR(sbx::config::SetKey(doc, key, value));
  ASSIGN_OR_RETURN(Flags config, sbx::config::Parse(doc));
  RETURN_IF_ERROR(sbx::config::Validate(config));
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before anything can start a thread, so that every thread
  // inherits the block and a stop signal can only reach sigwait. A thread
  // made earlier would take it with the default action and kill sbxd on the
  // spot: gRPC's own threads, which the TLS credentials start, did. (The
  // spawner helper resets its mask.)
  const sigset_t stop_signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  sbx::api::TuneHeapForStreams();
  // Debian's abseil is built without NDEBUG, so by default every
  // absl::Mutex lock records the lock order in a process-wide graph behind
  // one global lock (GraphCycles in sbxd's profile): a check for tests.
  // The test suites' daemons set SBX_CHECK_LOCK_ORDER and keep it.
  if (std::getenv("SBX_CHECK_LOCK_ORDER") == nullptr) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  CLI::App app{"sbxd: sandbox daemon. Every flag is also a key of the --config file "
               "(docs/sbxd.example.yaml); flags override the file."};
  std::string config_path = sbx::config::kDefaultConfigPath;
  bool print_config = false;
  app.add_option("--config", config_path, "YAML configuration file")->capture_default_str();
  app.add_flag("--print-config", print_config, "print the effective configuration and exit");
  std::map<std::string, std::string> values;
  std::map<std::string, bool> switches;
  for (const FlagKey& f : kFlagKeys) {
    app.add_option(f.flag, values[f.key], absl::StrCat(f.help, " [", f.key, "]"));
  }
  for (const FlagKey& f : kSwitchKeys) {
    app.add_flag(f.flag, switches[f.key], absl::StrCat(f.help, " [", f.key, "]"));
  }
  CLI11_PARSE(app, argc, argv);

  std::vector<std::pair<std::string, std::string>> sets;
  for (const FlagKey& f : kFlagKeys) {
    if (app.get_option(f.flag)->count() > 0) sets.emplace_back(f.key, values[f.key]);
  }
  for (const FlagKey& f : kSwitchKeys) {
    if (app.get_option(f.flag)->count() > 0) {
      sets.emplace_back(f.key, switches[f.key] ? "true" : "false");
    }
  }
  absl::StatusOr<Flags> config =
      LoadConfig(config_path, app.get_option("--config")->count() > 0, sets);
  if (!config.ok()) {
    std::fprintf(stderr, "sbxd: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (print_config) {
    std::fputs(sbx::config::ToYaml(*config).c_str(), stdout);
    return 0;
  }
  SetUpLogging(config->log_level, config->log_json);
  return Serve(*config);
}
