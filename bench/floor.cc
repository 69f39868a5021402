#include "bench/floor.h"

#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "bench/daemon.h"
#include "bench/host.h"

namespace sbx::bench {

bool FloorServer::Start(std::string* error) {
  char tmpl[] = "/tmp/sbx-bench-floor-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    *error = absl::StrCat("mkdtemp: ", strerror(errno));
    return false;
  }
  temp_dir_ = tmpl;
  socket_path_ = temp_dir_ + "/floor.sock";
  // Its own process group, as the bench's sbxd: a ^C reaches the bench only.
  pid_ = Spawn({binary_, "--socket", socket_path_}, -1, -1, /*own_process_group=*/true);
  if (pid_ < 0) {
    *error = absl::StrCat("starting ", binary_, ": ", strerror(errno));
    return false;
  }
  const std::string why =
      WaitForServer(pid_, socket_path_, std::chrono::seconds(10), &channel_, &stub_);
  if (why.empty()) return true;
  *error = absl::StrCat(binary_, " ", why);
  return false;
}

void FloorServer::Stop() {
  stub_.reset();
  channel_.reset();
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    WaitOrKill(pid_, 5000);
    pid_ = -1;
  }
  if (!temp_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir_, ec);
    temp_dir_.clear();
  }
}

}  // namespace sbx::bench
