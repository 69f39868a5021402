// The Exec stream: one ExecReactor per call, its state in an ExecSession
// that lives on the shared IoLoop.
//
// Threading: gRPC reactions (OnReadDone, OnWriteDone, OnCancel, OnDone) only
// post work to the loop; the session runs there, single-threaded, and is the
// only caller of StartRead / StartWrite / Finish after the first read. The
// first message starts the command through the manager, which waits for the
// sandbox's init: that runs on the `starts` pool, which posts the result.
// The reactor deletes itself in OnDone; the session, shared with the posted
// work, goes once the loop has dropped it.
#ifndef SBX_SERVER_API_EXEC_REACTOR_H_
#define SBX_SERVER_API_EXEC_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "sbx/v1/sandbox.grpc.pb.h"
#include "server/api/io_loop.h"
#include "server/api/run.h"
#include "server/manager/manager.h"

namespace sbx::api {

class ExecSession;

class ExecReactor : public grpc::ServerBidiReactor<v1::ExecRequest, v1::ExecResponse> {
 public:
  // Commands start as `tenant` (the authenticated caller).
  ExecReactor(manager::Manager& manager, IoLoop& loop, RunPool& starts, std::string tenant);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // For the session, on the loop thread: StartRead, StartWrite and Finish,
  // with the ordering TSan is told about (reactor_order.h).
  void ReadNext();
  void Write(const v1::ExecResponse* response);
  void End(const grpc::Status& status);

 private:
  manager::Manager& manager_;
  IoLoop& loop_;
  RunPool& starts_;
  const std::string tenant_;
  std::shared_ptr<ExecSession> session_;
  v1::ExecRequest request_;
  bool first_read_ = true;  // touched only in OnReadDone (one read in flight)
};

}  // namespace sbx::api

#endif  // SBX_SERVER_API_EXEC_REACTOR_H_
