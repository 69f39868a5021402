// Reading and writing the files of a live sandbox from the host.
//
// sbxd reaches a sandbox's root through /proc/<init>/root (checked against
// the init's pidfd) and resolves every path below it with
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): "..", absolute symlinks
// and /proc/<pid>/root-style magic links can never lead outside. Every
// file operation runs with the sandbox user's identity on the calling thread
// only: fsuid/fsgid set to the user's host ids, no supplementary groups and
// no effective capabilities, all restored before the call returns (see
// ScopedSandboxCredentials in files.cc). So permissions, read-only mounts
// and /work's size cap apply exactly as they do to the sandbox user, and new
// files belong to it.
//
// Each call does a bounded amount of work (one chunk of at most
// kFileChunkBytes, one directory entry), so callers may run them on shared
// threads one at a time. No gRPC here.
#ifndef SBX_SERVER_ENGINE_FILES_H_
#define SBX_SERVER_ENGINE_FILES_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/common/unique_fd.h"

namespace sbx::engine {

inline constexpr size_t kMaxSandboxPathBytes = 4096;
// Size of the content chunks TreeReader produces.
inline constexpr size_t kFileChunkBytes = 256 << 10;
// Directories a TreeReader descends into at most (one open fd per level).
inline constexpr int kMaxTreeDepth = 128;

// Checks a client's path (non-empty, at most kMaxSandboxPathBytes, no NUL,
// components of at most 255 bytes) and makes it absolute and clean: a
// relative path is taken below /work, "" and "." components are dropped and
// ".." removes the previous component, never climbing above "/".
// "../../etc/passwd" -> "/etc/passwd"; "a//b/./c" -> "/work/a/b/c".
absl::StatusOr<std::string> CleanSandboxPath(absl::string_view path);

// Parses the user of a file request: "" (the sandbox user, uid 1000),
// "root" or a decimal uid below 65536. INVALID_ARGUMENT otherwise.
absl::StatusOr<uint32_t> ParseFileUser(absl::string_view user);

// Permission bits a write applies: `mode` & 07777 without setuid/setgid;
// `fallback` when that leaves 0.
uint32_t SanitizeMode(uint32_t mode, uint32_t fallback);

// What SandboxFs::Open needs to know about a sandbox.
struct SandboxFsTarget {
  std::string sandbox_id;
  pid_t init_pid = 0;
  int init_pidfd = -1;        // borrowed; Open keeps a duplicate
  uint32_t host_id_base = 0;  // host uid/gid of root inside
  uint32_t uid = 0;           // the user inside the sandbox to act as
};

class FileWriter;
class TreeReader;

// One entry of a tree being read.
struct FileEntry {
  enum class Type { kFile, kDirectory, kSymlink };
  Type type = Type::kFile;
  // The first entry: the clean absolute path that was asked for. Entries
  // below a directory: relative to it ("sub/a.txt"), never with "..".
  std::string path;
  uint32_t mode = 0;  // permission bits
  int64_t size = 0;   // regular files, when opened
  std::string symlink_target;
};

// The root file system of one live sandbox, seen as one of its users.
// Holds an O_PATH fd of the root and a duplicate of the init's pidfd; every
// operation first checks that the init is still alive, so a sandbox that is
// destroyed under a transfer fails it with FAILED_PRECONDITION.
// Thread-compatible: one caller at a time (writers and readers it creates
// may be used from other threads, one caller each).
class SandboxFs : public std::enable_shared_from_this<SandboxFs> {
 public:
  // FAILED_PRECONDITION if the init has exited.
  static absl::StatusOr<std::shared_ptr<SandboxFs>> Open(const SandboxFsTarget& target);

  SandboxFs(const SandboxFs&) = delete;
  SandboxFs& operator=(const SandboxFs&) = delete;

  const std::string& sandbox_id() const { return id_; }

  // The paths below are clean absolute paths (CleanSandboxPath).

  // Creates `path` and any missing parent. A new directory gets
  // SanitizeMode(mode, 0755); an existing one keeps its mode unless `mode`
  // is non-zero. FAILED_PRECONDITION if it exists and is not a directory.
  absl::Status MakeDirectory(const std::string& path, uint32_t mode);

