// Support for the hostile-code suite: running attack programs inside a
// sandbox, checking that the host and a neighbouring sandbox are unaffected,
// and the table of cases and outcomes printed at the end of each test binary.
#ifndef SBX_TESTS_SECURITY_HOSTILE_UTIL_H_
#define SBX_TESTS_SECURITY_HOSTILE_UTIL_H_

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "daemon.h"
#include "exec_util.h"
#include "proc_util.h"

namespace sbx::sec {

using it::ExecOptions;
using it::ExecResult;
using it::Stub;
namespace v1 = ::sbx::v1;

// Records what the current test observed ("EPERM", "killed by SIGSYS", ...);
// the table printed at the end shows it beside PASS / FAIL. Later calls in
// the same test append.
void RecordOutcome(const std::string& outcome);

ExecOptions AsRoot(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
ExecOptions AsUser(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// Runs the helper program `name` (built in tests/security/helpers) inside the
// sandbox: its bytes go in on stdin, are written to /tmp and exec'd, so the
// exit reported is the helper's own.
ExecResult RunHelper(Stub& stub, const std::string& id, const std::string& name,
                     const std::vector<std::string>& args = {}, const ExecOptions& options = {},
                     std::chrono::milliseconds deadline = std::chrono::seconds(60));
// The helper's bytes and the shell script that receives them, for callers
// that drive an ExecSession themselves.
std::string HelperBytes(const std::string& name);
v1::ExecStart HelperStart(const std::string& id, const std::string& name,
                          const std::vector<std::string>& args, const ExecOptions& options);

// python3 -c (kPyPrelude + code). The prelude defines
//   sc(nr, *args) -> "OK" or the errno name of a raw syscall,
//   err(fn) -> "OK" or the errno name of the OSError fn() raised.
ExecResult Py(Stub& stub, const std::string& id, const std::string& code,
              const ExecOptions& options = {},
              std::chrono::milliseconds deadline = std::chrono::seconds(30));

// The host can still fork+exec /bin/true within `within`.
::testing::AssertionResult HostCanForkExec(
    std::chrono::milliseconds within = std::chrono::seconds(2));
// `id` runs `echo alive` and answers within `within`.
::testing::AssertionResult SandboxAnswers(Stub& stub, const std::string& id,
                                          std::chrono::milliseconds within = std::chrono::seconds(3));
// sbxd is running and answers ListSandboxes.
::testing::AssertionResult DaemonAlive(it::Daemon& daemon);

// Host pids in the sandbox's own cgroup (every hierarchy, deduplicated).
std::vector<pid_t> SandboxHostPids(const it::Daemon& daemon, const std::string& id);

// Single-quotes `s` for sh.
std::string ShQuote(const std::string& s);

}  // namespace sbx::sec

#endif  // SBX_TESTS_SECURITY_HOSTILE_UTIL_H_
