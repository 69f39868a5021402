#include "cli/terminal.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sbx::cli {

absl::StatusOr<std::unique_ptr<RawTerminal>> RawTerminal::Enter(int fd) {
  termios saved;
  if (::tcgetattr(fd, &saved) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("reading terminal settings: ", std::strerror(errno)));
  }
  termios raw = saved;
  ::cfmakeraw(&raw);
  // Fully raw, output included: the remote pty already did the output
  // processing, and full-screen programs rely on bare "\n" moving down only.
  if (::tcsetattr(fd, TCSANOW, &raw) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("setting raw terminal mode: ", std::strerror(errno)));
  }
  return std::unique_ptr<RawTerminal>(new RawTerminal(fd, saved));
}

RawTerminal::~RawTerminal() {
  // TCSADRAIN: let the command's last output reach the screen first.
  while (::tcsetattr(fd_, TCSADRAIN, &saved_) != 0 && errno == EINTR) {
  }
}

std::optional<WindowSize> GetWindowSize(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0 || ws.ws_col == 0) {
    return std::nullopt;
  }
  return WindowSize{ws.ws_row, ws.ws_col};
}

}  // namespace sbx::cli
