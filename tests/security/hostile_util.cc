#include "hostile_util.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

namespace sbx::sec {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Row {
  std::string result = "RUNNING";
  std::string outcome;
  std::string failure;  // first failure message, one line
};

std::mutex g_mu;
std::vector<std::string> g_order;    // GUARDED_BY(g_mu)
std::map<std::string, Row> g_rows;   // GUARDED_BY(g_mu)
std::string g_current = "<no test>";  // GUARDED_BY(g_mu)

// REQUIRES: g_mu held. Not UnitTest::current_test_info(): gtest calls the
// listener with its own mutex held, and that function takes it again.
const std::string& CurrentTestName() { return g_current; }

Row& RowFor(const std::string& name) {
  auto [it, inserted] = g_rows.try_emplace(name);
  if (inserted) g_order.push_back(name);
  return it->second;
}

std::string OneLine(const std::string& s, size_t max) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out.push_back(c == '\n' ? ' ' : c);
  }
  return out;
}

// Fills in PASS / FAIL / SKIP and the first failure of each test.
class OutcomeListener : public ::testing::EmptyTestEventListener {
  void OnTestStart(const ::testing::TestInfo& info) override {
    std::lock_guard<std::mutex> lock(g_mu);
    g_current = std::string(info.test_suite_name()) + "." + info.name();
    RowFor(g_current);
  }
  void OnTestPartResult(const ::testing::TestPartResult& part) override {
    if (!part.failed()) return;
    std::lock_guard<std::mutex> lock(g_mu);
    Row& row = RowFor(CurrentTestName());
    if (row.failure.empty()) {
      row.failure = std::string(part.file_name() ? part.file_name() : "?") + ":" +
                    std::to_string(part.line_number()) + ": " + part.message();
    }
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    std::lock_guard<std::mutex> lock(g_mu);
    Row& row = RowFor(std::string(info.test_suite_name()) + "." + info.name());
    const auto* r = info.result();
    row.result = r->Skipped() ? "SKIP" : r->Failed() ? "FAIL" : "PASS";
    if (r->Skipped() && row.outcome.empty()) {
      for (int i = 0; i < r->total_part_count(); ++i) {
        if (r->GetTestPartResult(i).skipped()) row.outcome = r->GetTestPartResult(i).message();
      }
    }
  }
};

// Prints the table once every test of the binary has run.
class OutcomeTable : public ::testing::Environment {
 public:
  void SetUp() override {
    ::testing::UnitTest::GetInstance()->listeners().Append(new OutcomeListener);
  }
  void TearDown() override {
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_order.empty()) return;
    size_t width = 4;
    for (const auto& name : g_order) width = std::max(width, name.size());
    std::ostringstream ss;
    ss << "\n==== security cases (" << g_order.size() << ") ====\n";
    for (const auto& name : g_order) {
      const Row& row = g_rows[name];
      ss << row.result << "  " << name << std::string(width - name.size() + 2, ' ')
         << OneLine(row.outcome, 160) << "\n";
    }
    bool any_failed = false;
    for (const auto& name : g_order) {
      const Row& row = g_rows[name];
      if (row.result != "FAIL") continue;
      if (!any_failed) ss << "---- failures ----\n";
      any_failed = true;
      ss << name << ": " << OneLine(row.failure, 600) << "\n";
    }
    ss << "====\n";
    std::fputs(ss.str().c_str(), stdout);
    std::fflush(stdout);
  }
};

const bool g_registered = [] {
  ::testing::AddGlobalTestEnvironment(new OutcomeTable);
  return true;
}();

constexpr const char* kPyPrelude = R"PY(
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    conv = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    if r < 0:
        e = ctypes.get_errno()
        return errno.errorcode.get(e, str(e))
    return 'OK'
def err(fn):
    try:
        fn()
        return 'OK'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
)PY";

}  // namespace

void RecordOutcome(const std::string& outcome) {
  std::lock_guard<std::mutex> lock(g_mu);
  Row& row = RowFor(CurrentTestName());
  if (!row.outcome.empty()) row.outcome += "; ";
  row.outcome += outcome;
}

