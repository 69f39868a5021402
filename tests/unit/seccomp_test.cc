// The syscall filter (server/init/seccomp_filter.cc), loaded for real: each
// case forks a child that sets no_new_privs, loads the filter as sbx-init's
// exec path does, makes one call and exits with its errno (0 on success).
// The parent asserts the exact exit code or the signal that killed it.
//
// Controls run the same calls without the filter (as root, with arguments
// chosen so that nothing on the host changes) to show that the refusal comes
// from the filter and not from the kernel's own permission checks.
#include <asm/unistd.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/kcmp.h>
#include <linux/keyctl.h>
#include <linux/mount.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/quota.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <ostream>
#include <string>

#include "gtest/gtest.h"
#include "server/init/seccomp_filter.h"

#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef SYS_open_tree_attr
#define SYS_open_tree_attr 467
#endif

namespace sbx::init {
namespace {

// How a child ended: an exit code, or the signal that killed it.
struct Outcome {
  int code = -1;  // -1 when killed
  int signal = 0;
  bool operator==(const Outcome&) const = default;
};
Outcome Exited(int code) { return {code, 0}; }
Outcome Killed(int sig) { return {-1, sig}; }

void PrintTo(const Outcome& o, std::ostream* os) {
  if (o.signal != 0) {
    *os << "killed by " << strsignal(o.signal);
  } else {
    *os << "exited " << o.code
        << (o.code > 0 ? " (" + std::string(strerrordesc_np(o.code)) + ")" : "");
  }
}

constexpr int kLoadFailed = 255;
constexpr const char* kAbsent = "/nonexistent-sbx-seccomp-test";

const SeccompFilter& Filter() {
  static const SeccompFilter* filter = [] {
    auto* f = new SeccompFilter;
    SeccompFilter::Build(f);  // FilterTest.Builds reports a failure
    return f;
  }();
  return *filter;
}

// Runs `body` in a forked child, under `filter` if it is not null.
Outcome RunUnder(const SeccompFilter* filter, const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();  // no controlling terminal for any call to touch
    if (filter != nullptr &&
        (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || filter->Load() != 0)) {
      ::_exit(kLoadFailed);
    }
    ::_exit(body());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return Exited(-2);
  if (WIFSIGNALED(status)) return Killed(WTERMSIG(status));
  return Exited(WEXITSTATUS(status));
}
Outcome RunChild(bool filtered, const std::function<int()>& body) {
  return RunUnder(filtered ? &Filter() : nullptr, body);
}
Outcome RunFiltered(const std::function<int()>& body) { return RunChild(true, body); }
Outcome RunUnfiltered(const std::function<int()>& body) { return RunChild(false, body); }

int ErrnoOf(long rc) { return rc < 0 ? errno : 0; }

// Raw clone with fork semantics: the new process exits at once.
int CloneWith(unsigned long flags) {
  long pid = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (pid < 0) return errno;
  if (pid == 0) ::_exit(0);
  ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return 0;
}

int Clone3() {
  struct clone_args args = {};
  args.exit_signal = SIGCHLD;
  long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) return errno;
  if (pid == 0) ::_exit(0);
  ::waitpid(static_cast<pid_t>(pid), nullptr, 0);
  return 0;
}

int PtyIoctl(unsigned long request, long arg_value) {
  int master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return kLoadFailed - 1;
  char arg = static_cast<char>(arg_value);
  return ErrnoOf(::ioctl(master, request, &arg));
}

int SocketOf(uint64_t domain, int type) { return ErrnoOf(::syscall(SYS_socket, domain, type, 0)); }

// Calls the filter refuses, with what it answers. `control`: safe and
// meaningful to run unfiltered as root (false where host policy such as
// lockdown or modules_disabled may already answer EPERM, or where the call
// would load a kernel module or hang up a terminal).
struct DeniedCall {
  const char* name;
  int (*call)();
  int filtered_errno;
  bool control;
};

void PrintTo(const DeniedCall& c, std::ostream* os) { *os << c.name; }

int g_peek_target = 42;

const DeniedCall kDeniedCalls[] = {
    {"keyctl",
     [] {
       return ErrnoOf(::syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
     },
     EPERM, true},
    {"add_key",
     [] {
       return ErrnoOf(
           ::syscall(SYS_add_key, "user", "sbx-seccomp-test", "x", 1, KEY_SPEC_PROCESS_KEYRING));
     },
     EPERM, true},
    {"request_key",
     [] { return ErrnoOf(::syscall(SYS_request_key, "user", "sbx-seccomp-absent", nullptr, 0)); },
     EPERM, true},
    {"bpf",
     [] {
       union bpf_attr attr = {};
       return ErrnoOf(::syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
     },
     EPERM, true},
    {"perf_event_open",
     [] {
       struct perf_event_attr attr = {};
       attr.size = sizeof(attr);
       attr.type = PERF_TYPE_SOFTWARE;
       attr.config = PERF_COUNT_SW_TASK_CLOCK;
       attr.disabled = 1;
       return ErrnoOf(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
     },
     EPERM, true},
    {"userfaultfd", [] { return ErrnoOf(::syscall(SYS_userfaultfd, O_CLOEXEC)); }, EPERM, true},
    {"io_uring_setup",
     [] {
       struct io_uring_params params = {};
       return ErrnoOf(::syscall(SYS_io_uring_setup, 1, &params));
     },
     EPERM, true},
    {"io_uring_enter",
     [] { return ErrnoOf(::syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0)); }, EPERM, true},
    {"io_uring_register",
     [] { return ErrnoOf(::syscall(SYS_io_uring_register, -1, 0, nullptr, 0)); }, EPERM, true},
    {"unshare_NEWUSER", [] { return ErrnoOf(::unshare(CLONE_NEWUSER)); }, EPERM, true},
    {"unshare_NEWNS", [] { return ErrnoOf(::unshare(CLONE_NEWNS)); }, EPERM, true},
    {"setns",
     [] {
       int fd = ::open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
       return fd < 0 ? kLoadFailed - 1 : ErrnoOf(::setns(fd, CLONE_NEWUTS));
     },
     EPERM, true},
    {"clone_NEWNS", [] { return CloneWith(CLONE_NEWNS); }, EPERM, true},
    {"clone_NEWCGROUP", [] { return CloneWith(CLONE_NEWCGROUP); }, EPERM, true},
    {"clone_NEWUTS", [] { return CloneWith(CLONE_NEWUTS); }, EPERM, true},
    {"clone_NEWIPC", [] { return CloneWith(CLONE_NEWIPC); }, EPERM, true},
    {"clone_NEWUSER", [] { return CloneWith(CLONE_NEWUSER); }, EPERM, true},
    {"clone_NEWPID", [] { return CloneWith(CLONE_NEWPID); }, EPERM, true},
    {"clone_NEWNET", [] { return CloneWith(CLONE_NEWNET); }, EPERM, true},
    {"clone_NEWTIME_bit", [] { return CloneWith(CLONE_NEWTIME); }, EPERM, true},
    {"clone_NEWNET_with_thread_flags",
     [] {
       // A namespace bit among other sharing flags is still caught.
       return CloneWith(CLONE_NEWNET | CLONE_FS | CLONE_FILES | CLONE_SYSVSEM);
     },
     EPERM, true},
    {"clone3", [] { return Clone3(); }, ENOSYS, true},
    {"ptrace_TRACEME",
     [] { return ErrnoOf(::syscall(SYS_ptrace, PTRACE_TRACEME, 0, nullptr, nullptr)); }, EPERM,
     true},
    {"process_vm_readv",
     [] {
       int local = 0;
       struct iovec liov = {&local, sizeof(local)}, riov = {&g_peek_target, sizeof(g_peek_target)};
       return ErrnoOf(::process_vm_readv(::getpid(), &liov, 1, &riov, 1, 0));
     },
     EPERM, true},
    {"process_vm_writev",
     [] {
       int local = 7;
       struct iovec liov = {&local, sizeof(local)}, riov = {&g_peek_target, sizeof(g_peek_target)};
       return ErrnoOf(::process_vm_writev(::getpid(), &liov, 1, &riov, 1, 0));
     },
     EPERM, true},
    {"kcmp", [] { return ErrnoOf(::syscall(SYS_kcmp, ::getpid(), ::getpid(), KCMP_VM, 0, 0)); },
     EPERM, true},
    {"pidfd_getfd",
     [] {
       long pidfd = ::syscall(SYS_pidfd_open, ::getpid(), 0);
       return pidfd < 0 ? kLoadFailed - 1 : ErrnoOf(::syscall(SYS_pidfd_getfd, pidfd, 0, 0));
     },
     EPERM, true},
    {"mount", [] { return ErrnoOf(::mount("none", kAbsent, "tmpfs", 0, nullptr)); }, EPERM, true},
    {"umount2", [] { return ErrnoOf(::umount2(kAbsent, 0)); }, EPERM, true},
    {"pivot_root", [] { return ErrnoOf(::syscall(SYS_pivot_root, kAbsent, kAbsent)); }, EPERM,
     true},
    {"chroot", [] { return ErrnoOf(::chroot(kAbsent)); }, EPERM, true},
    {"fsopen", [] { return ErrnoOf(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC)); }, EPERM, true},
    {"fsconfig",
     [] { return ErrnoOf(::syscall(SYS_fsconfig, -1, FSCONFIG_SET_FLAG, "ro", nullptr, 0)); },
     EPERM, true},
    {"fsmount", [] { return ErrnoOf(::syscall(SYS_fsmount, -1, 0, 0)); }, EPERM, true},
    {"fspick", [] { return ErrnoOf(::syscall(SYS_fspick, AT_FDCWD, kAbsent, 0)); }, EPERM, true},
    {"open_tree",
     [] { return ErrnoOf(::syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLOEXEC)); }, EPERM,
     true},
    {"open_tree_attr",
     [] {
       return ErrnoOf(::syscall(SYS_open_tree_attr, AT_FDCWD, "/", OPEN_TREE_CLOEXEC, nullptr, 0));
     },
     EPERM, true},
    {"move_mount",
     [] { return ErrnoOf(::syscall(SYS_move_mount, AT_FDCWD, kAbsent, AT_FDCWD, kAbsent, 0)); },
     EPERM, true},
    {"mount_setattr",
     [] { return ErrnoOf(::syscall(SYS_mount_setattr, AT_FDCWD, kAbsent, 0, nullptr, 0)); }, EPERM,
     true},
    {"kexec_load",
     [] { return ErrnoOf(::syscall(SYS_kexec_load, 0, 1000, nullptr, 0x7fff0000UL)); }, EPERM,
     false},
    {"kexec_file_load",
     [] { return ErrnoOf(::syscall(SYS_kexec_file_load, -1, -1, 0, "", 0x8000UL)); }, EPERM, false},
    {"init_module", [] { return ErrnoOf(::syscall(SYS_init_module, nullptr, 0, "")); }, EPERM,
     false},
    {"finit_module", [] { return ErrnoOf(::syscall(SYS_finit_module, -1, "", 0)); }, EPERM, false},
    {"delete_module",
     [] { return ErrnoOf(::syscall(SYS_delete_module, "sbx_seccomp_absent", O_NONBLOCK)); }, EPERM,
     false},
    {"swapon", [] { return ErrnoOf(::syscall(SYS_swapon, kAbsent, 0)); }, EPERM, true},
    {"swapoff", [] { return ErrnoOf(::syscall(SYS_swapoff, kAbsent)); }, EPERM, true},
    {"reboot_bad_magic", [] { return ErrnoOf(::syscall(SYS_reboot, 0, 0, 0, nullptr)); }, EPERM,
     true},
    {"acct", [] { return ErrnoOf(::acct(kAbsent)); }, EPERM, true},
    {"settimeofday_null", [] { return ErrnoOf(::syscall(SYS_settimeofday, nullptr, nullptr)); },
     EPERM, true},
    {"clock_settime_monotonic",
     [] {
       struct timespec ts = {1, 0};
       return ErrnoOf(::syscall(SYS_clock_settime, CLOCK_MONOTONIC, &ts));
     },
     EPERM, true},
    {"clock_adjtime_read",
     [] {
       struct timex tx = {};
       return ErrnoOf(::syscall(SYS_clock_adjtime, CLOCK_REALTIME, &tx));
     },
     EPERM, true},
    {"quotactl",
     [] { return ErrnoOf(::syscall(SYS_quotactl, QCMD(Q_GETFMT, USRQUOTA), kAbsent, 0, nullptr)); },
     EPERM, true},
    {"quotactl_fd",
     [] { return ErrnoOf(::syscall(SYS_quotactl_fd, -1, QCMD(Q_GETFMT, USRQUOTA), 0, nullptr)); },
     EPERM, true},
    {"syslog_size",
     [] { return ErrnoOf(::syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, nullptr, 0)); },
     EPERM, true},
    {"vhangup", [] { return ErrnoOf(::syscall(SYS_vhangup)); }, EPERM, false},
    {"open_by_handle_at", [] { return ErrnoOf(::syscall(SYS_open_by_handle_at, -1, nullptr, 0)); },
     EPERM, true},
    {"name_to_handle_at",
     [] {
       int mount_id = 0;
       return ErrnoOf(::syscall(SYS_name_to_handle_at, AT_FDCWD, "/", nullptr, &mount_id, 0));
     },
     EPERM, true},
    {"iopl_0", [] { return ErrnoOf(::syscall(SYS_iopl, 0)); }, EPERM, true},
    {"ioperm_off", [] { return ErrnoOf(::syscall(SYS_ioperm, 0x80, 1, 0)); }, EPERM, true},
    {"lookup_dcookie", [] { return ErrnoOf(::syscall(SYS_lookup_dcookie, 0, nullptr, 0)); }, EPERM,
     true},
    {"nfsservctl", [] { return ErrnoOf(::syscall(SYS_nfsservctl, 0, nullptr, nullptr)); }, EPERM,
     true},
    {"uselib", [] { return ErrnoOf(::syscall(SYS_uselib, kAbsent)); }, EPERM, true},
    {"sysctl", [] { return ErrnoOf(::syscall(SYS__sysctl, nullptr)); }, EPERM, true},
    {"personality_READ_IMPLIES_EXEC", [] { return ErrnoOf(::personality(READ_IMPLIES_EXEC)); },
     EPERM, true},
    {"personality_ADDR_NO_RANDOMIZE", [] { return ErrnoOf(::personality(ADDR_NO_RANDOMIZE)); },
     EPERM, true},
    {"personality_high_bits_READ_IMPLIES_EXEC",
     [] {
       // The kernel keeps the low 32 bits: this sets READ_IMPLIES_EXEC.
       return ErrnoOf(::syscall(SYS_personality, 0x100000000UL | READ_IMPLIES_EXEC));
     },
     EPERM, true},
    {"personality_all_but_PER_LINUX32",
     [] { return ErrnoOf(::syscall(SYS_personality, 0xfffffff7UL)); }, EPERM, true},
    {"socket_AF_VSOCK", [] { return SocketOf(AF_VSOCK, SOCK_STREAM); }, EPERM, false},
    {"socket_AF_VSOCK_high_bits", [] { return SocketOf(0x100000000ULL | AF_VSOCK, SOCK_STREAM); },
     EPERM, false},
    {"socket_AF_ALG", [] { return SocketOf(AF_ALG, SOCK_SEQPACKET); }, EPERM, false},
    {"socketpair_AF_VSOCK",
     [] {
       int sv[2];
       return ErrnoOf(::socketpair(AF_VSOCK, SOCK_STREAM, 0, sv));
     },
     EPERM, false},
    {"ioctl_TIOCSTI", [] { return PtyIoctl(TIOCSTI, 'x'); }, EPERM, true},
    {"ioctl_TIOCSTI_high_bits", [] { return PtyIoctl(TIOCSTI | 0x100000000UL, 'x'); }, EPERM, true},
    {"ioctl_TIOCLINUX", [] { return PtyIoctl(TIOCLINUX, 0); }, EPERM, true},
};

