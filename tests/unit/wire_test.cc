// The sbxd <-> sbx-init messages: every field survives a round trip, a
// message cut short or carrying junk is refused, and Receive hands back
// exactly the datagram and its descriptors.
#include "server/engine/wire.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "server/engine/sandbox.h"

namespace sbx::wire {
namespace {

ExecRequest Sample() {
  ExecRequest r;
  r.uid = 1000;
  r.gid = 1001;
  r.tty = true;
  r.rows = 50;
  r.cols = 132;
  r.timeout_ms = 2500;
  r.fsize_bytes = 1 << 20;
  r.stack_bytes = 8 << 20;
  r.open_files = 64;
  r.cgroup_fds = 0;
  r.spare_pid = 7;
  r.cwd = "/work";
  r.argv = {"sh", "-c", "echo hi"};
  r.env = {"PATH=/usr/bin", "A="};
  return r;
}

TEST(WireTest, ExecRequestRoundTrip) {
  const ExecRequest in = Sample();
  const std::string msg = EncodeExec(in);
  ASSERT_EQ(TypeOf(msg), kExec);
  Reader reader(msg.data() + sizeof(uint32_t), msg.size() - sizeof(uint32_t));
  ExecRequest out;
  ASSERT_TRUE(DecodeExec(reader, &out));
  EXPECT_EQ(out.uid, in.uid);
  EXPECT_EQ(out.gid, in.gid);
  EXPECT_EQ(out.tty, in.tty);
  EXPECT_EQ(out.rows, in.rows);
  EXPECT_EQ(out.cols, in.cols);
  EXPECT_EQ(out.timeout_ms, in.timeout_ms);
  EXPECT_EQ(out.fsize_bytes, in.fsize_bytes);
  EXPECT_EQ(out.stack_bytes, in.stack_bytes);
  EXPECT_EQ(out.open_files, in.open_files);
  EXPECT_EQ(out.cgroup_fds, in.cgroup_fds);
  EXPECT_EQ(out.spare_pid, in.spare_pid);
  EXPECT_EQ(out.cwd, in.cwd);
  EXPECT_EQ(out.argv, in.argv);
  EXPECT_EQ(out.env, in.env);
}

TEST(WireTest, TruncatedOrPaddedExecRequestIsRefused) {
  const std::string msg = EncodeExec(Sample());
  for (size_t cut = sizeof(uint32_t); cut < msg.size(); ++cut) {
    Reader reader(msg.data() + sizeof(uint32_t), cut - sizeof(uint32_t));
    ExecRequest out;
    EXPECT_FALSE(DecodeExec(reader, &out)) << "accepted the first " << cut << " bytes";
  }
  const std::string padded = msg + "x";
  Reader reader(padded.data() + sizeof(uint32_t), padded.size() - sizeof(uint32_t));
  ExecRequest out;
  EXPECT_FALSE(DecodeExec(reader, &out)) << "accepted a trailing byte";
}

// On cgroup v2 the first cgroup fd may be the leaf's directory: a field of
// its own, at the end, so that a request without it is the one inits from
// before it take, and a request with it is one they refuse.
TEST(WireTest, ALeafDirectoryFirstIsATrailingFieldOnlyWhenSet) {
  ExecRequest in = Sample();
  in.spare_pid = 0;
  in.cgroup_fds = 2;
  const std::string without = EncodeExec(in);
  in.cgroup_dir_first = true;
  const std::string with = EncodeExec(in);
  ASSERT_EQ(with.size(), without.size() + sizeof(uint32_t));
  EXPECT_EQ(with.substr(0, without.size()), without);
  for (const std::string* msg : {&without, &with}) {
    Reader reader(msg->data() + sizeof(uint32_t), msg->size() - sizeof(uint32_t));
    ExecRequest out;
    ASSERT_TRUE(DecodeExec(reader, &out));
    EXPECT_EQ(out.cgroup_dir_first, msg == &with);
    EXPECT_EQ(out.cgroup_fds, 2u);
  }
  // A directory alone leaves nothing to join if the kernel refuses it; any
  // other trailing value is junk.
  in.cgroup_fds = 1;
  const std::string dir_alone = EncodeExec(in);
  const std::string junk = without + Writer(kExec).U32(2).data().substr(sizeof(uint32_t));
  for (const std::string* msg : {&dir_alone, &junk}) {
    Reader reader(msg->data() + sizeof(uint32_t), msg->size() - sizeof(uint32_t));
    ExecRequest out;
    EXPECT_FALSE(DecodeExec(reader, &out)) << (msg == &junk ? "junk" : "a directory alone");
  }
}

// The task limit follows the leaf-directory flag (0 or 1) at the end, and
// is sent only when set: a request without it is what older inits take.
TEST(WireTest, ATaskLimitIsATrailingFieldOnlyWhenSet) {
  ExecRequest in = Sample();
  in.spare_pid = 0;
  in.cgroup_fds = 2;
  const std::string without = EncodeExec(in);
  for (bool dir_first : {false, true}) {
    in.cgroup_dir_first = dir_first;
    in.nproc = 63;
    const std::string with = EncodeExec(in);
    ASSERT_EQ(with.size(), without.size() + sizeof(uint32_t) + sizeof(int64_t));
    EXPECT_EQ(with.substr(0, without.size()), without);
    Reader reader(with.data() + sizeof(uint32_t), with.size() - sizeof(uint32_t));
    ExecRequest out;
    ASSERT_TRUE(DecodeExec(reader, &out));
    EXPECT_EQ(out.nproc, 63);
    EXPECT_EQ(out.cgroup_dir_first, dir_first);
  }
  Reader reader(without.data() + sizeof(uint32_t), without.size() - sizeof(uint32_t));
  ExecRequest out;
  ASSERT_TRUE(DecodeExec(reader, &out));
  EXPECT_EQ(out.nproc, 0);
  // A flag of 0 with nothing after it, or a limit that is not positive, is junk.
  const std::string body = without.substr(sizeof(uint32_t));
  const std::string flag_alone = body + Writer(kExec).U32(0).data().substr(sizeof(uint32_t));
  const std::string zero = body + Writer(kExec).U32(0).I64(0).data().substr(sizeof(uint32_t));
  const std::string negative =
      body + Writer(kExec).U32(1).I64(-5).data().substr(sizeof(uint32_t));
  for (const std::string* junk : {&flag_alone, &zero, &negative}) {
    Reader r(junk->data(), junk->size());
    ExecRequest o;
    EXPECT_FALSE(DecodeExec(r, &o)) << (junk == &flag_alone ? "a flag alone"
                                        : junk == &zero     ? "a zero limit"
                                                            : "a negative limit");
  }
}

TEST(WireTest, SpawnRequestRoundTrip) {
  for (bool keep : {false, true}) {
    SpawnRequest in{"sb-1", "/state/sb-1/root", 1 << 20, 2 << 20, 3 << 20, keep};
    const std::string msg = EncodeSpawn(in);
    ASSERT_EQ(TypeOf(msg), kSpawn);
    Reader reader(msg.data() + sizeof(uint32_t), msg.size() - sizeof(uint32_t));
    SpawnRequest out;
    ASSERT_TRUE(DecodeSpawn(reader, &out));
    EXPECT_EQ(out.id, in.id);
    EXPECT_EQ(out.root_dir, in.root_dir);
    EXPECT_EQ(out.tmp_bytes, in.tmp_bytes);
    EXPECT_EQ(out.work_bytes, in.work_bytes);
    EXPECT_EQ(out.shm_bytes, in.shm_bytes);
    EXPECT_EQ(out.keep_cgroup_ns, keep);
    Reader cut(msg.data() + sizeof(uint32_t), msg.size() - 2 * sizeof(uint32_t));
    EXPECT_FALSE(DecodeSpawn(cut, &out));
  }
}

TEST(WireTest, EveryStepHasAName) {
  for (uint32_t step = 0; step < kStepCount; ++step) {
    EXPECT_STRNE(SetupStepName(step), "unknown step") << step;
  }
  for (uint32_t step = kExecStepFork; step <= kExecStepSpare; ++step) {
    EXPECT_STRNE(ExecStepName(step), "starting") << step;
  }
}

TEST(WireTest, ReceiveReturnsExactlyTheDatagramAndItsDescriptors) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  // A big message, then a small one: the small one must not come back with
  // the big one's tail (the receive buffer is reused).
  const std::string big(kMaxMessage / 2, 'b');
  ASSERT_EQ(Send(pair[0], big), 0);
  const std::string small = Writer(kPong).data();
  ASSERT_EQ(Send(pair[0], small, pipe_fds, 2), 0);

