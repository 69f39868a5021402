#include "server/engine/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/common/status.h"
#include "server/engine/sandbox.h"

namespace sbx::engine {
namespace {

// Paths from the sandbox root: "..", absolute paths and symlinks stay below
// it, /proc magic links are refused.
constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
// One plain name below a directory fd: no symlink of any kind.
constexpr uint64_t kPlainName = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;

// ---- the sandbox user's identity on this thread -------------------------------

// Switches the calling thread (only it: raw syscalls, not the glibc
// wrappers that broadcast to every thread) to a sandbox user's host ids:
// fsuid/fsgid, no supplementary groups, no effective capabilities. With a
// non-zero fsuid and no capabilities the kernel treats the thread's file
// accesses like the sandbox user's (DAC, read-only mounts, procfs' ptrace
// checks). The destructor restores everything; a failure to restore would
// leave a shared thread in a state nobody expects, so it aborts.
class ScopedSandboxCredentials {
 public:
  ScopedSandboxCredentials(uid_t uid, gid_t gid) { status_ = Enter(uid, gid); }
  ~ScopedSandboxCredentials() { Leave(); }
  ScopedSandboxCredentials(const ScopedSandboxCredentials&) = delete;
  ScopedSandboxCredentials& operator=(const ScopedSandboxCredentials&) = delete;

  const absl::Status& status() const { return status_; }

 private:
  absl::Status Enter(uid_t uid, gid_t gid) {
    header_ = {_LINUX_CAPABILITY_VERSION_3, 0};
    if (::syscall(SYS_capget, &header_, saved_caps_) != 0) {
      return ErrnoStatus(errno, "reading the thread's capabilities");
    }
    const long ngroups = ::syscall(SYS_getgroups, 0, nullptr);
    if (ngroups < 0) return ErrnoStatus(errno, "reading the thread's groups");
    groups_.resize(static_cast<size_t>(ngroups));
    if (ngroups > 0 && ::syscall(SYS_getgroups, ngroups, groups_.data()) != ngroups) {
      return ErrnoStatus(errno, "reading the thread's groups");
    }
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) {
      return ErrnoStatus(errno, "dropping supplementary groups");
    }
    groups_changed_ = true;
    saved_fsgid_ = static_cast<gid_t>(::syscall(SYS_setfsgid, gid));
    fsgid_changed_ = true;
    if (static_cast<gid_t>(::syscall(SYS_setfsgid, -1)) != gid) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot act as the sandbox's group ", gid));
    }
    saved_fsuid_ = static_cast<uid_t>(::syscall(SYS_setfsuid, uid));
    fsuid_changed_ = true;
    if (static_cast<uid_t>(::syscall(SYS_setfsuid, -1)) != uid) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot act as the sandbox's user ", uid));
    }
    __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3];
    std::memcpy(none, saved_caps_, sizeof(none));
    for (auto& d : none) d.effective = 0;
    if (::syscall(SYS_capset, &header_, none) != 0) {
      return ErrnoStatus(errno, "dropping effective capabilities");
    }
    caps_changed_ = true;
    return absl::OkStatus();
  }

  void Leave() {
    // Capabilities first: setgroups needs CAP_SETGID.
    if (caps_changed_ && ::syscall(SYS_capset, &header_, saved_caps_) != 0) Die("capset");
    if (fsuid_changed_) {
      ::syscall(SYS_setfsuid, saved_fsuid_);
      if (static_cast<uid_t>(::syscall(SYS_setfsuid, -1)) != saved_fsuid_) Die("setfsuid");
    }
    if (fsgid_changed_) {
      ::syscall(SYS_setfsgid, saved_fsgid_);
      if (static_cast<gid_t>(::syscall(SYS_setfsgid, -1)) != saved_fsgid_) Die("setfsgid");
    }
    if (groups_changed_ &&
        ::syscall(SYS_setgroups, groups_.size(), groups_.empty() ? nullptr : groups_.data()) !=
            0) {
      Die("setgroups");
    }
  }

  [[noreturn]] static void Die(const char* step) {
    spdlog::critical("restoring sbxd's credentials after a file transfer failed ({}: {})",
                     step, std::strerror(errno));
    std::abort();
  }

  absl::Status status_;
  __user_cap_header_struct header_{};
  __user_cap_data_struct saved_caps_[_LINUX_CAPABILITY_U32S_3]{};
  std::vector<gid_t> groups_;
  uid_t saved_fsuid_ = 0;
  gid_t saved_fsgid_ = 0;
  bool groups_changed_ = false, fsgid_changed_ = false, fsuid_changed_ = false,
       caps_changed_ = false;
};

