// A test process that dies without its teardown, for dead_test_process_test:
// it starts the harness's sbxd, creates a sandbox, runs a command in it, says
// on stdout what it made (key=value lines) and _exits, as a test that
// crashes or is killed at ctest's timeout would.
#include <unistd.h>

#include <iostream>

#include "daemon.h"
#include "exec_util.h"

int main() {
  sbx::it::Daemon daemon;
  if (!daemon.Start()) return 2;
  sbx::v1::Sandbox sandbox;
  grpc::Status created =
      sbx::it::Create(daemon.stub(), sbx::it::MakeCreate(sbx::it::CreateOptions{}), &sandbox);
  if (!created.ok()) return 3;
  sbx::it::ExecResult ran = sbx::it::Sh(daemon.stub(), sandbox.id(), "true");
  if (!ran.Ok() || ran.exit->exit_code() != 0) return 4;
  std::cout << "temp_dir=" << daemon.temp_dir() << "\n"
            << "cgroup_parent=" << daemon.cgroup_parent() << "\n"
            << "sbxd=" << daemon.pid() << "\n"
            << "sandbox=" << sandbox.id() << std::endl;
  _exit(0);  // no Stop(): the daemon and the sandbox stay behind
}
