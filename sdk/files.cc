// File transfer: WriteFiles (client stream) and ReadFile (server stream) on
// gRPC's sync API, plus the local side of CopyIn / CopyOut. Content moves in
// chunks of kChunkBytes; the sync stream's Write blocks under flow control,
// so neither side buffers a whole file.
#include <fcntl.h>
#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <istream>
#include <ostream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "internal/client_state.h"
#include "internal/status_macros.h"
#include "sbx/client.h"
#include "sbx/grpc_status.h"

namespace sbx {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunkBytes = 256 << 10;

absl::Status LocalError(int err, absl::string_view what, absl::string_view path) {
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status RequireId(std::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError("sandbox id is empty");
  return absl::OkStatus();
}

// Closes an fd on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~Fd() { Reset(); }
  int get() const { return fd_; }
  void Reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

bool WriteAllFd(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

uint32_t LocalMode(uint32_t mode) {
  return mode & 07777 & ~static_cast<uint32_t>(S_ISUID | S_ISGID);
}

std::string JoinRemote(const std::string& dir, const std::string& rel) {
  if (absl::EndsWith(dir, "/")) return dir + rel;
  return absl::StrCat(dir, "/", rel);
}

std::string BaseName(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

void Prepare(grpc::ClientContext& context, std::string_view sandbox_id,
             const TransferOptions& options, bool wait_for_ready) {
  if (options.rpc_deadline) internal::SetTimeout(context, *options.rpc_deadline);
  context.set_wait_for_ready(wait_for_ready);
  internal::RouteToSandbox(context, sandbox_id);
}

// One WriteFiles stream. Any failed write means the stream is dead; Finish()
// then reports the server's status.
class Upload {
 public:
  Upload(v1::SandboxService::Stub* stub, std::string_view sandbox_id,
         const TransferOptions& options, bool wait_for_ready) {
    Prepare(context_, sandbox_id, options, wait_for_ready);
    stream_ = stub->WriteFiles(&context_, &response_);
    v1::WriteFilesRequest first;
    first.set_sandbox_id(std::string(sandbox_id));
    first.set_user(options.user);
    Send(first);
  }

  bool ok() const { return ok_; }

  bool Header(const std::string& path, uint32_t mode, bool is_dir,
              const std::string& symlink_target = "", std::optional<int64_t> size = {}) {
    v1::WriteFilesRequest request;
    v1::FileHeader* header = request.mutable_file();
    header->set_path(path);
    header->set_mode(mode);
    header->set_is_dir(is_dir);
    header->set_symlink_target(symlink_target);
    if (size) header->set_size(*size);
    return Send(request);
  }

  bool Chunk(std::string_view data) {
    while (!data.empty() && ok_) {
      const size_t n = std::min(data.size(), kChunkBytes);
      chunk_.set_chunk(data.data(), n);
      Send(chunk_);
      data.remove_prefix(n);
    }
    return ok_;
  }

  // Ends the stream; `local` is an error of ours that stops the upload (the
  // call is then cancelled and `local` returned).
  absl::StatusOr<TransferResult> Finish(const absl::Status& local = absl::OkStatus()) {
    if (!local.ok()) {
      context_.TryCancel();
      (void)stream_->Finish();
      return local;
    }
    if (ok_) stream_->WritesDone();
    SBX_RETURN_IF_ERROR(FromGrpcStatus(stream_->Finish()));
    return TransferResult{response_.files(), response_.bytes()};
  }

 private:
  bool Send(const v1::WriteFilesRequest& request) {
    if (ok_ && !stream_->Write(request)) ok_ = false;
    return ok_;
  }

  grpc::ClientContext context_;
  v1::WriteFilesResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::WriteFilesRequest>> stream_;
  v1::WriteFilesRequest chunk_;
  bool ok_ = true;
};

// Sends the content of local file `fd` as chunks.
absl::Status SendContent(Upload& upload, int fd, const std::string& local_path) {
  std::string buffer(kChunkBytes, '\0');
  while (true) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return LocalError(errno, "reading", local_path);
    }
    if (n == 0) return absl::OkStatus();
    if (!upload.Chunk(std::string_view(buffer.data(), static_cast<size_t>(n)))) {
      return absl::OkStatus();  // the stream broke: Finish() tells why
    }
  }
}

absl::Status SendFile(Upload& upload, const std::string& local_path, const std::string& remote,
                      const struct stat& st) {
  Fd fd(::open(local_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (fd.get() < 0) return LocalError(errno, "opening", local_path);
  if (!upload.Header(remote, st.st_mode & 07777, false)) return absl::OkStatus();
  return SendContent(upload, fd.get(), local_path);
}

// Sends the tree below local directory `root` (its own header already sent).
// Directories lacking owner rwx get it while their content is written and
// their real mode at the end, deepest first.
absl::Status SendTree(Upload& upload, const std::string& root, const std::string& remote_root,
                      std::vector<std::pair<std::string, uint32_t>>& deferred) {
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec);
  if (ec) return LocalError(ec.value(), "listing", root);
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) return LocalError(ec.value(), "listing", root);
    if (!upload.ok()) return absl::OkStatus();
    const std::string local = it->path().string();
    const std::string rel = it->path().lexically_relative(root).generic_string();
    const std::string remote = JoinRemote(remote_root, rel);
    struct stat st;
    if (::lstat(local.c_str(), &st) != 0) return LocalError(errno, "inspecting", local);
    const uint32_t mode = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      if ((mode & 0700) != 0700) deferred.emplace_back(remote, mode);
      upload.Header(remote, mode | 0700, true);
    } else if (S_ISLNK(st.st_mode)) {
      std::error_code link_ec;
      const fs::path target = fs::read_symlink(it->path(), link_ec);
      if (link_ec) return LocalError(link_ec.value(), "reading symlink", local);
      upload.Header(remote, 0, false, target.string());
    } else if (S_ISREG(st.st_mode)) {
      SBX_RETURN_IF_ERROR(SendFile(upload, local, remote, st));
    }
    // Devices, FIFOs and sockets are skipped.
  }
  return absl::OkStatus();
}

