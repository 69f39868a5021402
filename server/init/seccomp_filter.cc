// The deny-list behind SeccompFilter. docs/seccomp.md is the reference for
// why each rule exists; keep the two in step.
#include "server/init/seccomp_filter.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sbx::init {
namespace {

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif

// open_tree_attr (Linux 6.15) is newer than libseccomp 2.5.4's syscall table;
// this is its x86_64 number.
constexpr int kNrOpenTreeAttr = 467;

// Refused with EPERM whatever their arguments.
constexpr int kDeniedSyscalls[] = {
    // Kernel keyring: not namespaced.
    SCMP_SYS(keyctl),
    SCMP_SYS(add_key),
    SCMP_SYS(request_key),
    // Large kernel attack surface, or a window into other processes.
    SCMP_SYS(bpf),
    SCMP_SYS(perf_event_open),
    SCMP_SYS(userfaultfd),
    SCMP_SYS(io_uring_setup),
    SCMP_SYS(io_uring_enter),
    SCMP_SYS(io_uring_register),
    // Replacing or extending the running kernel.
    SCMP_SYS(kexec_load),
    SCMP_SYS(kexec_file_load),
    SCMP_SYS(init_module),
    SCMP_SYS(finit_module),
    SCMP_SYS(delete_module),
    SCMP_SYS(create_module),
    SCMP_SYS(get_kernel_syms),
    SCMP_SYS(query_module),
    // The mount family: the sandbox's root is fixed by its init.
    SCMP_SYS(mount),
    SCMP_SYS(umount2),
    SCMP_SYS(fsopen),
    SCMP_SYS(fsconfig),
    SCMP_SYS(fsmount),
    SCMP_SYS(fspick),
    SCMP_SYS(open_tree),
    kNrOpenTreeAttr,
    SCMP_SYS(move_mount),
    SCMP_SYS(mount_setattr),
    SCMP_SYS(pivot_root),
    SCMP_SYS(chroot),
    // Host-wide state: swap, power, accounting, clocks, quotas, logs.
    SCMP_SYS(swapon),
    SCMP_SYS(swapoff),
    SCMP_SYS(reboot),
    SCMP_SYS(acct),
    SCMP_SYS(settimeofday),
    SCMP_SYS(clock_settime),
    SCMP_SYS(clock_adjtime),
    SCMP_SYS(quotactl),
    SCMP_SYS(quotactl_fd),
    SCMP_SYS(syslog),
    SCMP_SYS(vhangup),
    // File handles bypass path permissions (the "shocker" escape).
    SCMP_SYS(open_by_handle_at),
    SCMP_SYS(name_to_handle_at),
    // New namespaces: their own attack surface, and a way out of ours.
    SCMP_SYS(unshare),
    SCMP_SYS(setns),
    // Reading or steering other processes.
    SCMP_SYS(ptrace),
    SCMP_SYS(process_vm_readv),
    SCMP_SYS(process_vm_writev),
    SCMP_SYS(kcmp),
    SCMP_SYS(pidfd_getfd),
    // Raw I/O ports and obsolete interfaces.
    SCMP_SYS(iopl),
    SCMP_SYS(ioperm),
    SCMP_SYS(lookup_dcookie),
    SCMP_SYS(nfsservctl),
    SCMP_SYS(uselib),
    SCMP_SYS(_sysctl),
};

// clone() flags that create namespaces. clone() cannot make a time namespace:
// CLONE_NEWTIME's bit lies in its exit-signal byte, and refusing it refuses
// only exit signals of 128 and above, which no program asks for.
constexpr uint64_t kCloneNamespaceFlags[] = {
    CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET, CLONE_NEWTIME,
};

// The kernel reads these arguments as 32-bit ints; compare only what it reads,
// so that junk in the upper half of the register does not slip past.
constexpr uint64_t kLow32 = 0xffffffffULL;

constexpr int kDeniedSocketFamilies[] = {AF_VSOCK, AF_ALG};
constexpr uint64_t kDeniedIoctls[] = {TIOCSTI, TIOCLINUX};

// personality() values that stay allowed (as in Docker's profile): PER_LINUX,
// PER_LINUX32, each with UNAME26, and 0xffffffff (query). That is: either no
// bit outside kFreePersonaBits, or all 32 bits set.
constexpr uint32_t kFreePersonaBits = 0x0008 | 0x20000;

int Deny(scmp_filter_ctx ctx, int err, int nr) {
  return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 0);
}

int DenyIf(scmp_filter_ctx ctx, int err, int nr, scmp_arg_cmp cmp) {
  return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 1, cmp);
}

int AddCloneRules(scmp_filter_ctx ctx) {
  for (uint64_t flag : kCloneNamespaceFlags) {
    int rc = DenyIf(ctx, EPERM, SCMP_SYS(clone), SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag));
    if (rc != 0) return rc;
  }
  // clone3 takes its flags in memory, out of BPF's reach. ENOSYS makes glibc
  // (pthread_create, posix_spawn) fall back to clone, checked above.
  return Deny(ctx, ENOSYS, SCMP_SYS(clone3));
}

