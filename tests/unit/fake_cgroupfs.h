// Helpers for unit tests that build fake cgroupfs trees in a temporary
// directory. Files are plain files, so a write does what the test can read
// back; the files a real kernel would create in a new cgroup directory the
// test creates itself (PopulateFiles).
#ifndef SBX_TESTS_UNIT_FAKE_CGROUPFS_H_
#define SBX_TESTS_UNIT_FAKE_CGROUPFS_H_

#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace sbx::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with all its content.
class TempDir {
 public:
  TempDir() {
    const char* base = ::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/sbx-unit-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Creates (or replaces) a file, and its directories.
inline void PutFile(const std::string& path, const std::string& content) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << "writing " << path;
}

// Fills a directory with files: {name, content} pairs.
inline void PopulateFiles(const std::string& dir,
                          std::initializer_list<std::pair<const char*, const char*>> files) {
  for (const auto& [name, content] : files) PutFile(dir + "/" + name, content);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool Exists(const std::string& path) {
  return std::filesystem::exists(std::filesystem::symlink_status(path));
}

// A forked child that sleeps until killed; the destructor kills and reaps
// it if the test has not.
class SleepingChild {
 public:
  SleepingChild() {
    pid_ = ::fork();
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  ~SleepingChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
  }
  SleepingChild(const SleepingChild&) = delete;
  SleepingChild& operator=(const SleepingChild&) = delete;

  pid_t pid() const { return pid_; }

  // Reaps it and returns the wait status.
  int Wait() {
    int status = 0;
    if (pid_ > 0) ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace sbx::testing

#endif  // SBX_TESTS_UNIT_FAKE_CGROUPFS_H_
