// The bench's floor server (sbx_bench_floor, bench/floor_server.cc): sbx's
// API on a Unix socket of its own, with nothing isolated. The rows that
// make the same calls to it show what any gRPC sandbox service costs here.
#ifndef SBX_BENCH_FLOOR_H_
#define SBX_BENCH_FLOOR_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "bench/rpc.h"

namespace sbx::bench {

class FloorServer {
 public:
  explicit FloorServer(std::string binary) : binary_(std::move(binary)) {}
  FloorServer(const FloorServer&) = delete;
  FloorServer& operator=(const FloorServer&) = delete;
  ~FloorServer() { Stop(); }

  // Starts it in a temp dir of its own and waits (up to 10 s) until it
  // answers.
  bool Start(std::string* error);
  // SIGTERMs it (SIGKILL after 5 s) and removes its temp dir. Idempotent.
  void Stop();

  std::string target() const { return "unix://" + socket_path_; }
  Stub& stub() { return *stub_; }

 private:
  std::string binary_;
  std::string temp_dir_, socket_path_;
  pid_t pid_ = -1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stub> stub_;
};

}  // namespace sbx::bench

#endif  // SBX_BENCH_FLOOR_H_