// libseccomp compares an argument once per rule and rules are OR-ed, so "not
// one of five values" is built from single masked comparisons. Let R be the
// bits outside kFreePersonaBits, taken in order r1..r30. A value is allowed
// iff its R bits are all clear, or all 32 bits are set. It is refused iff
//  * two neighbours r(k), r(k+1) differ (R bits neither all clear nor all set), or
//  * all R bits are set but one of the free bits is clear.
int AddPersonalityRules(scmp_filter_ctx ctx) {
  const uint32_t r_bits = ~kFreePersonaBits;
  auto deny_masked = [ctx](uint32_t mask, uint32_t value) {
    return DenyIf(ctx, EPERM, SCMP_SYS(personality), SCMP_A0(SCMP_CMP_MASKED_EQ, mask, value));
  };
  uint32_t prev = 0;
  for (int bit = 0; bit < 32; ++bit) {
    const uint32_t cur = 1U << bit;
    if ((r_bits & cur) == 0) continue;
    if (prev != 0) {
      if (int rc = deny_masked(prev | cur, prev); rc != 0) return rc;
      if (int rc = deny_masked(prev | cur, cur); rc != 0) return rc;
    }
    prev = cur;
  }
  for (uint32_t free_bit : {0x0008U, 0x20000U}) {
    if (int rc = deny_masked(r_bits | free_bit, r_bits); rc != 0) return rc;
  }
  return 0;
}

int AddArgumentRules(scmp_filter_ctx ctx) {
  for (int family : kDeniedSocketFamilies) {
    for (int nr : {SCMP_SYS(socket), SCMP_SYS(socketpair)}) {
      int rc = DenyIf(ctx, EPERM, nr,
                      SCMP_A0(SCMP_CMP_MASKED_EQ, kLow32, static_cast<uint64_t>(family)));
      if (rc != 0) return rc;
    }
  }
  for (uint64_t request : kDeniedIoctls) {
    int rc = DenyIf(ctx, EPERM, SCMP_SYS(ioctl), SCMP_A1(SCMP_CMP_MASKED_EQ, kLow32, request));
    if (rc != 0) return rc;
  }
  if (int rc = AddCloneRules(ctx); rc != 0) return rc;
  return AddPersonalityRules(ctx);
}

int AddRules(scmp_filter_ctx ctx) {
  // Only the native architecture is in the filter: i386 (int 0x80) and x32
  // system calls take the bad-arch action and kill the whole process.
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS); rc != 0) {
    return rc;
  }
  // A binary tree keeps the cost of an allowed call logarithmic in the rules.
  if (int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); rc != 0) return rc;
  for (int nr : kDeniedSyscalls) {
    if (int rc = Deny(ctx, EPERM, nr); rc != 0) return rc;
  }
  return AddArgumentRules(ctx);
}

// libseccomp 2.5 exports only to a file descriptor, so go through a memfd.
int ExportProgram(scmp_filter_ctx ctx, std::vector<sock_filter>* program) {
  int fd = ::memfd_create("sbx-seccomp", MFD_CLOEXEC);
  if (fd < 0) return errno;
  int err = -seccomp_export_bpf(ctx, fd);
  off_t size = err == 0 ? ::lseek(fd, 0, SEEK_END) : 0;
  if (err == 0 && size < 0) err = errno;
  if (err == 0 &&
      (size == 0 || size % sizeof(sock_filter) != 0 || size / sizeof(sock_filter) > BPF_MAXINSNS)) {
    err = E2BIG;
  }
  if (err == 0) {
    program->resize(size / sizeof(sock_filter));
    ssize_t n = ::pread(fd, program->data(), size, 0);
    if (n != size) err = n < 0 ? errno : EIO;
  }
  ::close(fd);
  if (err != 0) program->clear();
  return err;
}

// Put in front of libseccomp's program (classic BPF jumps are relative, so
// it runs unchanged after it): an x86_64 call numbered `first_unreviewed` or
// above, below the x32 range, is refused with ENOSYS, which glibc and other
// runtimes read as "this kernel is too old" and work around. libseccomp
// cannot express a range of syscall numbers. x32 numbers (and -1) go on to
// libseccomp's program, which kills x32 calls as before.
std::vector<sock_filter> UnreviewedSyscallsPrologue(int first_unreviewed) {
  return {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, static_cast<uint32_t>(first_unreviewed), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
  };
}

}  // namespace

int SeccompFilter::Build(SeccompFilter* out, int first_unreviewed) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return ENOMEM;
  int err = -AddRules(ctx);
  std::vector<sock_filter> body;
  if (err == 0) err = ExportProgram(ctx, &body);
  seccomp_release(ctx);
  if (err != 0) return err;
  std::vector<sock_filter> program = UnreviewedSyscallsPrologue(first_unreviewed);
  if (program.size() + body.size() > BPF_MAXINSNS) return E2BIG;
  program.insert(program.end(), body.begin(), body.end());
  out->program_ = std::move(program);
  return 0;
}

int SeccompFilter::Load() const {
  if (program_.empty()) return EINVAL;
  struct sock_fprog prog = {static_cast<unsigned short>(program_.size()),
                            const_cast<sock_filter*>(program_.data())};
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) return errno;
  return 0;
}

}  // namespace sbx::init
