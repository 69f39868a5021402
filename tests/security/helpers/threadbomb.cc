// Thread bomb: creates threads (small stacks, all parked) until
// pthread_create fails, then prints "threads=N ERRNO (text)" and exits.
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void* Park(void*) {
  for (;;) pause();
  return nullptr;
}

int main() {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  for (int n = 0; n < 100000; ++n) {
    pthread_t t;
    int err = pthread_create(&t, &attr, Park, nullptr);
    if (err != 0) {
      printf("threads=%d %s (%s)\n", n, err == EAGAIN ? "EAGAIN" : "other", strerror(err));
      fflush(stdout);
      _exit(0);
    }
  }
  printf("threads=100000 no failure\n");
  fflush(stdout);
  _exit(0);
}