  std::string got;
  int fds[kMaxFds];
  size_t nfds = 0;
  ASSERT_EQ(Receive(pair[1], &got, fds, &nfds), static_cast<ssize_t>(big.size()));
  EXPECT_EQ(got, big);
  EXPECT_EQ(nfds, 0u);
  ASSERT_EQ(Receive(pair[1], &got, fds, &nfds), static_cast<ssize_t>(small.size()));
  EXPECT_EQ(got, small);
  ASSERT_EQ(nfds, 2u);
  // The received read end reads what the original write end writes.
  ASSERT_EQ(::write(pipe_fds[1], "z", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(fds[0], &c, 1), 1);
  EXPECT_EQ(c, 'z');
  for (size_t i = 0; i < nfds; ++i) ::close(fds[i]);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);

  // End of stream.
  ::close(pair[0]);
  EXPECT_EQ(Receive(pair[1], &got, fds, &nfds), 0);
  ::close(pair[1]);
}

// The init reaps a command that ended on its own while sbxd's SIGKILL for it
// is on its way: it sends the exit report and closes with the signal unread.
// The kernel then reports ECONNRESET once, ahead of the queued report.
TEST(WireTest, ReceiveReadsWhatAPeerSentBeforeClosingWithOursUnread) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  ASSERT_EQ(Send(pair[0], Writer(kSignal).U32(9).data()), 0);  // never read
  ExitReport report;
  report.wait_status = 7 << 8;
  report.wall_us = 1234;
  const std::string exit_msg = EncodeExit(report);
  ASSERT_EQ(Send(pair[1], exit_msg), 0);
  ::close(pair[1]);

