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

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "server/api/io_loop.h"
#include "server/api/service.h"
#include "server/common/status.h"
#include "server/manager/manager.h"
#include "server/manager/validation.h"

namespace {

constexpr int kMaxMessageBytes = 16 << 20;
constexpr auto kShutdownGrace = std::chrono::seconds(5);

struct Flags {
  std::string socket = "/run/sbx/sbxd.sock";
  std::string listen;
  std::string state_dir = "/var/lib/sbx";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string cgroup_version = "auto";
  std::string cgroup_parent = "sbx";
  uint32_t uid_base = 1000000000;
  int max_sandboxes = 1024;
  int pool_size = 4;
  std::string init_path;
  std::string default_memory = "512M";
  double default_cpus = 1;
  int64_t default_pids = 256;
  std::string tmp_size = "64M";
  std::string work_size = "256M";
  std::string shm_size = "64M";
  std::string log_level = "info";
  bool log_json = false;
};

// sbx-init next to this binary, else <prefix>/libexec/sbx/sbx-init.
std::string DefaultInitPath() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "/usr/local/libexec/sbx/sbx-init";
  std::filesystem::path beside = self.parent_path() / "sbx-init";
  if (std::filesystem::exists(beside, ec)) return beside.string();
  return (self.parent_path() / ".." / "libexec" / "sbx" / "sbx-init").lexically_normal().string();
}

absl::Status ParseSizeFlag(const std::string& name, const std::string& text, int64_t* out) {
  absl::StatusOr<int64_t> size = sbx::manager::ParseSize(text);
  if (!size.ok()) return sbx::Annotate(size.status(), name);
  *out = *size;
  return absl::OkStatus();
}