std::string CaseName(const ::testing::TestParamInfo<DeniedCall>& info) { return info.param.name; }

class DeniedCallTest : public ::testing::TestWithParam<DeniedCall> {};

TEST_P(DeniedCallTest, FailsWithExactErrnoUnderTheFilter) {
  ASSERT_TRUE(Filter().built());
  EXPECT_EQ(RunFiltered(GetParam().call), Exited(GetParam().filtered_errno));
}

// The controls run each call without the filter, as root, to show that the
// kernel alone would not fail it the same way. Calls that would change the
// host if they succeeded (kexec, modules, vhangup) or whose result depends on
// host policy (vsock, AF_ALG modules) have no control: they are not
// instantiated here rather than skipped.
class DeniedCallControlTest : public ::testing::TestWithParam<DeniedCall> {};

std::vector<DeniedCall> CallsWithControls() {
  std::vector<DeniedCall> out;
  for (const DeniedCall& call : kDeniedCalls) {
    if (call.control) out.push_back(call);
  }
  return out;
}

TEST_P(DeniedCallControlTest, DoesNotFailThatWayWithoutTheFilter) {
  ASSERT_EQ(::geteuid(), 0u) << "the controls need root: unprivileged, the kernel refuses many "
                                "of these calls itself";
  Outcome unfiltered = RunUnfiltered(GetParam().call);
  EXPECT_EQ(unfiltered.signal, 0);
  EXPECT_NE(unfiltered.code, GetParam().filtered_errno)
      << "without the filter the call already fails this way, so this case cannot show the filter "
         "at work";
}

