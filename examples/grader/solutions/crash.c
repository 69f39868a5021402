#include <stdio.h>
int main(void) {
  long long a, b;
  if (scanf("%lld %lld", &a, &b) != 2) return 1;
  *(volatile int*)0 = 1;  /* SIGSEGV */
  printf("%lld\n", a + b);
  return 0;
}