// ---- the receiving side ----------------------------------------------------------

// Checks a path the server sent for an entry below the requested directory:
// relative, no "." / ".." / empty component. Guards against a hostile or
// broken server writing outside the destination.
absl::Status CheckRelative(const std::string& rel) {
  if (rel.empty() || rel.front() == '/') {
    return absl::InternalError(absl::StrCat("the server sent a bad entry path \"", rel, "\""));
  }
  for (absl::string_view part : absl::StrSplit(rel, '/')) {
    if (part.empty() || part == "." || part == "..") {
      return absl::InternalError(absl::StrCat("the server sent a bad entry path \"", rel, "\""));
    }
  }
  return absl::OkStatus();
}

std::string ParentOf(const std::string& rel) {
  const size_t slash = rel.rfind('/');
  return slash == std::string::npos ? "" : rel.substr(0, slash);
}

// Writes what a ReadFile stream carries below a local destination.
class Download {
 public:
  explicit Download(std::string local_path) : local_path_(std::move(local_path)) {}

  // The first header: decides what `local_path_` becomes.
  absl::Status Top(const v1::FileHeader& header) {
    struct stat st;
    if (::stat(local_path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      dest_ = (fs::path(local_path_) / BaseName(header.path())).string();
    } else {
      dest_ = local_path_;
    }
    if (header.is_dir()) {
      is_tree_ = true;
      dirs_.insert("");
      return MakeDir(dest_, header.mode());
    }
    if (!header.symlink_target().empty()) {
      return absl::InternalError("the server sent a symlink as the top entry");
    }
    return OpenFile(dest_, header.mode());
  }

  absl::Status Entry(const v1::FileHeader& header) {
    SBX_RETURN_IF_ERROR(CloseFile());
    if (!is_tree_) return absl::InternalError("the server sent a second header for a file");
    SBX_RETURN_IF_ERROR(CheckRelative(header.path()));
    // Every parent must be a directory this transfer made (and checked).
    if (dirs_.count(ParentOf(header.path())) == 0) {
      return absl::InternalError(absl::StrCat("the server sent \"", header.path(),
                                              "\" before its directory"));
    }
    const std::string local = (fs::path(dest_) / header.path()).string();
    if (header.is_dir()) {
      dirs_.insert(header.path());
      return MakeDir(local, header.mode());
    }
    if (!header.symlink_target().empty()) return MakeSymlink(local, header.symlink_target());
    return OpenFile(local, header.mode());
  }

  absl::Status Chunk(const std::string& data) {
    if (file_.get() < 0) return absl::InternalError("the server sent content without a file");
    if (!WriteAllFd(file_.get(), data)) return LocalError(errno, "writing", file_path_);
    bytes_ += static_cast<int64_t>(data.size());
    return absl::OkStatus();
  }

  // After the stream ended well: the last file, then directory modes,
  // deepest first.
  absl::StatusOr<TransferResult> Finish() {
    SBX_RETURN_IF_ERROR(CloseFile());
    for (auto it = dir_modes_.rbegin(); it != dir_modes_.rend(); ++it) {
      if (::chmod(it->first.c_str(), it->second) != 0) {
        return LocalError(errno, "setting the mode of", it->first);
      }
    }
    return TransferResult{files_, bytes_};
  }

  void Abandon() { file_.Reset(); }

 private:
  absl::Status MakeDir(const std::string& path, uint32_t mode) {
    if (::mkdir(path.c_str(), 0700) != 0) {
      if (errno != EEXIST) return LocalError(errno, "creating directory", path);
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return absl::AlreadyExistsError(
            absl::StrCat("cannot create directory ", path, ": another file is there"));
      }
      if (::chmod(path.c_str(), st.st_mode | 0700) != 0) {
        return LocalError(errno, "opening up", path);
      }
    }
    dir_modes_.emplace_back(path, LocalMode(mode));
    ++files_;
    return absl::OkStatus();
  }

