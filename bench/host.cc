#include "bench/host.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_split.h"

extern char** environ;

namespace sbx::bench {

std::string FindInPath(const std::string& name) {
  const char* path = getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    std::string candidate = std::string(dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

pid_t Spawn(const std::vector<std::string>& argv, int stdin_fd, int stdout_fd,
            bool own_process_group, int stderr_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  auto redirect = [&](int fd, int target, int flags) {
    if (fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, fd, target);
    } else {
      posix_spawn_file_actions_addopen(&actions, target, "/dev/null", flags, 0);
    }
  };
  redirect(stdin_fd, 0, O_RDONLY);
  redirect(stdout_fd, 1, O_WRONLY);
  redirect(stderr_fd, 2, O_WRONLY);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (own_process_group) flags |= POSIX_SPAWN_SETPGROUP;
  posix_spawnattr_setflags(&attr, flags);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  const int err = posix_spawn(&pid, cargv[0], &actions, &attr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    errno = err;
    return -1;
  }
  return pid;
}

int SpawnAndWait(const std::vector<std::string>& argv) {
  const pid_t pid = Spawn(argv);
  if (pid < 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

int WaitOrKill(pid_t pid, int timeout_ms) {
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return status;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// The value in KiB of the first line starting with `key` in `path`.
int64_t FieldKb(const std::string& path, const std::string& key) {
  std::optional<std::string> text = ReadFile(path);
  if (!text) return 0;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + key.size());
  }
  return 0;
}

std::vector<pid_t> ParsePids(const std::string& text) {
  std::vector<pid_t> pids;
  std::istringstream in(text);
  pid_t p;
  while (in >> p) pids.push_back(p);
  return pids;
}

}  // namespace

int64_t PssKb(pid_t pid) {
  return FieldKb("/proc/" + std::to_string(pid) + "/smaps_rollup", "Pss:");
}

int64_t RssKb(pid_t pid) {
  return FieldKb("/proc/" + std::to_string(pid) + "/status", "VmRSS:");
}

std::vector<pid_t> Children(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& entry : std::filesystem::directory_iterator(task, ec)) {
    std::optional<std::string> text = ReadFile(entry.path().string() + "/children");
    if (!text) continue;
    for (pid_t p : ParsePids(*text)) out.push_back(p);
  }
  return out;
}

std::vector<std::string> CgroupParentDirs(const std::string& parent) {
  std::vector<std::string> dirs;
  std::optional<std::string> self = ReadFile("/proc/self/cgroup");
  if (!self) return dirs;
  const bool unified = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
  std::istringstream in(*self);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    std::string mount;
    if (unified) {
      if (f[0] != "0") continue;
      mount = "/sys/fs/cgroup";
    } else {
      std::vector<std::string> controllers = absl::StrSplit(f[1], ',');
      for (const char* want : {"memory", "pids", "cpu", "cpuacct"}) {
        if (std::find(controllers.begin(), controllers.end(), want) != controllers.end()) {
          mount = "/sys/fs/cgroup/" + f[1];
        }
      }
      if (mount.empty()) continue;
    }
    std::string dir = mount + (f[2] == "/" ? "" : f[2]) + "/" + parent;
    if (std::find(dirs.begin(), dirs.end(), dir) != dirs.end()) continue;
    if (f[1] == "memory" || unified) {
      dirs.insert(dirs.begin(), dir);
    } else {
      dirs.push_back(dir);
    }
  }
  return dirs;
}

std::vector<std::string> CgroupDescendants(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (!entry.is_directory(ec)) continue;
    out.push_back(entry.path().string());
    for (std::string& d : CgroupDescendants(entry.path().string())) out.push_back(std::move(d));
  }
  return out;
}

std::vector<pid_t> CgroupProcs(const std::string& dir) {
  std::vector<pid_t> pids;
  std::vector<std::string> dirs = CgroupDescendants(dir);
  dirs.insert(dirs.begin(), dir);
  for (const std::string& d : dirs) {
    std::optional<std::string> text = ReadFile(d + "/cgroup.procs");
    if (!text) continue;
    for (pid_t p : ParsePids(*text)) pids.push_back(p);
  }
  return pids;
}

void RemoveCgroupTree(const std::string& dir) {
  if (access(dir.c_str(), F_OK) != 0) return;
  for (int attempt = 0; attempt < 250; ++attempt) {
    std::vector<pid_t> pids = CgroupProcs(dir);
    if (pids.empty()) break;
    for (pid_t p : pids) kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<std::string> dirs = CgroupDescendants(dir);
  std::sort(dirs.begin(), dirs.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  dirs.push_back(dir);
  for (const std::string& d : dirs) {
    for (int attempt = 0; attempt < 100 && rmdir(d.c_str()) != 0 && errno == EBUSY; ++attempt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

std::vector<std::string> MountsBelow(const std::string& dir) {
  std::vector<std::string> out;
  std::optional<std::string> info = ReadFile("/proc/self/mountinfo");
  if (!info) return out;
  std::istringstream in(*info);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string f[5];
    for (std::string& x : f) fields >> x;
    if (f[4] == dir || f[4].rfind(dir + "/", 0) == 0) out.push_back(f[4]);
  }
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() < b.size(); });
  return out;
}

}  // namespace sbx::bench