ExecOptions AsRoot(milliseconds timeout) {
  ExecOptions o;
  o.user = "root";
  o.timeout = timeout;
  return o;
}

ExecOptions AsUser(milliseconds timeout) {
  ExecOptions o;
  o.timeout = timeout;
  return o;
}

std::string HelperBytes(const std::string& name) {
  auto bytes = it::ReadFile(std::string(SBX_SEC_HELPER_DIR) + "/" + name);
  if (!bytes || bytes->empty()) {
    ADD_FAILURE() << "helper " << name << " is not built in " << SBX_SEC_HELPER_DIR;
    return "";
  }
  return *bytes;
}

v1::ExecStart HelperStart(const std::string& id, const std::string& name,
                          const std::vector<std::string>& args, const ExecOptions& options) {
  // One file per run: several helpers, run as different users, may share a
  // sandbox's /tmp (sticky: one user cannot overwrite another's file).
  const std::string path = "/tmp/.sbx-sec-" + name + "-$$";
  std::vector<std::string> argv = {
      "sh", "-c", "cat > " + path + " && chmod 755 " + path + " && exec " + path + " \"$@\"",
      name};
  argv.insert(argv.end(), args.begin(), args.end());
  return it::MakeStart(id, argv, options);
}

ExecResult RunHelper(Stub& stub, const std::string& id, const std::string& name,
                     const std::vector<std::string>& args, const ExecOptions& options,
                     milliseconds deadline) {
  return it::RunExec(stub, HelperStart(id, name, args, options), HelperBytes(name), deadline);
}

ExecResult Py(Stub& stub, const std::string& id, const std::string& code,
              const ExecOptions& options, milliseconds deadline) {
  return it::RunExec(stub, it::MakeStart(id, {"python3", "-c", kPyPrelude + code}, options), "",
                     deadline);
}

::testing::AssertionResult HostCanForkExec(milliseconds within) {
  const auto t0 = std::chrono::steady_clock::now();
  it::ProcessResult r = it::RunProcess({"/bin/true"}, "", seconds(20));
  const auto took =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0);
  if (!r.started || r.exit_code != 0) {
    return ::testing::AssertionFailure() << "host fork+exec /bin/true failed: " << r.Describe();
  }
  if (took > within) {
    return ::testing::AssertionFailure()
           << "host fork+exec /bin/true took " << took.count() << " ms (limit "
           << within.count() << " ms)";
  }
  return ::testing::AssertionSuccess() << "host /bin/true in " << took.count() << " ms";
}

::testing::AssertionResult SandboxAnswers(Stub& stub, const std::string& id,
                                          milliseconds within) {
  ExecResult r = it::RunExec(stub, it::MakeStart(id, {"echo", "alive"}), "", seconds(20));
  if (!r.Ok() || r.out != "alive\n") {
    return ::testing::AssertionFailure() << "sandbox " << id << " does not answer: "
                                         << r.Describe();
  }
  if (r.seconds * 1000 > within.count()) {
    return ::testing::AssertionFailure() << "sandbox " << id << " answered in " << r.seconds
                                         << " s (limit " << within.count() << " ms)";
  }
  return ::testing::AssertionSuccess() << "echo in " << r.seconds << " s";
}

::testing::AssertionResult DaemonAlive(it::Daemon& daemon) {
  if (!daemon.running() || kill(daemon.pid(), 0) != 0) {
    return ::testing::AssertionFailure() << "sbxd is gone; log:\n" << daemon.LogTail();
  }
  v1::ListSandboxesResponse resp;
  grpc::Status s = it::List(daemon.stub(), &resp);
  if (!s.ok()) {
    return ::testing::AssertionFailure() << "sbxd does not answer ListSandboxes: "
                                         << it::StatusText(s);
  }
  return ::testing::AssertionSuccess();
}

std::vector<pid_t> SandboxHostPids(const it::Daemon& daemon, const std::string& id) {
  std::set<pid_t> pids;
  for (const auto& dir : daemon.CgroupParentDirs()) {
    for (pid_t p : it::CgroupProcsRecursive(dir + "/" + id)) pids.insert(p);
  }
  return {pids.begin(), pids.end()};
}

std::string ShQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

}  // namespace sbx::sec