  // Creates or replaces the regular file `path` (creating missing parents)
  // with SanitizeMode(mode, 0644) and opens it for writing. Never writes
  // through a symlink (INVALID_ARGUMENT). An existing file is truncated only
  // once its mode could be set.
  absl::StatusOr<std::unique_ptr<FileWriter>> CreateFile(const std::string& path,
                                                         uint32_t mode);

  // Creates the symlink `path` -> `target` (creating missing parents),
  // replacing an existing symlink. ALREADY_EXISTS if another kind of file is
  // there. The target is stored as given; it is only ever resolved inside
  // the sandbox.
  absl::Status MakeSymlink(const std::string& path, const std::string& target);

  // Opens `path` (a final symlink is followed, inside the sandbox) for
  // reading. NOT_FOUND "no such file in sandbox: <path>"; PERMISSION_DENIED
  // for a kernel file system (/proc, /sys); FAILED_PRECONDITION for a device,
  // FIFO or socket.
  absl::StatusOr<std::unique_ptr<TreeReader>> Read(const std::string& path);

 private:
  friend class FileWriter;
  friend class TreeReader;
  SandboxFs(std::string id, UniqueFd root, UniqueFd pidfd, uint32_t host_uid);

  // FAILED_PRECONDITION once the init has exited.
  absl::Status CheckAlive() const;
  // Opens directory `dir` (clean, absolute) as O_PATH, creating what is
  // missing when `create`. REQUIRES: the sandbox credentials are in force.
  absl::StatusOr<UniqueFd> OpenDirectory(const std::string& dir, bool create) const;

  const std::string id_;
  const UniqueFd root_;
  const UniqueFd pidfd_;
  const uint32_t host_uid_;  // == host gid
};

// A regular file being written. Close it (or destroy it) when done.
class FileWriter {
 public:
  ~FileWriter() = default;
  // Appends `data`. RESOURCE_EXHAUSTED "no space left in the sandbox writing
  // <path>" when /work (or /tmp) is full.
  absl::Status Write(absl::string_view data);
  // Closes the file, reporting a failed close.
  absl::Status Close();
  int64_t bytes_written() const { return written_; }
  const std::string& path() const { return path_; }

 private:
  friend class SandboxFs;
  FileWriter(std::shared_ptr<const SandboxFs> fs, UniqueFd fd, std::string path)
      : fs_(std::move(fs)), fd_(std::move(fd)), path_(std::move(path)) {}

  std::shared_ptr<const SandboxFs> fs_;
  UniqueFd fd_;
  const std::string path_;
  int64_t written_ = 0;
};

// A file or a directory tree being read, one step at a time: the entry
// itself, then (for a file) its content in chunks, then (for a directory)
// every entry below it, depth-first, each directory before its content,
// names sorted. Symlinks below the top are reported, never followed;
// devices, FIFOs, sockets and kernel file systems are skipped.
class TreeReader {
 public:
  enum class Step { kEntry, kChunk, kEnd };
  // Produces the next step: fills `entry` (kEntry) or replaces `chunk` with
  // at most kFileChunkBytes of content (kChunk).
  absl::StatusOr<Step> Next(FileEntry* entry, std::string* chunk);

 private:
  friend class SandboxFs;
  struct Level {
    UniqueFd dir;             // O_RDONLY directory fd
    std::string rel;          // "" for the top
    std::vector<std::string> names;
    size_t next = 0;
  };
  TreeReader(std::shared_ptr<const SandboxFs> fs, std::string path)
      : fs_(std::move(fs)), path_(std::move(path)) {}

  absl::StatusOr<Step> NextInTree(FileEntry* entry);
  std::string Absolute(const std::string& rel) const;

  std::shared_ptr<const SandboxFs> fs_;
  const std::string path_;  // the requested path, clean
  bool top_sent_ = false;
  FileEntry top_;
  UniqueFd file_;           // the regular file whose content is due
  std::string file_path_;   // its absolute path, for messages
  std::vector<Level> stack_;
};

}  // namespace sbx::engine

#endif  // SBX_SERVER_ENGINE_FILES_H_
