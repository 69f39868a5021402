#include "proc_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace sbx::it {

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout,
             std::chrono::milliseconds step) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(step);
  }
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return ss.str();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> ListSubdirs(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& name : ListDir(dir)) {
    struct stat st;
    if (lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) out.push_back(name);
  }
  return out;
}

namespace {
std::vector<std::string>* g_tree = nullptr;
int CollectTree(const char* path, const struct stat*, int, struct FTW*) {
  g_tree->push_back(path);
  return 0;
}
int RemoveEntry(const char* path, const struct stat*, int type, struct FTW*) {
  if (type == FTW_DP) {
    rmdir(path);
  } else {
    unlink(path);
  }
  return 0;
}
}  // namespace

std::vector<std::string> ListTree(const std::string& dir) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::vector<std::string> out;
  g_tree = &out;
  nftw(dir.c_str(), CollectTree, 16, FTW_PHYS | FTW_MOUNT);
  g_tree = nullptr;
  if (!out.empty()) out.erase(out.begin());  // `dir` itself
  return out;
}

void RemoveTree(const std::string& dir) {
  if (dir.empty() || dir == "/") return;
  nftw(dir.c_str(), RemoveEntry, 16, FTW_PHYS | FTW_MOUNT | FTW_DEPTH);
}

// ---- processes -----------------------------------------------------------

uint64_t ProcStartTime(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return 0;
  size_t close_paren = stat->rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream in(stat->substr(close_paren + 2));
  std::string field;
  // Fields after comm start at 3 (state); starttime is field 22.
  for (int i = 3; i <= 22 && (in >> field); ++i) {
    if (i == 22) return std::stoull(field);
  }
  return 0;
}

bool ProcessGone(pid_t pid, uint64_t start_time) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  uint64_t now = ProcStartTime(pid);
  return now == 0 || (start_time != 0 && now != start_time);
}

static std::string StatusField(pid_t pid, const std::string& key) {
  auto status = ReadFile("/proc/" + std::to_string(pid) + "/status");
  if (!status) return "";
  for (const auto& line : SplitLines(*status)) {
    if (line.rfind(key + ":", 0) == 0) return Trim(line.substr(key.size() + 1));
  }
  return "";
}

std::vector<int64_t> ProcUids(pid_t pid) {
  std::vector<int64_t> uids;
  std::istringstream in(StatusField(pid, "Uid"));
  int64_t v;
  while (in >> v) uids.push_back(v);
  return uids;
}

pid_t ProcNsPid(pid_t pid) {
  std::istringstream in(StatusField(pid, "NSpid"));
  pid_t last = -1;
  for (pid_t v; in >> v;) last = v;
  return last;
}

int64_t ProcVmRssKb(pid_t pid) {
  std::string v = StatusField(pid, "VmRSS");
  return v.empty() ? -1 : std::stoll(v);
}

int64_t ProcVmHwmKb(pid_t pid) {
  std::string v = StatusField(pid, "VmHWM");
  return v.empty() ? -1 : std::stoll(v);
}

bool ResetPeakRss(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/clear_refs";
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, "5", 1) == 1;
  close(fd);
  return ok;
}

int ProcThreadCount(pid_t pid) {
  std::string v = StatusField(pid, "Threads");
  return v.empty() ? -1 : std::stoi(v);
}

bool ProcHasCapability(pid_t pid, int cap) {
  const std::string eff = StatusField(pid, "CapEff");
  if (eff.empty() || cap < 0 || cap >= 64) return false;
  return (std::stoull(eff, nullptr, 16) >> cap) & 1;
}

long ProcBlockedSyscall(pid_t pid) {
  auto text = ReadFile("/proc/" + std::to_string(pid) + "/syscall");
  if (!text || text->empty() || !std::isdigit(static_cast<unsigned char>((*text)[0]))) return -1;
  return std::strtol(text->c_str(), nullptr, 10);
}

int ProcFdCount(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  if (!PathExists(dir)) return -1;
  return static_cast<int>(ListDir(dir).size());
}

namespace {

std::string ReadLink(const std::string& path) {
  char target[256];
  const ssize_t n = readlink(path.c_str(), target, sizeof(target));
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(target)) return "";
  return std::string(target, static_cast<size_t>(n));
}

}  // namespace

std::vector<std::string> ProcFdTargets(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  std::vector<std::string> out;
  for (const auto& name : ListDir(dir)) {
    std::string target = ReadLink(dir + "/" + name);
    if (!target.empty()) out.push_back(std::move(target));
  }
  return out;
}