INSTANTIATE_TEST_SUITE_P(DockerDefaults, DeniedCallControlTest,
                         ::testing::ValuesIn(CallsWithControls()), CaseName);

INSTANTIATE_TEST_SUITE_P(DockerDefaults, DeniedCallTest, ::testing::ValuesIn(kDeniedCalls),
                         CaseName);

TEST(SeccompFilterTest, BuildsAProgramTheKernelAccepts) {
  SeccompFilter filter;
  ASSERT_EQ(SeccompFilter::Build(&filter), 0);
  EXPECT_TRUE(filter.built());
  EXPECT_GT(filter.instructions(), 0u);
  EXPECT_LE(filter.instructions(), static_cast<size_t>(BPF_MAXINSNS));
  EXPECT_EQ(RunChild(false,
                     [&filter] {
                       if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return kLoadFailed;
                       return filter.Load();
                     }),
            Exited(0));
}

TEST(SeccompFilterTest, LoadWithoutBuildIsEinval) {
  SeccompFilter empty;
  EXPECT_EQ(empty.Load(), EINVAL);
}

TEST(SeccompFilterTest, ShowsAsSeccompModeFilter) {
  EXPECT_EQ(RunFiltered([] {
              std::ifstream status("/proc/self/status");
              std::string line;
              while (std::getline(status, line)) {
                if (line == "Seccomp:\t2") return 0;
              }
              return 1;
            }),
            Exited(0));
}

