// sbxd's side of the spare hand-shake (engine::PrepareSpare and
// WaitSpareSettled) against a scripted init on a real Unix socket: the
// init's two answers, the single answer of an init from before them, a
// spare that dies while it joins its leaf, and answers that make no sense;
// and how StartExec takes a command that a spare could not start.
#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "server/common/unique_fd.h"
#include "server/engine/sandbox.h"
#include "server/engine/wire.h"

namespace sbx::engine {
namespace {

class SpareProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/sbx-spare-protocol-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/control.sock";
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(listener_.valid());
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(listener_.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::listen(listener_.get(), 1), 0);
    procs_ = UniqueFd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(procs_.valid());
  }

  void TearDown() override {
    if (init_.joinable()) init_.join();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }

  // The init: takes one connection, checks that it is a kPrepare with the
  // cgroup.procs file, and sends `answers` in order.
  void Serve(std::vector<std::string> answers) {
    init_ = std::thread([this, answers = std::move(answers)] {
      UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) return;
      std::string msg;
      int fds[wire::kMaxFds];
      size_t nfds = 0;
      if (wire::Receive(conn.get(), &msg, fds, &nfds) <= 0) return;
      for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
      request_ok_ = wire::TypeOf(msg) == wire::kPrepare && nfds == 1;
      request_ = msg;
      request_nfds_ = nfds;
      for (const std::string& answer : answers) wire::Send(conn.get(), answer);
    });
  }

  absl::StatusOr<PendingSpare> Prepare() { return PrepareSpare(path_, {procs_.get()}); }

  static std::string Prepared(uint32_t pid) {
    return wire::Writer(wire::kPrepared).U32(pid).data();
  }
  static std::string PreparedJoining(uint32_t pid, uint32_t joining = 1) {
    return wire::Writer(wire::kPrepared).U32(pid).U32(joining).data();
  }
  static std::string Settled() { return wire::Writer(wire::kSpareSettled).data(); }
  static std::string Failed(int err) {
    return wire::Writer(wire::kExecFailed).U32(wire::kExecStepSpare).U32(err).data();
  }

  std::string dir_, path_;
  UniqueFd listener_, procs_;
  std::thread init_;
  bool request_ok_ = false;
  std::string request_;  // the kPrepare message, as received
  size_t request_nfds_ = 0;
};

TEST_F(SpareProtocolTest, PidComesAtOnceAndSettlingFollows) {
  Serve({PreparedJoining(42), Settled()});
  absl::StatusOr<PendingSpare> spare = Prepare();
  ASSERT_TRUE(spare.ok()) << spare.status();
  EXPECT_EQ(spare->pid, 42);
  EXPECT_TRUE(spare->settle.valid());
  EXPECT_TRUE(WaitSpareSettled(*spare).ok());
  EXPECT_FALSE(spare->settle.valid());
  init_.join();
  EXPECT_TRUE(request_ok_);
}

// Without a leaf directory the request is what inits from before the
// modes expect: the type alone, with the cgroup.procs files.
TEST_F(SpareProtocolTest, AJoiningRequestCarriesNoMode) {
  Serve({PreparedJoining(42), Settled()});
  absl::StatusOr<PendingSpare> spare = Prepare();
  ASSERT_TRUE(spare.ok()) << spare.status();
  EXPECT_FALSE(spare->born_in_leaf);
  init_.join();
  EXPECT_TRUE(request_ok_);
  EXPECT_EQ(request_, wire::Writer(wire::kPrepare).data());
}

