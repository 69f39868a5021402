// The sbx C++ client: a thin, typed wrapper over the sbx.v1 gRPC API.
//
//   absl::StatusOr<sbx::Client> client = sbx::Client::Connect(sbx::DefaultAddress());
//   sbx::CreateOptions create;
//   create.limits.memory_bytes = 256 << 20;
//   absl::StatusOr<sbx::v1::Sandbox> box = client->CreateSandbox(create);
//   absl::StatusOr<sbx::ExecResult> r =
//       client->ExecCollect({.sandbox_id = box->id(), .argv = {"echo", "hi"}});
//
// Every call returns absl::Status / absl::StatusOr with the server's gRPC code
// and message unchanged (see sbx/grpc_status.h). The proto messages of
// sbx/v1/sandbox.proto are part of this API.
#ifndef SBX_CLIENT_H_
#define SBX_CLIENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sbx/v1/sandbox.pb.h"

namespace sbx {

// Where sbxd listens unless told otherwise.
inline constexpr char kDefaultAddress[] = "unix:///run/sbx/sbxd.sock";

// $SBX_SERVER when set and non-empty, else kDefaultAddress.
std::string DefaultAddress();

// Turns a user-facing address into a gRPC target:
//   "unix:///run/x.sock", "unix:/run/x.sock"  -> unchanged
//   "/run/x.sock", "./x.sock"                 -> "unix:/run/x.sock", ...
//   "host:port", "dns:///host:port"           -> unchanged (insecure channel)
// INVALID_ARGUMENT for an empty address, a unix: target without a path, or
// a host without a numeric port.
absl::StatusOr<std::string> NormalizeAddress(std::string_view address);

struct ClientOptions {
  // Deadline of each unary call unless CallOptions says otherwise;
  // absl::InfiniteDuration() means none.
  absl::Duration default_timeout = absl::Seconds(30);
  // When false (gRPC's default), a call fails at once with UNAVAILABLE if the
  // daemon cannot be reached; when true, it waits up to its deadline.
  bool wait_for_ready = false;
  // Largest response message accepted (stdout chunks, big listings).
  int max_receive_message_bytes = 16 << 20;
};

// Per-call overrides.
struct CallOptions {
  std::optional<absl::Duration> timeout;  // unset: ClientOptions
};

// Limits of a sandbox. An unset field means "daemon default" in
// CreateSandbox and "leave unchanged" in SetLimits.
struct Limits {
  std::optional<int64_t> memory_bytes;
  std::optional<double> cpus;
  std::optional<int64_t> pids;
};

struct CreateOptions {
  std::string image;  // "" = the daemon's default ("host")
  Limits limits;
  std::map<std::string, std::string> env;  // default env of every exec
  std::map<std::string, std::string> labels;
  std::optional<absl::Duration> ttl;  // unset: lives until destroyed
};

struct ListOptions {
  std::map<std::string, std::string> label_selector;  // all must match
  v1::SandboxState state = v1::SANDBOX_STATE_UNSPECIFIED;  // any
};

struct ExecOptions {
  std::string sandbox_id;
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::map<std::string, std::string> env;
  std::string cwd;   // "" = the sandbox's working directory
  std::string user;  // "" = default user; "root" or a uid
  bool tty = false;  // run on a pseudo-terminal (stderr merges into stdout)
  uint32_t rows = 0;  // initial tty size; 0 = server default
  uint32_t cols = 0;
  // Wall-clock limit of the command, enforced by the daemon, which reports
  // it in ExecExit.timed_out. Unset: none.
  std::optional<absl::Duration> timeout;
  // Client-side deadline of the whole stream (DEADLINE_EXCEEDED when hit).
  // Unset: none, an exec may run as long as its command does.
  std::optional<absl::Duration> rpc_deadline;
};

// Callbacks of one Exec. All run on the call's own reader thread, one at a
// time and in stream order; on_finish runs last and exactly once. Any may be
// empty. They must not block for long (a stalled callback back-pressures
// the command's output, which is the intended behaviour for slow sinks),
// must not call ExecCall::Wait(), and must not destroy the ExecCall.
// Calling ExecCall::Cancel() from them is fine.
struct ExecCallbacks {
  std::function<void(int32_t pid)> on_started;
  std::function<void(std::string_view data)> on_stdout;
  std::function<void(std::string_view data)> on_stderr;
  std::function<void(const v1::ExecExit& exit)> on_exit;
  // The outcome Wait() will return, as a status (OK when an exit arrived).
  std::function<void(const absl::Status& status)> on_finish;
};

// One running Exec stream. Created by Client::Exec; owns the gRPC call and
// the thread that reads it. Writes (WriteStdin, CloseStdin, Signal, Resize)
// may come from any thread; they are serialized, one in flight at a time,
// and block while the daemon does not accept more (flow control), so stdin
// is back-pressured end to end. Once the stream has ended they fail fast
// with FAILED_PRECONDITION; Wait() tells why it ended.
class ExecCall {
 public:
  ExecCall(const ExecCall&) = delete;
  ExecCall& operator=(const ExecCall&) = delete;
  // Cancels the call if it is still running and joins the reader thread.
  // REQUIRES: not called from one of this call's callbacks.
  ~ExecCall();

