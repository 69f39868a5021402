// Fork bomb: every process forks for ever. The first process reports the
// first failure (expected: EAGAIN from the sandbox's pids limit) and keeps
// forking; the wall-clock limit of the exec ends it.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main() {
  const pid_t first = getpid();
  bool reported = false;
  for (;;) {
    pid_t pid = fork();
    if (pid < 0 && getpid() == first && !reported) {
      printf("fork: %s (%s)\n", errno == EAGAIN ? "EAGAIN" : "other", strerror(errno));
      fflush(stdout);
      reported = true;
    }
  }
}
