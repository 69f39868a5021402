// Opens /dev/null until open fails; prints "opened=N ERRNO (text)".
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>

int main() {
  for (int n = 0;; ++n) {
    if (open("/dev/null", O_RDONLY) < 0) {
      printf("opened=%d %s (%s)\n", n, errno == EMFILE ? "EMFILE" : "other", strerror(errno));
      return 0;
    }
  }
}