#define SBX_AS_SANDBOX_USER(fs)                                       \
  ScopedSandboxCredentials sbx_credentials_((fs).host_uid_, (fs).host_uid_); \
  RETURN_IF_ERROR(sbx_credentials_.status())

// ---- syscalls and errors ---------------------------------------------------------

int OpenAt2(int dirfd, const std::string& path, uint64_t flags, uint64_t mode,
            uint64_t resolve) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.mode = mode;
  how.resolve = resolve;
  // EAGAIN: a rename or mount raced with RESOLVE_IN_ROOT; just try again.
  for (int attempt = 0;; ++attempt) {
    const long fd = ::syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
    if (fd >= 0) return static_cast<int>(fd);
    if ((errno == EAGAIN || errno == EINTR) && attempt < 16) continue;
    return -1;
  }
}

// Re-opens an O_PATH fd with real access, checked as the current (sandbox)
// credentials. Never opens a device or FIFO: callers check the type first.
int Reopen(int path_fd, int flags) {
  const std::string proc = absl::StrCat("/proc/self/fd/", path_fd);
  int fd;
  do {
    fd = ::open(proc.c_str(), flags | O_CLOEXEC | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// An error about `path`, with codes a client can act on.
absl::Status PathError(int err, absl::string_view action, absl::string_view path) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(
          absl::StrCat("no space left in the sandbox ", action, " ", path));
    case EROFS:
      return absl::PermissionDeniedError(
          absl::StrCat(action, " ", path, ": read-only file system"));
    case ELOOP:
      return absl::InvalidArgumentError(absl::StrCat(
          action, " ", path,
          ": too many levels of symlinks, or a symlink through a /proc magic link"));
    case ENOTDIR:
      return absl::FailedPreconditionError(
          absl::StrCat(action, " ", path, ": a parent is not a directory"));
    case EISDIR:
      return absl::FailedPreconditionError(absl::StrCat(action, " ", path, ": is a directory"));
    default:
      return ErrnoStatus(err, absl::StrCat(action, " ", path));
  }
}

// Kernel file systems have files that act (or leak) on read or write; a
// file transfer has no business there.
bool IsKernelFs(int fd) {
  struct statfs st;
  if (::fstatfs(fd, &st) != 0) return true;  // unknown: treat as unsafe
  switch (static_cast<unsigned long>(st.f_type)) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case SELINUX_MAGIC:
    case BPF_FS_MAGIC:
    case DEVPTS_SUPER_MAGIC:
      return true;
    default:
      return false;
  }
}

absl::Status KernelFsError(absl::string_view path) {
  return absl::PermissionDeniedError(absl::StrCat(
      path, " is on a kernel file system (/proc, /sys, ...); file transfer "
            "handles ordinary files only"));
}

// "/a/b/c" -> {"/a/b", "c"}; "/a" -> {"/", "a"}. REQUIRES: path != "/".
std::pair<std::string, std::string> SplitParent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

absl::StatusOr<std::vector<std::string>> ListNames(int dir_fd, const std::string& path) {
  const int dup = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return ErrnoStatus(errno, absl::StrCat("listing ", path));
  DIR* dir = ::fdopendir(dup);
  if (dir == nullptr) {
    const int err = errno;
    ::close(dup);
    return PathError(err, "listing", path);
  }
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      names.emplace_back(entry->d_name);
    }
    errno = 0;
  }
  const int err = errno;
  ::closedir(dir);
  if (err != 0) return PathError(err, "listing", path);
  std::sort(names.begin(), names.end());
  return names;
}

