// sbx-init entry point: `sbx-init spawner <channel-fd> <sbxd-pid>`.
// The sandbox init role is entered by cloning from the spawner, never by
// running this binary directly.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "server/init/init.h"

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "spawner") == 0) {
    int channel = std::atoi(argv[2]);
    pid_t parent = static_cast<pid_t>(std::atoi(argv[3]));
    // Die with sbxd; the check after the prctl closes the race where sbxd
    // died before it took effect.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) return 1;
    return sbx::init::RunSpawner(channel);
  }
  std::fprintf(stderr,
               "sbx-init is started by sbxd (usage: sbx-init spawner FD PARENT_PID)\n");
  return 2;
}