absl::StatusOr<sbx::manager::ManagerOptions> ToManagerOptions(const Flags& flags) {
  sbx::manager::ManagerOptions o;
  o.state_dir = flags.state_dir;
  o.cgroup.root = flags.cgroup_root;
  o.cgroup.version = flags.cgroup_version;
  o.cgroup.parent = flags.cgroup_parent;
  o.uid_base = flags.uid_base;
  o.max_sandboxes = flags.max_sandboxes;
  o.pool_size = flags.pool_size;
  o.init_path = flags.init_path.empty() ? DefaultInitPath() : flags.init_path;
  o.default_cpus = flags.default_cpus;
  o.default_pids = flags.default_pids;
  RETURN_IF_ERROR(ParseSizeFlag("--default-memory", flags.default_memory,
                                &o.default_memory_bytes));
  RETURN_IF_ERROR(ParseSizeFlag("--tmp-size", flags.tmp_size, &o.tmp_bytes));
  RETURN_IF_ERROR(ParseSizeFlag("--work-size", flags.work_size, &o.work_bytes));
  RETURN_IF_ERROR(ParseSizeFlag("--shm-size", flags.shm_size, &o.shm_bytes));
  return o;
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

void SetUpLogging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("sbxd");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

int Serve(const Flags& flags) {
  absl::StatusOr<sbx::manager::ManagerOptions> options = ToManagerOptions(flags);
  if (!options.ok()) {
    spdlog::critical("{}", options.status().ToString());
    return 2;
  }

  // The manager starts the spawner helper first, while sbxd is still one
  // thread with the default signal mask.
  absl::StatusOr<std::unique_ptr<sbx::manager::Manager>> manager =
      sbx::manager::Manager::Create(*options);
  if (!manager.ok()) {
    spdlog::critical("starting: {}", manager.status().ToString());
    return 1;
  }

  // SIGTERM / SIGINT are taken by sigwait below; every thread made from here
  // on inherits the block.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a closed pipe is an EPIPE, not a death

  absl::StatusOr<std::unique_ptr<sbx::api::IoLoop>> loop = sbx::api::IoLoop::Start();
  if (!loop.ok()) {
    spdlog::critical("starting: {}", loop.status().ToString());
    return 1;
  }
  sbx::api::SandboxService service(**manager, **loop);

  if (absl::Status s = PrepareSocketPath(flags.socket); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix://", flags.socket),
                           grpc::InsecureServerCredentials());
  int tcp_port = 0;
  if (!flags.listen.empty()) {
    builder.AddListeningPort(flags.listen, grpc::InsecureServerCredentials(), &tcp_port);
  }
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(&service);

  // The socket must never be reachable by others, not even briefly.
  const mode_t old_umask = ::umask(0177);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ::umask(old_umask);
  if (!server) {
    spdlog::critical("could not listen on unix://{}{}", flags.socket,
                     flags.listen.empty() ? "" : absl::StrCat(" and ", flags.listen));
    return 1;
  }
  if (::chmod(flags.socket.c_str(), 0600) != 0) {
    spdlog::critical("{}", sbx::ErrnoStatus(errno, "chmod " + flags.socket).ToString());
    server->Shutdown();
    return 1;
  }
  if (!flags.listen.empty()) {
    if (tcp_port == 0) {
      spdlog::critical("could not listen on {}", flags.listen);
      server->Shutdown();
      return 1;
    }
    spdlog::info("sbxd listening on {} (insecure TCP, port {})", flags.listen, tcp_port);
  }
  spdlog::info("sbxd listening on unix://{}", flags.socket);

  int signo = 0;
  while (sigwait(&stop_signals, &signo) != 0) {
  }
  spdlog::info("received {}; shutting down (sandboxes keep running)", strsignal(signo));
  server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  server->Wait();
  loop->reset();  // after the server: exec streams finish on the loop
  (*manager)->Shutdown();
  ::unlink(flags.socket.c_str());
  spdlog::info("sbxd stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"sbxd: sandbox daemon"};
  app.add_option("--socket", flags.socket, "Unix socket to serve on")->capture_default_str();
  app.add_option("--listen", flags.listen, "also serve on HOST:PORT (insecure TCP)");
  app.add_option("--state-dir", flags.state_dir, "where sandbox state is kept")
      ->capture_default_str();
  app.add_option("--cgroup-root", flags.cgroup_root, "cgroupfs mount point")
      ->capture_default_str();
  app.add_option("--cgroup-version", flags.cgroup_version, "auto, v1 or v2")
      ->check(CLI::IsMember({"auto", "v1", "v2"}))
      ->capture_default_str();
  app.add_option("--cgroup-parent", flags.cgroup_parent, "name of sbxd's parent cgroup")
      ->capture_default_str();
  app.add_option("--uid-base", flags.uid_base, "first host uid of the sandboxes' ranges")
      ->capture_default_str();
  app.add_option("--max-sandboxes", flags.max_sandboxes, "most sandboxes at once")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  app.add_option("--pool-size", flags.pool_size,
                 "ready sandboxes kept for CreateSandbox (0: no warm pool)")
      ->capture_default_str();
  app.add_option("--init-path", flags.init_path,
                 "the sbx-init binary (default: beside sbxd, else ../libexec/sbx/)");
  app.add_option("--default-memory", flags.default_memory, "memory of a sandbox (SIZE)")
      ->capture_default_str();
  app.add_option("--default-cpus", flags.default_cpus, "cpus of a sandbox")
      ->capture_default_str();
  app.add_option("--default-pids", flags.default_pids, "tasks of a sandbox")
      ->capture_default_str();
  app.add_option("--tmp-size", flags.tmp_size, "size of a sandbox's /tmp")->capture_default_str();
  app.add_option("--work-size", flags.work_size, "size of a sandbox's /work")
      ->capture_default_str();
  app.add_option("--shm-size", flags.shm_size, "size of a sandbox's /dev/shm")
      ->capture_default_str();
  app.add_option("--log-level", flags.log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app.add_flag("--log-json", flags.log_json, "JSON log lines (not implemented yet)");
  CLI11_PARSE(app, argc, argv);

  SetUpLogging(flags.log_level);
  if (flags.log_json) spdlog::warn("--log-json is not implemented yet; logging text");
  return Serve(flags);
}