uint32_t PermissionBits(const struct stat& st) { return st.st_mode & 07777; }

}  // namespace

// ---- paths and users ----------------------------------------------------------------

absl::StatusOr<std::string> CleanSandboxPath(absl::string_view path) {
  if (path.empty()) return absl::InvalidArgumentError("path: must not be empty");
  if (path.size() > kMaxSandboxPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("path: longer than ", kMaxSandboxPathBytes, " bytes"));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("path: contains a NUL byte");
  }
  std::vector<absl::string_view> parts;
  if (path[0] != '/') parts.push_back(absl::string_view(kWorkDir).substr(1));
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    if (part.size() > NAME_MAX) {
      return absl::InvalidArgumentError(
          absl::StrCat("path: a component is longer than ", NAME_MAX, " bytes"));
    }
    parts.push_back(part);
  }
  return absl::StrCat("/", absl::StrJoin(parts, "/"));
}

absl::StatusOr<uint32_t> ParseFileUser(absl::string_view user) {
  if (user.empty()) return kSandboxUid;
  if (user == "root") return 0u;
  uint32_t uid;
  if (user.size() > 5 || !absl::ascii_isdigit(static_cast<unsigned char>(user[0])) ||
      !absl::SimpleAtoi(user, &uid) || uid >= kIdsPerSandbox) {
    return absl::InvalidArgumentError(absl::StrCat(
        "user: '", user, "' is not \"root\" or a uid between 0 and ", kIdsPerSandbox - 1));
  }
  return uid;
}

uint32_t SanitizeMode(uint32_t mode, uint32_t fallback) {
  const uint32_t bits = mode & 07777 & ~static_cast<uint32_t>(S_ISUID | S_ISGID);
  return bits == 0 ? fallback : bits;
}

// ---- SandboxFs -----------------------------------------------------------------------

SandboxFs::SandboxFs(std::string id, UniqueFd root, UniqueFd pidfd, uint32_t host_uid)
    : id_(std::move(id)), root_(std::move(root)), pidfd_(std::move(pidfd)), host_uid_(host_uid) {}

