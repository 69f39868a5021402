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
#include <memory>
#include <sstream>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "server/engine/cgroup.h"

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

// A fixture over a fake tree in tmp_: a test fills options_ (SetUp), and
// MakeChild puts in a new child the files the kernel would.
class FakeCgroupTest : public ::testing::Test {
 protected:
  virtual std::unique_ptr<engine::Cgroup> MakeChild(engine::CgroupManager& manager,
                                                    const std::string& name) = 0;

  // The manager of the fake tree options_ names, or null after a failure.
  std::unique_ptr<engine::CgroupManager> MakeManager() {
    absl::StatusOr<std::unique_ptr<engine::CgroupManager>> manager =
        engine::CgroupManager::Create(options_);
    EXPECT_TRUE(manager.ok()) << manager.status();
    return manager.ok() ? std::move(*manager) : nullptr;
  }

  // What most tests start from: a manager and its child "box".
  void MakeBox() {
    manager_ = MakeManager();
    ASSERT_NE(manager_, nullptr);
    box_ = MakeChild(*manager_, "box");
    ASSERT_NE(box_, nullptr);
  }

  TempDir tmp_;
  engine::CgroupOptions options_;
  std::unique_ptr<engine::CgroupManager> manager_;  // set by MakeBox
  std::unique_ptr<engine::Cgroup> box_;
};

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
