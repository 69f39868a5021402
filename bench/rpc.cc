#include "bench/rpc.h"

#include <grpcpp/generic/generic_stub.h>

#include <chrono>

#include "bench/stats.h"

namespace sbx::bench {

namespace {

constexpr size_t kStdinChunk = 256 * 1024;

void SetDeadline(grpc::ClientContext& ctx, int seconds) {
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
}

// Reads an Exec stream to its end: the exit (timed from `start`), stdout.
ExecOutcome ReadExecOutcome(grpc::ClientReaderWriter<v1::ExecRequest, v1::ExecResponse>& stream,
                            std::chrono::steady_clock::time_point start) {
  ExecOutcome out;
  bool got_exit = false;
  v1::ExecResponse response;
  while (stream.Read(&response)) {
    if (response.has_exit()) {
      out.exit_ms = MsSince(start);
      out.exit = response.exit();
      got_exit = true;
    } else if (response.msg_case() == v1::ExecResponse::kStdout) {
      const std::string& data = response.stdout();
      if (out.stdout_head.size() < 256) {
        out.stdout_head.append(data, 0, 256 - out.stdout_head.size());
      }
      out.stdout_bytes += static_cast<int64_t>(data.size());
    }
  }
  out.status = stream.Finish();
  if (out.status.ok() && !got_exit) {
    out.status = grpc::Status(grpc::StatusCode::INTERNAL, "exec stream ended without exit");
  }
  return out;
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, bool own_connection) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 256 << 10);  // as the SDK
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

grpc::Status CreateSandbox(Stub& stub, v1::Sandbox* sandbox) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 60);
  v1::CreateSandboxRequest request;
  v1::CreateSandboxResponse response;
  grpc::Status status = stub.CreateSandbox(&ctx, request, &response);
  if (status.ok()) *sandbox = response.sandbox();
  return status;
}

grpc::Status GetSandbox(Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 60);
  v1::GetSandboxRequest request;
  request.set_id(id);
  v1::GetSandboxResponse response;
  return stub.GetSandbox(&ctx, request, &response);
}

grpc::Status DestroySandbox(Stub& stub, const std::string& id) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 60);
  v1::DestroySandboxRequest request;
  request.set_id(id);
  v1::DestroySandboxResponse response;
  return stub.DestroySandbox(&ctx, request, &response);
}

grpc::Status RunOnce(Stub& stub, const std::vector<std::string>& argv, v1::RunResponse* out,
                     const std::vector<std::string>& compile_argv, int cases) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 60);
  v1::RunRequest request;
  for (const std::string& a : argv) request.add_run_argv(a);
  for (const std::string& a : compile_argv) request.add_compile_argv(a);
  for (int i = 0; i < cases; ++i) request.add_cases();
  return stub.Run(&ctx, request, out);
}

grpc::Status ListSandboxIds(Stub& stub, std::vector<std::string>* ids) {
  grpc::ClientContext ctx;
  SetDeadline(ctx, 30);
  v1::ListSandboxesResponse response;
  grpc::Status status = stub.ListSandboxes(&ctx, v1::ListSandboxesRequest(), &response);
  for (const v1::Sandbox& s : response.sandboxes()) ids->push_back(s.id());
  return status;
}

ExecOutcome Exec(Stub& stub, const std::string& id, const std::vector<std::string>& argv,
                 int64_t stdin_bytes, int deadline_s) {
  const auto start = std::chrono::steady_clock::now();
  grpc::ClientContext ctx;
  SetDeadline(ctx, deadline_s);
  // The call's headers go out with the start message, as the SDK sends them.
  ctx.set_initial_metadata_corked(true);
  auto stream = stub.Exec(&ctx);
  v1::ExecRequest request;
  request.mutable_start()->set_sandbox_id(id);
  for (const std::string& a : argv) request.mutable_start()->add_argv(a);
  if (stdin_bytes == 0) {
    // No stdin: the start and the half-close that ends it in one write.
    stream->WriteLast(request, grpc::WriteOptions());  // a failure shows in Finish
    return ReadExecOutcome(*stream, start);
  }
  bool writing = stream->Write(request);
  if (writing) {
    v1::ExecRequest chunk;
    chunk.set_stdin(std::string(kStdinChunk, '\0'));
    for (int64_t left = stdin_bytes; writing && left > 0;) {
      if (left < static_cast<int64_t>(kStdinChunk)) chunk.mutable_stdin()->resize(left);
      writing = stream->Write(chunk);
      left -= static_cast<int64_t>(chunk.stdin().size());
    }
  }
  // Half-closing ends the command's stdin.
  if (writing) stream->WritesDone();
  return ReadExecOutcome(*stream, start);
}

bool HealthCheck(grpc::GenericStub& stub, grpc::CompletionQueue& cq, double* ms) {
  const auto start = std::chrono::steady_clock::now();
  grpc::ClientContext ctx;
  SetDeadline(ctx, 10);
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);  // HealthCheckRequest{service: ""}
  auto call = stub.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) return false;
  *ms = MsSince(start);
  if (!status.ok()) return false;
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return false;
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes == std::string("\x08\x01", 2);
}

std::string StatusText(const grpc::Status& status) {
  return std::to_string(static_cast<int>(status.error_code())) + " " + status.error_message();
}

}  // namespace sbx::bench