absl::StatusOr<std::shared_ptr<SandboxFs>> SandboxFs::Open(const SandboxFsTarget& target) {
  if (target.init_pid <= 0 || target.init_pidfd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox ", target.sandbox_id, " has no live init"));
  }
  if (target.uid >= kIdsPerSandbox) {
    return absl::InvalidArgumentError(absl::StrCat("user: uid ", target.uid, " out of range"));
  }
  UniqueFd pidfd(::fcntl(target.init_pidfd, F_DUPFD_CLOEXEC, 0));
  if (!pidfd) return ErrnoStatus(errno, "duplicating the init's pidfd");
  const std::string root_path = absl::StrCat("/proc/", target.init_pid, "/root");
  UniqueFd root(::open(root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  const int err = errno;
  // Alive after the open: the pid still named our init when it was opened
  // (a pid is not reused while its process lives).
  std::shared_ptr<SandboxFs> fs(new SandboxFs(target.sandbox_id, std::move(root),
                                              std::move(pidfd),
                                              target.host_id_base + target.uid));
  RETURN_IF_ERROR(fs->CheckAlive());
  if (!fs->root_) {
    return ErrnoStatus(err, absl::StrCat("opening the root of sandbox ", target.sandbox_id));
  }
  return fs;
}

absl::Status SandboxFs::CheckAlive() const {
  pollfd pfd = {pidfd_.get(), POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&pfd, 1, 0);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return ErrnoStatus(errno, "checking the sandbox init");
  if (rc > 0) {
    return absl::FailedPreconditionError(absl::StrCat("sandbox ", id_, " is no longer running"));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> SandboxFs::OpenDirectory(const std::string& dir, bool create) const {
  // Fast path: the directory exists.
  UniqueFd fd(OpenAt2(root_.get(), dir, O_PATH | O_DIRECTORY, 0, kInRoot));
  if (fd) return fd;
  if (errno != ENOENT || !create) return PathError(errno, "opening directory", dir);

  // Walk down from the root, creating what is missing. Each prefix is
  // resolved from the root again so that a symlink met on the way is
  // followed inside the sandbox; mkdirat never follows one.
  UniqueFd parent(OpenAt2(root_.get(), "/", O_PATH | O_DIRECTORY, 0, kInRoot));
  if (!parent) return PathError(errno, "opening directory", "/");
  std::string prefix;
  for (absl::string_view part : absl::StrSplit(dir, '/', absl::SkipEmpty())) {
    absl::StrAppend(&prefix, "/", part);
    fd.reset(OpenAt2(root_.get(), prefix, O_PATH | O_DIRECTORY, 0, kInRoot));
    if (!fd && errno == ENOENT) {
      const std::string name(part);
      if (::mkdirat(parent.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
        return PathError(errno, "creating directory", prefix);
      }
      fd.reset(OpenAt2(root_.get(), prefix, O_PATH | O_DIRECTORY, 0, kInRoot));
    }
    if (!fd) return PathError(errno, "opening directory", prefix);
    parent = std::move(fd);
  }
  return parent;
}

absl::Status SandboxFs::MakeDirectory(const std::string& path, uint32_t mode) {
  RETURN_IF_ERROR(CheckAlive());
  SBX_AS_SANDBOX_USER(*this);
  if (path == "/") {
    if (mode == 0) return absl::OkStatus();
    return absl::PermissionDeniedError("cannot change the mode of the sandbox's root");
  }
  const auto [parent_path, name] = SplitParent(path);
  ASSIGN_OR_RETURN(UniqueFd parent, OpenDirectory(parent_path, /*create=*/true));
  bool created = true;
  if (::mkdirat(parent.get(), name.c_str(), 0700) != 0) {
    if (errno != EEXIST) return PathError(errno, "creating directory", path);
    created = false;
  }
  if (!created && mode == 0) {
    // Existing is fine, if it is a directory (possibly behind a symlink).
    UniqueFd dir(OpenAt2(root_.get(), path, O_PATH | O_DIRECTORY, 0, kInRoot));
    if (!dir && errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a directory"));
    }
    if (!dir) return PathError(errno, "opening directory", path);
    return absl::OkStatus();
  }
  // Set the exact mode (sbxd's umask applied to mkdir) on the directory
  // itself, never through a symlink.
  UniqueFd dir(OpenAt2(parent.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0, kPlainName));
  if (!dir) {
    if (errno == ENOTDIR || errno == ELOOP) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a directory"));
    }
    return PathError(errno, "opening directory", path);
  }
  if (::fchmod(dir.get(), SanitizeMode(mode, 0755)) != 0) {
    return PathError(errno, "setting the mode of", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FileWriter>> SandboxFs::CreateFile(const std::string& path,
                                                                  uint32_t mode) {
  RETURN_IF_ERROR(CheckAlive());
  SBX_AS_SANDBOX_USER(*this);
  if (path == "/") {
    return absl::FailedPreconditionError("cannot write a file at /: it is a directory");
  }
  const auto [parent_path, name] = SplitParent(path);
  ASSIGN_OR_RETURN(UniqueFd parent, OpenDirectory(parent_path, /*create=*/true));
  const uint32_t bits = SanitizeMode(mode, 0644);

  UniqueFd fd(OpenAt2(parent.get(), name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0600,
                      kPlainName));
  if (fd) {
    if (::fchmod(fd.get(), bits) != 0) {
      const int err = errno;
      ::unlinkat(parent.get(), name.c_str(), 0);
      return PathError(err, "setting the mode of", path);
    }
  } else {
    if (errno != EEXIST) return PathError(errno, "creating", path);
    // Replace an existing regular file; look before opening so that no
    // device or FIFO is ever opened.
    UniqueFd existing(OpenAt2(parent.get(), name, O_PATH | O_NOFOLLOW, 0, kPlainName));
    if (!existing) return PathError(errno, "opening", path);
    struct stat st;
    if (::fstat(existing.get(), &st) != 0) return PathError(errno, "inspecting", path);
    if (S_ISLNK(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("refusing to write through the symlink ", path));
    }
    if (S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat("cannot write ", path, ": is a directory"));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot write ", path, ": not a regular file"));
    }
    if (IsKernelFs(existing.get())) return KernelFsError(path);
    fd.reset(Reopen(existing.get(), O_WRONLY));
    if (!fd) return PathError(errno, "opening", path);
    if (::fchmod(fd.get(), bits) != 0) return PathError(errno, "setting the mode of", path);
    if (::ftruncate(fd.get(), 0) != 0) return PathError(errno, "truncating", path);
  }
  return std::unique_ptr<FileWriter>(new FileWriter(shared_from_this(), std::move(fd), path));
}

absl::Status SandboxFs::MakeSymlink(const std::string& path, const std::string& target) {
  if (target.empty() || target.size() > kMaxSandboxPathBytes ||
      target.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("symlink_target of ", path, ": empty, too long or with a NUL byte"));
  }
  RETURN_IF_ERROR(CheckAlive());
  SBX_AS_SANDBOX_USER(*this);
  if (path == "/") return absl::FailedPreconditionError("cannot replace / with a symlink");
  const auto [parent_path, name] = SplitParent(path);
  ASSIGN_OR_RETURN(UniqueFd parent, OpenDirectory(parent_path, /*create=*/true));
  if (::symlinkat(target.c_str(), parent.get(), name.c_str()) == 0) return absl::OkStatus();
  if (errno != EEXIST) return PathError(errno, "creating symlink", path);
  struct stat st;
  if (::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return PathError(errno, "inspecting", path);
  }
  if (!S_ISLNK(st.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrCat("cannot create symlink ", path, ": another file is there"));
  }
  // unlinkat and symlinkat act on the name itself, never on a link target.
  if (::unlinkat(parent.get(), name.c_str(), 0) != 0 && errno != ENOENT) {
    return PathError(errno, "replacing symlink", path);
  }
  if (::symlinkat(target.c_str(), parent.get(), name.c_str()) != 0) {
    return PathError(errno, "creating symlink", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<TreeReader>> SandboxFs::Read(const std::string& path) {
  RETURN_IF_ERROR(CheckAlive());
  SBX_AS_SANDBOX_USER(*this);
  UniqueFd at(OpenAt2(root_.get(), path, O_PATH, 0, kInRoot));
  if (!at && errno == ENOENT) {
    return absl::NotFoundError(absl::StrCat("no such file in sandbox: ", path));
  }
  if (!at) return PathError(errno, "opening", path);
  if (IsKernelFs(at.get())) return KernelFsError(path);
  struct stat st;
  if (::fstat(at.get(), &st) != 0) return PathError(errno, "inspecting", path);

  std::unique_ptr<TreeReader> reader(new TreeReader(shared_from_this(), path));
  reader->top_.path = path;
  reader->top_.mode = PermissionBits(st);
  if (S_ISREG(st.st_mode)) {
    reader->file_.reset(Reopen(at.get(), O_RDONLY));
    if (!reader->file_) return PathError(errno, "opening", path);
    reader->file_path_ = path;
    reader->top_.type = FileEntry::Type::kFile;
    reader->top_.size = st.st_size;
  } else if (S_ISDIR(st.st_mode)) {
    UniqueFd dir(Reopen(at.get(), O_RDONLY | O_DIRECTORY));
    if (!dir) return PathError(errno, "opening directory", path);
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir.get(), path));
    reader->stack_.push_back(TreeReader::Level{std::move(dir), "", std::move(names)});
    reader->top_.type = FileEntry::Type::kDirectory;
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": not a regular file or directory"));
  }
  return reader;
}

// ---- FileWriter -------------------------------------------------------------------------

absl::Status FileWriter::Write(absl::string_view data) {
  if (!fd_) return absl::FailedPreconditionError(absl::StrCat(path_, " is already closed"));
  RETURN_IF_ERROR(fs_->CheckAlive());
  // Opened files need no permission check, but the write is still done as
  // the sandbox user: no capability may lift a limit (e.g. RLIMIT_FSIZE).
  SBX_AS_SANDBOX_USER(*fs_);
  while (!data.empty()) {
    const ssize_t n = ::write(fd_.get(), data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return PathError(errno, "writing", path_);
    }
    written_ += n;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FileWriter::Close() {
  if (!fd_) return absl::OkStatus();
  if (::close(fd_.release()) != 0 && errno != EINTR) return PathError(errno, "closing", path_);
  return absl::OkStatus();
}

// ---- TreeReader --------------------------------------------------------------------------

std::string TreeReader::Absolute(const std::string& rel) const {
  if (rel.empty()) return path_;
  return path_ == "/" ? absl::StrCat("/", rel) : absl::StrCat(path_, "/", rel);
}

absl::StatusOr<TreeReader::Step> TreeReader::Next(FileEntry* entry, std::string* chunk) {
  RETURN_IF_ERROR(fs_->CheckAlive());
  if (!top_sent_) {
    top_sent_ = true;
    *entry = top_;
    return Step::kEntry;
  }
  SBX_AS_SANDBOX_USER(*fs_);
  if (file_) {
    chunk->resize(kFileChunkBytes);
    ssize_t n;
    do {
      n = ::read(file_.get(), chunk->data(), chunk->size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) return PathError(errno, "reading", file_path_);
    if (n > 0) {
      chunk->resize(static_cast<size_t>(n));
      return Step::kChunk;
    }
    chunk->clear();
    file_.reset();
  }
  return NextInTree(entry);
}

absl::StatusOr<TreeReader::Step> TreeReader::NextInTree(FileEntry* entry) {
  while (!stack_.empty()) {
    Level& level = stack_.back();
    if (level.next == level.names.size()) {
      stack_.pop_back();
      continue;
    }
    const std::string& name = level.names[level.next++];
    std::string rel = level.rel.empty() ? name : absl::StrCat(level.rel, "/", name);
    const std::string abs = Absolute(rel);
    UniqueFd at(OpenAt2(level.dir.get(), name, O_PATH | O_NOFOLLOW, 0, kPlainName));
    if (!at && errno == ENOENT) continue;  // removed since the listing
    if (!at) return PathError(errno, "opening", abs);
    struct stat st;
    if (::fstat(at.get(), &st) != 0) return PathError(errno, "inspecting", abs);

    FileEntry out;
    out.path = std::move(rel);
    out.mode = PermissionBits(st);
    if (S_ISLNK(st.st_mode)) {
      std::string target(PATH_MAX, '\0');
      const ssize_t n = ::readlinkat(at.get(), "", target.data(), target.size());
      if (n < 0) return PathError(errno, "reading symlink", abs);
      target.resize(static_cast<size_t>(n));
      out.type = FileEntry::Type::kSymlink;
      out.symlink_target = std::move(target);
    } else if (S_ISREG(st.st_mode)) {
      if (IsKernelFs(at.get())) continue;
      file_.reset(Reopen(at.get(), O_RDONLY));
      if (!file_) return PathError(errno, "opening", abs);
      file_path_ = abs;
      out.type = FileEntry::Type::kFile;
      out.size = st.st_size;
    } else if (S_ISDIR(st.st_mode)) {
      if (IsKernelFs(at.get())) continue;  // /proc, /sys, /dev/pts below a walked root
      if (static_cast<int>(stack_.size()) >= kMaxTreeDepth) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cannot read ", path_, ": the tree is deeper than ", kMaxTreeDepth, " levels"));
      }
      UniqueFd dir(Reopen(at.get(), O_RDONLY | O_DIRECTORY));
      if (!dir) return PathError(errno, "opening directory", abs);
      ASSIGN_OR_RETURN(std::vector<std::string> names, ListNames(dir.get(), abs));
      out.type = FileEntry::Type::kDirectory;
      stack_.push_back(Level{std::move(dir), out.path, std::move(names)});  // `level` dangles now
    } else {
      continue;  // devices, FIFOs, sockets
    }
    *entry = std::move(out);
    return Step::kEntry;
  }
  return Step::kEnd;
}

}  // namespace sbx::engine
