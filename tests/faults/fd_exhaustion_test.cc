// sbxd out of file descriptors while clients keep connecting: the Unix
// socket's listener pauses, and takes connections again once fds are free.
// (gRPC's own listener, which sbxd used before, logged "Failed accept4: Too
// many open files" once and never accepted on that socket again.)
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fault_util.h"

namespace sbx::faults {
namespace {

using FdExhaustionTest = FaultTest;

// A new connection of its own (not the fixture's), so that a call on it
// needs the listener to accept.
std::unique_ptr<Stub> NewConnection(const Daemon& daemon) {
  static int channels = 0;
  grpc::ChannelArguments args;
  // A distinct argument keeps gRPC from sharing a subchannel (and socket).
  args.SetInt("sbx.faults.channel", ++channels);
  return v1::SandboxService::NewStub(
      grpc::CreateCustomChannel(daemon.address(), grpc::InsecureChannelCredentials(), args));
}

grpc::Status ListWithin(Stub& stub, std::chrono::milliseconds timeout) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, timeout);
  v1::ListSandboxesRequest request;
  v1::ListSandboxesResponse response;
  return stub.ListSandboxes(&ctx, request, &response);
}

// A raw connection to sbxd's socket that says nothing.
int RawConnect(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

size_t OpenFds(pid_t pid) {
  size_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

TEST_F(FdExhaustionTest, TheSocketAcceptsAgainOnceFdsAreFree) {
  const pid_t pid = daemon_.pid();
  rlimit normal{};
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, nullptr, &normal), 0) << std::strerror(errno);
  // Room for a few connections, then none.
  rlimit tight = normal;
  tight.rlim_cur = OpenFds(pid) + 6;
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, &tight, nullptr), 0) << std::strerror(errno);

  std::vector<int> flood;
  for (int i = 0; i < 30; ++i) {
    const int fd = RawConnect(daemon_.socket_path());
    ASSERT_GE(fd, 0) << "connect " << i << ": " << std::strerror(errno);
    flood.push_back(fd);
  }
  EXPECT_TRUE(WaitFor(
      [&] {
        return daemon_.LogTail(20000).find("accepting a connection: Too many open files") !=
               std::string::npos;
      },
      seconds(5)))
      << "sbxd never ran out of fds";
  std::unique_ptr<Stub> during = NewConnection(daemon_);
  grpc::Status s = ListWithin(*during, milliseconds(500));
  EXPECT_FALSE(s.ok()) << "a new connection was served with no fd to spare";

  for (int fd : flood) ::close(fd);
  ASSERT_EQ(::prlimit(pid, RLIMIT_NOFILE, &normal, nullptr), 0) << std::strerror(errno);

  std::unique_ptr<Stub> after = NewConnection(daemon_);
  s = ListWithin(*after, milliseconds(5000));
  EXPECT_TRUE(s.ok()) << "a new connection after the flood: " << StatusText(s);
  // And the daemon does its work.
  v1::Sandbox sb;
  s = Create(*after, MakeCreate({}), &sb);
  ASSERT_TRUE(s.ok()) << StatusText(s);
  ExecResult r = RunExec(*after, MakeStart(sb.id(), {"echo", "ok"}), "", seconds(10));
  EXPECT_TRUE(r.Ok()) << r.Describe();
  EXPECT_EQ(r.out, "ok\n");
  s = Destroy(*after, sb.id());
  EXPECT_TRUE(s.ok()) << StatusText(s);
  ExpectNothingLeftOf(sb.id());
}

}  // namespace
}  // namespace sbx::faults
