// The posture test: a running sandbox inspected from the host, as gVisor's
// does. For a command run as the default user and one run as root inside, it
// reads /proc/<pid>/{status,ns/*,fd,limits,uid_map,gid_map,cgroup} and
// compares every value with the expected posture, printing one table.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <map>
#include <sstream>

#include "hostile_util.h"

namespace sbx::sec {
namespace {

using it::ExecSession;
using std::chrono::seconds;

class PostureTest : public it::DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }
};

std::string ProcPath(pid_t pid, const std::string& rest) {
  return "/proc/" + std::to_string(pid) + "/" + rest;
}

std::string StatusField(pid_t pid, const std::string& key) {
  auto status = it::ReadFile(ProcPath(pid, "status"));
  if (!status) return "<unreadable>";
  for (const auto& line : it::SplitLines(*status)) {
    if (line.rfind(key + ":", 0) == 0) return it::Trim(line.substr(key.size() + 1));
  }
  return "<missing>";
}

std::string Link(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  return n < 0 ? "<" + std::string(strerror(errno)) + ">" : std::string(buf, n);
}

std::string LimitOf(pid_t pid, const std::string& name) {
  auto limits = it::ReadFile(ProcPath(pid, "limits"));
  if (!limits) return "<unreadable>";
  for (const auto& line : it::SplitLines(*limits)) {
    if (line.rfind(name, 0) != 0) continue;
    std::istringstream in(line.substr(name.size()));
    std::string soft, hard;
    in >> soft >> hard;
    return soft + " " + hard;
  }
  return "<missing>";
}

// One row of the posture table: what was expected and what each process had.
struct Row {
  std::string property;
  std::string expected;
  std::vector<std::string> got;
  std::vector<bool> ok;
};

class Posture {
 public:
  explicit Posture(std::vector<std::string> columns) : columns_(std::move(columns)) {}

  // Records what column `col` had for `property` and whether it is acceptable.
  void Add(const std::string& property, const std::string& expected, size_t col,
           const std::string& got, bool ok) {
    Row* row = nullptr;
    for (auto& r : rows_) {
      if (r.property == property) row = &r;
    }
    if (row == nullptr) {
      rows_.push_back({property, expected, std::vector<std::string>(columns_.size(), "-"),
                       std::vector<bool>(columns_.size(), true)});
      row = &rows_.back();
    }
    row->got[col] = got;
    row->ok[col] = ok;
    EXPECT_TRUE(ok) << columns_[col] << ": " << property << " is '" << got << "', expected "
                    << expected;
  }

  std::string Table() const {
    size_t w0 = 8, w1 = 8;
    std::vector<size_t> wc(columns_.size(), 8);
    for (const auto& r : rows_) {
      w0 = std::max(w0, r.property.size());
      w1 = std::max(w1, r.expected.size());
      for (size_t c = 0; c < columns_.size(); ++c) {
        wc[c] = std::max({wc[c], columns_[c].size(), r.got[c].size() + 2});
      }
    }
    std::ostringstream ss;
    auto cell = [&](const std::string& s, size_t w) { ss << std::left << std::setw(w + 2) << s; };
    ss << "\n==== posture of a running sandbox, seen from the host ====\n";
    cell("property", w0);
    cell("expected", w1);
    for (size_t c = 0; c < columns_.size(); ++c) cell(columns_[c], wc[c]);
    ss << "\n";
    for (const auto& r : rows_) {
      cell(r.property, w0);
      cell(r.expected, w1);
      for (size_t c = 0; c < columns_.size(); ++c) {
        cell((r.ok[c] ? "" : "!!") + r.got[c], wc[c]);
      }
      ss << "\n";
    }
    ss << "====\n";
    return ss.str();
  }

  int failures() const {
    int n = 0;
    for (const auto& r : rows_) {
      for (bool ok : r.ok) n += !ok;
    }
    return n;
  }

 private:
  std::vector<std::string> columns_;
  std::vector<Row> rows_;
};

// The direct children of `init` whose command line is `cmdline` (NUL-separated).
std::vector<pid_t> ChildrenRunning(pid_t init, const std::string& cmdline) {
  std::vector<pid_t> out;
  for (pid_t c : it::ProcChildren(init)) {
    if (it::ReadFile(ProcPath(c, "cmdline")).value_or("") == cmdline) out.push_back(c);
  }
  return out;
}

