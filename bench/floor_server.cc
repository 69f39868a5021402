// sbx_bench_floor: the least a sandbox service over gRPC costs on this
// machine, as a baseline for the bench. It serves sbx's API on a Unix
// socket as sbxd does, but isolates nothing: CreateSandbox and
// DestroySandbox do no work, and Exec and Run start the command as a plain
// child of this process (posix_spawnp, the cheapest way to start one).
// The bench makes the same calls to it as to sbxd, with the same client,
// so that a row can tell what gRPC and a process cost from what the
// sandbox adds.
//
//   sbx_bench_floor --socket PATH     (SIGTERM or SIGINT stops it)
//
// Only what the bench calls is served; the rest is UNIMPLEMENTED. Exec
// reads its start message and nothing after it: the command's stdin is
// empty (the bench's Exec rows send none).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "sbx/v1/sandbox.grpc.pb.h"

extern char** environ;

namespace sbx::bench {
namespace {

using Clock = std::chrono::steady_clock;

// How a command ended, as wait4 tells it.
struct Ended {
  int status = 0;
  rusage usage{};
  Clock::duration wall{};
};

// Called with each piece of the command's output: (is_stdout, bytes).
using OutputSink = std::function<void(bool, std::string)>;

void Close(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Runs `argv` (looked up in PATH) with `input` as its stdin, passes its
// stdout and stderr to `sink` as they come, and waits for it. Returns 0,
// or the errno of what failed.
int RunCommand(const std::vector<std::string>& argv, const std::string& input,
               const OutputSink& sink, Ended* ended) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return errno;
  if (::pipe2(out, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(in[0]);
    ::close(in[1]);
    return e;
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    const int e = errno;
    for (int fd : {in[0], in[1], out[0], out[1]}) ::close(fd);
    return e;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const auto start = Clock::now();
  pid_t pid = -1;
  const int spawn_err = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  for (int fd : {in[0], out[1], err[1]}) ::close(fd);
  int writer = in[1], readers[2] = {out[0], err[0]};
  if (spawn_err != 0) {
    Close(writer);
    Close(readers[0]);
    Close(readers[1]);
    return spawn_err;
  }
  if (input.empty()) {
    Close(writer);
  } else {
    ::fcntl(writer, F_SETFL, O_NONBLOCK);
  }
  size_t written = 0;
  char buf[64 * 1024];
  while (writer >= 0 || readers[0] >= 0 || readers[1] >= 0) {
    pollfd fds[3] = {{readers[0], POLLIN, 0}, {readers[1], POLLIN, 0}, {writer, POLLOUT, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      const ssize_t n = ::read(readers[i], buf, sizeof buf);
      if (n > 0) {
        sink(i == 0, std::string(buf, static_cast<size_t>(n)));
      } else if (n == 0 || errno != EINTR) {
        Close(readers[i]);
      }
    }
    if (fds[2].revents != 0) {
      const ssize_t n = ::write(writer, input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) Close(writer);
    }
  }
  while (::wait4(pid, &ended->status, 0, &ended->usage) < 0 && errno == EINTR) {
  }
  ended->wall = Clock::now() - start;
  return 0;
}

void SetDuration(Clock::duration d, google::protobuf::Duration* out) {
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

v1::ExecExit ExitOf(const Ended& ended) {
  v1::ExecExit exit;
  if (WIFSIGNALED(ended.status)) {
    exit.set_signal(WTERMSIG(ended.status));
    exit.set_verdict(v1::VERDICT_SIGNALED);
  } else {
    exit.set_exit_code(WEXITSTATUS(ended.status));
    exit.set_verdict(exit.exit_code() == 0 ? v1::VERDICT_OK : v1::VERDICT_RUNTIME_ERROR);
  }
  SetDuration(ended.wall, exit.mutable_wall_time());
  const auto cpu = std::chrono::seconds(ended.usage.ru_utime.tv_sec + ended.usage.ru_stime.tv_sec) +
                   std::chrono::microseconds(ended.usage.ru_utime.tv_usec +
                                             ended.usage.ru_stime.tv_usec);
  SetDuration(cpu, exit.mutable_cpu_time());
  exit.set_memory_peak_bytes(int64_t{ended.usage.ru_maxrss} * 1024);
  return exit;
}

grpc::Status SpawnFailed(int err) {
  return grpc::Status(grpc::StatusCode::INTERNAL,
                      absl::StrCat("starting the command: ", std::strerror(err)));
}

class FloorService final : public v1::SandboxService::Service {
 public:
  grpc::Status CreateSandbox(grpc::ServerContext*, const v1::CreateSandboxRequest*,
                             v1::CreateSandboxResponse* response) override {
    response->mutable_sandbox()->set_id(absl::StrCat("floor-", next_id_.fetch_add(1)));
    return grpc::Status::OK;
  }

  grpc::Status GetSandbox(grpc::ServerContext*, const v1::GetSandboxRequest* request,
                          v1::GetSandboxResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("sandbox ", request->id(), " not found"));
  }

  grpc::Status ListSandboxes(grpc::ServerContext*, const v1::ListSandboxesRequest*,
                             v1::ListSandboxesResponse*) override {
    return grpc::Status::OK;  // it keeps none
  }

  grpc::Status DestroySandbox(grpc::ServerContext*, const v1::DestroySandboxRequest*,
                              v1::DestroySandboxResponse*) override {
    return grpc::Status::OK;
  }

  grpc::Status Exec(grpc::ServerContext*,
                    grpc::ServerReaderWriter<v1::ExecResponse, v1::ExecRequest>* stream) override {
    v1::ExecRequest request;
    if (!stream->Read(&request) || !request.has_start() || request.start().argv().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be a start");
    }
    const std::vector<std::string> argv(request.start().argv().begin(),
                                        request.start().argv().end());
    Ended ended;
    const int err = RunCommand(
        argv, "",
        [stream](bool is_stdout, std::string data) {
          v1::ExecResponse out;
          if (is_stdout) {
            out.set_stdout(std::move(data));
          } else {
            out.set_stderr(std::move(data));
          }
          stream->Write(out);  // a client gone shows in the exit's write
        },
        &ended);
    if (err != 0) return SpawnFailed(err);
    v1::ExecResponse exit;
    *exit.mutable_exit() = ExitOf(ended);
    stream->Write(exit);
    return grpc::Status::OK;
  }

  grpc::Status Run(grpc::ServerContext*, const v1::RunRequest* request,
                   v1::RunResponse* response) override {
    if (request->run_argv().empty() || request->cases().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "run_argv and cases are required");
    }
    response->set_sandbox_id(absl::StrCat("floor-", next_id_.fetch_add(1)));
    response->set_verdict(v1::VERDICT_OK);
    if (!request->compile_argv().empty()) {
      const std::vector<std::string> argv(request->compile_argv().begin(),
                                          request->compile_argv().end());
      if (int err = RunOne(argv, "", response->mutable_compile()); err != 0) {
        return SpawnFailed(err);
      }
      if (response->compile().verdict() != v1::VERDICT_OK) {
        response->set_verdict(v1::VERDICT_COMPILE_ERROR);
        return grpc::Status::OK;
      }
    }
    const std::vector<std::string> argv(request->run_argv().begin(), request->run_argv().end());
    for (const v1::TestCase& test : request->cases()) {
      v1::CaseResult* result = response->add_cases();
      if (int err = RunOne(argv, test.stdin(), result); err != 0) return SpawnFailed(err);
      if (response->verdict() == v1::VERDICT_OK) response->set_verdict(result->verdict());
    }
    return grpc::Status::OK;
  }

 private:
  static int RunOne(const std::vector<std::string>& argv, const std::string& input,
                    v1::CaseResult* result) {
    Ended ended;
    const int err = RunCommand(
        argv, input,
        [result](bool is_stdout, std::string data) {
          (is_stdout ? result->mutable_stdout() : result->mutable_stderr())->append(data);
        },
        &ended);
    if (err != 0) return err;
    *result->mutable_exit() = ExitOf(ended);
    result->set_verdict(result->exit().verdict());
    return 0;
  }

  std::atomic<uint64_t> next_id_{1};
};

int Main(int argc, char** argv) {
  if (argc != 3 || std::string(argv[1]) != "--socket") {
    std::fprintf(stderr, "usage: sbx_bench_floor --socket PATH\n");
    return 2;
  }
  const std::string socket_path = argv[2];
  // As sbxd and the bench's client do: no lock-order graph in Debian's abseil.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Blocked before gRPC starts its threads, so that only sigwait sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  FloorService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix://" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::fprintf(stderr, "sbx_bench_floor: cannot serve on %s\n", socket_path.c_str());
    return 1;
  }
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  ::unlink(socket_path.c_str());
  return 0;
}

}  // namespace
}  // namespace sbx::bench

int main(int argc, char** argv) { return sbx::bench::Main(argc, argv); }
