#include "server/api/unix_listener.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace sbx::api {
namespace {

class UnixListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/sbx-listener-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/s.sock";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  // A client connection to path_, or -1 with errno set.
  int Connect() const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!ConnectSocket(fd)) {
      const int err = errno;
      ::close(fd);
      errno = err;
      return -1;
    }
    return fd;
  }
  bool ConnectSocket(int fd) const {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    return ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
  }

  std::string dir_;
  std::string path_;
};

// What the handler was given, for the test thread to wait on.
class Accepted {
 public:
  UnixListener::Handler Handler() {
    return [this](int listener_fd, int fd) {
      absl::MutexLock lock(&mu_);
      listener_fd_ = listener_fd;
      fds_.push_back(fd);
    };
  }
  // The fds of the first `n` connections, once there are that many (or what
  // came within 5 s).
  std::vector<int> WaitFor(size_t n) {
    absl::MutexLock lock(&mu_);
    wanted_ = n;
    mu_.AwaitWithTimeout(absl::Condition(this, &Accepted::Enough), absl::Seconds(5));
    return fds_;
  }
  int listener_fd() {
    absl::MutexLock lock(&mu_);
    return listener_fd_;
  }

 private:
  bool Enough() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return fds_.size() >= wanted_; }

  absl::Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  size_t wanted_ ABSL_GUARDED_BY(mu_) = 0;
  int listener_fd_ ABSL_GUARDED_BY(mu_) = -1;
};

TEST_F(UnixListenerTest, TheSocketIsOwnerOnlyWhateverTheUmask) {
  const mode_t old = ::umask(0);
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path_);
  ::umask(old);
  ASSERT_TRUE(listener.ok()) << listener.status();
  struct stat st;
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(UnixListenerTest, EachConnectionGetsTheLargeSendBuffer) {
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path_);
  ASSERT_TRUE(listener.ok()) << listener.status();
  Accepted accepted;
  ASSERT_TRUE((*listener)->Start(accepted.Handler()).ok());
  const int a = Connect();
  const int b = Connect();
  ASSERT_GE(a, 0) << std::strerror(errno);
  ASSERT_GE(b, 0) << std::strerror(errno);
  const std::vector<int> fds = accepted.WaitFor(2);
  ASSERT_EQ(fds.size(), 2u);
  EXPECT_GE(accepted.listener_fd(), 0);
  for (int fd : fds) {
    int sndbuf = 0;
    socklen_t len = sizeof(sndbuf);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len), 0);
    // The kernel reports twice what was set (its bookkeeping overhead).
    // Tests run as root, so SO_SNDBUFFORCE is not capped by wmem_max.
    EXPECT_EQ(sndbuf, 2 * kSendBufferBytes);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0) << "gRPC expects non-blocking sockets";
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    ::close(fd);
  }
  ::close(a);
  ::close(b);
}

TEST_F(UnixListenerTest, AfterStopConnectsAreRefused) {
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path_);
  ASSERT_TRUE(listener.ok()) << listener.status();
  Accepted accepted;
  ASSERT_TRUE((*listener)->Start(accepted.Handler()).ok());
  const int before = Connect();
  ASSERT_GE(before, 0);
  ASSERT_EQ(accepted.WaitFor(1).size(), 1u);
  (*listener)->Stop();
  (*listener)->Stop();  // idempotent
  EXPECT_EQ(Connect(), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
  struct stat st;
  EXPECT_EQ(::lstat(path_.c_str(), &st), 0) << "the file is its owner's to remove";
  EXPECT_FALSE((*listener)->Start([](int, int fd) { ::close(fd); }).ok());
  const std::vector<int> fds = accepted.WaitFor(1);
  EXPECT_EQ(fds.size(), 1u);
  for (int fd : fds) ::close(fd);
  ::close(before);
}

absl::Duration ProcessCpuTime() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) + absl::DurationFromTimeval(usage.ru_stime);
}

// Out of fds, the listener waits (the connection stays in the backlog)
// instead of spinning on a socket that stays readable, and takes the
// connection once an fd is free again.
TEST_F(UnixListenerTest, OutOfFdsItWaitsInsteadOfSpinning) {
  absl::StatusOr<std::unique_ptr<UnixListener>> listener = UnixListener::Listen(path_);
  ASSERT_TRUE(listener.ok()) << listener.status();
  Accepted accepted;
  ASSERT_TRUE((*listener)->Start(accepted.Handler()).ok());
  const int client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(client, 0);

  rlimit old_limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old_limit), 0);
  rlimit low = old_limit;
  low.rlim_cur = std::min<rlim_t>(old_limit.rlim_cur, 512);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<int> fillers;
  for (int fd; (fd = ::dup(client)) >= 0;) fillers.push_back(fd);
  ASSERT_EQ(errno, EMFILE);

  ASSERT_TRUE(ConnectSocket(client)) << std::strerror(errno);  // queued in the backlog
  const absl::Duration cpu_before = ProcessCpuTime();
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Duration cpu_spent = ProcessCpuTime() - cpu_before;
  EXPECT_LT(cpu_spent, absl::Milliseconds(100)) << "accept was retried without a pause";
  EXPECT_TRUE(accepted.WaitFor(0).empty());

  ::close(fillers.back());
  fillers.pop_back();
  const std::vector<int> fds = accepted.WaitFor(1);
  EXPECT_EQ(fds.size(), 1u) << "the connection was not taken once an fd was free";

  for (int fd : fillers) ::close(fd);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old_limit), 0);
  for (int fd : fds) ::close(fd);
  ::close(client);
}

TEST_F(UnixListenerTest, BadPathsAreRefusedClearly) {
  absl::StatusOr<std::unique_ptr<UnixListener>> too_long =
      UnixListener::Listen("/tmp/" + std::string(200, 'x'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("socket path must be"), absl::string_view::npos);

  absl::StatusOr<std::unique_ptr<UnixListener>> no_dir =
      UnixListener::Listen(dir_ + "/missing/s.sock");
  ASSERT_FALSE(no_dir.ok());
  EXPECT_EQ(no_dir.status().code(), absl::StatusCode::kNotFound) << no_dir.status();
  EXPECT_NE(no_dir.status().message().find("binding " + dir_ + "/missing/s.sock"),
            absl::string_view::npos)
      << no_dir.status();

  absl::StatusOr<std::unique_ptr<UnixListener>> first = UnixListener::Listen(path_);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<UnixListener>> taken = UnixListener::Listen(path_);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kAlreadyExists) << taken.status();
  struct stat st;
  EXPECT_EQ(::lstat(path_.c_str(), &st), 0) << "a failed Listen leaves another's socket alone";
}

}  // namespace
}  // namespace sbx::api