  std::string got;
  int fds[kMaxFds];
  size_t nfds = 0;
  ASSERT_EQ(Receive(pair[0], &got, fds, &nfds, MSG_DONTWAIT),
            static_cast<ssize_t>(exit_msg.size()));
  EXPECT_EQ(got, exit_msg);
  EXPECT_EQ(Receive(pair[0], &got, fds, &nfds, MSG_DONTWAIT), 0);  // then the end
  ::close(pair[0]);
}

TEST(WireTest, ExitReportCrossingASignalIsStillTheCommandsExit) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair), 0);
  ASSERT_EQ(Send(pair[0], Writer(kSignal).U32(9).data()), 0);
  ExitReport report;
  report.wait_status = 3 << 8;  // exited 3
  report.wall_us = 4321;
  report.user_us = 11;
  ASSERT_EQ(Send(pair[1], EncodeExit(report)), 0);
  ::close(pair[1]);

  absl::StatusOr<engine::ExecExit> exit = engine::ReadExecExit(pair[0]);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->wait_status, 3 << 8);
  EXPECT_EQ(exit->wall_us, 4321);
  EXPECT_EQ(exit->user_us, 11);
  // Nothing more: the init is gone, which the next read says.
  EXPECT_EQ(engine::ReadExecExit(pair[0]).status().code(), absl::StatusCode::kUnavailable);
  ::close(pair[0]);
}

}  // namespace
}  // namespace sbx::wire
