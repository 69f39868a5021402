#include "server/api/files.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/api/log.h"
#include "server/api/reactor_order.h"
#include "server/api/status.h"
#include "server/common/status.h"

namespace sbx::api {
namespace {

bool Quiet(const absl::Status& status) {
  // Mistakes of the client, not events of the daemon.
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

void ToProto(const engine::FileEntry& entry, v1::FileHeader* out) {
  out->set_path(entry.path);
  out->set_mode(entry.mode);
  switch (entry.type) {
    case engine::FileEntry::Type::kFile:
      out->set_size(entry.size);
      break;
    case engine::FileEntry::Type::kDirectory:
      out->set_is_dir(true);
      break;
    case engine::FileEntry::Type::kSymlink:
      out->set_symlink_target(entry.symlink_target);
      break;
  }
}

}  // namespace

// ---- WriteFiles ---------------------------------------------------------------

WriteFilesReactor::WriteFilesReactor(manager::Manager& manager, std::string tenant,
                                     v1::WriteFilesResponse* response)
    : manager_(manager), tenant_(std::move(tenant)), response_(response) {
  BeforeGrpcOp(this);
  StartRead(&request_);
}

void WriteFilesReactor::OnDone() {
  InReaction(this);
  delete this;
}

void WriteFilesReactor::OnReadDone(bool ok) {
  InReaction(this);
  if (!ok) {
    // The client half-closed (or went away, when nobody hears the answer).
    if (!fs_) {
      Complete(absl::InvalidArgumentError(
          "the stream ended before its first message (sandbox_id)"));
      return;
    }
    absl::Status status = EndFile();
    if (status.ok()) {
      response_->set_files(files_);
      response_->set_bytes(bytes_);
    }
    Complete(status);
    return;
  }
  absl::Status status = Handle(request_);
  if (!status.ok()) {
    Complete(status);
    return;
  }
  BeforeGrpcOp(this);
  StartRead(&request_);
}

absl::Status WriteFilesReactor::Handle(v1::WriteFilesRequest& request) {
  if (!fs_) return Open(request);
  if (!request.user().empty()) {
    return absl::InvalidArgumentError("user: only the first message may carry it");
  }
  switch (request.msg_case()) {
    case v1::WriteFilesRequest::kSandboxId:
      return absl::InvalidArgumentError("sandbox_id: only the first message may carry it");
    case v1::WriteFilesRequest::kFile:
      return BeginEntry(request.file());
    case v1::WriteFilesRequest::kChunk: {
      if (!file_) {
        return absl::InvalidArgumentError(
            in_directory_ ? "chunk: the current entry is a directory or a symlink, which has "
                            "no content"
                          : "chunk: content before any file header");
      }
      const std::string& chunk = request.chunk();
      if (expected_size_ && file_->bytes_written() + static_cast<int64_t>(chunk.size()) >
                                *expected_size_) {
        return absl::InvalidArgumentError(absl::StrCat(
            file_->path(), ": more content than the ", *expected_size_,
            " bytes its header announced"));
      }
      RETURN_IF_ERROR(file_->Write(chunk));
      bytes_ += static_cast<int64_t>(chunk.size());
      return absl::OkStatus();
    }
    case v1::WriteFilesRequest::MSG_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("a message with neither file nor chunk");
}

absl::Status WriteFilesReactor::Open(const v1::WriteFilesRequest& request) {
  if (request.msg_case() != v1::WriteFilesRequest::kSandboxId || request.sandbox_id().empty()) {
    return absl::InvalidArgumentError("the first message must carry sandbox_id");
  }
  ASSIGN_OR_RETURN(const uint32_t uid, engine::ParseFileUser(request.user()));
  ASSIGN_OR_RETURN(fs_, manager_.OpenSandboxFs(tenant_, request.sandbox_id(), uid));
  return absl::OkStatus();
}

absl::Status WriteFilesReactor::BeginEntry(const v1::FileHeader& header) {
  RETURN_IF_ERROR(EndFile());
  ASSIGN_OR_RETURN(const std::string path, engine::CleanSandboxPath(header.path()));
  in_directory_ = false;
  if (!header.symlink_target().empty()) {
    if (header.is_dir()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": a header cannot be both a directory and a symlink"));
    }
    RETURN_IF_ERROR(fs_->MakeSymlink(path, header.symlink_target()));
    in_directory_ = true;
  } else if (header.is_dir()) {
    RETURN_IF_ERROR(fs_->MakeDirectory(path, header.mode()));
    in_directory_ = true;
  } else {
    if (header.has_size() && header.size() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": size must not be negative"));
    }
    ASSIGN_OR_RETURN(file_, fs_->CreateFile(path, header.mode()));
    if (header.has_size()) expected_size_ = header.size();
  }
  ++files_;
  return absl::OkStatus();
}