// ---- calls newer than the review ----------------------------------------------

// A syscall by number, with arguments that make every call of 440-469 fail
// harmlessly (bad descriptors, null pointers, zero sizes).
int NumberedCall(long nr) { return ErrnoOf(::syscall(nr, -1L, 0L, 0L, 0L, 0L, 0L)); }

constexpr long kFileGetattr = 468;  // Linux 6.17, the last two this kernel has
constexpr long kFileSetattr = 469;

// A kernel without these calls answers ENOSYS as well: this guards the
// answer under the filter (not EPERM, not a kill, up to the x32 range). The
// next test shows the rule itself at work.
TEST(UnreviewedSyscallTest, NumbersPastTheReviewAreEnosys) {
  for (long nr : {static_cast<long>(SeccompFilter::kFirstUnreviewedSyscall), 471L, 500L, 1023L,
                  static_cast<long>(__X32_SYSCALL_BIT) - 1}) {
    EXPECT_EQ(RunFiltered([nr] { return NumberedCall(nr); }), Exited(ENOSYS)) << "syscall " << nr;
  }
}

// The rule shown at work on calls this kernel has: a filter whose review
// ends below file_getattr and file_setattr refuses them with ENOSYS, while
// the real filter lets them reach the kernel, as it does unfiltered.
TEST(UnreviewedSyscallTest, RefusesCallsTheKernelHasWhenTheyArePastTheReview) {
  const Outcome unfiltered = RunUnfiltered([] { return NumberedCall(kFileGetattr); });
  if (unfiltered == Exited(ENOSYS)) {
    GTEST_SKIP() << "this kernel has no file_getattr (Linux 6.17), so no call past a lowered "
                    "review can be told apart from a missing one";
  }
  SeccompFilter early;
  ASSERT_EQ(SeccompFilter::Build(&early, kFileGetattr), 0);
  for (long nr : {kFileGetattr, kFileSetattr}) {
    SCOPED_TRACE(nr);
    EXPECT_NE(RunUnfiltered([nr] { return NumberedCall(nr); }), Exited(ENOSYS));
    EXPECT_NE(RunFiltered([nr] { return NumberedCall(nr); }), Exited(ENOSYS));
    EXPECT_EQ(RunUnder(&early, [nr] { return NumberedCall(nr); }), Exited(ENOSYS));
  }
  // Below the lowered review the deny-list and the kernel answer as before.
  EXPECT_EQ(RunUnder(&early, [] { return NumberedCall(SYS_open_tree_attr); }), Exited(EPERM));
  EXPECT_EQ(RunUnder(&early, [] { return ::syscall(SYS_getpid) == ::getpid() ? 0 : 1; }),
            Exited(0));
}

