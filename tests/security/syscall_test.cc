// Hostile code against the kernel interface: the system calls the filter
// refuses (docs/seccomp.md), the ones that fail for want of capabilities, and
// non-native system call ABIs. Each is tried as the default user and as root
// inside, with arguments a real attack would pass or that would succeed (or
// fail differently) without the filter, so EPERM proves the refusal.
#include <gtest/gtest.h>
#include <signal.h>

#include "hostile_util.h"

namespace sbx::sec {
namespace {

using std::chrono::seconds;

class SyscallTest : public it::DaemonTest {
 protected:
  static void SetUpTestSuite() { StartDaemon(); }
  static void TearDownTestSuite() { StopDaemon(); }

  // Runs `code` as the default user and as root; both must print `expected`.
  void ExpectAsBoth(const std::string& id, const std::string& code, const std::string& expected) {
    for (const auto& opts : {AsUser(), AsRoot()}) {
      ExecResult r = Py(stub(), id, code, opts);
      ASSERT_TRUE(r.Ok()) << r.Describe();
      EXPECT_EQ(r.out, expected) << "as " << (opts.user.empty() ? "sandbox" : opts.user) << ": "
                                 << r.Describe();
    }
  }
};

TEST_F(SyscallTest, KeyctlIsDenied) {
  SBX_SANDBOX(sb);
  ExpectAsBoth(sb.id(),
               "print('keyctl', sc(250, 0, -3, 1))\n"  // KEYCTL_GET_KEYRING_ID, session, create
               "print('add_key', sc(248, b'user', b'sbx', b'secret', 6, -3))\n"
               "print('request_key', sc(249, b'user', b'sbx', 0, 0))\n",
               "keyctl EPERM\nadd_key EPERM\nrequest_key EPERM\n");
  RecordOutcome("keyctl, add_key, request_key: EPERM");
}

TEST_F(SyscallTest, BpfIsDenied) {
  SBX_SANDBOX(sb);
  ExpectAsBoth(sb.id(),
               "print('map_create', sc(321, 0, 0, 0))\n"
               "print('prog_load', sc(321, 5, 0, 0))\n",
               "map_create EPERM\nprog_load EPERM\n");
  RecordOutcome("bpf: EPERM");
}

TEST_F(SyscallTest, PerfEventOpenIsDenied) {
  SBX_SANDBOX(sb);
  // attr NULL: EFAULT without the filter.
  ExpectAsBoth(sb.id(), "print('perf_event_open', sc(298, 0, 0, -1, -1, 0))\n",
               "perf_event_open EPERM\n");
  RecordOutcome("perf_event_open: EPERM");
}

TEST_F(SyscallTest, IoUringIsDenied) {
  SBX_SANDBOX(sb);
  ExpectAsBoth(sb.id(),
               "print('io_uring_setup', sc(425, 1, 0))\n"
               "print('io_uring_enter', sc(426, 0, 0, 0, 0, 0, 0))\n"
               "print('io_uring_register', sc(427, 0, 0, 0, 0))\n",
               "io_uring_setup EPERM\nio_uring_enter EPERM\nio_uring_register EPERM\n");
  RecordOutcome("io_uring_setup/enter/register: EPERM");
}

TEST_F(SyscallTest, UserfaultfdIsDenied) {
  SBX_SANDBOX(sb);
  ExpectAsBoth(sb.id(), "print('userfaultfd', sc(323, 0o2000001))\n", "userfaultfd EPERM\n");
  RecordOutcome("userfaultfd: EPERM");
}

TEST_F(SyscallTest, VsockAndAlgSocketsAreDenied) {
  SBX_SANDBOX(sb);
  ExpectAsBoth(sb.id(),
               "import socket\n"
               "print('vsock', sc(41, 40, 1, 0))\n"
               "print('vsock_high_bits', sc(41, 40 | (1 << 32), 1, 0))\n"
               "print('alg', sc(41, 38, 5, 0))\n"
               "pair = (ctypes.c_int * 2)()\n"
               "print('vsock_pair', sc(53, 40, 1, 0, ctypes.addressof(pair)))\n"
               "print('alg_py', err(lambda: socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET)))\n",
               "vsock EPERM\nvsock_high_bits EPERM\nalg EPERM\nvsock_pair EPERM\nalg_py EPERM\n");
  RecordOutcome("socket(AF_VSOCK), socket(AF_ALG), socketpair(AF_VSOCK): EPERM");
}

TEST_F(SyscallTest, MountFamilyIsDeniedToRoot) {
  SBX_SANDBOX(sb);
  ExecResult m = it::RunExec(stub(), it::MakeStart(sb.id(), {"mount", "-t", "proc", "proc", "/tmp"},
                                                   AsRoot()));
  ASSERT_TRUE(m.Ok()) << m.Describe();
  EXPECT_EQ(m.exit->exit_code(), 32) << m.Describe();  // util-linux: mount failure
  EXPECT_NE(m.err.find("ermission denied"), std::string::npos) << m.Describe();
  ExpectAsBoth(sb.id(),
               "print('mount', sc(165, b'proc', b'/tmp', b'proc', 0, 0))\n"
               "print('remount_usr_rw', sc(165, 0, b'/usr', 0, 0x20 | 0x1000, 0))\n"
               "print('umount2', sc(166, b'/proc', 2))\n"
               "print('fsopen', sc(430, b'proc', 0))\n"
               "print('open_tree', sc(428, -100, b'/', 1))\n"
               "print('move_mount', sc(429, -100, b'/tmp', -100, b'/mnt', 0))\n"
               "print('mount_setattr', sc(442, -100, b'/usr', 0, 0, 0))\n"
               "print('pivot_root', sc(155, b'/tmp', b'/tmp'))\n"
               "print('chroot', sc(161, b'/tmp'))\n",
               "mount EPERM\nremount_usr_rw EPERM\numount2 EPERM\nfsopen EPERM\nopen_tree EPERM\n"
               "move_mount EPERM\nmount_setattr EPERM\npivot_root EPERM\nchroot EPERM\n");
  ExecResult after = it::Sh(stub(), sb.id(), "grep -c ' /tmp proc ' /proc/self/mounts");
  ASSERT_TRUE(after.Ok()) << after.Describe();
  EXPECT_EQ(after.out, "0\n") << "a proc got mounted on /tmp";
  RecordOutcome("mount -t proc: exit 32 \"" + it::SplitLines(m.err + "\n")[0] + "\"; mount family EPERM");
}

TEST_F(SyscallTest, UnshareAndNamespaceClonesAreDenied) {
  SBX_SANDBOX(sb);
  ExecResult u = it::RunExec(stub(), it::MakeStart(sb.id(), {"unshare", "-Ur", "true"}));
  ASSERT_TRUE(u.Ok()) << u.Describe();
  EXPECT_EQ(u.exit->exit_code(), 1) << u.Describe();
  EXPECT_EQ(u.err, "unshare: unshare failed: Operation not permitted\n") << u.Describe();
  // A successful namespace clone would return 0 in a child: make it leave.
  ExpectAsBoth(sb.id(),
               "def clone(flags):\n"
               "    ctypes.set_errno(0)\n"
               "    r = libc.syscall(56, ctypes.c_long(flags | 17), 0, 0, 0, 0)\n"
               "    if r == 0:\n"
               "        os._exit(0)\n"
               "    if r > 0:\n"
               "        os.waitpid(r, 0)\n"
               "        return 'OK'\n"
               "    return errno.errorcode[ctypes.get_errno()]\n"
               "print('unshare_user', sc(272, 0x10000000))\n"
               "print('unshare_mnt', sc(272, 0x00020000))\n"
               "print('setns', sc(308, -1, 0))\n"
               "print('clone_newuser', clone(0x10000000))\n"
               "print('clone_newpid', clone(0x20000000))\n"
               "print('clone_newnet', clone(0x40000000))\n"
               "print('clone3', sc(435, 0, 0))\n",
               "unshare_user EPERM\nunshare_mnt EPERM\nsetns EPERM\nclone_newuser EPERM\n"
               "clone_newpid EPERM\nclone_newnet EPERM\nclone3 ENOSYS\n");
  RecordOutcome("unshare -Ur: \"" + it::Trim(u.err) + "\"; clone(CLONE_NEW*) EPERM; clone3 ENOSYS");
}

TEST_F(SyscallTest, MknodOfDevicesIsDeniedToRoot) {
  SBX_SANDBOX(sb);
  ExecResult m = it::RunExec(stub(), it::MakeStart(sb.id(), {"mknod", "/tmp/mem", "c", "1", "1"},
                                                   AsRoot()));
  ASSERT_TRUE(m.Ok()) << m.Describe();
  EXPECT_EQ(m.exit->exit_code(), 1) << m.Describe();
  EXPECT_EQ(m.err, "mknod: /tmp/mem: Operation not permitted\n") << m.Describe();
  ExpectAsBoth(sb.id(),
               "import stat\n"
               "print('chr_mem', err(lambda: os.mknod('/tmp/m', stat.S_IFCHR | 0o600, "
               "os.makedev(1, 1))))\n"
               "print('blk', err(lambda: os.mknod('/tmp/b', stat.S_IFBLK | 0o600, "
               "os.makedev(8, 0))))\n"
               "print('chr_kmsg', err(lambda: os.mknod('/tmp/k', stat.S_IFCHR | 0o600, "
               "os.makedev(1, 11))))\n",
               "chr_mem EPERM\nblk EPERM\nchr_kmsg EPERM\n");
  RecordOutcome("mknod c 1 1: \"" + it::Trim(m.err) + "\"; char/block nodes EPERM");
}

TEST_F(SyscallTest, NonNativeSyscallAbisAreKilledWithSigsys) {
  SBX_SANDBOX(sb);
  for (const std::string abi : {"i386", "x32"}) {
    ExecResult r = RunHelper(stub(), sb.id(), "badarch", {abi});
    ASSERT_TRUE(r.Ok()) << abi << ": " << r.Describe();
    EXPECT_EQ(r.out, "before\n") << abi << ": " << r.Describe();
    EXPECT_EQ(r.exit->signal(), SIGSYS) << abi << ": " << r.Describe();
    EXPECT_EQ(r.exit->verdict(), v1::VERDICT_SIGNALED) << abi;
  }
  EXPECT_TRUE(SandboxAnswers(stub(), sb.id()));
  RecordOutcome("int 0x80 getpid and x32 getpid: killed by signal 31 (SIGSYS)");
}

TEST_F(SyscallTest, OtherPrivilegedSyscallsAreDenied) {
  SBX_SANDBOX(sb);
  // Arguments chosen so that, without the filter, most would fail with
  // another errno (EFAULT, EINVAL, EBADF) or succeed harmlessly.
  ExpectAsBoth(sb.id(),
               "print('kexec_load', sc(246, 0, 0, 0, 0))\n"
               "print('init_module', sc(175, 0, 0, b''))\n"
               "print('finit_module', sc(313, -1, b'', 0))\n"
               "print('delete_module', sc(176, b'sbx_none', 0))\n"
               "print('swapon', sc(167, b'/tmp/none', 0))\n"
               "print('acct', sc(163, 0))\n"
               "print('settimeofday', sc(164, 0, 0))\n"
               "print('clock_settime', sc(227, 0, 0))\n"
               "print('syslog', sc(103, 10, 0, 0))\n"
               "print('open_by_handle_at', sc(304, -1, 0, 0))\n"
               "print('name_to_handle_at', sc(303, -100, b'/', 0, 0, 0))\n"
               "print('iopl', sc(172, 3))\n"
               "print('ioperm', sc(173, 0x80, 1, 1))\n"
               "print('personality_rie', sc(135, 0x0400000))\n"
               "print('personality_query', sc(135, 0xffffffff))\n"
               "print('tiocsti', sc(16, 0, 0x5412, b'x'))\n"
               "print('tiocsti_high_bits', sc(16, 0, (1 << 32) | 0x5412, b'x'))\n",
               "kexec_load EPERM\ninit_module EPERM\nfinit_module EPERM\ndelete_module EPERM\n"
               "swapon EPERM\nacct EPERM\nsettimeofday EPERM\nclock_settime EPERM\nsyslog EPERM\n"
               "open_by_handle_at EPERM\nname_to_handle_at EPERM\niopl EPERM\nioperm EPERM\n"
               "personality_rie EPERM\npersonality_query OK\ntiocsti EPERM\n"
               "tiocsti_high_bits EPERM\n");
  RecordOutcome("kexec/modules/swap/acct/clock/syslog/handles/iopl/personality/TIOCSTI: EPERM");
}

}  // namespace
}  // namespace sbx::sec
