// The syscall filter every exec'd command runs under (docs/seccomp.md lists
// each rule and why it is there).
//
// Compiling a filter with libseccomp allocates, and code between fork and
// exec may not allocate (STYLE.md, rule 5). So the sandbox init compiles the
// filter once, before it forks anything, into a classic BPF program held in
// memory; each forked child only hands that program to the kernel.
#ifndef SBX_SERVER_INIT_SECCOMP_FILTER_H_
#define SBX_SERVER_INIT_SECCOMP_FILTER_H_

#include <linux/filter.h>

#include <cstddef>
#include <vector>

namespace sbx::init {

// Owns one compiled BPF program. Built by the sandbox init (single-threaded)
// and read, never written, by its forked children.
class SeccompFilter {
 public:
  // x86_64 syscall numbers from this one up (below the x32 range) are
  // refused with ENOSYS: they came after the deny-list was last reviewed
  // (file_setattr, 469, is the last of Linux 6.18). Raise it only with a
  // review of what the new calls do (docs/seccomp.md).
  static constexpr int kFirstUnreviewedSyscall = 470;

  // Compiles the deny-list into `*out`. Allocates; call it before forking.
  // Returns 0 or an errno value (what libseccomp or memfd/read reported).
  // `first_unreviewed` is for tests, which lower it to see the rule refuse
  // calls that this kernel has.
  static int Build(SeccompFilter* out, int first_unreviewed = kFirstUnreviewedSyscall);

  // Installs the program on the calling thread. Allocation-free, so it may run
  // between fork and exec. REQUIRES: no_new_privs is set (or the caller has
  // CAP_SYS_ADMIN in its user namespace); the process is single-threaded.
  // Returns 0 or an errno value; EINVAL if the filter was never built.
  int Load() const;

  bool built() const { return !program_.empty(); }
  size_t instructions() const { return program_.size(); }

 private:
  std::vector<sock_filter> program_;
};

}  // namespace sbx::init

#endif  // SBX_SERVER_INIT_SECCOMP_FILTER_H_
