// Clients vanish mid-stream, during a flood of output and during a stdin
// upload: the command is killed, its cgroup leaf removed, and sbxd stays
// healthy, responsive and idle (no spinning on a dead stream).
#include <signal.h>

#include <atomic>
#include <thread>

#include "fault_util.h"

namespace sbx::faults {
namespace {

using DisconnectTest = FaultTest;

// A channel of its own, so that dropping it closes the connection.
std::shared_ptr<grpc::Channel> OwnChannel(const Daemon& daemon) {
  grpc::ChannelArguments args;
  // A distinct argument keeps gRPC from sharing the subchannel (and its
  // socket) with the fixture's channel.
  args.SetString("sbx.faults.channel", std::to_string(reinterpret_cast<uintptr_t>(&args)));
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(daemon.address(), grpc::InsecureChannelCredentials(), args);
}

class DisconnectFixture : public FaultTest {
 protected:
  // After the client is gone: the command's processes and leaf are gone,
  // sbxd answers at once and does not burn CPU.
  void ExpectRecovered(const std::string& id) {
    EXPECT_TRUE(WaitFor([&] { return CommandLeaves(id).empty(); }, seconds(5)))
        << CommandLeaves(id).size() << " command leaves left, e.g. " << CommandLeaves(id)[0];
    EXPECT_TRUE(WaitFor([&] { return SandboxProcesses(id, /*spare=*/false).size() == 1; },
                        seconds(5)))
        << SandboxProcesses(id, false).size() << " processes in the sandbox (want its init)";
    const auto t0 = std::chrono::steady_clock::now();
    ExecResult r = RunExec(stub(), MakeStart(id, {"echo", "ok"}), "", seconds(5));
    EXPECT_TRUE(r.Ok()) << r.Describe();
    EXPECT_EQ(r.out, "ok\n");
    EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(2));
    const double cpu = CpuSecondsOver(daemon_.pid(), milliseconds(1000));
    std::cerr << "[disconnect] sbxd used " << cpu << " s CPU over 1 s after the disconnect\n";
    EXPECT_LT(cpu, 0.1) << "sbxd spins after a client vanished";
  }
};

using DisconnectMidStreamTest = DisconnectFixture;

TEST_F(DisconnectMidStreamTest, ClientGoneDuringOutputFloodKillsCommand) {
  v1::Sandbox sb;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &sb).ok());
  for (const char* cmd : {"yes", "head -c 1G /dev/zero"}) {
    SCOPED_TRACE(cmd);
    auto channel = OwnChannel(daemon_);
    auto own_stub = v1::SandboxService::NewStub(channel);
    {
      ExecSession session(*own_stub, seconds(30));
      ASSERT_TRUE(session.Start(MakeStart(sb.id(), {"sh", "-c", cmd})));
      ASSERT_TRUE(session.ReadStdoutAtLeast(4 << 20)) << "no flood of output";
      ASSERT_FALSE(CommandLeaves(sb.id()).empty());
      // Vanish: cancel the call and drop the connection without reading on.
      session.Cancel();
    }
    own_stub.reset();
    channel.reset();
    ExpectRecovered(sb.id());
  }
  ASSERT_TRUE(Destroy(stub(), sb.id()).ok());
  ExpectNothingLeft();
}

TEST_F(DisconnectMidStreamTest, ClientGoneDuringStdinUploadKillsCommand) {
  v1::Sandbox sb;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &sb).ok());
  auto channel = OwnChannel(daemon_);
  auto own_stub = v1::SandboxService::NewStub(channel);
  {
    ExecSession session(*own_stub, seconds(30));
    // A slow consumer, so the upload backs up in sbxd's buffers.
    ASSERT_TRUE(session.Start(
        MakeStart(sb.id(), {"sh", "-c", "while head -c 4096 >/dev/null; do sleep 0.01; done"})));
    ASSERT_TRUE(session.WaitStarted());
    const std::string chunk(64 << 10, 'x');
    std::atomic<bool> stop{false};
    std::thread writer([&] {
      while (!stop.load() && session.SendStdin(chunk)) {
      }
    });
    std::this_thread::sleep_for(milliseconds(700));
    session.Cancel();
    stop = true;
    writer.join();
  }
  own_stub.reset();
  channel.reset();
  ExpectRecovered(sb.id());
  ASSERT_TRUE(Destroy(stub(), sb.id()).ok());
  ExpectNothingLeft();
}

// Many clients vanish at once mid-flood; sbxd survives all of them.
TEST_F(DisconnectMidStreamTest, ManyClientsGoneAtOnce) {
  v1::Sandbox sb;
  ASSERT_TRUE(Create(stub(), v1::CreateSandboxRequest(), &sb).ok());
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&] {
      auto channel = OwnChannel(daemon_);
      auto own_stub = v1::SandboxService::NewStub(channel);
      ExecSession session(*own_stub, seconds(30));
      if (!session.Start(MakeStart(sb.id(), {"yes", "flood"}))) return;
      session.ReadStdoutAtLeast(256 << 10);
      session.Cancel();
    });
  }
  for (auto& t : clients) t.join();
  ExpectRecovered(sb.id());
  ASSERT_TRUE(Destroy(stub(), sb.id()).ok());
  ExpectNothingLeft();
}

}  // namespace
}  // namespace sbx::faults