  // Sends stdin bytes (split into chunks of at most kStdinChunkBytes).
  absl::Status WriteStdin(std::string_view data);
  // EOF on the command's stdin. Idempotent.
  absl::Status CloseStdin();
  // Delivers `signo` to the command's process group.
  absl::Status Signal(int signo);
  // New terminal size of a tty exec.
  absl::Status Resize(uint32_t rows, uint32_t cols);

  // Blocks until the stream has ended. Returns the exit message when one
  // arrived, otherwise the stream's error status (NOT_FOUND for an unknown
  // sandbox, CANCELLED after Cancel(), UNAVAILABLE if the daemon went away,
  // INTERNAL if it ended without an exit). May be called repeatedly.
  absl::StatusOr<v1::ExecExit> Wait();
  // True once the stream has ended (Wait() would not block).
  bool Done() const;
  // Cancels the RPC; the daemon kills the command. Thread-safe, idempotent.
  void Cancel();

  static constexpr size_t kStdinChunkBytes = 64 * 1024;

 private:
  friend class Client;
  class Impl;
  explicit ExecCall(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// What ExecCollect gathered.
struct ExecResult {
  std::string stdout_data;
  std::string stderr_data;
  v1::ExecExit exit;
};

// A connection to one sbxd. Cheap to copy (copies share the channel);
// thread-safe: any number of calls may run at once from any threads.
class Client {
 public:
  // Builds the channel; does no I/O, so an unreachable daemon shows up as
  // UNAVAILABLE on the first call (or use WaitForReady).
  static absl::StatusOr<Client> Connect(std::string_view address,
                                        ClientOptions options = {});

  // The normalized gRPC target, e.g. "unix:///run/sbx/sbxd.sock".
  const std::string& target() const;

  // Waits until the channel is connected; DEADLINE_EXCEEDED otherwise.
  absl::Status WaitForReady(absl::Duration timeout) const;

  absl::StatusOr<v1::Sandbox> CreateSandbox(const CreateOptions& options,
                                            const CallOptions& call = {}) const;
  absl::StatusOr<v1::Sandbox> GetSandbox(std::string_view id,
                                         const CallOptions& call = {}) const;
  absl::StatusOr<std::vector<v1::Sandbox>> ListSandboxes(
      const ListOptions& options = {}, const CallOptions& call = {}) const;
  // Idempotent: returns whether the sandbox existed.
  absl::StatusOr<bool> DestroySandbox(std::string_view id,
                                      const CallOptions& call = {}) const;
  // Returns the sandbox with its new effective limits.
  absl::StatusOr<v1::Sandbox> SetLimits(std::string_view id,
                                        const Limits& limits,
                                        const CallOptions& call = {}) const;

  // Starts a command. Fails here only on invalid options (INVALID_ARGUMENT);
  // everything the daemon says (unknown sandbox, ...) comes from Wait().
  absl::StatusOr<std::unique_ptr<ExecCall>> Exec(
      const ExecOptions& options, ExecCallbacks callbacks = {}) const;

  // Runs a command to completion: sends `stdin_data`, closes stdin, and
  // collects stdout and stderr in memory (unbounded: use Exec with
  // callbacks for large outputs).
  absl::StatusOr<ExecResult> ExecCollect(const ExecOptions& options,
                                         std::string_view stdin_data = {}) const;

 private:
  struct State;
  explicit Client(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;
};

}  // namespace sbx

#endif  // SBX_CLIENT_H_
