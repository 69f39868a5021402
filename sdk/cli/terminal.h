// The local terminal during `sbx exec -t`.
#ifndef SBX_SDK_CLI_TERMINAL_H_
#define SBX_SDK_CLI_TERMINAL_H_

#include <termios.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"

namespace sbx::cli {

// Owns raw mode on a terminal fd: entering saves the settings, and the
// destructor restores them, so every return path gives the user back a
// sane terminal.
class RawTerminal {
 public:
  static absl::StatusOr<std::unique_ptr<RawTerminal>> Enter(int fd);
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  ~RawTerminal();

 private:
  RawTerminal(int fd, const termios& saved) : fd_(fd), saved_(saved) {}
  const int fd_;
  const termios saved_;
};

struct WindowSize {
  uint32_t rows = 0;
  uint32_t cols = 0;
};

// The size of the terminal on `fd`; nullopt when it is not a terminal.
std::optional<WindowSize> GetWindowSize(int fd);

}  // namespace sbx::cli

#endif  // SBX_SDK_CLI_TERMINAL_H_
