#include <stdio.h>
#include <stdlib.h>
int main(void) {
  long long a, b;
  if (scanf("%lld %lld", &a, &b) != 2) return 1;
  size_t n = (size_t)1 << 30; /* 1 GiB, every page written */
  volatile char* p = malloc(n);
  if (p == NULL) return 2;
  for (size_t i = 0; i < n; i += 4096) p[i] = 1;
  printf("%lld\n", a + b + p[n - 4096] - 1);
  return 0;
}
