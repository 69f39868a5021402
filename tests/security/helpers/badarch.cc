// Makes a system call through a non-native ABI: "i386" (int $0x80 getpid) or
// "x32" (getpid with __X32_SYSCALL_BIT). Prints "before" first; the filter
// must kill the process with SIGSYS before it can print "survived".
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const bool x32 = argc > 1 && strcmp(argv[1], "x32") == 0;
  printf("before\n");
  fflush(stdout);
  long ret;
  if (x32) {
    ret = syscall(SYS_getpid | 0x40000000L);
  } else {
    asm volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");  // i386 getpid
  }
  printf("survived: %ld\n", ret);
  fflush(stdout);
  return 0;
}
