// The sandbox's root filesystem, built inside its own mount namespace:
//
//   /            tmpfs, read-only once built
//   /usr         host /usr, read-only, nosuid, nodev (recursive)
//   /bin ...     the merged-usr links (or read-only binds on a split host)
//   /etc         tmpfs, read-only: synthesized passwd/group/hosts/... plus
//                read-only binds of the host's non-secret entries
//   /proc        fresh procfs of the sandbox's pid namespace
//   /dev         tmpfs, read-only: null zero full random urandom tty bound
//                from the host, devpts (new instance), private /dev/shm
//   /tmp /work   size-capped tmpfs, writable, nosuid, nodev
//
// The new root is a tmpfs attached on the directory sbxd passed as an fd (its
// host path need not be reachable with our unprivileged host uid), entered
// with pivot_root(".", ".") and the old root detached. Nothing of the host is
// left reachable.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "server/engine/wire.h"
#include "server/init/init.h"

namespace sbx::init {
namespace {

constexpr unsigned int kSandboxUid = 1000;

// Host /etc entries that carry no secrets and that programs commonly need.
// Everything else of the host's /etc (shadow, users, ssh keys, ...) stays out.
constexpr const char* kHostEtcEntries[] = {
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
    "timezone", "mime.types", "bash.bashrc", "profile", "inputrc", "gai.conf",
    "protocols", "services", "ssl/certs", "ca-certificates.conf", "debian_version",
    "os-release", "terminfo", "magic", "magic.mime", "python3", "python3.11",
    "perl", "mailcap", "environment", "shells", "login.defs", "locale.alias",
};

// /proc entries that leak host information or kernel attack surface: files
// are covered with /dev/null, directories with an empty read-only tmpfs.
constexpr const char* kMaskedProcPaths[] = {
    "proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug",
    "proc/latency_stats", "proc/acpi", "proc/scsi",
};

// /proc entries that must never be written from a sandbox.
constexpr const char* kReadOnlyProcPaths[] = {
    "proc/sys", "proc/sysrq-trigger", "proc/bus", "proc/fs", "proc/irq",
};

constexpr const char* kDevices[] = {"null", "zero", "full", "random", "urandom", "tty"};

// Merged-usr top-level names, linked or bound to the host's.
constexpr const char* kUsrLinks[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};

struct Failure {
  uint32_t step;
  int err;
};

#define TRY(step, expr)                        \
  do {                                         \
    if ((expr) < 0) return Failure{step, errno}; \
  } while (0)

Failure Ok() { return Failure{0, 0}; }

int SetAttr(const char* path, uint64_t set, bool recursive) {
  struct mount_attr attr = {};
  attr.attr_set = set;
  return ::mount_setattr(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr,
                         sizeof(attr));
}

int MountTmpfs(const char* target, const std::string& options, unsigned long flags) {
  return ::mount("tmpfs", target, "tmpfs", flags, options.c_str());
}

int WriteNewFile(const char* path, const std::string& content, mode_t mode) {
  int fd = ::open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return -1;
  ssize_t n = ::write(fd, content.data(), content.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(content.size())) {
    errno = n < 0 ? err : EIO;
    return -1;
  }
  return 0;
}

// Binds host `source` onto `target` (created as a file or directory to
// match) read-only; a symlink is recreated as a symlink.
int BindReadOnly(const char* source, const char* target) {
  struct stat st;
  if (::lstat(source, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (S_ISLNK(st.st_mode)) {
    char link[4096];
    ssize_t n = ::readlink(source, link, sizeof(link) - 1);
    if (n < 0) return -1;
    link[n] = '\0';
    return ::symlink(link, target);
  }
  if (S_ISDIR(st.st_mode)) {
    if (::mkdir(target, 0755) != 0) return -1;
  } else {
    int fd = ::open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    ::close(fd);
  }
  if (::mount(source, target, nullptr, MS_BIND | MS_REC, nullptr) != 0) return -1;
  return SetAttr(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
}

Failure MountUsr() {
  TRY(wire::kStepUsr, ::mkdir("usr", 0755));
  TRY(wire::kStepUsr, ::mount("/usr", "usr", nullptr, MS_BIND | MS_REC, nullptr));
  TRY(wire::kStepUsr,
      SetAttr("usr", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true));
  for (const char* name : kUsrLinks) {
    std::string host = std::string("/") + name;
    TRY(wire::kStepUsr, BindReadOnly(host.c_str(), name));
  }
  return Ok();
}

std::string PasswdFile() {
  return "root:x:0:0:root:/root:/bin/sh\n"
         "sandbox:x:1000:1000:sandbox:/work:/bin/sh\n"
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
}

std::string GroupFile() {
  return "root:x:0:\n"
         "tty:x:5:\n"
         "sandbox:x:1000:\n"
         "nogroup:x:65534:\n";
}

Failure BuildEtc(const wire::SpawnRequest& req) {
  TRY(wire::kStepEtc, ::mkdir("etc", 0755));
  TRY(wire::kStepEtc, MountTmpfs("etc", "size=1m,nr_inodes=1024,mode=0755",
                                 MS_NOSUID | MS_NODEV | MS_NOEXEC));
  const std::string hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.1.1\t" +
                            req.id + "\n";
  TRY(wire::kStepEtc, WriteNewFile("etc/passwd", PasswdFile(), 0644));
  TRY(wire::kStepEtc, WriteNewFile("etc/group", GroupFile(), 0644));
  TRY(wire::kStepEtc, WriteNewFile("etc/hostname", req.id + "\n", 0644));
  TRY(wire::kStepEtc, WriteNewFile("etc/hosts", hosts, 0644));
  TRY(wire::kStepEtc, WriteNewFile("etc/resolv.conf", "", 0644));
  TRY(wire::kStepEtc, WriteNewFile("etc/nsswitch.conf",
                                   "passwd: files\ngroup: files\nshadow: files\n"
                                   "hosts: files\nnetworks: files\n",
                                   0644));
  TRY(wire::kStepEtc, ::mkdir("etc/ssl", 0755));
  for (const char* entry : kHostEtcEntries) {
    std::string host = std::string("/etc/") + entry;
    std::string target = std::string("etc/") + entry;
    TRY(wire::kStepEtc, BindReadOnly(host.c_str(), target.c_str()));
  }
  TRY(wire::kStepEtc, SetAttr("etc", MOUNT_ATTR_RDONLY, false));
  return Ok();
}

Failure MountProc() {
  TRY(wire::kStepProc, ::mkdir("proc", 0555));
  TRY(wire::kStepProc,
      ::mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr));
  for (const char* path : kMaskedProcPaths) {
    struct stat st;
    if (::lstat(path, &st) != 0) continue;  // not in this kernel
    if (S_ISDIR(st.st_mode)) {
      TRY(wire::kStepProc, MountTmpfs(path, "size=0,nr_inodes=1,mode=0555",
                                      MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC));
    } else {
      TRY(wire::kStepProc, ::mount("/dev/null", path, nullptr, MS_BIND, nullptr));
      // A device node cannot be nodev, but it can be nosuid and noexec.
      TRY(wire::kStepProc, SetAttr(path, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false));
    }
  }
  for (const char* path : kReadOnlyProcPaths) {
    if (::access(path, F_OK) != 0) continue;
    TRY(wire::kStepProc, ::mount(path, path, nullptr, MS_BIND | MS_REC, nullptr));
    TRY(wire::kStepProc, SetAttr(path, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                                           MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, true));
  }
  return Ok();
}

Failure BuildDev(const wire::SpawnRequest& req) {
  TRY(wire::kStepDev, ::mkdir("dev", 0755));
  TRY(wire::kStepDev, MountTmpfs("dev", "size=64k,nr_inodes=64,mode=0755",
                                 MS_NOSUID | MS_NOEXEC));
  for (const char* name : kDevices) {
    std::string host = std::string("/dev/") + name;
    std::string target = std::string("dev/") + name;
    int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) return Failure{wire::kStepDev, errno};
    ::close(fd);
    TRY(wire::kStepDev, ::mount(host.c_str(), target.c_str(), nullptr, MS_BIND, nullptr));
    TRY(wire::kStepDev, SetAttr(target.c_str(), MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false));
  }
  TRY(wire::kStepDev, ::mkdir("dev/pts", 0755));
  TRY(wire::kStepDev, ::mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                              "newinstance,ptmxmode=0666,mode=0620,gid=5"));
  TRY(wire::kStepDev, ::symlink("pts/ptmx", "dev/ptmx"));
  TRY(wire::kStepDev, ::symlink("/proc/self/fd", "dev/fd"));
  TRY(wire::kStepDev, ::symlink("/proc/self/fd/0", "dev/stdin"));
  TRY(wire::kStepDev, ::symlink("/proc/self/fd/1", "dev/stdout"));
  TRY(wire::kStepDev, ::symlink("/proc/self/fd/2", "dev/stderr"));
  TRY(wire::kStepDev, ::mkdir("dev/shm", 01777));
  TRY(wire::kStepDev, MountTmpfs("dev/shm", "mode=1777,nr_inodes=4096,size=" + std::to_string(req.shm_bytes),
                                 MS_NOSUID | MS_NODEV));
  TRY(wire::kStepDev, SetAttr("dev", MOUNT_ATTR_RDONLY, false));
  return Ok();
}

// One inode per 4 KiB of capacity, at least 1024: enough for source trees,
// and a file-creation loop ends in ENOSPC instead of eating kernel memory.
int64_t InodeCap(int64_t bytes) { return bytes / 4096 < 1024 ? 1024 : bytes / 4096; }

Failure MountScratch(const wire::SpawnRequest& req) {
  TRY(wire::kStepScratch, ::mkdir("tmp", 01777));
  TRY(wire::kStepScratch,
      MountTmpfs("tmp", "mode=1777,nr_inodes=" + std::to_string(InodeCap(req.tmp_bytes)) +
                                    ",size=" + std::to_string(req.tmp_bytes),
                 MS_NOSUID | MS_NODEV));
  TRY(wire::kStepScratch, ::mkdir("work", 0755));
  const std::string work = "mode=0755,uid=" + std::to_string(kSandboxUid) +
                           ",gid=" + std::to_string(kSandboxUid) +
                           ",nr_inodes=" + std::to_string(InodeCap(req.work_bytes)) +
                           ",size=" + std::to_string(req.work_bytes);
  TRY(wire::kStepScratch, MountTmpfs("work", work, MS_NOSUID | MS_NODEV));
  TRY(wire::kStepScratch, ::mkdir("root", 0700));
  TRY(wire::kStepScratch, ::mkdir("run", 0755));
  TRY(wire::kStepScratch, ::mkdir("var", 0755));
  TRY(wire::kStepScratch, ::symlink("/tmp", "var/tmp"));
  return Ok();
}

Failure Build(const wire::SpawnRequest& req, int root_dir) {
  // Nothing we mount may propagate back to the host.
  TRY(wire::kStepMountPrivate, ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr));

