// The bench's gRPC calls, on the raw generated stub (not the SDK) so that
// what is timed is the wire and the daemon, without the SDK's reader thread
// per exec. One Exec helper covers every stream the bench opens.
#ifndef SBX_BENCH_RPC_H_
#define SBX_BENCH_RPC_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sbx/v1/sandbox.grpc.pb.h"

namespace sbx::bench {

using Stub = v1::SandboxService::Stub;

// A channel to `target` ("unix:///..."). With `own_connection` it does not
// share its connection with other channels of this process (one per
// simulated client).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, bool own_connection);

grpc::Status CreateSandbox(Stub& stub, v1::Sandbox* sandbox);
grpc::Status GetSandbox(Stub& stub, const std::string& id);
grpc::Status DestroySandbox(Stub& stub, const std::string& id);
grpc::Status ListSandboxIds(Stub& stub, std::vector<std::string>* ids);
// The judge's one-shot: Run with `argv` and one case without input. With
// `compile_argv`, that command runs first, and `cases` cases follow it.
grpc::Status RunOnce(Stub& stub, const std::vector<std::string>& argv, v1::RunResponse* out,
                     const std::vector<std::string>& compile_argv = {}, int cases = 1);

struct ExecOutcome {
  grpc::Status status;  // of the stream; OK with no exit is made an error
  v1::ExecExit exit;
  int64_t stdout_bytes = 0;
  std::string stdout_head;  // the first 256 bytes of stdout
  double exit_ms = 0;       // from opening the stream to the exit message
};

// Runs `argv` in sandbox `id`. When `stdin_bytes` > 0 that many zero bytes
// are streamed in as stdin (64 KiB messages); stdin is closed either way.
// Stdout is counted, not kept.
ExecOutcome Exec(Stub& stub, const std::string& id, const std::vector<std::string>& argv,
                 int64_t stdin_bytes = 0, int deadline_s = 60);

// One grpc.health.v1.Health/Check through a generic stub, reusing `cq`.
// True when the answer is SERVING (bytes 08 01). `ms` gets the latency.
bool HealthCheck(grpc::GenericStub& stub, grpc::CompletionQueue& cq, double* ms);

std::string StatusText(const grpc::Status& status);

}  // namespace sbx::bench

#endif  // SBX_BENCH_RPC_H_
