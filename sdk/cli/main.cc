// sbx: the command-line client of sbxd. Parses the command line with CLI11
// into the plain structs of commands.h and hands over to one verb.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "cli/commands.h"
#include "sbx/version.h"

namespace sbx::cli {
namespace {

void AddLimitOptions(CLI::App& command, LimitArgs& limits) {
  command.add_option("--memory", limits.memory,
                     "memory limit, e.g. 256M or 1G (swap is always off)");
  command.add_option("--cpus", limits.cpus, "cpu quota, e.g. 0.5 or 2");
  command.add_option("--pids", limits.pids, "max tasks (processes + threads)");
}

int Main(int argc, char** argv) {
  CLI::App app{"sbx: run untrusted code in sandboxes served by sbxd", "sbx"};
  app.set_version_flag("--version", SBX_VERSION_STRING);
  app.require_subcommand(1);
  app.fallthrough();  // --server may also follow the verb

  GlobalArgs global;
  app.add_option("--server", global.server,
                 "sbxd address: unix:///path, /path or host:port "
                 "(default: unix:///run/sbx/sbxd.sock)")
      ->envname("SBX_SERVER");
  app.add_option("--token", global.token, "bearer token for sbxd (TCP listeners)")
      ->envname("SBX_TOKEN");
  app.add_flag("--tls", global.tls, "connect with TLS (system CA roots unless --tls-ca)");
  app.add_option("--tls-ca", global.tls_ca, "PEM CA bundle that verifies sbxd (implies --tls)")
      ->envname("SBX_TLS_CA");
  app.add_option("--tls-cert", global.tls_cert, "PEM client certificate for mTLS (implies --tls)")
      ->envname("SBX_TLS_CERT");
  app.add_option("--tls-key", global.tls_key, "PEM key of --tls-cert")->envname("SBX_TLS_KEY");

  CreateArgs create;
  CLI::App* create_cmd =
      app.add_subcommand("create", "Create a sandbox and print its id");
  create_cmd->add_option("--image", create.image, "image (default: host)");
  AddLimitOptions(*create_cmd, create.limits);
  create_cmd->add_option("--ttl", create.ttl,
                         "destroy it after this long, e.g. 30m");
  create_cmd->add_option("--label", create.labels, "label k=v (repeatable)");
  create_cmd->add_option("--env", create.env,
                         "default env K=V of every exec (repeatable)");

  ExecArgs exec;
  CLI::App* exec_cmd = app.add_subcommand(
      "exec", "Run a command in a sandbox; exits with its code (128+N for signal N)");
  exec_cmd->add_flag("-i,--interactive", exec.interactive,
                     "stream local stdin to the command");
  exec_cmd->add_flag("-t,--tty", exec.tty, "run on a pseudo-terminal");
  exec_cmd->add_option("--timeout", exec.timeout,
                       "kill the command after this long, e.g. 10s");
  exec_cmd->add_option("--env", exec.env, "env K=V (repeatable)");
  exec_cmd->add_option("--cwd", exec.cwd, "working directory");
  exec_cmd->add_option("--user", exec.user, "user: root or a uid");
  exec_cmd->add_option("id", exec.id, "sandbox id")->required();
  exec_cmd->add_option("command", exec.argv, "CMD [ARG...], after --")
      ->required();

  LimitsArgs limits;
  CLI::App* limits_cmd = app.add_subcommand(
      "limits", "Change the limits of a live sandbox");
  limits_cmd->add_option("id", limits.id, "sandbox id")->required();
  AddLimitOptions(*limits_cmd, limits.limits);

  LsArgs ls;
  CLI::App* ls_cmd = app.add_subcommand("ls", "List sandboxes");
  ls_cmd->add_option("--label", ls.labels,
                     "only sandboxes with label k=v (repeatable)");
  ls_cmd->add_option("--nodes", ls.nodes,
                     "behind a router: nodes to list, comma-separated (default $SBX_NODES)");

  InspectArgs inspect;
  CLI::App* inspect_cmd =
      app.add_subcommand("inspect", "Print a sandbox as JSON");
  inspect_cmd->add_option("id", inspect.id, "sandbox id")->required();

  RmArgs rm;
  CLI::App* rm_cmd = app.add_subcommand(
      "rm", "Destroy sandboxes (an unknown id is not an error)");
  rm_cmd->add_option("id", rm.ids, "sandbox ids")->required();

  CpArgs cp;
  CLI::App* cp_cmd = app.add_subcommand(
      "cp", "Copy files or directories into or out of a sandbox (SRC or DST as ID:PATH)");
  cp_cmd->add_option("--user", cp.user, "act as this user in the sandbox: root or a uid");
  cp_cmd->add_option("src", cp.src, "local path, - (stdin) or ID:PATH")->required();
  cp_cmd->add_option("dst", cp.dst, "local path, - (stdout) or ID:PATH")->required();

  RunArgs run;
  CLI::App* run_cmd = app.add_subcommand(
      "run",
      "Run one command in an ephemeral sandbox (stdin read first, then passed in); "
      "exits with its code (128+N for signal N)");
  run_cmd->add_option("--time", run.time, "cpu time limit, e.g. 2s");
  run_cmd->add_option("--wall", run.wall, "wall-clock limit, e.g. 10s");
  run_cmd->add_option("--memory", run.memory, "memory limit, e.g. 256M");
  run_cmd->add_option("--pids", run.pids, "max tasks (processes + threads)");
  run_cmd->add_option("--output-limit", run.output_limit,
                      "stdout + stderr limit, e.g. 1M (default 16M)");
  run_cmd->add_flag("--json", run.json, "print the verdict, usage and output as JSON");
  run_cmd->add_option("command", run.argv, "CMD [ARG...], after --")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "sbx: " << e.what() << "\n"
              << "Run 'sbx --help' or 'sbx COMMAND --help' for usage.\n";
    return kExitUsage;
  }

  if (*create_cmd) return RunCreate(global, create);
  if (*exec_cmd) return RunExec(global, exec);
  if (*limits_cmd) return RunLimits(global, limits);
  if (*ls_cmd) return RunLs(global, ls);
  if (*inspect_cmd) return RunInspect(global, inspect);
  if (*rm_cmd) return RunRm(global, rm);
  if (*cp_cmd) return RunCp(global, cp);
  if (*run_cmd) return RunRun(global, run);
  return kExitUsage;  // unreachable: require_subcommand(1)
}

}  // namespace
}  // namespace sbx::cli

int main(int argc, char** argv) {
  // A closed stdout (`sbx exec ... | head`) must surface as EPIPE, not kill
  // us before the remote command is cancelled.
  std::signal(SIGPIPE, SIG_IGN);
  // As in sbxd: Debian's abseil, built without NDEBUG, records the order of
  // every absl::Mutex lock (gRPC's included) in a process-wide graph, which
  // took 2-3% of the cpu of `sbx exec`. The tests' SBX_CHECK_LOCK_ORDER keeps it.
  if (std::getenv("SBX_CHECK_LOCK_ORDER") == nullptr) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
  // The process ends with _exit once its own output is out: no static
  // destructors, and no teardown of the channel (kept by ConnectClient) or
  // of gRPC's threads. The kernel closes the connection, which sbxd sees as
  // a client gone; every verb has had its answer by then.
  const int code = sbx::cli::Main(argc, argv);
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  ::_exit(code);
}