  // A detached tmpfs, attached on sbxd's directory and entered by its fd.
  int fs = ::fsopen("tmpfs", FSOPEN_CLOEXEC);
  if (fs < 0) return Failure{wire::kStepRootfs, errno};
  int rc = ::fsconfig(fs, FSCONFIG_SET_STRING, "size", "4m", 0);
  if (rc == 0) rc = ::fsconfig(fs, FSCONFIG_SET_STRING, "nr_inodes", "4096", 0);
  if (rc == 0) rc = ::fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0);
  if (rc == 0) rc = ::fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0);
  int mnt = rc == 0 ? ::fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) : -1;
  int err = errno;
  ::close(fs);
  if (mnt < 0) return Failure{wire::kStepRootfs, err};
  rc = ::move_mount(mnt, "", root_dir, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
  if (rc == 0) rc = ::fchdir(mnt);
  err = errno;
  ::close(mnt);
  if (rc != 0) return Failure{wire::kStepRootfs, err};

  if (Failure f = MountUsr(); f.err != 0) return f;
  if (Failure f = BuildEtc(req); f.err != 0) return f;
  if (Failure f = MountProc(); f.err != 0) return f;
  if (Failure f = BuildDev(req); f.err != 0) return f;
  if (Failure f = MountScratch(req); f.err != 0) return f;

  // Stack the old root under the new one, then detach it.
  TRY(wire::kStepPivotRoot, ::syscall(SYS_pivot_root, ".", "."));
  TRY(wire::kStepPivotRoot, ::umount2(".", MNT_DETACH));
  TRY(wire::kStepPivotRoot, ::chdir("/"));
  TRY(wire::kStepPivotRoot, SetAttr("/", MOUNT_ATTR_RDONLY, false));
  return Ok();
}

}  // namespace

int BuildRoot(const wire::SpawnRequest& request, int root_dir, uint32_t* step) {
  Failure f = Build(request, root_dir);
  *step = f.step;
  return f.err;
}

}  // namespace sbx::init