  absl::Status MakeSymlink(const std::string& path, const std::string& target) {
    if (::symlink(target.c_str(), path.c_str()) != 0) {
      struct stat st;
      if (errno != EEXIST || ::lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) {
        return LocalError(errno == EEXIST ? EEXIST : errno, "creating symlink", path);
      }
      if (::unlink(path.c_str()) != 0 || ::symlink(target.c_str(), path.c_str()) != 0) {
        return LocalError(errno, "replacing symlink", path);
      }
    }
    ++files_;
    return absl::OkStatus();
  }

  absl::Status OpenFile(const std::string& path, uint32_t mode) {
    // O_NOFOLLOW: never write through a symlink that is already there.
    file_.Reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (file_.get() < 0) return LocalError(errno, "creating", path);
    file_path_ = path;
    file_mode_ = LocalMode(mode);
    ++files_;
    return absl::OkStatus();
  }

  absl::Status CloseFile() {
    if (file_.get() < 0) return absl::OkStatus();
    if (::fchmod(file_.get(), file_mode_) != 0) {
      return LocalError(errno, "setting the mode of", file_path_);
    }
    file_.Reset();
    return absl::OkStatus();
  }

  const std::string local_path_;
  std::string dest_;
  bool is_tree_ = false;
  std::set<std::string> dirs_;  // relative paths of directories made so far
  std::vector<std::pair<std::string, uint32_t>> dir_modes_;
  Fd file_;
  std::string file_path_;
  uint32_t file_mode_ = 0;
  int64_t files_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace

absl::StatusOr<WriteResult> Client::WriteFiles(std::string_view sandbox_id,
                                               const std::vector<FileToWrite>& files,
                                               const TransferOptions& options) const {
  SBX_RETURN_IF_ERROR(RequireId(sandbox_id));
  Upload upload(state_->stub.get(), sandbox_id, options, state_->options.wait_for_ready);
  for (const FileToWrite& file : files) {
    const bool is_file = !file.is_dir && file.symlink_target.empty();
    if (!upload.Header(file.path, file.mode, file.is_dir, file.symlink_target,
                       is_file ? std::optional<int64_t>(file.content.size()) : std::nullopt)) {
      break;
    }
    if (is_file && !upload.Chunk(file.content)) break;
  }
  return upload.Finish();
}

absl::StatusOr<WriteResult> Client::WriteFileFrom(std::string_view sandbox_id, std::istream& in,
                                                  const std::string& remote_path, uint32_t mode,
                                                  const TransferOptions& options) const {
  SBX_RETURN_IF_ERROR(RequireId(sandbox_id));
  Upload upload(state_->stub.get(), sandbox_id, options, state_->options.wait_for_ready);
  upload.Header(remote_path, mode, false);
  std::string buffer(kChunkBytes, '\0');
  while (upload.ok() && in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n > 0) upload.Chunk(std::string_view(buffer.data(), static_cast<size_t>(n)));
  }
  if (in.bad()) return upload.Finish(absl::DataLossError("reading the local input failed"));
  return upload.Finish();
}

