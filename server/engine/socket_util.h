// Unix seqpacket helpers for the control sockets of sandbox inits.
#ifndef SBX_SERVER_ENGINE_SOCKET_UTIL_H_
#define SBX_SERVER_ENGINE_SOCKET_UTIL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/common/unique_fd.h"

namespace sbx::engine {

// Binds and listens on `path` (mode 0600; a stale socket file is replaced).
absl::StatusOr<UniqueFd> ListenSeqpacket(const std::string& path);

// Connects to `path`. UNAVAILABLE when nobody listens there.
absl::StatusOr<UniqueFd> ConnectSeqpacket(const std::string& path);

// Waits up to `timeout_ms` for one message; received fds go to `fds`.
absl::StatusOr<std::string> ReceiveWithTimeout(int fd, int timeout_ms,
                                               std::vector<UniqueFd>* fds);

}  // namespace sbx::engine

#endif  // SBX_SERVER_ENGINE_SOCKET_UTIL_H_