TEST_F(PostureTest, RunningSandboxHasTheExpectedPosture) {
  SBX_SANDBOX(sb);
  const pid_t init = sb.sandbox().init_pid();
  ASSERT_GT(init, 0);
  // Distinct commands so the two can be told apart from the host.
  ExecSession user(stub(), seconds(60));
  ASSERT_TRUE(user.Start(it::MakeStart(sb.id(), {"sleep", "60"})));
  ASSERT_TRUE(user.WaitStarted());
  ExecSession root(stub(), seconds(60));
  ASSERT_TRUE(root.Start(it::MakeStart(sb.id(), {"sleep", "61"}, AsRoot())));
  ASSERT_TRUE(root.WaitStarted());
  pid_t user_pid = 0, root_pid = 0;
  ASSERT_TRUE(it::WaitFor(
      [&] {
        auto u = ChildrenRunning(init, std::string("sleep\0" "60\0", 9));
        auto r = ChildrenRunning(init, std::string("sleep\0" "61\0", 9));
        if (u.size() != 1 || r.size() != 1) return false;
        user_pid = u[0];
        root_pid = r[0];
        // Past start-up (the loader and locale code open files for a while):
        // both are in clock_nanosleep (230) or nanosleep (35).
        for (pid_t p : {user_pid, root_pid}) {
          const std::string sc = it::ReadFile(ProcPath(p, "syscall")).value_or("");
          if (sc.rfind("230 ", 0) != 0 && sc.rfind("35 ", 0) != 0) return false;
        }
        return true;
      },
      seconds(10)))
      << "cannot find the commands asleep among the init's children";
  // The commands are in the sandbox's cgroup (the fixture's view agrees).
  const auto in_cgroup = SandboxHostPids(daemon(), sb.id());
  for (pid_t p : {init, user_pid, root_pid}) {
    EXPECT_NE(std::find(in_cgroup.begin(), in_cgroup.end(), p), in_cgroup.end())
        << "host pid " << p << " is not in the sandbox's cgroup";
  }

  const uint32_t base = daemon().uid_base();
  const std::vector<pid_t> pids = {user_pid, root_pid};
  Posture posture({"user cmd " + std::to_string(user_pid), "root cmd " + std::to_string(root_pid),
                   "init " + std::to_string(init)});
  const pid_t all[] = {user_pid, root_pid, init};

  for (size_t col = 0; col < 2; ++col) {
    const pid_t pid = pids[col];
    for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      const std::string v = StatusField(pid, cap);
      posture.Add(cap, "0000000000000000", col, v, v == "0000000000000000");
    }
    const std::string nnp = StatusField(pid, "NoNewPrivs");
    posture.Add("NoNewPrivs", "1", col, nnp, nnp == "1");
    const std::string sec = StatusField(pid, "Seccomp");
    posture.Add("Seccomp", "2 (filter)", col, sec, sec == "2");
    const std::string fds = [&] {
      std::string s;
      for (const auto& fd : it::ListDir(ProcPath(pid, "fd"))) s += (s.empty() ? "" : ",") + fd;
      return s;
    }();
    posture.Add("fds", "0,1,2", col, fds, fds == "0,1,2");
    bool pipes = true;
    std::string targets;
    for (int fd = 0; fd < 3; ++fd) {
      const std::string t = Link(ProcPath(pid, "fd/" + std::to_string(fd)));
      targets += (fd ? "," : "") + t.substr(0, t.find('['));
      pipes = pipes && (t.rfind("pipe:[", 0) == 0 || t == "/dev/null");
    }
    posture.Add("fd targets", "pipes / /dev/null", col, targets, pipes);
    const std::string core = LimitOf(pid, "Max core file size");
    posture.Add("RLIMIT_CORE", "0 0", col, core, core == "0 0");
    const std::string nofile = LimitOf(pid, "Max open files");
    posture.Add("RLIMIT_NOFILE", "1024 1024", col, nofile, nofile == "1024 1024");
    const std::string fsize = LimitOf(pid, "Max file size");
    posture.Add("RLIMIT_FSIZE", "1073741824 x2", col, fsize, fsize == "1073741824 1073741824");
    const std::string stack = LimitOf(pid, "Max stack size");
    posture.Add("RLIMIT_STACK soft", "8388608", col, stack,
                stack.rfind("8388608 ", 0) == 0);
  }

  // Identity and namespaces: the commands and the init.
  for (size_t col = 0; col < 3; ++col) {
    const pid_t pid = all[col];
    const auto uids = it::ProcUids(pid);
    std::string uid_text;
    bool uids_ok = uids.size() == 4;
    for (int64_t u : uids) {
      uid_text += (uid_text.empty() ? "" : " ") + std::to_string(u);
      uids_ok = uids_ok && u != 0 && u >= base;
    }
    posture.Add("Uid (host)", ">= uid base " + std::to_string(base) + ", not 0", col, uid_text,
                uids_ok);
    const std::string gid = StatusField(pid, "Gid");
    bool gid_ok = gid.rfind("0", 0) != 0 && std::stoll(gid.substr(0, gid.find('\t'))) >= base;
    posture.Add("Gid (host)", ">= uid base, not 0", col, gid.substr(0, gid.find('\t')), gid_ok);
    for (const char* map : {"uid_map", "gid_map"}) {
      auto text = it::ReadFile(ProcPath(pid, map)).value_or("");
      std::istringstream in(text);
      int64_t inside = -1, outside = -1, count = -1;
      in >> inside >> outside >> count;
      std::string extra;
      in >> extra;
      const bool ok = inside == 0 && outside >= base && outside != 0 && count == 65536 &&
                      extra.empty();
      posture.Add(map, "0 <range >= base> 65536, one line", col,
                  std::to_string(inside) + " " + std::to_string(outside) + " " +
                      std::to_string(count),
                  ok);
    }
    for (const char* ns : {"user", "pid", "mnt", "net", "ipc", "uts", "cgroup"}) {
      const std::string mine = Link(ProcPath(pid, std::string("ns/") + ns));
      const std::string sbxd = Link(ProcPath(daemon().pid(), std::string("ns/") + ns));
      const std::string host = Link(std::string("/proc/self/ns/") + ns);
      posture.Add(std::string("ns/") + ns, "differs from sbxd's", col, mine,
                  mine.rfind(ns, 0) == 0 && mine != sbxd && mine != host);
    }
    // /proc/<pid>/cgroup from the host: the sandbox's own cgroup.
    auto cg = it::ReadFile(ProcPath(pid, "cgroup")).value_or("");
    bool cg_ok = !cg.empty();
    for (const auto& line : it::SplitLines(cg)) {
      const std::string path = line.substr(line.rfind(':') + 1);
      if (line.find(":memory:") != std::string::npos || line.find(":pids:") != std::string::npos) {
        // The sandbox's cgroup or one of its leaves (init, one per command).
        const std::string parent = "/" + daemon().cgroup_parent() + "/" + sb.id();
        const size_t at = path.find(parent);
        cg_ok = cg_ok && at != std::string::npos &&
                (at + parent.size() == path.size() || path[at + parent.size()] == '/');
      }
    }
    posture.Add("cgroup (memory, pids)", "…/" + daemon().cgroup_parent() + "/<id>[/leaf]", col,
                cg_ok ? "sandbox's own" : "other", cg_ok);
  }
  // Every command of the sandbox shares the same namespaces (one sandbox).
  for (const char* ns : {"user", "pid", "mnt", "net"}) {
    EXPECT_EQ(Link(ProcPath(user_pid, std::string("ns/") + ns)),
              Link(ProcPath(root_pid, std::string("ns/") + ns)))
        << ns;
  }

  std::fputs(posture.Table().c_str(), stdout);
  std::fflush(stdout);
  RecordOutcome(posture.failures() == 0
                    ? "caps 0, NoNewPrivs 1, Seccomp 2, 7 own namespaces, fds 0-2 (pipes), "
                      "rlimits set, uid/gid map 0 -> a 65536 range above the base"
                    : std::to_string(posture.failures()) + " posture deviations (see table)");
  ASSERT_TRUE(user.SendSignal(SIGKILL));
  ASSERT_TRUE(root.SendSignal(SIGKILL));
  user.Finish();
  root.Finish();
}

}  // namespace
}  // namespace sbx::sec