absl::StatusOr<TransferResult> Client::CopyIn(std::string_view sandbox_id,
                                              const std::string& local_path,
                                              const std::string& remote_path,
                                              const TransferOptions& options) const {
  SBX_RETURN_IF_ERROR(RequireId(sandbox_id));
  if (local_path.empty() || remote_path.empty()) {
    return absl::InvalidArgumentError("CopyIn: empty local or remote path");
  }
  struct stat st;
  if (::stat(local_path.c_str(), &st) != 0) return LocalError(errno, "reading", local_path);
  const std::string remote = absl::EndsWith(remote_path, "/")
                                 ? remote_path + BaseName(local_path)
                                 : remote_path;
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(local_path, " is not a regular file or directory"));
  }
  Upload upload(state_->stub.get(), sandbox_id, options, state_->options.wait_for_ready);
  absl::Status local;
  if (S_ISREG(st.st_mode)) {
    local = SendFile(upload, local_path, remote, st);
  } else {
    const uint32_t mode = st.st_mode & 07777;
    std::vector<std::pair<std::string, uint32_t>> deferred;
    if ((mode & 0700) != 0700) deferred.emplace_back(remote, mode);
    upload.Header(remote, mode | 0700, true);
    local = SendTree(upload, local_path, remote, deferred);
    for (auto it = deferred.rbegin(); local.ok() && it != deferred.rend(); ++it) {
      upload.Header(it->first, it->second, true);
    }
  }
  SBX_ASSIGN_OR_RETURN(TransferResult result, upload.Finish(local));
  return result;
}

namespace {

// Runs one ReadFile stream, handing each message to `on_message`; an error
// it returns cancels the stream.
template <typename OnMessage>
absl::Status ReadStream(v1::SandboxService::Stub* stub, bool wait_for_ready,
                        std::string_view sandbox_id, const std::string& remote_path,
                        const TransferOptions& options, OnMessage on_message) {
  SBX_RETURN_IF_ERROR(RequireId(sandbox_id));
  grpc::ClientContext context;
  Prepare(context, sandbox_id, options, wait_for_ready);
  v1::ReadFileRequest request;
  request.set_sandbox_id(std::string(sandbox_id));
  request.set_path(remote_path);
  request.set_user(options.user);
  std::unique_ptr<grpc::ClientReader<v1::ReadFileResponse>> stream =
      stub->ReadFile(&context, request);
  v1::ReadFileResponse response;
  while (stream->Read(&response)) {
    absl::Status s = on_message(response);
    if (!s.ok()) {
      context.TryCancel();
      while (stream->Read(&response)) {
      }
      (void)stream->Finish();
      return s;
    }
  }
  return FromGrpcStatus(stream->Finish());
}

}  // namespace

absl::StatusOr<TransferResult> Client::ReadFileTo(std::string_view sandbox_id,
                                                  const std::string& remote_path,
                                                  std::ostream& out,
                                                  const TransferOptions& options) const {
  TransferResult result;
  bool seen_header = false;
  SBX_RETURN_IF_ERROR(ReadStream(
      state_->stub.get(), state_->options.wait_for_ready, sandbox_id, remote_path, options,
      [&](const v1::ReadFileResponse& message) -> absl::Status {
        if (message.has_file()) {
          if (seen_header || message.file().is_dir()) {
            return absl::FailedPreconditionError(
                absl::StrCat(remote_path, " is a directory (copy it out with CopyOut)"));
          }
          seen_header = true;
          result.files = 1;
          return absl::OkStatus();
        }
        if (!seen_header) return absl::InternalError("the server sent content without a file");
        out.write(message.chunk().data(), static_cast<std::streamsize>(message.chunk().size()));
        if (!out) return absl::DataLossError("writing the local output failed");
        result.bytes += static_cast<int64_t>(message.chunk().size());
        return absl::OkStatus();
      }));
  out.flush();
  if (!out) return absl::DataLossError("writing the local output failed");
  return result;
}

absl::StatusOr<std::string> Client::ReadFile(std::string_view sandbox_id,
                                             const std::string& remote_path,
                                             const TransferOptions& options) const {
  std::ostringstream out;
  SBX_RETURN_IF_ERROR(ReadFileTo(sandbox_id, remote_path, out, options).status());
  return out.str();
}

absl::StatusOr<TransferResult> Client::CopyOut(std::string_view sandbox_id,
                                               const std::string& remote_path,
                                               const std::string& local_path,
                                               const TransferOptions& options) const {
  if (local_path.empty()) return absl::InvalidArgumentError("CopyOut: empty local path");
  Download download(local_path);
  bool seen_header = false;
  absl::Status status = ReadStream(
      state_->stub.get(), state_->options.wait_for_ready, sandbox_id, remote_path, options,
      [&](const v1::ReadFileResponse& message) -> absl::Status {
        if (message.has_file()) {
          if (!seen_header) {
            seen_header = true;
            return download.Top(message.file());
          }
          return download.Entry(message.file());
        }
        return download.Chunk(message.chunk());
      });
  if (!status.ok()) {
    download.Abandon();
    return status;
  }
  if (!seen_header) return absl::InternalError("the server sent nothing");
  return download.Finish();
}

}  // namespace sbx