std::string ProcNamespace(pid_t pid, const std::string& name) {
  return ReadLink("/proc/" + std::to_string(pid) + "/ns/" + name);
}

std::vector<pid_t> AllPids() {
  std::vector<pid_t> pids;
  for (const auto& name : ListDir("/proc")) {
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
      pids.push_back(std::stoi(name));
    }
  }
  return pids;
}

std::vector<pid_t> ProcChildren(pid_t pid) {
  std::vector<pid_t> out;
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& tid : ListDir(task_dir)) {
    auto children = ReadFile(task_dir + "/" + tid + "/children");
    if (!children) continue;
    std::istringstream in(*children);
    pid_t child;
    while (in >> child) out.push_back(child);
  }
  return out;
}

// ---- cgroups -------------------------------------------------------------

namespace {
struct CgroupMount {
  std::string root;
  std::string mount_point;
  std::set<std::string> controllers;
  bool v2 = false;
};

std::vector<CgroupMount> CgroupMounts() {
  std::vector<CgroupMount> mounts;
  auto info = ReadFile("/proc/self/mountinfo");
  if (!info) return mounts;
  for (const auto& line : SplitLines(*info)) {
    std::istringstream in(line);
    std::vector<std::string> f;
    std::string w;
    while (in >> w) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || std::distance(dash, f.end()) < 4) continue;
    const std::string& fstype = *(dash + 1);
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    CgroupMount m;
    m.root = f[3];
    m.mount_point = f[4];
    m.v2 = fstype == "cgroup2";
    std::stringstream opts(*(dash + 3));
    std::string opt;
    while (std::getline(opts, opt, ',')) m.controllers.insert(opt);
    mounts.push_back(m);
  }
  return mounts;
}

std::string JoinCgroupPath(const CgroupMount& m, const std::string& path) {
  std::string rel = path;
  if (m.root != "/" && rel.rfind(m.root, 0) == 0) rel = rel.substr(m.root.size());
  if (rel == "/") rel = "";
  return m.mount_point + rel;
}
}  // namespace

namespace {
// Controller -> this process's path in it, from /proc/self/cgroup; the v2
// path (the line with no controllers) under "".
std::map<std::string, std::string> OwnCgroupPaths() {
  std::map<std::string, std::string> path_of;
  auto self = ReadFile("/proc/self/cgroup");
  if (!self) return path_of;
  for (const auto& line : SplitLines(*self)) {
    size_t a = line.find(':');
    size_t b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string ctrls = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (ctrls.empty()) {
      path_of[""] = path;
      continue;
    }
    std::stringstream ss(ctrls);
    std::string c;
    while (std::getline(ss, c, ',')) path_of[c] = path;
  }
  return path_of;
}

std::string OwnV1Dir(const std::map<std::string, std::string>& path_of,
                     const std::vector<CgroupMount>& mounts, const std::string& controller) {
  auto it = path_of.find(controller);
  if (it == path_of.end()) return "";
  for (const auto& m : mounts) {
    if (!m.v2 && m.controllers.count(controller)) return JoinCgroupPath(m, it->second);
  }
  return "";
}
}  // namespace

std::string OwnV1CgroupDir(const std::string& controller) {
  return OwnV1Dir(OwnCgroupPaths(), CgroupMounts(), controller);
}

std::vector<std::string> OwnCgroupDirs() {
  std::vector<std::string> dirs;
  const auto path_of = OwnCgroupPaths();
  const auto mounts = CgroupMounts();
  for (const char* controller : {"memory", "pids", "cpu", "cpuacct"}) {
    std::string dir = OwnV1Dir(path_of, mounts, controller);
    if (!dir.empty() && std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) {
      dirs.push_back(dir);
    }
  }
  if (dirs.empty() && path_of.count("")) {
    for (const auto& m : mounts) {
      if (m.v2) {
        dirs.push_back(JoinCgroupPath(m, path_of.at("")));
        break;
      }
    }
  }
  return dirs;
}

std::vector<std::string> CgroupParentDirs(const std::string& parent) {
  std::vector<std::string> dirs;
  for (const auto& d : OwnCgroupDirs()) dirs.push_back(d + "/" + parent);
  return dirs;
}