// ---- what must keep working ---------------------------------------------------

TEST(AllowedCallTest, GetpidAndWrite) {
  EXPECT_EQ(RunFiltered([] {
              int p[2];
              if (::syscall(SYS_getpid) != ::getpid() || ::pipe(p) != 0) return 1;
              return ::write(p[1], "ok", 2) == 2 ? 0 : 2;
            }),
            Exited(0));
}

TEST(AllowedCallTest, ForkAndWait) {
  EXPECT_EQ(RunFiltered([] {
              pid_t pid = ::fork();
              if (pid == 0) ::_exit(7);
              int status = 0;
              if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return 1;
              return WIFEXITED(status) && WEXITSTATUS(status) == 7 ? 0 : 2;
            }),
            Exited(0));
}

TEST(AllowedCallTest, CloneWithoutNamespaceFlags) {
  EXPECT_EQ(RunFiltered([] { return CloneWith(CLONE_FS | CLONE_FILES); }), Exited(0));
}

// glibc tries clone3 first; ENOSYS must send it to clone, not fail.
TEST(AllowedCallTest, ThreadsFallBackFromClone3) {
  EXPECT_EQ(RunFiltered([] {
              pthread_t thread;
              static int ran = 0;
              if (::pthread_create(
                      &thread, nullptr,
                      [](void*) -> void* {
                        ran = 1;
                        return nullptr;
                      },
                      nullptr) != 0)
                return 1;
              ::pthread_join(thread, nullptr);
              return ran == 1 ? 0 : 2;
            }),
            Exited(0));
}