// With one (cgroup v2), the request says so and sends the directory first;
// the init answers whether the spare started there or joins after all.
TEST_F(SpareProtocolTest, ALeafDirectoryIsSentFirstAndTheAnswerSaysWhereTheSpareStarted) {
  UniqueFd leaf(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(leaf.valid());
  for (uint32_t how : {wire::kSpareBornInLeaf, wire::kSpareJoining}) {
    Serve({PreparedJoining(42, how), Settled()});
    absl::StatusOr<PendingSpare> spare = PrepareSpare(path_, {procs_.get()}, leaf.get());
    ASSERT_TRUE(spare.ok()) << spare.status();
    EXPECT_EQ(spare->born_in_leaf, how == wire::kSpareBornInLeaf);
    EXPECT_TRUE(WaitSpareSettled(*spare).ok());
    init_.join();
    EXPECT_EQ(request_,
              wire::Writer(wire::kPrepare).U32(wire::kPrepareCloneInto).data());
    EXPECT_EQ(request_nfds_, 2u);
  }
}

TEST_F(SpareProtocolTest, AnInitFromBeforeAnswersOnceJoined) {
  Serve({Prepared(42)});
  absl::StatusOr<PendingSpare> spare = Prepare();
  ASSERT_TRUE(spare.ok()) << spare.status();
  EXPECT_EQ(spare->pid, 42);
  EXPECT_FALSE(spare->settle.valid());
  EXPECT_TRUE(WaitSpareSettled(*spare).ok());  // nothing more to wait for
}

TEST_F(SpareProtocolTest, SpareThatDiesWhileJoiningIsAnError) {
  Serve({PreparedJoining(42), Failed(ECHILD)});
  absl::StatusOr<PendingSpare> spare = Prepare();
  ASSERT_TRUE(spare.ok()) << spare.status();
  absl::Status settled = WaitSpareSettled(*spare);
  EXPECT_FALSE(settled.ok());
  EXPECT_NE(settled.message().find("handing over to the spare"), std::string::npos) << settled;
}

TEST_F(SpareProtocolTest, InitThatHangsUpWhileJoiningIsAnError) {
  Serve({PreparedJoining(42)});  // then closes the connection
  absl::StatusOr<PendingSpare> spare = Prepare();
  ASSERT_TRUE(spare.ok()) << spare.status();
  EXPECT_EQ(WaitSpareSettled(*spare).code(), absl::StatusCode::kUnavailable);
}

TEST_F(SpareProtocolTest, FailureToForkIsAnError) {
  Serve({Failed(EAGAIN)});
  EXPECT_FALSE(Prepare().ok());
}

TEST_F(SpareProtocolTest, NonsenseAnswersAreRefused) {
  for (const std::string& answer :
       {PreparedJoining(42, 7), PreparedJoining(0), Settled(), std::string("xy")}) {
    Serve({answer});
    absl::StatusOr<PendingSpare> spare = Prepare();
    EXPECT_FALSE(spare.ok()) << "accepted a spare answer of " << answer.size() << " bytes";
    init_.join();
  }
}

// A spare that could not join its leaf (the leaf was removed before it
// did) fails the command before any of it ran: sbxd may start it again on
// the ordinary path, and IsNoSpare says so.
TEST_F(SpareProtocolTest, SpareThatCouldNotJoinItsLeafIsNoSpare) {
  Serve({wire::Writer(wire::kExecFailed).U32(wire::kExecStepCgroup).U32(ENODEV).data()});
  ExecOptions options;
  options.argv = {"true"};
  options.spare_pid = 42;
  absl::StatusOr<ExecChannel> channel = StartExec(path_, options);
  ASSERT_FALSE(channel.ok());
  EXPECT_TRUE(IsNoSpare(channel.status())) << channel.status();
  EXPECT_NE(channel.status().message().find("could not join its cgroup"), std::string::npos)
      << channel.status();
}

// Without a spare the same failure is the command's own: no retry.
TEST_F(SpareProtocolTest, CommandThatCouldNotJoinItsLeafIsAnError) {
  Serve({wire::Writer(wire::kExecFailed).U32(wire::kExecStepCgroup).U32(ENODEV).data()});
  ExecOptions options;
  options.argv = {"true"};
  options.cgroup_procs_fds = {procs_.get()};
  absl::StatusOr<ExecChannel> channel = StartExec(path_, options);
  ASSERT_FALSE(channel.ok());
  EXPECT_FALSE(IsNoSpare(channel.status())) << channel.status();
  EXPECT_NE(channel.status().message().find("joining its cgroup"), std::string::npos)
      << channel.status();
}

}  // namespace
}  // namespace sbx::engine
