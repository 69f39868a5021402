// Allocates and touches memory 1 MiB at a time, up to argv[1] MiB (default
// 2048), then prints "allocated N MiB". Under a smaller memory limit it is
// expected to be OOM-killed before printing anything.
#include <stdio.h>
#include <stdlib.h>

static char* g_chunks[1 << 16];  // kept reachable so nothing is optimized away

int main(int argc, char** argv) {
  long max_mib = argc > 1 ? atol(argv[1]) : 2048;
  if (max_mib > (1 << 16)) max_mib = 1 << 16;
  long n = 0;
  for (; n < max_mib; ++n) {
    char* p = static_cast<char*>(malloc(1 << 20));
    if (p == nullptr) {
      printf("malloc failed after %ld MiB\n", n);
      return 1;
    }
    for (long i = 0; i < (1 << 20); i += 4096) static_cast<volatile char*>(p)[i] = 1;
    g_chunks[n] = p;
  }
  printf("allocated %ld MiB\n", n);
  return 0;
}