std::vector<pid_t> CgroupProcsRecursive(const std::string& dir) {
  std::vector<pid_t> pids;
  auto procs = ReadFile(dir + "/cgroup.procs");
  if (procs) {
    std::istringstream in(*procs);
    pid_t p;
    while (in >> p) pids.push_back(p);
  }
  for (const auto& sub : ListSubdirs(dir)) {
    auto more = CgroupProcsRecursive(dir + "/" + sub);
    pids.insert(pids.end(), more.begin(), more.end());
  }
  return pids;
}

bool IsSpareLeaf(const std::string& leaf_dir) {
  const std::vector<pid_t> pids = CgroupProcsRecursive(leaf_dir);
  if (pids.size() != 1) return false;
  std::optional<std::string> comm = ReadFile("/proc/" + std::to_string(pids[0]) + "/comm");
  return comm && *comm == "sbx-init\n";
}

void RemoveCgroupTree(const std::string& dir) {
  if (!PathExists(dir)) return;
  WaitFor(
      [&] {
        auto pids = CgroupProcsRecursive(dir);
        for (pid_t p : pids) kill(p, SIGKILL);
        return pids.empty();
      },
      std::chrono::seconds(5));
  for (const auto& sub : ListSubdirs(dir)) RemoveCgroupTree(dir + "/" + sub);
  WaitFor([&] { return rmdir(dir.c_str()) == 0 || errno == ENOENT; }, std::chrono::seconds(2));
}

std::vector<std::string> MountinfoLinesContaining(const std::string& needle) {
  std::vector<std::string> out;
  auto info = ReadFile("/proc/self/mountinfo");
  if (!info) return out;
  for (const auto& line : SplitLines(*info)) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

std::vector<std::string> MountsBelow(const std::string& dir) {
  std::vector<std::string> out;
  auto info = ReadFile("/proc/self/mountinfo");
  if (!info) return out;
  for (const auto& line : SplitLines(*info)) {
    std::istringstream in(line);
    std::string f[5];
    for (auto& x : f) in >> x;
    if (f[4] == dir || f[4].rfind(dir + "/", 0) == 0) out.push_back(f[4]);
  }
  return out;
}

// ---- child programs --------------------------------------------------------

std::string ProcessResult::Describe() const {
  std::ostringstream ss;
  ss << "started=" << started << " timed_out=" << timed_out << " exit=" << exit_code
     << " signal=" << signal << "\n--- stdout ---\n"
     << out.substr(0, 4096) << "\n--- stderr ---\n"
     << err.substr(0, 4096);
  return ss.str();
}

ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& stdin_data,
                         std::chrono::milliseconds timeout,
                         const std::vector<std::string>& extra_env) {
  ProcessResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) || pipe2(out_pipe, O_CLOEXEC) || pipe2(err_pipe, O_CLOEXEC)) {
    return result;
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The inherited environment, less what extra_env sets (the first of two
  // entries for one name would win).
  auto name_of = [](const std::string& e) { return e.substr(0, e.find('=')); };
  std::set<std::string> overridden;
  for (const auto& e : extra_env) overridden.insert(name_of(e));
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    if (overridden.count(name_of(*e)) == 0) env_storage.push_back(*e);
  }
  for (const auto& e : extra_env) env_storage.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);

  pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    execve(args[0], args.data(), env.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid < 0) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return result;
  }
  result.started = true;
  int in_fd = in_pipe[1];
  fcntl(in_fd, F_SETFL, O_NONBLOCK);
  size_t written = 0;
  if (stdin_data.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  int out_fd = out_pipe[0], err_fd = err_pipe[0];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out_fd >= 0 || err_fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    pollfd fds[3] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}, {in_fd, POLLOUT, 0}};
    int n = poll(fds, 3, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (n < 0 && errno != EINTR) break;
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = read(fds[i].fd, buf, sizeof buf);
        if (r > 0) {
          (i == 0 ? result.out : result.err).append(buf, r);
        } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
          close(fds[i].fd);
          (i == 0 ? out_fd : err_fd) = -1;
        }
      }
    }
    if (in_fd >= 0 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = write(in_fd, stdin_data.data() + written,
                        std::min<size_t>(stdin_data.size() - written, 65536));
      if (w > 0) written += w;
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size()) {
        close(in_fd);
        in_fd = -1;
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd}) {
    if (fd >= 0) close(fd);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : digest) {
    hex.push_back(kHex[c >> 4]);
    hex.push_back(kHex[c & 15]);
  }
  return hex;
}

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return out;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream in(s);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

}  // namespace sbx::it