absl::Status WriteFilesReactor::EndFile() {
  if (!file_) return absl::OkStatus();
  std::unique_ptr<engine::FileWriter> file = std::move(file_);
  const std::optional<int64_t> expected = std::exchange(expected_size_, std::nullopt);
  if (expected && file->bytes_written() != *expected) {
    return absl::InvalidArgumentError(absl::StrCat(file->path(), ": got ", file->bytes_written(),
                                                   " bytes, its header announced ", *expected));
  }
  return file->Close();
}

void WriteFilesReactor::Complete(const absl::Status& status) {
  if (finished_) return;
  finished_ = true;
  file_.reset();  // a partial file stays as it is; its fd closes now
  const std::string id = fs_ ? fs_->sandbox_id() : "?";
  if (status.ok()) {
    Log().info("sandbox {}: wrote {} files and directories, {} bytes", id, files_, bytes_);
  } else if (Quiet(status)) {
    Log().debug("sandbox {}: WriteFiles failed: {}", id, status.ToString());
  } else {
    Log().error("sandbox {}: WriteFiles failed: {}", id, status.ToString());
  }
  BeforeGrpcOp(this);
  Finish(ToGrpcStatus(status));
}

// ---- ReadFile ------------------------------------------------------------------

ReadFileReactor::ReadFileReactor(manager::Manager& manager, const std::string& tenant,
                                 const v1::ReadFileRequest& request)
    : sandbox_id_(request.sandbox_id()) {
  absl::Status status = [&]() -> absl::Status {
    if (sandbox_id_.empty()) return absl::InvalidArgumentError("sandbox_id: must not be empty");
    ASSIGN_OR_RETURN(path_, engine::CleanSandboxPath(request.path()));
    ASSIGN_OR_RETURN(const uint32_t uid, engine::ParseFileUser(request.user()));
    ASSIGN_OR_RETURN(fs_, manager.OpenSandboxFs(tenant, sandbox_id_, uid));
    ASSIGN_OR_RETURN(reader_, fs_->Read(path_));
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    Complete(status);
    return;
  }
  SendNext();
}

void ReadFileReactor::OnDone() {
  InReaction(this);
  delete this;
}

void ReadFileReactor::OnWriteDone(bool ok) {
  InReaction(this);
  if (!ok) {
    Complete(absl::CancelledError("the client went away"));
    return;
  }
  SendNext();
}

void ReadFileReactor::SendNext() {
  response_.Clear();
  absl::StatusOr<engine::TreeReader::Step> step =
      reader_->Next(&entry_, response_.mutable_chunk());
  if (!step.ok()) {
    Complete(step.status());
    return;
  }
  switch (*step) {
    case engine::TreeReader::Step::kEnd:
      Complete(absl::OkStatus());
      return;
    case engine::TreeReader::Step::kEntry:
      ToProto(entry_, response_.mutable_file());
      ++entries_;
      break;
    case engine::TreeReader::Step::kChunk:
      bytes_ += static_cast<int64_t>(response_.chunk().size());
      break;
  }
  BeforeGrpcOp(this);
  StartWrite(&response_);
}

void ReadFileReactor::Complete(const absl::Status& status) {
  reader_.reset();  // close the files and directories now, not at OnDone
  if (status.ok()) {
    Log().info("sandbox {}: read {} ({} entries, {} bytes)", sandbox_id_, path_, entries_,
               bytes_);
  } else if (Quiet(status)) {
    Log().debug("sandbox {}: ReadFile {} failed: {}", sandbox_id_, path_, status.ToString());
  } else {
    Log().error("sandbox {}: ReadFile {} failed: {}", sandbox_id_, path_, status.ToString());
  }
  BeforeGrpcOp(this);
  Finish(ToGrpcStatus(status));
}

}  // namespace sbx::api
