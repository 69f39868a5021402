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
#include <iosfwd>
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

  // Authentication (docs/security-model.md). Empty: none, which is what a
  // caller on sbxd's Unix socket needs.
  // Bearer token sent with every call as `authorization: Bearer <token>`.
  std::string token;
  // TLS to a TCP listener. Off by default (the Unix socket is plain).
  bool tls = false;
  std::string tls_ca_pem;       // verifies the server; "" = the system roots
  std::string tls_cert_pem;     // client certificate chain, for mTLS
  std::string tls_key_pem;      // its private key
  std::string tls_server_name;  // name expected in the server certificate; "" = the host
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
  // Behind a router in front of several daemons: the nodes to list, one
  // call each (sent as `sbx-node`), results merged. Empty: one plain call.
  std::vector<std::string> nodes;
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

  static constexpr size_t kStdinChunkBytes = 256 * 1024;

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

// ---- file transfer ------------------------------------------------------------
//
// Paths in a sandbox are resolved inside it as its user sees them: relative
// paths are below /work, ".." never climbs above "/", symlinks never lead
// outside. See docs/files.md.

// One entry of Client::WriteFiles.
struct FileToWrite {
  std::string path;     // in the sandbox; missing parents are created
  std::string content;  // regular files only
  uint32_t mode = 0;    // permission bits; 0 = 0644 (0755 for a directory);
                        // setuid / setgid are always dropped
  bool is_dir = false;
  std::string symlink_target;  // non-empty: create a symlink, no content
};

struct TransferOptions {
  std::string user;  // "" = the sandbox user (uid 1000); "root" or a uid
  // Client-side deadline of the whole transfer. Unset: none.
  std::optional<absl::Duration> rpc_deadline;
};

// What a transfer moved: files, directories and symlinks, and content bytes.
struct TransferResult {
  int64_t files = 0;
  int64_t bytes = 0;
};
using WriteResult = TransferResult;

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

  // ---- file transfer (files.cc); every call is one stream, chunked, with
  // gRPC flow control, so memory stays bounded whatever the size.

  // Writes files, directories and symlinks, in order, in one stream.
  absl::StatusOr<WriteResult> WriteFiles(std::string_view sandbox_id,
                                         const std::vector<FileToWrite>& files,
                                         const TransferOptions& options = {}) const;
  // Writes one file whose content comes from `in` (read to its end).
  absl::StatusOr<WriteResult> WriteFileFrom(std::string_view sandbox_id, std::istream& in,
                                            const std::string& remote_path, uint32_t mode = 0,
                                            const TransferOptions& options = {}) const;
  // Reads one regular file into memory (FAILED_PRECONDITION for a
  // directory; NOT_FOUND "no such file in sandbox: ..." when missing).
  absl::StatusOr<std::string> ReadFile(std::string_view sandbox_id, const std::string& remote_path,
                                       const TransferOptions& options = {}) const;
  // Streams one regular file to `out`.
  absl::StatusOr<TransferResult> ReadFileTo(std::string_view sandbox_id,
                                            const std::string& remote_path, std::ostream& out,
                                            const TransferOptions& options = {}) const;

  // Copies a local file or directory tree into the sandbox, like `cp -r`:
  // `remote_path` names the copy; if it ends with '/', the copy goes into that
  // directory under the local name. Modes and symlinks are kept; devices,
  // FIFOs and sockets are skipped. A directory the tree makes read-only is
  // written first and has its mode set at the end.
  absl::StatusOr<TransferResult> CopyIn(std::string_view sandbox_id, const std::string& local_path,
                                        const std::string& remote_path,
                                        const TransferOptions& options = {}) const;
  // Copies a file or directory tree out of the sandbox, like `cp -r`: into
  // `local_path` if it is an existing directory (under the remote name),
  // else to `local_path` itself. Modes (without setuid/setgid) and symlinks
  // are kept; nothing is ever written outside the destination, whatever the
  // server sends.
  absl::StatusOr<TransferResult> CopyOut(std::string_view sandbox_id,
                                         const std::string& remote_path,
                                         const std::string& local_path,
                                         const TransferOptions& options = {}) const;

  // ---- judge runs (run.cc)

  // One submission in a fresh sandbox that the daemon destroys after: the
  // request's files, its compile command once, then every test case with its
  // own limits and figures; see RunRequest in sbx/v1/sandbox.proto. Without
  // call.timeout there is no deadline (ClientOptions::default_timeout does
  // not apply: a Run lasts as long as its cases). Verdicts are results, not
  // errors: a status is returned only when the daemon could not do the run.
  //
  //   v1::RunRequest run;
  //   auto* file = run.add_files();
  //   file->set_path("main.c");
  //   file->set_content(source);
  //   run.add_compile_argv("gcc"); run.add_compile_argv("main.c");
  //   run.add_run_argv("./a.out");
  //   auto* test = run.add_cases();
  //   test->set_stdin("1 2\n");
  //   test->set_expected_stdout("3\n");
  //   *test->mutable_limits()->mutable_cpu_time() = ToProtoDuration(absl::Seconds(1));
  //   absl::StatusOr<v1::RunResponse> r = client->Run(run);  // r->verdict()
  absl::StatusOr<v1::RunResponse> Run(const v1::RunRequest& request,
                                      const CallOptions& call = {}) const;

 private:
  struct State;
  explicit Client(std::shared_ptr<const State> state);
  std::shared_ptr<const State> state_;
};

}  // namespace sbx

#endif  // SBX_CLIENT_H_
