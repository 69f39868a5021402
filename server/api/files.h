// The file-transfer streams: WriteFiles (client stream) and ReadFile
// (server stream), one reactor per call.
//
// Threading: the file work runs in the reactions themselves, on gRPC's
// callback threads, one bounded step per reaction (one header, or one chunk
// of at most a gRPC message / engine::kFileChunkBytes), like a unary handler
// does its work. The sandbox user's credentials are taken and given back
// inside each engine call, so nothing leaks to the next reaction on that
// thread. One read (WriteFiles) or one write (ReadFile) is in flight at a
// time and the next one starts only when the previous completed, so a slow
// peer back-pressures the transfer instead of filling memory. Each reactor
// calls Finish exactly once and deletes itself in OnDone; its open files
// close with it.
#ifndef SBX_SERVER_API_FILES_H_
#define SBX_SERVER_API_FILES_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "sbx/v1/sandbox.grpc.pb.h"
#include "server/api/stream_heap.h"
#include "server/engine/files.h"
#include "server/manager/manager.h"

namespace sbx::api {

class WriteFilesReactor : public grpc::ServerReadReactor<v1::WriteFilesRequest> {
 public:
  // `manager` and `response` must outlive the call.
  WriteFilesReactor(manager::Manager& manager, std::string tenant,
                    v1::WriteFilesResponse* response);

  void OnReadDone(bool ok) override;
  void OnDone() override;

 private:
  absl::Status Handle(v1::WriteFilesRequest& request);
  absl::Status Open(const v1::WriteFilesRequest& request);
  absl::Status BeginEntry(const v1::FileHeader& header);
  // Closes the file being written, checking its announced size.
  absl::Status EndFile();
  void Complete(const absl::Status& status);

  StreamHeapUse heap_use_;  // first: the buffers below are freed before it goes
  manager::Manager& manager_;
  const std::string tenant_;
  v1::WriteFilesResponse* const response_;
  v1::WriteFilesRequest request_;
  std::shared_ptr<engine::SandboxFs> fs_;
  std::unique_ptr<engine::FileWriter> file_;
  std::optional<int64_t> expected_size_;
  bool in_directory_ = false;  // the last header was a directory or symlink
  int64_t files_ = 0;
  int64_t bytes_ = 0;
  bool finished_ = false;
};

class ReadFileReactor : public grpc::ServerWriteReactor<v1::ReadFileResponse> {
 public:
  // `manager` must outlive the call.
  ReadFileReactor(manager::Manager& manager, const std::string& tenant,
                  const v1::ReadFileRequest& request);

  void OnWriteDone(bool ok) override;
  void OnDone() override;

 private:
  // Produces the next message and starts writing it, or finishes.
  void SendNext();
  void Complete(const absl::Status& status);

  StreamHeapUse heap_use_;  // first: the buffers below are freed before it goes
  std::string sandbox_id_;
  std::string path_;
  std::shared_ptr<engine::SandboxFs> fs_;
  std::unique_ptr<engine::TreeReader> reader_;
  v1::ReadFileResponse response_;
  engine::FileEntry entry_;
  int64_t entries_ = 0;
  int64_t bytes_ = 0;
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_FILES_H_
