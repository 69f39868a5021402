// sbxd's Unix socket, listened on and accepted by sbxd itself, each
// connection then handed to gRPC (an external connection acceptor).
//
// Why not gRPC's own listener: it leaves a connection's send buffer at the
// host's default (208 KiB on most hosts), smaller than one 256 KiB output
// message, so every stdout message of a stream took two writes and a wait
// for the client to read in between. Here each accepted connection gets
// kSendBufferBytes first (SO_SNDBUFFORCE, as root; SO_SNDBUF up to the
// host's wmem_max otherwise). And gRPC's listener (1.51) stopped for good
// at its first EMFILE; this one pauses and accepts again once it can.
//
// The socket file is 0600 from the moment it exists (bound under umask
// 0177), as it was with gRPC's listener and the umask around it.
#ifndef SBX_SERVER_API_UNIX_LISTENER_H_
#define SBX_SERVER_API_UNIX_LISTENER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/common/unique_fd.h"

namespace sbx::api {

// What an accepted connection may queue towards its client: four output
// messages of 256 KiB (the kernel doubles the figure for its own overhead).
inline constexpr int kSendBufferBytes = 1 << 20;

class UnixListener {
 public:
  // Takes each accepted connection (non-blocking, close-on-exec): owns `fd`.
  using Handler = absl::AnyInvocable<void(int listener_fd, int fd)>;

  // Binds `path` (which must not exist) with mode 0600 and listens.
  static absl::StatusOr<std::unique_ptr<UnixListener>> Listen(const std::string& path);

  ~UnixListener();  // Stop()
  UnixListener(const UnixListener&) = delete;
  UnixListener& operator=(const UnixListener&) = delete;

  // Accepts connections on a thread of its own, each given to `handler`.
  absl::Status Start(Handler handler);

  // Stops accepting and closes the socket: a connect gets ECONNREFUSED from
  // then on. The socket file stays (its owner removes it). Idempotent.
  void Stop();

 private:
  UnixListener(UniqueFd listen_fd, UniqueFd wake_fd)
      : listen_fd_(std::move(listen_fd)), wake_fd_(std::move(wake_fd)) {}
  void AcceptLoop();

  UniqueFd listen_fd_;
  UniqueFd wake_fd_;  // an eventfd: written by Stop
  Handler handler_;
  std::thread thread_;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_UNIX_LISTENER_H_