TEST(AllowedCallTest, OrdinarySocketFamilies) {
  EXPECT_EQ(RunFiltered([] { return SocketOf(AF_INET, SOCK_STREAM); }), Exited(0));
  EXPECT_EQ(RunFiltered([] { return SocketOf(AF_INET6, SOCK_DGRAM); }), Exited(0));
  EXPECT_EQ(RunFiltered([] { return SocketOf(AF_UNIX, SOCK_STREAM); }), Exited(0));
  EXPECT_EQ(RunFiltered([] { return SocketOf(AF_NETLINK, SOCK_RAW); }), Exited(0));
  EXPECT_EQ(RunFiltered([] {
              int sv[2];
              return ErrnoOf(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
            }),
            Exited(0));
}

TEST(AllowedCallTest, OtherTerminalIoctls) {
  EXPECT_EQ(RunFiltered([] {
              int master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
              struct winsize ws = {24, 80, 0, 0};
              if (master < 0 || ::ioctl(master, TIOCSWINSZ, &ws) != 0) return 1;
              ws = {};
              return ::ioctl(master, TIOCGWINSZ, &ws) == 0 && ws.ws_col == 80 ? 0 : 2;
            }),
            Exited(0));
}

TEST(AllowedCallTest, HarmlessPersonalities) {
  for (unsigned long persona : {0x0UL, 0x8UL, 0x20000UL, 0x20008UL}) {
    EXPECT_EQ(RunFiltered([persona] {
                if (::syscall(SYS_personality, persona) < 0) return errno;
                return ::syscall(SYS_personality, 0xffffffffUL) == static_cast<long>(persona) ? 0
                                                                                              : 200;
              }),
              Exited(0))
        << std::hex << persona;
  }
  // The query, and a value whose low 32 bits (all the kernel reads) are 0.
  EXPECT_EQ(RunFiltered([] { return ErrnoOf(::personality(0xffffffff)); }), Exited(0));
  EXPECT_EQ(RunFiltered([] { return ErrnoOf(::syscall(SYS_personality, 0x100000000UL)); }),
            Exited(0));
}

// Every single persona bit: only PER_LINUX32 (bit 3) and UNAME26 (bit 17) pass.
TEST(AllowedCallTest, PersonalityBitsOtherThanTheHarmlessOnesAreRefused) {
  for (int bit = 0; bit < 32; ++bit) {
    const unsigned long persona = 1UL << bit;
    const int expected = (persona == 0x8 || persona == 0x20000) ? 0 : EPERM;
    EXPECT_EQ(RunFiltered([persona] { return ErrnoOf(::syscall(SYS_personality, persona)); }),
              Exited(expected))
        << "bit " << bit;
  }
}

TEST(AllowedCallTest, ExecsAProgram) {
  EXPECT_EQ(RunFiltered([] {
              const char* argv[] = {"/bin/sh", "-c", "exit 42", nullptr};
              ::execv(argv[0], const_cast<char* const*>(argv));
              return 1;
            }),
            Exited(42));
}

// ---- other architectures ------------------------------------------------------

// getpid through the i386 entry point (int 0x80, i386 number 20).
int I386Getpid() {
  long ret;
  asm volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
  return static_cast<pid_t>(ret) == ::getpid() ? 0 : 1;
}

TEST(ArchitectureTest, I386SyscallKillsTheProcess) {
  if (RunUnfiltered(I386Getpid) != Exited(0)) {
    GTEST_SKIP() << "the kernel runs no i386 syscalls (no IA32 emulation), nothing to filter";
  }
  EXPECT_EQ(RunFiltered(I386Getpid), Killed(SIGSYS));
}

TEST(ArchitectureTest, X32SyscallKillsTheProcess) {
  auto x32_getpid = [] { return ErrnoOf(::syscall(__X32_SYSCALL_BIT | __NR_getpid)); };
  // Without the filter an x32 getpid either works (x32 ABI built in) or is
  // ENOSYS; with it, the bad-architecture action kills the process first.
  Outcome unfiltered = RunUnfiltered(x32_getpid);
  EXPECT_TRUE(unfiltered == Exited(0) || unfiltered == Exited(ENOSYS));
  EXPECT_EQ(RunFiltered(x32_getpid), Killed(SIGSYS));
}

}  // namespace
}  // namespace sbx::init
